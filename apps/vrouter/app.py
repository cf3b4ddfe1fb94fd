"""vrouter: an overlay virtual router in the style of the Tungsten Fabric vRouter (README.md).

`pypdk-run apps/vrouter --lcores 2-5` starts an empty vRouter (no vifs) with
its control socket and agent; it keeps running and is programmed live with
`pypdk-vrouter` (vif --add opens the vif's port and deals its rx queues to
the forwarding lcores), as TF's agent programs its vRouter. `-- --config
vrouter.toml` programs it at start instead: the startup file declares the
vifs (each with its own port spec), nexthops, routes, labels, VNIs,
neighbours, policies and floating IPs (config.py). What is per instance
defaults from --file-prefix: the control socket is
/run/pypdk/<file-prefix>/vrouter.sock (the EAL's runtime directory), so two
vRouters with different prefixes do not collide. Every
worker lcore runs the vRouter's forwarding loop (dp/datapath.pyx) over its
share of the vifs' rx queues (dealt round-robin); the agent (agent.py: ARP
on the fabric for underlay neighbours and resolve routes, ARP for floating
IPs, flow aging) and the control socket that `pypdk-vrouter` talks to
(ctl/server.py, --name/--ctl-socket) run on threads of the process; the
runner's --stats-period shows per-vif rates. With --stats-json the per-vif
counters and the drop statistics go under "app".
"""
from __future__ import annotations

import collections
import os

import click

from pypdk.errors import UsageError
from pypdk.eal.timer import tsc_hz
from pypdk.mempool import PktMbufPool
from pypdk.worker import make_plan

from apps.vrouter import config
from apps.vrouter.vhostuser import VHOST_DIR
from apps.vrouter.vrouter import VRouter

POOL_MBUFS = 16384
POOL_CACHE = 256


def options():
    """The app's own options (after `--`)."""

    @click.command("vrouter", help="Overlay virtual router (MPLSoUDP, MPLSoGRE, VXLAN), programmed live "
                                   "with pypdk-vrouter or from a TOML startup file.")
    @click.option("--config", "config_path", default=None, metavar="FILE",
                  help="startup file (TOML): [vrouter], [[vif]], [[nh]], [[route]] ... (see README.md); "
                       "default: start empty")
    @click.option("--burst", type=click.IntRange(1, 64), default=32, show_default=True,
                  help="packets per rx burst")
    @click.option("--flow-timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
                  metavar="SECONDS", help="idle flows are aged after this long (closed TCP: 1 s)")
    @click.option("--mbufs", type=click.IntRange(1024), default=POOL_MBUFS, show_default=True,
                  help="packet buffers in the pool")
    @click.option("--yield-after", type=click.IntRange(0), default=0, show_default=True, metavar="N",
                  help="sched_yield after N poll rounds that brought nothing (lcores sharing a cpu, "
                       "e.g. two vRouters on one machine); 0 spins")
    @click.option("--idle-sleep", type=click.IntRange(0, 1_000_000), default=0, show_default=True,
                  metavar="US", help="an lcore whose rx queues brought nothing for 64 rounds sleeps US "
                                     "microseconds (guests, shared hosts); 0 spins")
    @click.option("--name", default=None,
                  help="this vRouter's name (default: the --file-prefix; with --name the control socket is "
                       "/run/pypdk/vrouter-NAME.sock)")
    @click.option("--ctl-socket", default=None, metavar="PATH",
                  help="control socket path (default /run/pypdk/<file-prefix>/vrouter.sock; '' for none)")
    @click.option("--vhost-dir", default=VHOST_DIR, show_default=True, metavar="DIR",
                  help="directory of the vhost-user sockets of vhostuser:NAME ports (DIR/uvh_vif_NAME)")
    @click.option("--no-agent", is_flag=True, help="run no agent thread (tests drive the slow path)")
    def command(**kw):
        pass

    return command


def setup(eal, ports, opts):
    workers = list(eal.worker_lcores)
    if not workers:
        raise UsageError("vrouter needs at least one worker lcore (the main lcore runs the agent)",
                         "give two lcores or more, e.g. --lcores 0-1")
    # A pool on each node that has forwarding lcores: a queue's mbufs come from
    # the pool of the node of the lcore that polls it (lcores.py).
    nodes = {lc: eal.socket_of(lc) for lc in workers}
    pools = {}
    try:
        for node in sorted(set(nodes.values())):
            pools[node] = PktMbufPool(f"vrouter_pool{node}", opts.mbufs, cache_size=POOL_CACHE, socket_id=node)
    except BaseException:
        _close_pools(pools)
        raise
    pool = pools[nodes[workers[0]]]
    # The big tables (flows, routes, bridge) in hugepages on one node: the
    # forwarding lcores' (README.md, "Table memory"); --no-huge: ordinary pages.
    tables_node = table_node(nodes, eal.socket_of(eal.main_lcore))
    eal.place_tables(tables_node)
    hz = tsc_hz()       # ticks of the flow clock (the TSC) per second
    vr_kw = dict(ports=ports, lcores=nodes, pools=pools, burst=opts.burst, yield_after=opts.yield_after,
                 tsc_hz=hz, sleep_us=opts.idle_sleep, vhost_dir=opts.vhost_dir)
    try:
        if opts.config_path is not None:
            vr = config.load(opts.config_path, pool, **vr_kw)
        else:
            vr = VRouter(pool, **vr_kw)
    except BaseException:
        _close_pools(pools)
        raise
    try:
        vr.dp.set_flow_timeouts(opts.flow_timeout, 1.0, hz)
        wk = dict(vr.fwd.workers)
        assignment = vr.fwd.publish()
    except BaseException:
        vr.close()
        _close_pools(pools)
        raise

    try:
        control = _start_control(vr, opts, eal)
    except BaseException:
        vr.close()
        _close_pools(pools)
        raise

    def close():
        control.close()
        vr.close()
        _close_pools(pools)

    def app_stats():
        out = _locked(control, vr.stats_json)
        out["pools"] = {f"vrouter_pool{n}": {"node": p.socket_id, "size": p.size, "in_use": p.in_use_count}
                        for n, p in pools.items()}
        out["lcore_nodes"] = {str(lc): n for lc, n in nodes.items()}
        out["tables_node"] = tables_node
        return out

    # Each forwarding lcore is a pypdk.worker LcoreWorker (dp/router.pyx Worker).
    return make_plan(wk, close=close, app_stats=app_stats,
                     periodic=_live_view(vr, control),
                     info={"lcores": {lc: pairs for lc, pairs in assignment.items()}, "vrouter": vr})


def table_node(lcore_nodes: dict, main_node: int) -> int:
    """The node of the vRouter's tables: the one with most forwarding lcores
    ({lcore: node}); the main lcore's on a tie or with none."""
    ranked = collections.Counter(lcore_nodes.values()).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return main_node
    return ranked[0][0]


# ---- the control hook: agent thread, control socket, live view (apps/vrouter/agent.py) ----
# The agent owns the trap ring and ages flows; the control socket serves
# pypdk-vrouter; both (and the stats below) take control.lock, the one
# writer's lock of the vRouter's tables.

def _close_pools(pools):
    for p in pools.values():
        p.close()


def _start_control(vr, opts, eal):
    """The agent and the control socket; the name and the socket default from --file-prefix."""
    from apps.vrouter.agent import start_control
    from apps.vrouter.ctl.server import SOCKET_NAME
    name, path = opts.name, opts.ctl_socket
    if path is None and name is None:
        path = os.path.join(eal.runtime_dir, SOCKET_NAME)
    return start_control(vr, name=name or eal.file_prefix, socket_path=path, agent=not opts.no_agent)


def _locked(control, fn):
    with control.lock:
        return fn()


def _live_view(vr, control):
    """--stats-period: per-vif rx/tx rates and drops (pypdk-vrouter top shows the same)."""
    import time
    from apps.vrouter.ctl import show
    last = {"vifs": None, "t": time.monotonic()}

    def periodic(dt):
        now = time.monotonic()
        # The runner's last call covers the whole run: rates from the totals.
        prev = last["vifs"] if dt < now - last["t"] + 0.5 else None
        with control.lock:
            cur = vr.vif_list()
            drops = {k: v for k, v in vr.dropstats().items() if v}
        title = f"vRouter vifs (rates over {dt:.1f} s)" if prev is not None else f"vRouter vifs (averages over the run, {dt:.1f} s)"
        lines = show.vif_rates(prev, cur, dt, title)
        last["vifs"], last["t"] = cur, now
        if drops:
            lines.append("dropstats: " + ", ".join(f"{k} {v}" for k, v in drops.items()))
        return lines

    return periodic
