"""Hugepages: what the kernel has reserved, where hugetlbfs is mounted, and reserving more.

The kernel keeps a pool of huge pages per page size (2 MiB and 1 GiB on x86),
globally in ``/sys/kernel/mm/hugepages/hugepages-<kB>kB/`` and per NUMA node in
``/sys/devices/system/node/nodeN/hugepages/hugepages-<kB>kB/``. Each directory
has ``nr_hugepages`` (the pool size; root writes it to grow or shrink the
pool), ``free_hugepages`` and ``surplus_hugepages``; the global one also has
``resv_hugepages``: pages promised to a shared mapping but not yet faulted in,
which are counted as free but which nobody else can have. So the pages a new
zone can get are ``free - resv``.

pypdk maps hugepages through ``memfd_create(MFD_HUGETLB)`` (no mount needed)
or through a file in a hugetlbfs mount (``--huge-dir``); both draw from the
same pools. Before the EAL maps anything it asks `check()` whether the pool
has enough free pages, so a shortage is a clear `ResourceError` that says how
many pages are needed and the command that reserves them, instead of a SIGBUS
halfway through a mempool.

As a tool (the spirit of DPDK's ``dpdk-hugepages.py``)::

    python -m pypdk.eal.hugepages --show
    python -m pypdk.eal.hugepages --reserve 256M [--node N] [--page-size 2M|1G]
    python -m pypdk.eal.hugepages --clear [--page-size 2M|1G]

``--reserve`` sets the pool to that total size (it does not add to it).
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from dataclasses import dataclass

from pypdk.errors import PypdkError, ResourceError, UsageError

SYSFS_HUGEPAGES = "/sys/kernel/mm/hugepages"
SYSFS_NODE = "/sys/devices/system/node"
PROC_MOUNTS = "/proc/mounts"
PROC_MEMINFO = "/proc/meminfo"

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": None, "k": KiB, "m": MiB, "g": GiB, "t": 1 << 40}
_DIR = re.compile(r"hugepages-(\d+)kB$")


def parse_size(text, default_unit: int = MiB) -> int:
    """Parse "2M", "1G", "2048kB", "256MiB" into bytes; a bare number is in MB (like -m).

    Raises:
        UsageError: not a size.
    """
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise UsageError(f"'{text}' is not a size", "write it like 256M, 2M or 1G")
    unit = _UNITS[m.group(2).lower()] or default_unit
    return int(m.group(1)) * unit


def size_name(nbytes: int) -> str:
    """Human form of a size: 2097152 -> "2 MiB", 1073741824 -> "1 GiB"."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if nbytes >= unit and nbytes % unit == 0:
            return f"{nbytes // unit} {name}"
    return f"{nbytes} B"


def size_arg(nbytes: int) -> str:
    """Command-line form of a size: 268435456 -> "256M", 1073741824 -> "1G"."""
    for unit, suffix in ((GiB, "G"), (MiB, "M"), (KiB, "K")):
        if nbytes >= unit and nbytes % unit == 0:
            return f"{nbytes // unit}{suffix}"
    return str(nbytes)


def _read_int(path: str, default: int = 0) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


def page_sizes() -> list[int]:
    """The hugepage sizes this kernel supports, in bytes, smallest first."""
    sizes = []
    for d in glob.glob(os.path.join(SYSFS_HUGEPAGES, "hugepages-*kB")):
        m = _DIR.search(d)
        if m:
            sizes.append(int(m.group(1)) * KiB)
    return sorted(sizes)


def default_page_size() -> int:
    """The kernel's default hugepage size (Hugepagesize in /proc/meminfo), in bytes."""
    try:
        with open(PROC_MEMINFO) as f:
            for line in f:
                if line.startswith("Hugepagesize:"):
                    return int(line.split()[1]) * KiB
    except (OSError, ValueError, IndexError):
        pass
    sizes = page_sizes()
    return sizes[0] if sizes else 2 * MiB


def _pool_dir(page_size: int, node: int | None) -> str:
    base = SYSFS_HUGEPAGES if node is None else os.path.join(SYSFS_NODE, f"node{node}", "hugepages")
    return os.path.join(base, f"hugepages-{page_size // KiB}kB")


def _node_dirs_exist() -> bool:
    return bool(glob.glob(os.path.join(SYSFS_NODE, "node[0-9]*", "hugepages")))


@dataclass(frozen=True)
class Pool:
    """One hugepage pool (a page size, globally or on one node), in pages."""
    page_size: int
    node: int | None
    total: int
    free: int
    resv: int
    surplus: int

    @property
    def available(self) -> int:
        """Pages a new mapping can still get: free minus those promised to mappings."""
        return max(self.free - self.resv, 0)


def pool(page_size: int | None = None, node: int | None = None) -> Pool:
    """The counts of one pool; node=None is the whole machine.

    On a machine without per-node sysfs, node 0 is the whole machine. Reserved
    pages (resv_hugepages) are only kept globally, so a node's `resv` is the
    global one capped at its free count: a conservative guess.
    """
    ps = page_size or default_page_size()
    g = _pool_dir(ps, None)
    resv = _read_int(os.path.join(g, "resv_hugepages"))
    if node is not None and _node_dirs_exist():
        d = _pool_dir(ps, node)
        free = _read_int(os.path.join(d, "free_hugepages"))
        return Pool(ps, node, _read_int(os.path.join(d, "nr_hugepages")), free,
                    min(resv, free), _read_int(os.path.join(d, "surplus_hugepages")))
    return Pool(ps, node, _read_int(os.path.join(g, "nr_hugepages")),
                _read_int(os.path.join(g, "free_hugepages")), resv,
                _read_int(os.path.join(g, "surplus_hugepages")))


def free_pages(page_size: int | None = None, node: int | None = None) -> int:
    """Hugepages a new zone can get right now (on `node`, or anywhere when None)."""
    avail = pool(page_size, None).available
    if node is not None:
        avail = min(avail, pool(page_size, node).available)
    return avail


@dataclass(frozen=True)
class Mount:
    """A hugetlbfs mount point and the page size of its files."""
    path: str
    page_size: int


def mounts() -> list[Mount]:
    """The hugetlbfs mounts listed in /proc/mounts."""
    out = []
    try:
        with open(PROC_MOUNTS) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[2] != "hugetlbfs":
            continue
        path = fields[1].replace("\\040", " ")
        ps = default_page_size()
        for opt in fields[3].split(","):
            if opt.startswith("pagesize="):
                ps = parse_size(opt[len("pagesize="):])
        out.append(Mount(path, ps))
    return out


def mount_of(path: str) -> Mount | None:
    """The hugetlbfs mount `path` is (exactly), or None."""
    real = os.path.realpath(path)
    for m in reversed(mounts()):  # the last mount on a path is the visible one
        if os.path.realpath(m.path) == real:
            return m
    return None


def shortage_error(need: int, page_size: int, node: int | None, what: str, free: int) -> ResourceError:
    """The ResourceError for "`what` needs `need` pages, only `free` are free"."""
    where = f" on node {node}" if node is not None else ""
    in_use = pool(page_size, node).total - free
    cmd = f"python -m pypdk.eal.hugepages --reserve {size_arg((max(in_use, 0) + need) * page_size)}"
    if node is not None and len(glob.glob(os.path.join(SYSFS_NODE, "node[0-9]*"))) > 1:
        cmd += f" --node {node}"
    if page_size != default_page_size():
        cmd += f" --page-size {size_arg(page_size)}"
    return ResourceError(
        f"need {need} free {size_name(page_size)} hugepages{where} for {what} ({free} free)",
        f"reserve them with `{cmd}` or run with --no-huge")


def check(need: int, page_size: int | None = None, node: int | None = None, what: str = "pypdk") -> None:
    """Raise a ResourceError unless `need` hugepages are free; changes nothing.

    Args:
        need: pages wanted.
        page_size: bytes per page (default: the kernel's default size).
        node: NUMA node the pages must come from, or None for any.
        what: what wants them, for the message ("memzone 'mbuf_pool'").
    """
    ps = page_size or default_page_size()
    if ps not in page_sizes():
        have = ", ".join(size_arg(s) for s in page_sizes()) or "none"
        raise ResourceError(f"{size_name(ps)} hugepages are not supported here (sizes: {have}) for {what}",
                            f"use one of those page sizes or run with --no-huge")
    free = free_pages(ps, node)
    if free < need:
        raise shortage_error(need, ps, node, what, free)


def reserve(nr_pages: int, page_size: int = 2 * MiB, node: int | None = None) -> int:
    """Set the pool to `nr_pages` pages (root only); returns how many the kernel gave.

    The kernel may give fewer than asked when memory is fragmented; the caller
    compares. Raises ResourceError without root or for an unknown page size/node.
    """
    if nr_pages < 0:
        raise UsageError(f"cannot reserve {nr_pages} hugepages", "give a size of zero or more")
    if page_size not in page_sizes():
        have = ", ".join(size_arg(s) for s in page_sizes()) or "none"
        raise ResourceError(f"{size_name(page_size)} hugepages are not supported here (sizes: {have})",
                            "pick one of those with --page-size")
    if node is not None and not _node_dirs_exist():
        if node != 0:
            raise UsageError(f"NUMA node {node} does not exist (this machine has node 0 only)", "use --node 0")
        node = None
    path = os.path.join(_pool_dir(page_size, node), "nr_hugepages")
    if not os.path.exists(path):
        raise UsageError(f"NUMA node {node} has no hugepage pool ({path} missing)", "pick an existing --node")
    try:
        with open(path, "w") as f:
            f.write(str(nr_pages))
    except PermissionError:
        raise ResourceError(f"cannot write {path}: permission denied", "run as root (e.g. sudo)") from None
    except OSError as e:
        raise ResourceError(f"cannot write {path}: {e.strerror}", "check the kernel log (dmesg)") from None
    return _read_int(path)


# ---- the tool --------------------------------------------------------------------------

def _show() -> str:
    nodes = sorted(int(d.rsplit("node", 1)[1]) for d in glob.glob(os.path.join(SYSFS_NODE, "node[0-9]*"))
                   if os.path.isdir(os.path.join(d, "hugepages"))) or [None]
    rows = [("node", "size", "pages", "total", "free", "resv", "surplus")]
    for node in nodes:
        for ps in page_sizes():
            p = pool(ps, node)
            rows.append(("-" if node is None else str(node), size_arg(ps), str(p.total),
                         size_arg(p.total * ps) if p.total else "0", size_arg(p.free * ps) if p.free else "0",
                         str(p.resv), str(p.surplus)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    ms = mounts()
    lines.append("")
    if ms:
        lines += [f"hugetlbfs mounted on {m.path} ({size_arg(m.page_size)} pages)" for m in ms]
    else:
        lines.append("no hugetlbfs mounted (pypdk does not need one: it uses memfd_create)")
    return "\n".join(lines)


def main(argv=None) -> int:
    """`python -m pypdk.eal.hugepages`: show or reserve hugepages."""
    ap = argparse.ArgumentParser(prog="python -m pypdk.eal.hugepages",
                                 description="Show and reserve hugepages for pypdk.")
    ap.add_argument("-s", "--show", action="store_true", help="print the hugepage pools and mounts")
    ap.add_argument("-r", "--reserve", metavar="SIZE", help="set the pool to SIZE (e.g. 256M, 2G)")
    ap.add_argument("--at-least", action="store_true",
                    help="with --reserve: only grow the pool, never shrink it")
    ap.add_argument("-c", "--clear", action="store_true", help="release all pages of the page size")
    ap.add_argument("-n", "--node", type=int, default=None, help="NUMA node (default: let the kernel spread)")
    ap.add_argument("-p", "--page-size", default=None, help="2M or 1G (default: the kernel's default)")
    args = ap.parse_args(argv)
    try:
        ps = parse_size(args.page_size) if args.page_size else default_page_size()
        if not (args.show or args.reserve or args.clear):
            raise UsageError("nothing to do", "give --show, --reserve SIZE or --clear")
        if args.clear or args.reserve:
            want_bytes = 0 if args.clear else parse_size(args.reserve)
            want = -(-want_bytes // ps)
            if args.at_least and not args.clear:
                want = max(want, pool(ps, args.node).total)
            got = reserve(want, ps, args.node)
            if got < want:
                raise ResourceError(
                    f"the kernel gave {got} of {want} {size_name(ps)} hugepages (memory too fragmented or too small)",
                    "free memory (echo 3 > /proc/sys/vm/drop_caches) and retry, or reserve at boot "
                    f"with hugepagesz={size_arg(ps)} hugepages={want} on the kernel command line")
        if args.show:
            print(_show())
    except PypdkError as e:
        print(f"error: {e.line()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
