"""The runner behind `pypdk-run`: load an app, bring up the EAL and ports, run, tear down.

Order of a run (each step undone in reverse on the way out, whatever
happens, so an error or a signal leaves no port, thread or hugepage file):

  1. load APP_DIR/app.py and parse the app's options (before any resource);
  2. `pypdk.eal.init(...)`, then open each --vdev in order (port ids 0, 1, ...);
  3. `plan = app.setup(eal, ports, opts)`; check every task is for a worker lcore;
  4. launch the tasks; the main lcore runs `_main_loop` in Python: the live
     stats every --stats-period, the --duration deadline, SIGINT/SIGTERM, and
     the end of the run when every task returned by itself;
  5. `plan.stop()`; wait (at most STOP_TIMEOUT seconds) for the lcores;
  6. sample the final counters, print the final report, write --stats-json;
  7. close the ports (their queues give their mbufs back), `plan.close()`
     (pools, rings), `eal.close()`.

Signals: SIGINT and SIGTERM only set a flag (the handlers run on the main
thread between bytecodes; the worker lcores block them), and the main loop
sleeps in short slices, so a stop starts within about 50 ms. The main lcore
never runs an app task: a C loop there would keep the handlers from running.

Loading: an app directory inside the pypdk source tree is imported as a
package (`apps/l2fwd` -> `apps.l2fwd.app`), so its compiled modules import
by their build names; any other directory is loaded by path as a package of
its own (relative imports work: `from . import fwd`).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import signal
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import click

from pypdk import stats
from pypdk.errors import PypdkError, StateError, UsageError

log = logging.getLogger("pypdk.runner")

STOP_TIMEOUT = 2.0      # seconds the lcores get to return after plan.stop()
TICK = 0.05             # main loop sleep slice (signal latency)
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunConfig:
    """Everything `pypdk-run` was told (see cli.py for the options)."""
    app_dir: str
    app_args: list[str] = field(default_factory=list)
    lcores: str | None = None
    main_lcore: int | None = None
    memory: int | None = None
    socket_mem: str | None = None
    huge_dir: str | None = None
    no_huge: bool = False
    file_prefix: str = "pypdk"
    vdevs: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    log_level: str = "warning"
    duration: float | None = None
    stats_period: float | None = None
    stats_json: str | None = None


class AppHelp(Exception):
    """The app's --help was printed; exit with this code."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


# ---- loading an app ------------------------------------------------------------------------

def _module_path(path: Path) -> str | None:
    """'apps.l2fwd' when `path` is a package path inside the source tree, else None."""
    try:
        rel = path.relative_to(REPO_ROOT)
    except ValueError:
        return None
    parts = rel.parts
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def load_app(app_dir: str) -> types.ModuleType:
    """Import APP_DIR/app.py and check it has setup().

    Raises:
        UsageError: no such directory, no app.py, an import error (with the
            build command when a compiled module is missing), no setup().
    """
    path = Path(app_dir)
    if not path.is_dir():
        raise UsageError(f"app directory {app_dir!r} does not exist",
                         "give a directory holding app.py, e.g. pypdk-run apps/l2fwd")
    path = path.resolve()
    if not (path / "app.py").is_file():
        raise UsageError(f"{app_dir!r} has no app.py",
                         "an app directory holds app.py with options() and setup(eal, ports, opts)")
    pkg = _module_path(path)
    if pkg is not None:
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        name = f"{pkg}.app"
        build_glob = f"{pkg}.*"
    else:
        pkg = "pypdk_app_" + re.sub(r"\W", "_", path.name)
        if pkg not in sys.modules:
            mod = types.ModuleType(pkg)
            mod.__path__ = [str(path)]
            mod.__file__ = str(path / "__init__.py")
            sys.modules[pkg] = mod
        name = f"{pkg}.app"
        build_glob = "<its modules>"
    try:
        app = importlib.import_module(name)
    except ImportError as e:
        raise UsageError(f"app {app_dir!r} does not import: {e}",
                         f"build its Cython modules: PYPDK_MODULES='{build_glob}' "
                         "python setup.py build_ext --inplace") from None
    if not callable(getattr(app, "setup", None)):
        raise UsageError(f"{app_dir}/app.py has no setup(eal, ports, opts)",
                         "define setup() returning a pypdk.app.Plan")
    return app


def parse_app_options(app, app_dir: str, args: list[str]):
    """The app's opts from the words after `--` (see pypdk/app.py).

    Raises:
        UsageError: a bad app option (one line, from click's message).
        AppHelp: the app's --help was printed.
    """
    make = getattr(app, "options", None)
    if make is None:
        if args:
            raise UsageError(f"app {app_dir} takes no options (got {' '.join(args)})",
                             "drop the words after --")
        return types.SimpleNamespace()
    cmd = make()
    if not isinstance(cmd, click.Command):
        raise UsageError(f"{app_dir}/app.py options() did not return a click command",
                         "return a @click.command()")
    try:
        ctx = cmd.make_context(f"pypdk-run {app_dir} --", list(args))
    except click.exceptions.Exit as e:
        raise AppHelp(e.exit_code) from None
    except click.ClickException as e:
        raise UsageError(f"app option: {e.format_message()}",
                         f"see pypdk-run {app_dir} -- --help") from None
    with ctx:
        rv = ctx.invoke(cmd.callback, **ctx.params) if cmd.callback else None
    return rv if rv is not None else types.SimpleNamespace(**ctx.params)


# ---- the run -------------------------------------------------------------------------------

class _Signals:
    """SIGINT/SIGTERM set a flag; the previous handlers come back on exit."""

    def __init__(self):
        self.received: str | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, h in self._old.items():
            signal.signal(sig, h)
        return False


def _check_tasks(plan, eal, app_dir):
    from pypdk.eal import format_cpus
    if not isinstance(getattr(plan, "tasks", None), dict):
        raise UsageError(f"{app_dir}/app.py setup() did not return a Plan", "return pypdk.worker.make_plan({lcore: worker, ...}) (or a pypdk.app.Plan)")
    workers = format_cpus(eal.worker_lcores) or "none"
    for lc in plan.tasks:
        if lc == eal.main_lcore:
            raise UsageError(f"app gives a task to lcore {lc}, the main lcore, which runs pypdk-run itself "
                             "(stats, signals)",
                             f"give tasks to worker lcores ({workers}) or add lcores to --lcores")
        if lc not in eal.worker_lcores:
            raise UsageError(f"app gives a task to lcore {lc}, which is not in the lcore list "
                             f"({format_cpus(eal.lcores)})",
                             f"add lcore {lc} to --lcores or use worker lcores {workers}")


def _as_lines(out) -> list[str]:
    if out is None:
        return []
    if isinstance(out, str):
        return out.rstrip("\n").split("\n")
    return [str(x) for x in out]


class Runner:
    """One run of one app (see the module doc for the order of things)."""

    def __init__(self, cfg: RunConfig, out=None):
        self.cfg = cfg
        self.out = out if out is not None else sys.stdout
        self.eal = None
        self.ports = []
        self.plan = None
        self.launched: list[int] = []
        self.stop_reason = ""
        self.task_error: BaseException | None = None

    # -- checks that need nothing initialised
    def _precheck(self):
        c = self.cfg
        for spec in c.allow:
            from pypdk.eal import pci
            pci.device(spec.split(",")[0])     # a well-formed address of a device that exists
        if c.stats_json:
            parent = Path(c.stats_json).resolve().parent
            if not parent.is_dir():
                raise UsageError(f"--stats-json {c.stats_json}: directory {parent} does not exist",
                                 "create it or write the file elsewhere")

    def run(self) -> int:
        """Run to the end; 0 on a clean stop, 1 when a task failed. PypdkErrors propagate."""
        c = self.cfg
        self._precheck()
        app = load_app(c.app_dir)
        opts = parse_app_options(app, c.app_dir, c.app_args)
        with _Signals() as sigs:
            try:
                self._bring_up(app, opts)
                self._launch()
                self._main_loop(sigs)
                rc = self._finish()
            except BaseException:
                self._teardown(raise_errors=False)     # the first error is the one to report
                raise
            self._teardown(raise_errors=True)
            return rc

    def _bring_up(self, app, opts):
        import pypdk.eal
        import pypdk.pmd
        c = self.cfg
        lcores = c.lcores
        if lcores is None:
            from pypdk.eal import format_cpus
            lcores = format_cpus(os.sched_getaffinity(0))
        self.eal = pypdk.eal.init(lcores=lcores, main_lcore=c.main_lcore, no_huge=c.no_huge,
                                  socket_mem=c.socket_mem, memory=c.memory, huge_dir=c.huge_dir,
                                  file_prefix=c.file_prefix, log_level=c.log_level)
        for spec in c.vdevs:
            self.ports.append(pypdk.pmd.open(spec))
        for spec in c.allow:                   # PCI ports follow the --vdev ones, in order
            bdf, _, rest = spec.partition(",")
            keys = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
            self.ports.append(pypdk.pmd.open_pci(bdf, **keys))
        self.plan = app.setup(self.eal, list(self.ports), opts)
        _check_tasks(self.plan, self.eal, c.app_dir)

    def _launch(self):
        for lc, task in sorted(self.plan.tasks.items()):
            self.eal.remote_launch(task, lc)
            self.launched.append(lc)

    def _all_returned(self) -> bool:
        return bool(self.launched) and all(self.eal.lcore_state(lc) != "RUNNING" for lc in self.launched)

    def _main_loop(self, sigs):
        c = self.cfg
        self.first = stats.take(self.ports, self.plan)
        t0 = self.first.t
        prev = self.first
        deadline = t0 + c.duration if c.duration else None
        next_stats = t0 + c.stats_period if c.stats_period else None
        self.display = stats.LiveDisplay(self.out)
        while True:
            if sigs.received:
                self.stop_reason = f"stopped by {sigs.received}"
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.stop_reason = f"--duration {c.duration:g} s reached"
                break
            if self._all_returned():
                self.stop_reason = "every lcore task returned"
                break
            if next_stats is not None and now >= next_stats:
                cur = stats.take(self.ports, self.plan)
                lines = stats.format_table(prev, cur, cur.t - t0)
                if self.plan.periodic is not None:
                    lines += _as_lines(self.plan.periodic(cur.t - prev.t))
                self.display.show(lines)
                prev = cur
                next_stats += c.stats_period
                if next_stats < now:
                    next_stats = now + c.stats_period
            wake = [now + TICK]
            if deadline is not None:
                wake.append(deadline)
            if next_stats is not None:
                wake.append(next_stats)
            time.sleep(max(min(wake) - now, 0.001))

    def _stop_lcores(self):
        """plan.stop(), then wait up to STOP_TIMEOUT for every launched lcore."""
        if not self.launched:
            return
        try:
            self.plan.stop()
        finally:
            end = time.monotonic() + STOP_TIMEOUT
            stuck = list(self.launched)
            while stuck and time.monotonic() < end:
                stuck = [lc for lc in stuck if self.eal.lcore_state(lc) == "RUNNING"]
                if stuck:
                    time.sleep(0.005)
            if stuck:
                # A loop that ignores its quit flag cannot be interrupted, and
                # the EAL cannot join it: nothing safe is left but exiting (the
                # kernel takes back memfds, sockets and tap devices).
                err = StateError(f"lcore {stuck[0]} did not return within {STOP_TIMEOUT:g} s of plan.stop()",
                                 "the app's loop must poll the quit flag its stop() sets")
                print(f"pypdk-run: {err.line()}", file=sys.stderr, flush=True)
                os._exit(1)
            for lc in self.launched:
                try:
                    self.eal.wait_lcore(lc)
                except BaseException as e:      # a Python task raised: report after the stats
                    if self.task_error is None:
                        self.task_error = e
            self.launched = []

    def _finish(self) -> int:
        self._stop_lcores()
        last = stats.take(self.ports, self.plan, xstats=True)
        self.display.release()
        lines = stats.format_final(self.first, last)
        lines[0] = f"{lines[0]}; {self.stop_reason}"
        if self.plan.periodic is not None:
            lines += _as_lines(self.plan.periodic(last.t - self.first.t))
        print("\n".join(lines), file=self.out, flush=True)
        if self.cfg.stats_json:
            doc = stats.to_json(self.first, last, self.plan.app_stats())
            doc["eal"] = self._eal_json()
            stats.write_json(self.cfg.stats_json, doc)
        if self.task_error is not None:
            e = self.task_error
            if isinstance(e, PypdkError):
                raise e
            print(f"pypdk-run: an lcore task raised {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            return 1
        return 0

    def _eal_json(self) -> dict:
        """--stats-json "eal": each lcore's cpu and NUMA node, the memory per node
        (zones and hugepage tables), each live zone (every mempool is one, under
        the pool's name) with its node, and the table memory placement."""
        from pypdk.eal import tablemem
        lay = self.eal.layout()
        return {"main_lcore": self.eal.main_lcore,
                "lcores": {str(lc): v for lc, v in lay["lcores"].items()},
                "memory": {str(n): v for n, v in lay["memory"].items()},
                "memzones": {z.name: {"node": z.socket_id, "mb": round(z.map_len / (1 << 20), 3)}
                             for z in self.eal.memzones},
                "tables": tablemem.placement()}

    def _teardown(self, raise_errors: bool):
        """Undo whatever was brought up, in reverse; keep going past errors (first one re-raised)."""
        first_error = None

        def attempt(fn, *a):
            nonlocal first_error
            try:
                fn(*a)
            except BaseException as e:
                if first_error is None:
                    first_error = e

        if self.launched:
            attempt(self._stop_lcores)
        for p in reversed(self.ports):
            attempt(p.close)
        if self.plan is not None:
            attempt(self.plan.close)
        self.plan = None
        self.ports = []
        if self.eal is not None:
            attempt(self.eal.close)
            self.eal = None
        if first_error is not None and raise_errors:
            raise first_error


def run(cfg: RunConfig, out=None) -> int:
    """Run an app as `pypdk-run` does; returns the exit status (PypdkErrors propagate)."""
    return Runner(cfg, out).run()
