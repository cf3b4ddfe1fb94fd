"""l2fwd: the classic layer-2 forwarder on pypdk (see README.md).

Enabled ports are paired in order (the 1st with the 2nd, the 3rd with the
4th...); what a port receives leaves by its pair, with the Ethernet source
rewritten to the output port's MAC and the destination to
02:00:00:00:00:<output port id> (unless --no-mac-updating). Rx ports are
dealt to the worker lcores in order, `-q` per lcore, as DPDK's l2fwd does;
each lcore runs pypdk's run-to-completion loop compiled around the rewrite
(fwd.pyx). Each port has one rx and one tx queue; a port's tx queue is fed
only by the lcore that polls its pair.
"""
from __future__ import annotations

import click

from pypdk import stats
from pypdk.errors import UsageError
from pypdk.mempool import PktMbufPool
from pypdk.worker import make_plan

from . import fwd

NB_RXD = 1024
NB_TXD = 1024
POOL_CACHE = 256
POOL_MIN = 8192


def _portmask(ctx, param, value):
    if value is None:
        return None
    text = value.lower().removeprefix("0x")
    try:
        mask = int(text, 16)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a hex mask (e.g. 0x3 for ports 0 and 1)") from None
    if mask <= 0:
        raise click.BadParameter(f"{value!r} enables no port (e.g. 0x3 for ports 0 and 1)")
    return mask


def options():
    """The app's own options (after `--`)."""

    @click.command("l2fwd", help="Forward between port pairs (0<->1, 2<->3...), rewriting MACs.")
    @click.option("-p", "--portmask", callback=_portmask, default=None, metavar="HEX",
                  help="hex mask of the ports to use (default: every --vdev port)")
    @click.option("-q", "rx_per_lcore", type=click.IntRange(1, 64), default=None, metavar="N",
                  help="rx ports per lcore, as DPDK's l2fwd -q "
                       "(default: the ports spread evenly over the worker lcores)")
    @click.option("--mac-updating/--no-mac-updating", default=True, show_default=True,
                  help="rewrite source/destination MACs")
    @click.option("--burst", type=click.IntRange(1, 64), default=32, show_default=True,
                  help="packets per rx burst")
    @click.option("--yield-after", type=click.IntRange(0), default=0, show_default=True, metavar="N",
                  help="sched_yield after N empty poll rounds (lcores sharing a cpu); 0 spins")
    def command(**kw):
        pass

    return command


def assign_lcores(ports: list[int], workers: list[int], per_lcore: int | None) -> dict[int, list[int]]:
    """Deal rx ports to worker lcores in order, `per_lcore` each (DPDK l2fwd's rule).

    Raises:
        UsageError: not enough worker lcores.
    """
    if not workers:
        raise UsageError("l2fwd needs at least one worker lcore (the main lcore runs the runner)",
                         "give two lcores or more, e.g. --lcores 0-1")
    if per_lcore is None:
        per_lcore = -(-len(ports) // len(workers))
    need = -(-len(ports) // per_lcore)
    if need > len(workers):
        raise UsageError(f"{len(ports)} ports at -q {per_lcore} need {need} worker lcores, "
                         f"there are {len(workers)}",
                         f"raise -q to {-(-len(ports) // len(workers))} or add worker lcores")
    out: dict[int, list[int]] = {}
    for i, p in enumerate(ports):
        out.setdefault(workers[i // per_lcore], []).append(p)
    return out


def setup(eal, ports, opts):
    if not ports:
        raise UsageError("l2fwd has no ports", "add --vdev devices, e.g. --vdev net_null0 --vdev net_null1")
    by_id = {p.port_id: p for p in ports}
    if opts.portmask is None:
        enabled = sorted(by_id)
    else:
        enabled = [i for i in range(opts.portmask.bit_length()) if opts.portmask >> i & 1]
        missing = [i for i in enabled if i not in by_id]
        if missing:
            raise UsageError(f"portmask 0x{opts.portmask:x} enables port {missing[0]}, but only ports "
                             f"{', '.join(map(str, sorted(by_id)))} exist",
                             "clear those bits or add --vdev devices")
    if len(enabled) % 2:
        raise UsageError(f"l2fwd pairs ports, and {len(enabled)} are enabled ({', '.join(map(str, enabled))})",
                         "enable an even number of ports (--vdev or -p)")
    pair = {}
    for a, b in zip(enabled[0::2], enabled[1::2]):
        pair[a], pair[b] = b, a
    lcore_ports = assign_lcores(enabled, list(eal.worker_lcores), opts.rx_per_lcore)

    n_mbufs = max(len(enabled) * (NB_RXD + NB_TXD + opts.burst + len(eal.lcores) * POOL_CACHE), POOL_MIN)
    pool = PktMbufPool("l2fwd_pool", n_mbufs, cache_size=POOL_CACHE)
    try:
        for pid in enabled:
            by_id[pid].setup(pool, 1, 1, NB_RXD, NB_TXD)
        macs = None
        if opts.mac_updating:
            macs = fwd.MacTable()
            for pid in enabled:
                macs.set_port(pid, by_id[pid].mac)
        workers = {lc: fwd.make_worker([(p, 0, pair[p], 0) for p in rx], macs, opts.burst,
                                       opts.yield_after)
                   for lc, rx in lcore_ports.items()}
        for pid in enabled:
            by_id[pid].start()
    except BaseException:
        for pid in enabled:
            by_id[pid].stop()
        pool.close()
        raise

    def port_report():
        per = stats.merge_port_counters(w.port_stats() for w in workers.values())
        return {p: {"sent": per.get(p, {}).get("tx", 0), "received": per.get(p, {}).get("rx", 0),
                    "dropped": per.get(p, {}).get("dropped", 0)} for p in enabled}

    def periodic(dt):
        return stats.format_port_report("l2fwd port statistics", port_report())

    def app_stats():
        per = port_report()
        return {"ports": {str(p): c for p, c in per.items()},
                "total": stats.sum_counters(per.values()),
                "mac_updating": bool(opts.mac_updating),
                "pairs": {str(a): b for a, b in pair.items()},
                "lcores": {str(lc): rx for lc, rx in lcore_ports.items()}}

    def close():
        # The runner closed the ports (their rings gave their mbufs back): the pool can go.
        pool.close()

    return make_plan(workers, close=close, app_stats=app_stats, periodic=periodic,
                     info={"pairs": pair, "lcores": lcore_ports})
