"""What an app gives the runner: which lcore runs what, and how to stop it.

An app directory (`apps/l2fwd/`) holds `app.py` with:

    def options() -> click.Command          # the app's own options (after `--`)
    def setup(eal, ports, opts) -> Plan     # ports: the opened, unconfigured EthDevs

`setup` configures and starts the ports it uses (queues, pools) and returns
a `Plan`. The runner launches each task on its lcore, runs the main lcore's
loop in Python (stats, duration, signals), then calls `plan.stop()` (which
must make every task return within a second: apps set a quit flag their
loops poll), waits for the lcores, calls `plan.close()`, and closes ports
and the EAL.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Plan:
    """An app's answer to setup().

    tasks: lcore id -> an `LcoreFunction` (a nogil C loop) or a Python
        callable (slow path: runs holding the GIL on the worker thread).
    stop: called on the main lcore to make every task return.
    lcore_stats: returns {lcore id: {counter: value}} (loop counters: polls,
        rx/tx packets, drops...), read at any time by the stats display.
    app_stats: returns a JSON-able dict added to --stats-json under "app".
    periodic: called on the main lcore every --stats-period with the app's
        own display (l2fwd prints DPDK-style port stats), or None.
    close: releases what setup made (pools, rings) after the lcores stopped.
    """
    tasks: dict[int, Any]
    stop: Callable[[], None]
    lcore_stats: Callable[[], dict] = lambda: {}
    app_stats: Callable[[], dict] = lambda: {}
    periodic: Callable[[float], None] | None = None
    close: Callable[[], None] = lambda: None
    info: dict = field(default_factory=dict)
