"""What an app gives the runner: which lcore runs what, and how to stop it.

An app directory (`apps/l2fwd/`) holds `app.py` with:

    def options() -> click.Command          # the app's own options (after `--`)
    def setup(eal, ports, opts) -> Plan     # ports: the opened, unconfigured EthDevs

`options` is optional (no app options). The runner parses the words after
`--` with it; `opts` is the command callback's return value when it has a
callback that returns something, else a `types.SimpleNamespace` of the
parsed parameters (`opts.portmask`, `vars(opts)`). A bad app option is a
one-line error before anything is initialised.

`setup` configures and starts the ports it uses (queues, pools) and returns
a `Plan`. It raises `pypdk.errors.UsageError` (or another PypdkError) for
anything the user must fix; the runner prints it as one line, closes the
ports and cleans the EAL. The runner launches each task on its lcore, runs
the main lcore's loop in Python (stats, duration, signals), then calls
`plan.stop()` (which must make every task return within a second: apps set
a quit flag their loops poll), waits for the lcores, takes the final
counters, closes the ports (their queues give back the mbufs they hold),
calls `plan.close()` (so pools outlive every mbuf) and cleans up the EAL.

Tasks run on worker lcores only: the main lcore runs the runner itself (a C
loop there would block signal handling and the stats), so a task for the
main lcore is a UsageError naming the worker lcores to use instead.

`pypdk.worker.make_plan({lcore: worker, ...})` builds a Plan from
`pypdk.worker.LcoreWorker`s: the processing models in `pypdk.worker`
(run-to-completion, pipeline stages, Python per-burst functions) or an
app's own worker on the same lcore loop skeleton (pktgen's, the vRouter's);
every app in this tree builds its Plan that way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Plan:
    """An app's answer to setup().

    tasks: lcore id -> an `LcoreFunction` (a nogil C loop) or a Python
        callable (slow path: runs holding the GIL on the worker thread).
        Worker lcores only (not the main lcore).
    stop: called on the main lcore to make every task return.
    lcore_stats: returns {lcore id: {counter: value}}, read at any time by
        the stats display: the lcore loop's counters under the names of
        `pypdk.stats.LCORE_COUNTERS` (polls, rx, tx, drops...), then the
        worker's own.
    app_stats: returns a JSON-able dict added to --stats-json under "app".
    periodic: called on the main lcore every --stats-period with the seconds
        since its last call, and once more at exit with the whole run's
        length; returns the app's own display (a str or a list of lines,
        shown under the runner's table; l2fwd's port statistics) or None.
    close: releases what setup made (pools, rings) after the lcores stopped
        and the ports were closed.
    info: free-form facts about the plan (shown by tools, put in nothing).
    port_stats: returns {port id: {'rx', 'tx', 'dropped'}} counted by the
        lcores (what they freed because a tx queue refused it, say); the
        runner adds 'dropped' to the port's drop column and puts the dict
        under ports[id]["lcore"] in --stats-json.
    """
    tasks: dict[int, Any]
    stop: Callable[[], None]
    lcore_stats: Callable[[], dict] = lambda: {}
    app_stats: Callable[[], dict] = lambda: {}
    periodic: Callable[[float], Any] | None = None
    close: Callable[[], None] = lambda: None
    info: dict = field(default_factory=dict)
    port_stats: Callable[[], dict] = lambda: {}
