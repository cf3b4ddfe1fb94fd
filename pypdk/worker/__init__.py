"""What an lcore runs: one loop skeleton and the processing models on it.

Every worker lcore runs the skeleton of `lcore_loop.pxd`: rounds until its
quit flag is set, the idle policy (`yield_after`) after each round, an
optional per-round callback (the lcore's quiescent point), and one set of
loop counters (`LCORE_STAT_NAMES`, the per-lcore keys of --stats-json). On
it:

- run-to-completion (`rtc.RtcWorker`): an lcore polls its hops (rx queue ->
  tx queue), runs a C hook on each burst, transmits, frees what was refused;
- pipeline (`pipeline.Pipeline`): an rx stage, worker stages and a tx stage
  on different lcores joined by SP/SC rings, back-pressure counted;
- Python per burst (`pyburst.PyBurstWorker`): the slow path for prototyping;
- and the apps' own loops (pktgen's generator, the vRouter's forwarding
  lcores), compiled around the same skeleton.

Every worker is an `LcoreWorker`, with one Python face: `lcore_function()`
(what to launch), `stop()`, `stats()` (the lcore's loop counters, then the
model's own) and `port_stats()` (per-port rx/tx/dropped). `make_plan` turns
{lcore: worker} into the `Plan` an app's setup() returns.
"""
from __future__ import annotations

from pypdk.app import Plan
from pypdk.errors import UsageError
from pypdk.worker.lcore_loop import (LcoreWorker, BurstHook, LCORE_STAT_NAMES, HOP_STAT_NAMES,
                                     HOOK_TOOK)
from pypdk.worker.rtc import RtcWorker, macswap, drop
from pypdk.worker.pipeline import Pipeline, Stage
from pypdk.worker.pyburst import PyBurstWorker

__all__ = ["LcoreWorker", "RtcWorker", "BurstHook", "macswap", "drop", "Pipeline", "Stage",
           "PyBurstWorker", "make_plan", "LCORE_STAT_NAMES", "HOP_STAT_NAMES", "HOOK_TOOK"]


def _check_queue_owners(workers: dict) -> None:
    """A driver queue is single-threaded: one lcore polls an rx queue, one feeds a tx queue."""
    rx, tx = {}, {}
    for lc, w in workers.items():
        for rxp, rxq, txp, txq in getattr(w, "hops", None) or ():
            for table, key, what in ((rx, (rxp, rxq), "rx"), (tx, (txp, txq), "tx")):
                other = table.setdefault(key, lc)
                if other != lc:
                    raise UsageError(f"{what} queue {key[1]} of port {key[0]} is used by lcores {other} and {lc}",
                                     f"give each {what} queue to one lcore (configure more queues to share a port)")


def cross_node_polls(workers: dict, port_node, lcore_node) -> list[str]:
    """One line per (lcore, port) where an lcore polls a port on another NUMA node.

    port_node(port id) and lcore_node(lcore) give nodes; -1 (unknown) never warns."""
    lines, seen = [], set()
    for lc, w in sorted(workers.items()):
        for rxp, rxq, _txp, _txq in getattr(w, "hops", None) or ():
            pn, ln = port_node(rxp), lcore_node(lc)
            if pn < 0 or ln < 0 or pn == ln or (lc, rxp) in seen:
                continue
            seen.add((lc, rxp))
            lines.append(f"lcore {lc} (node {ln}) polls port {rxp} (node {pn}): every packet crosses "
                         f"the interconnect; poll it from an lcore on node {pn}")
    return lines


def _warn_cross_node(workers: dict) -> None:
    import logging
    from pypdk import eal
    from pypdk.pmd.ethdev import get_port
    try:
        e = eal.current()
    except Exception:
        return

    def port_node(pid):
        try:
            return get_port(pid).socket_id
        except Exception:
            return -1

    def lcore_node(lc):
        try:
            return e.socket_of(lc)
        except Exception:
            return -1

    for line in cross_node_polls(workers, port_node, lcore_node):
        logging.getLogger("pypdk").warning(line)


def make_plan(workers: dict, close=None, app_stats=None, periodic=None, info=None) -> Plan:
    """A Plan running each worker on its lcore.

    Raises UsageError when two lcores would poll one rx queue or feed one tx
    queue (drivers' queues are single-threaded); logs a warning for an lcore
    that polls a port on another NUMA node (as testpmd does).

    Args:
        workers: {lcore id: worker}: LcoreWorkers (RtcWorker, Stage,
            PyBurstWorker, an app's own), or anything with
            lcore_function/stop/stats/port_stats.
        close, app_stats, periodic, info: the Plan fields of the same name.
    """
    from pypdk import stats
    workers = dict(workers)
    _check_queue_owners(workers)
    _warn_cross_node(workers)

    def stop():
        for w in workers.values():
            w.stop()

    plan = Plan(
        tasks={lc: w.lcore_function() for lc, w in workers.items()},
        stop=stop,
        lcore_stats=lambda: {lc: w.stats() for lc, w in workers.items()},
        port_stats=lambda: stats.merge_port_counters(w.port_stats() for w in workers.values()),
        info=dict(info or {}),
    )
    if close is not None:
        plan.close = close
    if app_stats is not None:
        plan.app_stats = app_stats
    if periodic is not None:
        plan.periodic = periodic
    return plan
