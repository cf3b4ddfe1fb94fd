"""The Environment Abstraction Layer: lcores (pinned worker threads) and memory (memzones).

``pypdk.eal.init()`` is DPDK's ``rte_eal_init``: it parses the core list,
checks hugepages, pins the calling thread to the main lcore's cpu, starts one
pinned native thread per worker lcore and returns the `Eal`, the one owner of
all of it. ``close()`` (or leaving the ``with`` block, or process exit)
joins the workers, frees every memzone, removes every hugepage file the EAL
created and restores the calling thread's cpu affinity. Only one EAL lives in
a process at a time; `current()` returns it.

    with pypdk.eal.init(lcores="0-1") as eal:
        mz = eal.memzone_reserve("table", 4 << 20)
        eal.remote_launch(my_loop, 1)          # LcoreFunction or Python callable
        ...
        quit_flag = 1                          # your loop polls its own quit flag
        eal.mp_wait_lcore()

Pieces: `corelist` (lcore lists), `topology` (NUMA nodes), `hugepages`
(sysfs pools, mounts, the reserve tool), `memzone` (zones), `lcore` (threads),
`tablemem` (the lookup tables' memory).

Memory options follow DPDK: ``memory`` (-m, MB in total) or ``socket_mem``
(--socket-mem, MB per NUMA node) make init check that many hugepages are
free (reading sysfs only) and cap what the EAL's memzones may take;
``no_huge`` uses ordinary pages; ``huge_dir`` puts zone files in a hugetlbfs
mount instead of memfds; ``file_prefix`` names those files
(``<huge_dir>/<file_prefix>_<zone>``) so two processes can share a mount,
and the process's runtime directory (`runtime_dir`, DPDK's
``/var/run/dpdk/<prefix>``: ``/run/pypdk/<file_prefix>``), where apps keep
what is per instance (the vRouter's control socket), so two instances with
different prefixes never collide.

NUMA: every zone is bound to one node (``mbind``), never left to first
touch. ``socket_id=-1`` (SOCKET_ID_ANY) means the node of the lcore that
asks (the calling EAL thread; a thread that is not an lcore counts as the
main lcore), or of the lcore that will use the memory when the caller says
which (``memzone_reserve(..., lcore=N)``, or ``socket_id=eal.socket_of(N)``
for a pool). `lcore_layout()` and `memory_layout()` report the lcores with
their nodes and the memory per node; ``--socket-mem A,B`` checks each
node's free hugepages at init (a shortage is one line naming the node and
the reserve command) and caps each node's zones at its share.

Table memory (`tablemem`: LPM, flow and bridge tables): lazily backed
ordinary/THP pages unless an app asks ``eal.place_tables(node)``; then
tables made after it take 2 MiB hugepages on that node, reserved when
mapped, counted per node in `memory_per_node()` ("tables_mb") and with the
zones against -m/--socket-mem (--no-huge: they stay on ordinary pages).
"""
from __future__ import annotations

import atexit
import logging
import os
import re

from pypdk.errors import ResourceError, StateError, UsageError
from pypdk.eal import corelist as _corelist
from pypdk.eal import lcore as _lcore
from pypdk.eal import topology as _topo
from pypdk.eal.corelist import format_cpus, parse_lcores
from pypdk.eal.lcore import LCORE_ID_ANY, LcoreFunction
from pypdk.eal.lcore import current_lcore_id as lcore_id
from pypdk.eal.memzone import Memzone, memzone_reserve

# `hugepages` is imported where it is used, not here: it is also the tool
# `python -m pypdk.eal.hugepages`, which runpy must find not yet imported.

__all__ = ["init", "current", "Eal", "parse_lcores", "format_cpus", "lcore_id", "LCORE_ID_ANY",
           "LcoreFunction", "Memzone", "memzone_reserve", "runtime_dir", "SOCKET_ID_ANY"]

log = logging.getLogger("pypdk.eal")

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
               "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+$")
RUNTIME_ROOT = "/run/pypdk"     # DPDK: /var/run/dpdk
SOCKET_ID_ANY = -1

_current: "Eal | None" = None
_atexit_registered = False


def current() -> "Eal":
    """The live EAL.

    Raises:
        StateError: no EAL is initialised.
    """
    if _current is None:
        raise StateError("EAL not initialised", "call pypdk.eal.init() first")
    return _current


def runtime_dir(file_prefix: str = "pypdk") -> str:
    """The runtime directory of the instance with that --file-prefix: /run/pypdk/<prefix>.

    Not created here (`Eal.runtime_dir` makes it); tools use this to find an
    instance's files (`pypdk-vrouter --file-prefix P`).
    """
    return os.path.join(RUNTIME_ROOT, file_prefix)


def _parse_mb(value, option: str) -> int:
    try:
        mb = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option} {value!r} is not a number of megabytes", f"write it like {option} 512") from None
    if mb < 0:
        raise UsageError(f"{option} {mb} is negative", "give megabytes >= 0")
    return mb


def _parse_socket_mem(socket_mem) -> dict[int, int]:
    if isinstance(socket_mem, str):
        items = [s for s in socket_mem.split(",")]
    else:
        items = list(socket_mem)
    if not items or any(str(s).strip() == "" for s in items):
        raise UsageError(f"--socket-mem {socket_mem!r} is malformed", "write MB per node, e.g. --socket-mem 1024,0")
    per = {node: _parse_mb(str(s).strip(), "--socket-mem") for node, s in enumerate(items)}
    nodes = _topo.nodes()
    for node, mb in per.items():
        if mb and node not in nodes:
            raise UsageError(f"--socket-mem asks {mb} MB on NUMA node {node}, which does not exist "
                             f"(nodes: {','.join(map(str, nodes))})", "give one number per existing node")
    return {n: mb for n, mb in per.items() if mb}


def init(lcores="0-1", main_lcore=None, no_huge=False, socket_mem=None, memory=None,
         huge_dir=None, file_prefix="pypdk", log_level="info") -> "Eal":
    """Initialise the EAL: start worker lcores and get memory ready.

    Args:
        lcores: core list (-l/--lcores): "0-1", "0,2,4", "(0-3)@1", "0,(1-2)@1".
        main_lcore: the lcore of the calling thread (--main-lcore); default the lowest.
        no_huge: ordinary 4 KiB pages instead of hugepages (--no-huge).
        socket_mem: MB per NUMA node, "1024,0" or [1024, 0] (--socket-mem).
        memory: MB in total (-m).
        huge_dir: a hugetlbfs mount for zone files (--huge-dir); default memfd.
        file_prefix: prefix of hugepage file names (--file-prefix).
        log_level: debug, info, notice, warning, error or critical (--log-level).

    Returns:
        Eal (a context manager; also `pypdk.eal.current()`).

    Raises:
        StateError: an EAL is already live in this process.
        UsageError: a bad option (the message names it and the fix).
        ResourceError: too few free hugepages for memory/socket_mem, or a
            worker thread could not start; nothing is left behind.
    """
    global _current, _atexit_registered
    from pypdk.eal import hugepages as _hp
    if _current is not None:
        raise StateError(f"EAL already initialised (lcores {format_cpus(_current.lcores)})",
                         "call eal.close() before init() again")
    level = _LOG_LEVELS.get(str(log_level).lower())
    if level is None:
        raise UsageError(f"--log-level {log_level!r} is unknown", f"use one of {', '.join(_LOG_LEVELS)}")
    mapping = parse_lcores(lcores)
    if main_lcore is None:
        main_lcore = min(mapping)
    elif main_lcore not in mapping:
        raise UsageError(f"--main-lcore {main_lcore} is not in the lcore list '{lcores}'",
                         f"pick one of {format_cpus(mapping)}")
    if not isinstance(file_prefix, str) or not _PREFIX.match(file_prefix):
        raise UsageError(f"--file-prefix {file_prefix!r} is not a plain name", "use letters, digits, '.', '_' and '-'")
    if memory is not None and socket_mem is not None:
        raise UsageError("-m and --socket-mem both given", "give only one of them")
    if no_huge and (huge_dir is not None or socket_mem is not None):
        raise UsageError("--no-huge with --huge-dir or --socket-mem", "drop --no-huge or the hugepage options")
    page_size = _hp.default_page_size()
    if huge_dir is not None:
        mount = _hp.mount_of(huge_dir)
        if mount is None:
            raise UsageError(f"--huge-dir {huge_dir} is not a hugetlbfs mount",
                             f"mount one: mount -t hugetlbfs -o pagesize=2M nodev {huge_dir}")
        page_size = mount.page_size
    if no_huge:
        page_size = os.sysconf("SC_PAGE_SIZE")
    mem_total = _parse_mb(memory, "-m") if memory is not None else None
    mem_nodes = _parse_socket_mem(socket_mem) if socket_mem is not None else None
    if not no_huge:
        # Read-only checks: sysfs counts, nothing is reserved or mapped.
        if mem_total:
            _hp.check(-(-(mem_total << 20) // page_size), page_size, None, f"-m {mem_total}")
        for node, mb in (mem_nodes or {}).items():
            _hp.check(-(-(mb << 20) // page_size), page_size, node, f"--socket-mem {socket_mem}")

    eal = Eal._new(mapping, main_lcore, no_huge, huge_dir, file_prefix, page_size, mem_total, mem_nodes)
    logging.getLogger("pypdk").setLevel(level)
    saved = frozenset(os.sched_getaffinity(0))
    _corelist._affinity_before_eal = saved
    try:
        _lcore.start(mapping, main_lcore)
        os.sched_setaffinity(0, {mapping[main_lcore]})
    except BaseException:
        _lcore.stop()
        os.sched_setaffinity(0, saved)
        _corelist._affinity_before_eal = None
        raise
    eal._saved_affinity = saved
    _current = eal
    if not _atexit_registered:
        atexit.register(_close_at_exit)
        _atexit_registered = True
    log.info("EAL: main lcore %d on cpu %d, %d worker lcores (%s), %s", main_lcore, mapping[main_lcore],
             len(eal.worker_lcores), format_cpus(eal.worker_lcores) or "none",
             "no hugepages" if no_huge else f"{_hp.size_arg(page_size)} hugepages")
    return eal


def _close_at_exit():
    if _current is not None:
        _current.close()


class Eal:
    """The initialised EAL: lcores, worker threads and memzones. Make it with `init()`."""

    def __init__(self, *a, **kw):
        raise TypeError("use pypdk.eal.init() to make an Eal")

    @classmethod
    def _new(cls, lcores, main_lcore, no_huge, huge_dir, file_prefix, page_size, mem_total, mem_nodes):
        self = object.__new__(cls)
        self.lcores = dict(lcores)
        self.main_lcore = main_lcore
        self.worker_lcores = sorted(lc for lc in lcores if lc != main_lcore)
        self.lcore_nodes = {lc: _topo.socket_of_cpu(cpu) for lc, cpu in sorted(lcores.items())}
        self.sockets = sorted(set(self.lcore_nodes.values()))
        self.no_huge = no_huge
        self.huge_dir = huge_dir
        self.file_prefix = file_prefix
        self.page_size = page_size
        self.memory = mem_total          # MB cap (-m) or None
        self.socket_mem = mem_nodes      # {node: MB cap} (--socket-mem) or None
        self._zones: dict[str, Memzone] = {}
        self._runtime_dir = None         # made by the runtime_dir property, removed at close if empty
        self._saved_affinity = None
        self._live = True
        return self

    # ---- lcores -----------------------------------------------------------------------

    def socket_of(self, lcore: int) -> int:
        """The NUMA node of `lcore`'s cpu.

        Raises:
            UsageError: not an lcore of this EAL.
        """
        if lcore not in self.lcores:
            raise UsageError(f"lcore {lcore} is not an EAL lcore", f"use one of {format_cpus(self.lcores)}")
        return _topo.socket_of_cpu(self.lcores[lcore])

    def socket_id_for(self, socket_id: int = SOCKET_ID_ANY, lcore: int | None = None) -> int:
        """The node a zone asked for with `socket_id` goes on.

        A node >= 0 is kept. SOCKET_ID_ANY (-1) is the node of `lcore` (the
        lcore that will use the memory) when given, else of the calling
        lcore; a thread that is not an EAL lcore counts as the main lcore.

        Raises:
            UsageError: `lcore` is not an lcore of this EAL.
        """
        if socket_id is not None and socket_id >= 0:
            return socket_id
        if lcore is None:
            lcore = _lcore.current_lcore_id()
            if lcore not in self.lcores:
                lcore = self.main_lcore
        return self.socket_of(lcore)

    def layout(self) -> dict:
        """The lcores with their cpu and node, and the memory per node (see memory_per_node).

            {"lcores": {lcore: {"cpu": 2, "node": 0, "main": False}, ...},
             "memory": {node: {...}, ...}}
        """
        return {"lcores": {lc: {"cpu": self.lcores[lc], "node": node, "main": lc == self.main_lcore}
                           for lc, node in self.lcore_nodes.items()},
                "memory": self.memory_per_node()}

    def memory_per_node(self) -> dict:
        """{node: {"zones", "used_mb", "tables", "tables_mb", "cap_mb", "free_hugepages"}}
        for every node of the machine: the EAL's live zones on it and their
        mapped MB, the tables on hugepages there (place_tables) and their MB,
        the node's --socket-mem share (None: no cap; zones and tables count
        against it), and its free hugepages of the EAL's size (None with --no-huge)."""
        from pypdk.eal import hugepages as _hp
        from pypdk.eal import tablemem
        out = {}
        tables = tablemem.usage()
        for node in _topo.nodes():
            zones = [z for z in self.memzones if z.socket_id == node]
            t = tables.get(node, {"tables": 0, "bytes": 0})
            out[node] = {"zones": len(zones),
                         "used_mb": round(sum(z.map_len for z in zones) / (1 << 20), 3),
                         "tables": t["tables"],
                         "tables_mb": round(t["bytes"] / (1 << 20), 3),
                         "cap_mb": None if self.socket_mem is None else self.socket_mem.get(node, 0),
                         "free_hugepages": None if self.no_huge else _hp.free_pages(self.page_size, node)}
        return out

    @property
    def runtime_dir(self) -> str:
        """This instance's runtime directory, /run/pypdk/<file_prefix> (made on first
        use, mode 0700; removed at close() when empty)."""
        path = runtime_dir(self.file_prefix)
        if self._runtime_dir is None:
            made = not os.path.isdir(path)
            os.makedirs(path, mode=0o700, exist_ok=True)
            self._runtime_dir = (path, made)
        return path

    def _check_live(self):
        if not self._live:
            raise StateError("this EAL was closed", "call pypdk.eal.init() again")

    def _check_worker(self, lcore):
        if lcore == self.main_lcore:
            raise UsageError(f"lcore {lcore} is the main lcore (the calling thread)",
                             f"call the function directly, or launch on a worker: {format_cpus(self.worker_lcores)}")
        if lcore not in self.worker_lcores:
            raise UsageError(f"lcore {lcore} is not an EAL lcore",
                             f"launch on a worker lcore: {format_cpus(self.worker_lcores) or 'none (add lcores)'}")

    def remote_launch(self, fn, lcore: int, arg=None) -> None:
        """Run `fn` on worker `lcore` and return at once (DPDK rte_eal_remote_launch).

        Args:
            fn: an `LcoreFunction` (a nogil C function, see lcore.pxd) or a
                Python callable, called as fn() when arg is None, else fn(arg)
                (slow path: it runs holding the GIL).
            lcore: a worker lcore id.

        Raises:
            UsageError: not a worker lcore, or fn is not launchable.
            StateError: the lcore is still running something (errno EBUSY).
        """
        self._check_live()
        self._check_worker(lcore)
        _lcore.remote_launch(fn, lcore, arg)

    def mp_remote_launch(self, fn, arg=None) -> None:
        """Launch `fn` on every worker lcore (a Python callable or one LcoreFunction for all).

        Raises StateError (EBUSY) before launching anything if any worker is busy.
        """
        self._check_live()
        busy = [lc for lc in self.worker_lcores if _lcore.lcore_state(lc) == "RUNNING"]
        if busy:
            err = StateError(f"lcores {format_cpus(busy)} are busy (EBUSY)", "mp_wait_lcore() before launching again")
            err.errno = 16
            raise err
        for lc in self.worker_lcores:
            _lcore.remote_launch(fn, lc, arg)

    def wait_lcore(self, lcore: int):
        """Wait for `lcore`'s function and return its value (0 if nothing ran).

        A Python callable's return value is returned, or its exception raised here.
        """
        self._check_live()
        self._check_worker(lcore)
        return _lcore.wait_lcore(lcore)

    def mp_wait_lcore(self) -> dict:
        """Wait for every worker lcore; return {lcore: value}.

        If some Python callables raised, all lcores are still waited for and
        the first exception (lowest lcore) is raised.
        """
        self._check_live()
        out, first_error = {}, None
        for lc in self.worker_lcores:
            try:
                out[lc] = _lcore.wait_lcore(lc)
            except BaseException as e:  # collect the others before raising
                out[lc] = e
                first_error = first_error or e
        if first_error is not None:
            raise first_error
        return out

    def lcore_state(self, lcore: int) -> str:
        """'WAIT', 'RUNNING' or 'FINISHED' for a worker lcore."""
        self._check_worker(lcore)
        return _lcore.lcore_state(lcore)

    # ---- memory -----------------------------------------------------------------------

    @property
    def memzones(self) -> list:
        """The live memzones reserved through this EAL, in reservation order."""
        return [z for z in self._zones.values() if not z.freed]

    def memzone_lookup(self, name: str) -> Memzone:
        """The live memzone called `name`.

        Raises:
            UsageError: no such zone.
        """
        z = self._zones.get(name)
        if z is None or z.freed:
            raise UsageError(f"no memzone '{name}'", "reserve it first with eal.memzone_reserve()")
        return z

    def _check_budget(self, name, size, socket_id, page_size):
        if self.memory is None and self.socket_mem is None:
            return
        from pypdk.eal import tablemem
        map_len = -(-size // page_size) * page_size
        live = self.memzones
        tables = {n: u["bytes"] for n, u in tablemem.usage().items()}
        if self.memory is not None:
            cap, opt = self.memory << 20, f"-m {self.memory}"
            used = sum(z.map_len for z in live) + sum(tables.values())
        elif socket_id >= 0:
            cap, opt = self.socket_mem.get(socket_id, 0) << 20, f"--socket-mem (node {socket_id})"
            used = sum(z.map_len for z in live if z.socket_id == socket_id) + tables.get(socket_id, 0)
        else:
            cap, opt = sum(self.socket_mem.values()) << 20, "--socket-mem"
            used = sum(z.map_len for z in live) + sum(tables.values())
        if used + map_len > cap:
            raise ResourceError(f"memzone '{name}' needs {map_len >> 20} MB but only {(cap - used) >> 20} MB "
                                f"of {opt} is left", "raise the EAL memory option or make the zone smaller")

    def memzone_reserve(self, name: str, size: int, socket_id: int = -1, page_size=None, *,
                        lcore: int | None = None) -> Memzone:
        """Reserve a named zone of `size` bytes (see memzone.memzone_reserve).

        Args:
            name: unique among this EAL's live zones, at most 31 bytes.
            size: bytes (mapped rounded up to whole pages).
            socket_id: NUMA node, or -1 (SOCKET_ID_ANY): the node of `lcore`,
                else of the calling lcore (socket_id_for); never first touch.
            page_size: hugepage size ("2M", "1G" or bytes); default the EAL's.
            lcore: the lcore that will use the zone (for socket_id -1).

        Raises:
            UsageError: duplicate name or bad argument.
            ResourceError: too few hugepages (how many, and the fix), or over -m/--socket-mem.
        """
        from pypdk.eal import hugepages as _hp
        self._check_live()
        old = self._zones.get(name)
        if old is not None and not old.freed:
            raise UsageError(f"memzone '{name}' already exists", "pick another name or free it first")
        ps = self.page_size
        if page_size is not None and not self.no_huge:
            ps = _hp.parse_size(page_size)
        if not isinstance(socket_id, int) or socket_id < -1:
            raise UsageError(f"memzone '{name}': socket_id {socket_id!r} is invalid",
                             "give a NUMA node (0, 1, ...) or -1 for any")
        socket_id = self.socket_id_for(socket_id, lcore)
        if isinstance(size, int) and size > 0:
            self._check_budget(name, size, socket_id, ps)
        z = memzone_reserve(name, size, socket_id, page_size=None if self.no_huge else ps,
                            no_huge=self.no_huge, huge_dir=self.huge_dir, file_prefix=self.file_prefix)
        self._zones.pop(name, None)  # a freed zone of that name, if any
        self._zones[name] = z
        return z

    def place_tables(self, node: int | None = None) -> dict:
        """Put the lookup tables made from now on (pypdk.eal.tablemem: LPM,
        flow hash, the vRouter's flows) in this EAL's hugepages on `node`.

        2 MiB pages (the EAL's page size when the kernel has no 2 MiB pool),
        reserved when a table is mapped, bound to `node`, counted in
        memory_per_node() and with the zones against -m/--socket-mem. With
        --no-huge the tables stay on ordinary pages. close() puts the
        default back (tables made before keep their memory until freed).

        Args:
            node: a NUMA node; default the main lcore's.

        Returns:
            tablemem.placement()

        Raises:
            UsageError: no such node.
        """
        from pypdk.eal import hugepages as _hp
        from pypdk.eal import tablemem
        self._check_live()
        if node is None:
            node = self.socket_of(self.main_lcore)
        if node not in _topo.nodes():
            raise UsageError(f"table memory on NUMA node {node}, which does not exist "
                             f"(nodes: {','.join(map(str, _topo.nodes()))})", "give one of those nodes")
        if self.no_huge:
            tablemem.place_default()
            return tablemem.placement()
        ps = 2 * _hp.MiB if 2 * _hp.MiB in _hp.page_sizes() else self.page_size
        if self.memory is not None:
            tablemem.place(node, ps, cap_bytes=self.memory << 20, cap_all=True)
        elif self.socket_mem is not None:
            tablemem.place(node, ps, cap_bytes=self.socket_mem.get(node, 0) << 20)
        else:
            tablemem.place(node, ps)
        return tablemem.placement()

    def memzone_free(self, zone) -> None:
        """Free a zone (a Memzone or its name); same as zone.close()."""
        z = zone if isinstance(zone, Memzone) else self.memzone_lookup(zone)
        z.close()
        if self._zones.get(z.name) is z:
            del self._zones[z.name]

    # ---- teardown ---------------------------------------------------------------------

    def close(self) -> None:
        """Join the worker lcores, free every memzone, restore the thread's affinity; idempotent.

        A worker still running a function is waited for: stop your loops
        first (set their quit flag), then close.
        """
        global _current
        if not self._live:
            return
        self._live = False
        try:
            _lcore.stop()
        finally:
            from pypdk.eal import tablemem
            tablemem.place_default()
            for z in self._zones.values():
                z.close()
            self._zones.clear()
            if self._runtime_dir is not None:
                path, made = self._runtime_dir
                self._runtime_dir = None
                if made:
                    try:
                        os.rmdir(path)      # only when empty: an app's files stay visible
                    except OSError:
                        pass
            if self._saved_affinity is not None:
                try:
                    os.sched_setaffinity(0, self._saved_affinity)
                except OSError:
                    pass
            _corelist._affinity_before_eal = None
            if _current is self:
                _current = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        from pypdk.eal import hugepages as _hp
        state = "live" if self._live else "closed"
        return (f"<Eal {state} lcores={format_cpus(self.lcores)} main={self.main_lcore} "
                f"zones={len(self.memzones)} {'no-huge' if self.no_huge else _hp.size_arg(self.page_size)}>")
