# cython: language_level=3
"""Memzones: named, page-aligned regions of EAL memory, each backed by its own file.

A zone is one file mapped once, MAP_SHARED:

- default: ``memfd_create(MFD_HUGETLB | <page size>)``: hugepages without any
  hugetlbfs mount; the file has no path and disappears with its last fd/mapping;
- ``huge_dir``: ``<huge_dir>/<file_prefix>_<name>`` in a hugetlbfs mount, for
  tools that want a path (QEMU ``mem-path``); unlinked when the zone is freed;
- ``no_huge``: a plain ``memfd_create`` on ordinary 4 KiB pages (tests, CI,
  machines without hugepages).

Because every zone is a file, `fd` can be handed to the kernel (AF_XDP UMEM),
to vfio for DMA, or to a VM (vhost-user passes it over a unix socket); the
IOVA is the virtual address (vfio type1 with IOVA = VA), so ``iova == addr``.

Order of operations, and why:

1. ask sysfs whether the pool has enough free pages (``hugepages.check``):
   a shortage becomes a ResourceError that says how many pages and how to get
   them, before anything exists;
2. create the file and ``ftruncate`` it to the page-rounded size (allocates nothing);
3. ``mmap`` without MAP_POPULATE: for a shared hugetlb mapping the kernel
   *reserves* the pages here and fails with ENOMEM when it cannot, so a race
   with another process that took pages since step 1 still ends cleanly;
4. ``mbind(MPOL_BIND)`` to the requested node (raw syscall, no libnuma),
   which must happen before the first fault to decide where pages come from;
5. ``madvise(MADV_POPULATE_WRITE)`` faults every page in now and reports
   failure as an error code; touching pages by hand (or MAP_POPULATE, which
   ignores failures) would instead SIGBUS later when a node runs out.

Any failure unwinds all of it (munmap, close, unlink): nothing is left behind.

Freeing while Python still holds a ``view()``: the hugepages go back to the
pool at once (the range is replaced by anonymous zero pages and the file is
closed), and the address range is unmapped when the last view is released,
so a stale view reads zeros instead of crashing the process. C code that kept
``mz.addr`` has no such guard: owners (mempools, rings) must outlive their users.
"""
from cpython.buffer cimport PyBUF_WRITABLE, PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES
from libc.errno cimport errno, EINVAL, ENOMEM, EFAULT, ENOSYS
from libc.stdint cimport uint64_t, uint32_t
from libc.string cimport memset, strncpy

import os

from pypdk.errors import ResourceError, StateError, UsageError
from pypdk.eal import topology as _topo
# `hugepages` is imported where it is used: it is also the tool
# `python -m pypdk.eal.hugepages`, which runpy must find not yet imported.

cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int madvise(void *addr, size_t length, int advice)
    int memfd_create(const char *name, unsigned int flags)
    void *MAP_FAILED
    enum:
        PROT_READ
        PROT_WRITE
        MAP_SHARED
        MAP_PRIVATE
        MAP_ANONYMOUS
        MAP_FIXED
        MFD_CLOEXEC

cdef extern from *:
    """
    #include <sys/mman.h>
    #include <sys/syscall.h>
    #ifndef MFD_HUGETLB
    #define MFD_HUGETLB 0x0004U
    #endif
    #ifndef MFD_HUGE_SHIFT
    #define MFD_HUGE_SHIFT 26
    #endif
    #ifndef MADV_POPULATE_WRITE
    #define MADV_POPULATE_WRITE 23   /* Linux 5.14 */
    #endif
    /* <linux/mempolicy.h> values; declared here to need no libnuma headers */
    #define PD_MPOL_BIND 2
    #define PD_MPOL_F_NODE (1 << 0)
    #define PD_MPOL_F_ADDR (1 << 1)
    """
    unsigned MFD_HUGETLB
    unsigned MFD_HUGE_SHIFT
    int MADV_POPULATE_WRITE
    int PD_MPOL_BIND
    int PD_MPOL_F_NODE
    int PD_MPOL_F_ADDR
    long SYS_mbind
    long SYS_get_mempolicy

cdef extern from "<unistd.h>" nogil:
    long syscall(long number, ...)
    int close(int fd)
    int ftruncate(int fd, long length)

from pd_config cimport PD_MAX_NUMA_NODES
from pypdk.eal.tablemem cimport table_mem_zone_account   # -m/--socket-mem count zones and tables


# ---- C level: map, bind, populate, unmap ------------------------------------------------

cdef int _bind(void *addr, size_t length, int node) noexcept nogil:
    """mbind(MPOL_BIND) the range to one node. 0 or -errno."""
    # One unsigned long holds nodes 0..63 (PD_MAX_NUMA_NODES is far below).
    # maxnode is bits + 1: the kernel decrements it first (a historic off-by-one
    # that every mbind caller follows).
    cdef unsigned long mask = (<unsigned long>1) << node
    if syscall(SYS_mbind, addr, <unsigned long>length, <long>PD_MPOL_BIND,
               &mask, <unsigned long>(8 * sizeof(unsigned long) + 1), <unsigned>0) != 0:
        return -errno
    return 0


cdef int _node_of(void *addr) noexcept nogil:
    """The NUMA node of the (faulted-in) page at addr, or -1 if the kernel will not say."""
    cdef int node = -1
    if syscall(SYS_get_mempolicy, &node, <void *>0, <unsigned long>0, addr,
               <unsigned long>(PD_MPOL_F_NODE | PD_MPOL_F_ADDR)) != 0:
        return -1
    return node


cdef int _map(pd_memzone *mz, int bind_node) noexcept nogil:
    """Map mz.fd (mz.map_len bytes), bind it to bind_node (>= 0), fault it in.

    0, or -errno with nothing mapped. Fills mz.addr and mz.iova.
    """
    cdef void *addr = mmap(NULL, mz.map_len, PROT_READ | PROT_WRITE, MAP_SHARED, mz.fd, 0)
    cdef int rc = 0
    cdef size_t off
    if addr == MAP_FAILED:
        return -errno
    if bind_node >= 0:
        rc = _bind(addr, mz.map_len, bind_node)
        if rc == -ENOSYS and bind_node == 0:
            rc = 0  # a kernel without NUMA: everything is node 0 already
    if rc == 0 and madvise(addr, mz.map_len, MADV_POPULATE_WRITE) != 0:
        rc = -errno
        if rc == -EINVAL:
            # Kernel before 5.14: the shared-mapping reservation made at mmap
            # guarantees the pages, so touching them cannot fault for want of one.
            rc = 0
            off = 0
            while off < mz.map_len:
                (<volatile char *>addr)[off] = 0
                off += mz.page_size
    if rc != 0:
        munmap(addr, mz.map_len)
        return rc
    mz.addr = addr
    mz.iova = <uint64_t>addr  # vfio type1, IOVA = VA
    return 0


# ---- Python: the zone object -------------------------------------------------------------

cdef class Memzone:
    """A reserved zone: `addr`/`len` of memory backed by the file `fd`.

    Made by `memzone_reserve()` (or `Eal.memzone_reserve()`, which also tracks
    it and frees it when the EAL closes). `close()` (or leaving a ``with``
    block) frees it; `freed` tells. Cython code reads the C struct as ``zone.mz``.
    """

    def __cinit__(self):
        memset(&self.mz, 0, sizeof(pd_memzone))
        self.mz.fd = -1
        self.mz.socket_id = -1
        self.freed = True  # until memzone_reserve has mapped it
        self.path = None
        self.exports = 0
        self.unmap_later = NULL

    def __dealloc__(self):
        _zone_release(self)

    cpdef close(self):
        """Unmap the zone, close its file and remove it from hugetlbfs; idempotent.

        A view still exported (see `view()`) keeps the mapping until it is
        released; the zone counts as freed at once.
        """
        _zone_release(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _zone_release(self)

    def view(self):
        """A writable memoryview of the zone's `len` bytes (zero-copy).

        Raises:
            StateError: the zone was freed.
        """
        if self.freed:
            raise StateError(f"memzone '{self.name}' was freed", "reserve it again")
        return memoryview(self)

    def __getbuffer__(self, Py_buffer *buf, int flags):
        if self.freed:
            raise StateError(f"memzone '{self.name}' was freed", "reserve it again")
        buf.buf = self.mz.addr
        buf.obj = self
        buf.len = <Py_ssize_t>self.mz.len
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = NULL
        if flags & PyBUF_FORMAT:
            buf.format = "B"
        buf.ndim = 1
        # As PyBuffer_FillInfo does: shape and strides point into the Py_buffer.
        buf.shape = NULL
        if flags & PyBUF_ND:
            buf.shape = &buf.len
        buf.strides = NULL
        if (flags & PyBUF_STRIDES) == PyBUF_STRIDES:
            buf.strides = &buf.itemsize
        buf.suboffsets = NULL
        buf.internal = NULL
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buf):
        self.exports -= 1
        if self.exports == 0 and self.unmap_later != NULL:
            munmap(self.unmap_later, self.mz.map_len)
            self.unmap_later = NULL

    @property
    def name(self):
        """The zone's name (unique among an EAL's live zones)."""
        return self.mz.name.decode()

    @property
    def addr(self):
        """Virtual address of the first byte (0 once freed)."""
        return <size_t>self.mz.addr

    @property
    def iova(self):
        """DMA address of the first byte (IOVA = VA; 0 once freed)."""
        return self.mz.iova

    @property
    def len(self):
        """Bytes asked for (usable)."""
        return self.mz.len

    @property
    def map_len(self):
        """Bytes mapped: `len` rounded up to whole pages."""
        return self.mz.map_len

    @property
    def page_size(self):
        """Bytes per page: 4096, 2 MiB or 1 GiB."""
        return self.mz.page_size

    @property
    def socket_id(self):
        """NUMA node the pages are on."""
        return self.mz.socket_id

    @property
    def fd(self):
        """The backing file descriptor (-1 once freed); shared, not a copy."""
        return self.mz.fd

    @property
    def hugepage(self):
        """True when backed by hugepages."""
        return bool(self.mz.flags & PD_MEMZONE_F_HUGE)

    def __repr__(self):
        if self.freed:
            return f"<Memzone '{self.name}' freed>"
        from pypdk.eal import hugepages as _hp
        kind = "hugetlbfs" if self.path else ("memfd-huge" if self.hugepage else "memfd")
        return (f"<Memzone '{self.name}' addr=0x{self.addr:x} len={self.len} "
                f"page={_hp.size_arg(self.page_size)} socket={self.socket_id} {kind} fd={self.fd}>")


# Every mapped zone (addr -> map_len) and who must hear of zones coming and
# going: vfio maps each zone for its devices' DMA (IOVA = VA).
_live = {}
_watchers = []


def live_zones():
    """{addr: map_len} of every zone mapped now."""
    return dict(_live)


def watch_zones(watcher):
    """Call `watcher.zone_created(addr, map_len)` for every zone mapped now and
    each one mapped later, and `watcher.zone_freed(addr)` before one is unmapped."""
    if watcher not in _watchers:
        _watchers.append(watcher)
        for addr, length in list(_live.items()):
            watcher.zone_created(addr, length)


def unwatch_zones(watcher):
    if watcher in _watchers:
        _watchers.remove(watcher)


cdef _zone_release(Memzone z):
    """Give the zone back: unmap (or defer while views live), close, unlink."""
    if z.freed:
        return
    z.freed = True
    if _live.pop(<size_t>z.mz.addr, None) is not None:
        table_mem_zone_account(z.mz.socket_id, -<long>z.mz.map_len)
        for w in list(_watchers):
            w.zone_freed(<size_t>z.mz.addr)
    if z.exports > 0:
        # Views are alive: give the hugepages back now (anonymous memory
        # over the range; closing the fd below drops the file), unmap the
        # range when the last view goes (__releasebuffer__).
        mmap(z.mz.addr, z.mz.map_len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        z.unmap_later = z.mz.addr
    elif z.mz.addr != NULL:
        munmap(z.mz.addr, z.mz.map_len)
    z.mz.addr = NULL
    z.mz.iova = 0
    if z.mz.fd >= 0:
        close(z.mz.fd)
        z.mz.fd = -1
    if z.path is not None:
        try:
            os.unlink(z.path)
        except FileNotFoundError:
            pass


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise UsageError(f"memzone name {name!r} is not a non-empty string", "name it like 'mbuf_pool'")
    raw = name.encode()
    if len(raw) >= PD_NAME_SIZE:
        raise UsageError(f"memzone name '{name}' is {len(raw)} bytes long (at most {PD_NAME_SIZE - 1})",
                         "use a shorter name")
    if "/" in name or "\0" in name:
        raise UsageError(f"memzone name '{name}' contains '/' or NUL", "use letters, digits, '_' and '-'")
    return raw


def memzone_reserve(name, size, int socket_id=-1, *, page_size=None, bint no_huge=False,
                    huge_dir=None, file_prefix="pypdk", bint _precheck=True):
    """Reserve a zone of `size` bytes and map it, filled with zeros.

    Args:
        name: at most 31 bytes; also names the memfd / hugetlbfs file.
        size: bytes wanted (the mapping is rounded up to whole pages).
        socket_id: NUMA node to bind the pages to, or -1 for any (then
            `socket_id` reports where they landed).
        page_size: hugepage size in bytes or "2M"/"1G" (default: the kernel's
            default size; with `huge_dir`, the mount's page size).
        no_huge: ordinary 4 KiB pages (memfd, no hugepages).
        huge_dir: a hugetlbfs mount to create the file in, instead of a memfd.
        file_prefix: prefix of the file name (`<prefix>_<name>`).
        _precheck: tests only: skip the sysfs free-page check to exercise the
            kernel's own refusal at mmap.

    Returns:
        Memzone

    Raises:
        UsageError: bad name/size/node/page size, or huge_dir is not a hugetlbfs mount.
        ResourceError: too few free hugepages (says how many and how to reserve them),
            the hugetlbfs file already exists, or no memory.
    """
    cdef Memzone z
    cdef int fd = -1, rc, node
    cdef unsigned mfd_flags
    from pypdk.eal import hugepages as _hp
    raw = _check_name(name)
    if not isinstance(size, int) or size <= 0:
        raise UsageError(f"memzone '{name}': size {size!r} is not a positive number of bytes",
                         "give the size in bytes, e.g. 2097152")
    if socket_id < -1:
        raise UsageError(f"memzone '{name}': socket_id {socket_id} is invalid",
                         "give a NUMA node (0, 1, ...) or -1 for any")
    if socket_id >= 0 and socket_id not in _topo.nodes():
        raise UsageError(f"memzone '{name}': NUMA node {socket_id} does not exist (nodes: {_topo.nodes()})",
                         "give one of those nodes or -1 for any")
    if socket_id >= PD_MAX_NUMA_NODES:
        raise UsageError(f"memzone '{name}': NUMA node {socket_id} is beyond PD_MAX_NUMA_NODES",
                         "raise PD_MAX_NUMA_NODES in pd_config.h")

    if no_huge:
        if huge_dir is not None:
            raise UsageError("--no-huge and --huge-dir contradict each other", "give only one of them")
        ps = os.sysconf("SC_PAGE_SIZE")
    elif huge_dir is not None:
        mount = _hp.mount_of(huge_dir)
        if mount is None:
            raise UsageError(f"--huge-dir {huge_dir} is not a hugetlbfs mount",
                             f"mount one: mount -t hugetlbfs -o pagesize=2M nodev {huge_dir}")
        ps = mount.page_size
        if page_size is not None and _hp.parse_size(page_size) != ps:
            raise UsageError(f"memzone '{name}': page size {page_size} but {huge_dir} has "
                             f"{_hp.size_arg(ps)} pages", "drop page_size or use a mount with that page size")
    else:
        ps = _hp.parse_size(page_size) if page_size is not None else _hp.default_page_size()
    map_len = -(-size // ps) * ps
    what = f"memzone '{name}'"
    node_arg = socket_id if socket_id >= 0 else None
    if not no_huge and _precheck:
        _hp.check(map_len // ps, ps, node_arg, what)

    z = Memzone.__new__(Memzone)
    strncpy(z.mz.name, raw, PD_NAME_SIZE - 1)
    z.mz.len = size
    z.mz.map_len = map_len
    z.mz.page_size = ps
    fname = f"{file_prefix}_{name}"
    if huge_dir is not None:
        path = os.path.join(huge_dir, fname)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise ResourceError(f"hugepage file {path} already exists (a crashed run, or another process "
                                f"using --file-prefix {file_prefix})",
                                "remove it if no pypdk process uses it, or pick another --file-prefix") from None
        except OSError as e:
            raise ResourceError(f"cannot create {path}: {e.strerror}", "check --huge-dir and permissions") from None
        z.path = path
        z.mz.flags = PD_MEMZONE_F_HUGE | PD_MEMZONE_F_HUGETLBFS
    else:
        mfd_flags = MFD_CLOEXEC
        if not no_huge:
            mfd_flags |= MFD_HUGETLB | ((<unsigned>(ps.bit_length() - 1)) << MFD_HUGE_SHIFT)
            z.mz.flags = PD_MEMZONE_F_HUGE
        fd = memfd_create(fname.encode(), mfd_flags)
        if fd < 0:
            e = errno
            if e == EINVAL and not no_huge:
                raise ResourceError(f"the kernel refuses {_hp.size_name(ps)} hugepage memfds for {what}",
                                    "pick another page size, use --huge-dir, or run with --no-huge")
            raise ResourceError(f"memfd_create for {what} failed: {os.strerror(e)}", "check ulimit -n")
    z.mz.fd = fd
    try:
        if ftruncate(fd, <long>map_len) != 0:
            e = errno
            raise ResourceError(f"cannot size the file of {what} to {map_len} bytes: {os.strerror(e)}",
                                "check free memory and --huge-dir")
        with nogil:
            rc = _map(&z.mz, socket_id)
        if rc != 0:
            if rc in (-ENOMEM, -EFAULT) and not no_huge:
                raise _hp.shortage_error(map_len // ps, ps, node_arg, what, _hp.free_pages(ps, node_arg))
            if rc == -ENOMEM:
                raise ResourceError(f"not enough memory for {what} ({map_len} bytes)",
                                    "free memory or make the zone smaller")
            raise ResourceError(f"cannot map {what}: {os.strerror(-rc)}", "check the kernel log (dmesg)")
    except BaseException:
        close(fd)
        z.mz.fd = -1
        if z.path is not None:
            try:
                os.unlink(z.path)
            except FileNotFoundError:
                pass
            z.path = None
        raise
    with nogil:
        node = _node_of(z.mz.addr)
    z.mz.socket_id = node if node >= 0 else (socket_id if socket_id >= 0 else 0)
    z.freed = False
    _live[<size_t>z.mz.addr] = z.mz.map_len
    table_mem_zone_account(z.mz.socket_id, <long>z.mz.map_len)
    for w in list(_watchers):
        try:
            w.zone_created(<size_t>z.mz.addr, z.mz.map_len)
        except BaseException:
            _zone_release(z)
            raise
    return z
