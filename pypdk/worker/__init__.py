"""What an lcore runs: the processing models apps reuse.

- run-to-completion (`rtc.RtcWorker`): an lcore polls its hops (rx queue ->
  tx queue), runs a C hook on each burst, transmits, frees what was refused;
- pipeline (`pipeline.Pipeline`): an rx stage, worker stages and a tx stage
  on different lcores joined by SP/SC rings, back-pressure counted;
- Python per burst (`pyburst.PyBurstWorker`): the slow path for prototyping.

Every worker has the same Python face: `lcore_function()` (what to launch),
`stop()`, `stats()` (the lcore's loop counters) and `port_stats()`
(per-port rx/tx/dropped). `make_plan` turns {lcore: worker} into the `Plan`
an app's setup() returns.
"""
from __future__ import annotations

from pypdk.app import Plan
from pypdk.worker.rtc import RtcWorker, BurstHook, macswap, drop, LCORE_STAT_NAMES
from pypdk.worker.pipeline import Pipeline, Stage
from pypdk.worker.pyburst import PyBurstWorker

__all__ = ["RtcWorker", "BurstHook", "macswap", "drop", "Pipeline", "Stage", "PyBurstWorker",
           "make_plan", "LCORE_STAT_NAMES"]


def make_plan(workers: dict, close=None, app_stats=None, periodic=None, info=None) -> Plan:
    """A Plan running each worker on its lcore.

    Args:
        workers: {lcore id: worker} (RtcWorker, Stage, PyBurstWorker, or
            anything with lcore_function/stop/stats/port_stats).
        close, app_stats, periodic, info: the Plan fields of the same name.
    """
    from pypdk import stats
    workers = dict(workers)

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
