"""vrouter: an overlay virtual router in the style of the Tungsten Fabric vRouter (README.md).

`pypdk-run apps/vrouter --lcores 0-1 -- --config vrouter.toml`: the startup
file declares the vifs (each with its own port spec), nexthops, routes,
labels, VNIs, neighbours, policies and floating IPs (config.py). Every
worker lcore runs the vRouter's forwarding loop (dp/datapath.pyx) over its
share of the vifs' rx queues (dealt round-robin); the main lcore runs the
minimal agent (trapped ARP -> neighbours, resolve -> ARP requests) and flow
aging from the runner's periodic tick. With --stats-json the per-vif
counters and the drop statistics go under "app".
"""
from __future__ import annotations

import click

from pypdk.app import Plan
from pypdk.errors import UsageError
from pypdk.mempool import PktMbufPool

from apps.vrouter import config

POOL_MBUFS = 16384
POOL_CACHE = 256


def options():
    """The app's own options (after `--`)."""

    @click.command("vrouter", help="Overlay virtual router (MPLSoUDP, MPLSoGRE, VXLAN) from a TOML config.")
    @click.option("--config", "config_path", required=True, metavar="FILE",
                  help="startup file (TOML): [vrouter], [[vif]], [[nh]], [[route]] ... (see README.md)")
    @click.option("--burst", type=click.IntRange(1, 64), default=32, show_default=True,
                  help="packets per rx burst")
    @click.option("--flow-timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
                  metavar="SECONDS", help="idle flows are aged after this long (closed TCP: 1 s)")
    @click.option("--mbufs", type=click.IntRange(1024), default=POOL_MBUFS, show_default=True,
                  help="packet buffers in the pool")
    def command(**kw):
        pass

    return command


def _tsc_hz():
    """Ticks of the flow clock (the TSC) per second, measured over 50 ms."""
    import time
    from apps.vrouter.dp.datapath import rdtsc
    t0, n0 = time.perf_counter(), rdtsc()
    time.sleep(0.05)
    return (rdtsc() - n0) / (time.perf_counter() - t0)


def setup(eal, ports, opts):
    workers = list(eal.worker_lcores)
    if not workers:
        raise UsageError("vrouter needs at least one worker lcore (the main lcore runs the agent)",
                         "give two lcores or more, e.g. --lcores 0-1")
    pool = PktMbufPool("vrouter_pool", opts.mbufs, cache_size=POOL_CACHE)
    try:
        vr = config.load(opts.config_path, pool, ports)
    except BaseException:
        pool.free()
        raise
    try:
        hz = _tsc_hz()
        vr.dp.set_flow_timeouts(opts.flow_timeout, 1.0, hz)
        wk = {lc: vr.dp.add_worker(lc, opts.burst) for lc in workers}
        assignment = vr.dp.rebalance()
    except BaseException:
        vr.close()
        pool.free()
        raise

    def stop():
        for w in wk.values():
            w.stop()

    def periodic(dt):
        vr.agent_poll()
        vr.flow_age()
        d = {k: v for k, v in vr.dropstats().items() if v}
        lines = ["vrouter: " + ", ".join(f"vif {v['id']} rx {v['stats']['rx_packets']} tx {v['stats']['tx_packets']}"
                                         for v in vr.vif_list())]
        if d:
            lines.append("dropstats: " + ", ".join(f"{k} {v}" for k, v in d.items()))
        return lines

    def close():
        vr.close()
        pool.free()

    return Plan(tasks={lc: w.lcore_function() for lc, w in wk.items()}, stop=stop,
                lcore_stats=lambda: {lc: w.stats() for lc, w in wk.items()},
                app_stats=vr.stats_json, periodic=periodic, close=close,
                info={"lcores": {lc: pairs for lc, pairs in assignment.items()}, "vrouter": vr})
