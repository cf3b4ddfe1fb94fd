# cython: language_level=3
"""Table memory (tablemem.pxd): where the big lookup tables' pages come from.

The C side (table_mem_map, table_mem_map_sparse, table_mem_back,
table_mem_unmap) is what the tables call, without the GIL; this module's
Python side is the placement and what it holds:

    tablemem.place(node, page_size)   # hugepages on `node` (Eal.place_tables does this)
    tablemem.place_default()          # lazily backed ordinary/THP pages (the default)
    tablemem.placement()              # {"hugepages": bool, "node": n, ...}
    tablemem.usage()                  # {node: {"tables": n, "bytes": b}}: hugepage tables now
    tablemem.take_failure("what")     # the ResourceError for the last refused map, or None

The placement applies to tables mapped after it is set; a table keeps the
memory it was mapped with (table_mem_unmap knows which), so switching back
to the default (Eal.close does) never strands one.
"""
from libc.errno cimport errno, EINVAL, ENOMEM, ENOSYS
from libc.stdint cimport uint64_t
from libc.stdlib cimport realloc, free
from posix.mman cimport (mmap, munmap, madvise, MAP_FAILED, PROT_READ, PROT_WRITE, MAP_PRIVATE,
                         MAP_ANONYMOUS, MAP_NORESERVE, MAP_FIXED, MADV_HUGEPAGE)

from pd_config cimport PD_MAX_NUMA_NODES

from pypdk.errors import ResourceError, UsageError

cdef extern from *:
    """
    #include <sys/mman.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    #include <pthread.h>
    #ifndef MAP_HUGETLB
    #define MAP_HUGETLB 0x40000
    #endif
    #ifndef MAP_HUGE_SHIFT
    #define MAP_HUGE_SHIFT 26
    #endif
    #ifndef MADV_POPULATE_WRITE
    #define MADV_POPULATE_WRITE 23   /* Linux 5.14 */
    #endif
    #define PD_TM_MPOL_BIND 2
    #define PD_TM_MPOL_MF_MOVE (1 << 1)
    static pthread_mutex_t pd_tm_mutex = PTHREAD_MUTEX_INITIALIZER;
    static long pd_tm_mbind(void *addr, unsigned long len, int node, unsigned flags) {
        unsigned long mask = 1UL << node;
        /* maxnode is bits + 1: the kernel decrements it first */
        return syscall(SYS_mbind, addr, len, (long)PD_TM_MPOL_BIND, &mask,
                       (unsigned long)(8 * sizeof(unsigned long) + 1), flags);
    }
    """
    int MAP_HUGETLB
    int MAP_HUGE_SHIFT
    int MADV_POPULATE_WRITE
    unsigned PD_TM_MPOL_MF_MOVE
    ctypedef struct pthread_mutex_t:
        pass
    pthread_mutex_t pd_tm_mutex
    int pthread_mutex_lock(pthread_mutex_t *m) nogil
    int pthread_mutex_unlock(pthread_mutex_t *m) nogil
    long pd_tm_mbind(void *addr, unsigned long len, int node, unsigned flags) nogil


cdef enum:
    SPARSE_CHUNKS_MAX = 64      # chunks a sparse table can track (its bitmap); bigger: backed whole
    FAIL_NONE = 0
    FAIL_SHORTAGE = 1           # the node had too few free hugepages
    FAIL_CAP = 2                # over the EAL's -m/--socket-mem


# A hugepage table: its mapping, node and what of it is backed.
cdef struct tm_table:
    size_t addr
    size_t map_len
    size_t page                 # its hugepage size (a sparse table's chunk)
    int node
    int sparse
    uint64_t backed             # sparse: bit c = chunk c has its page
    size_t bytes                # hugepage bytes it holds

cdef struct tm_placement:
    int huge                    # 0: the default (lazy anonymous); 1: hugepages on `node`
    int node
    size_t page                 # bytes per hugepage
    int page_shift
    size_t min_bytes            # smaller tables stay on ordinary pages
    long cap                    # bytes of -m/--socket-mem (zones and tables), -1: no cap
    int cap_all                 # the cap is for all nodes (-m), not just `node` (--socket-mem)


cdef tm_placement _pl
_pl.huge = 0
_pl.node = -1
_pl.page = 0
_pl.page_shift = 0
_pl.min_bytes = 0
_pl.cap = -1
_pl.cap_all = 0
cdef tm_table *_tables = NULL
cdef size_t _ntables = 0, _tables_cap = 0
cdef long _table_bytes[PD_MAX_NUMA_NODES]
cdef long _zone_bytes[PD_MAX_NUMA_NODES]
cdef int _fail_kind = FAIL_NONE, _fail_node = -1
cdef size_t _fail_need = 0, _fail_page = 0
cdef long _fail_left = 0
cdef int _marked = 0
cdef size_t _tried = 0             # hugepage bytes asked for since mark()
for _i in range(PD_MAX_NUMA_NODES):
    _table_bytes[_i] = 0
    _zone_bytes[_i] = 0


# ---- C level (callers hold pd_tm_mutex where noted) ------------------------------------

cdef inline void *_anon(size_t size) noexcept nogil:
    cdef void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if p == MAP_FAILED:
        return NULL
    madvise(p, size, MADV_HUGEPAGE)
    return p


cdef bint _budget_ok(int node, size_t need) noexcept nogil:
    # mutex held
    cdef long used = 0
    cdef int n
    if _pl.cap < 0:
        return True
    if _pl.cap_all:
        for n in range(PD_MAX_NUMA_NODES):
            used += _table_bytes[n] + _zone_bytes[n]
    else:
        used = _table_bytes[node] + _zone_bytes[node]
    return used + <long>need <= _pl.cap


cdef void _fail(int kind, int node, size_t need) noexcept nogil:
    # mutex held
    global _fail_kind, _fail_node, _fail_need, _fail_page, _fail_left
    cdef long used = 0
    cdef int n
    if _fail_kind == kind and _fail_node == node:
        need += _fail_need          # several tables refused before anyone asked: what all need
    _fail_kind, _fail_node, _fail_need, _fail_page = kind, node, need, _pl.page
    if kind == FAIL_CAP:
        for n in range(PD_MAX_NUMA_NODES):
            if _pl.cap_all or n == node:
                used += _table_bytes[n] + _zone_bytes[n]
        _fail_left = _pl.cap - used if _pl.cap > used else 0


cdef void *_huge(void *at, size_t len, int node) noexcept nogil:
    """`len` bytes of hugepages on `node`, reserved, bound and faulted in; at
    MAP_FIXED address `at` (a sparse table's chunk) or anywhere. NULL when
    the node has too few pages (at's placeholder is restored)."""
    cdef int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (_pl.page_shift << MAP_HUGE_SHIFT)
    cdef void *p
    cdef size_t off
    cdef bint ok = True
    if at != NULL:
        flags |= MAP_FIXED
    # A private hugetlb mapping reserves its pages here (no MAP_NORESERVE):
    # ENOMEM now rather than SIGBUS later.
    p = mmap(at, len, PROT_READ | PROT_WRITE, flags, -1, 0)
    if p == MAP_FAILED:
        p = NULL
        ok = False
    # The reservation is global: bind to the node before the first fault,
    # then fault every page in now, where a node without free pages is an
    # error code. MPOL_MF_MOVE: a reader that touched a new chunk between
    # mmap and mbind moved its page to the node.
    if ok and pd_tm_mbind(p, len, node, PD_TM_MPOL_MF_MOVE if at != NULL else 0) != 0:
        ok = errno == ENOSYS and node == 0      # a kernel without NUMA: node 0 is all there is
    if ok and madvise(p, len, MADV_POPULATE_WRITE) != 0:
        if errno == EINVAL:                     # before Linux 5.14: the reservation covers a touch
            off = 0
            while off < len:
                (<volatile char *>p)[off] = 0
                off += _pl.page
        else:
            ok = False
    if ok:
        return p
    if at != NULL:
        # MAP_FIXED may have replaced the placeholder before failing: put back zeros.
        mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0)
    elif p != NULL:
        munmap(p, len)
    return NULL


cdef tm_table *_find(size_t addr) noexcept nogil:
    # mutex held
    cdef size_t i
    for i in range(_ntables):
        if _tables[i].addr == addr:
            return &_tables[i]
    return NULL


cdef tm_table *_add(size_t addr, size_t map_len, int node, int sparse) noexcept nogil:
    # mutex held; NULL when out of memory
    global _tables, _ntables, _tables_cap
    cdef tm_table *t
    cdef size_t ncap
    if _ntables == _tables_cap:
        ncap = _tables_cap * 2 if _tables_cap else 64
        t = <tm_table *>realloc(_tables, ncap * sizeof(tm_table))
        if t == NULL:
            return NULL
        _tables, _tables_cap = t, ncap
    t = &_tables[_ntables]
    _ntables += 1
    t.addr, t.map_len, t.page, t.node, t.sparse, t.backed, t.bytes = addr, map_len, _pl.page, node, sparse, 0, 0
    return t


cdef void *_map(size_t size, bint sparse) noexcept nogil:
    global errno, _tried
    cdef size_t page, map_len, head
    cdef int node
    cdef void *p
    cdef void *raw
    cdef tm_table *t
    if not _pl.huge or size < _pl.min_bytes:
        return _anon(size)
    pthread_mutex_lock(&pd_tm_mutex)
    page, node = _pl.page, _pl.node
    map_len = (size + page - 1) & ~(page - 1)
    if sparse and map_len // page > SPARSE_CHUNKS_MAX:
        sparse = False
    p = NULL
    if not sparse:
        _tried += map_len
    if sparse:
        # Address space aligned to a page; chunks get their pages in table_mem_back.
        raw = mmap(NULL, map_len + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if raw != MAP_FAILED:
            head = (page - (<size_t>raw & (page - 1))) & (page - 1)
            if head:
                munmap(raw, head)
            munmap(<char *>raw + head + map_len, page - head)
            p = <char *>raw + head
    elif not _budget_ok(node, map_len):
        _fail(FAIL_CAP, node, map_len)
    else:
        p = _huge(NULL, map_len, node)
        if p == NULL:
            _fail(FAIL_SHORTAGE, node, map_len)
    if p != NULL:
        t = _add(<size_t>p, map_len, node, sparse)
        if t == NULL:
            munmap(p, map_len)
            p = NULL
        elif not sparse:
            t.bytes = map_len
            _table_bytes[node] += <long>map_len
    pthread_mutex_unlock(&pd_tm_mutex)
    if p == NULL:
        errno = ENOMEM
    return p


cdef void *table_mem_map(size_t size) noexcept nogil:
    return _map(size, False)


cdef void *table_mem_map_sparse(size_t size) noexcept nogil:
    return _map(size, True)


cdef int table_mem_back(void *p, size_t off, size_t len) noexcept nogil:
    global _tried
    cdef tm_table *t
    cdef size_t c, first, last, page
    cdef int rc = 0
    # No hugepage table at all (the default placement): nothing to back, no lock
    # (a table being backed is listed from its mapping on, so this cannot miss it).
    if p == NULL or len == 0 or _ntables == 0:
        return 0
    pthread_mutex_lock(&pd_tm_mutex)
    t = _find(<size_t>p)
    if t != NULL and t.sparse:
        page = t.page
        first, last = off // page, (off + len - 1) // page
        for c in range(first, last + 1):
            if t.backed & ((<uint64_t>1) << c):
                continue
            _tried += page
            if not _budget_ok(t.node, page):
                _fail(FAIL_CAP, t.node, page)
                rc = -ENOMEM
                break
            if _huge(<char *>p + c * page, page, t.node) == NULL:
                _fail(FAIL_SHORTAGE, t.node, page)
                rc = -ENOMEM
                break
            t.backed |= (<uint64_t>1) << c
            t.bytes += page
            _table_bytes[t.node] += <long>page
    pthread_mutex_unlock(&pd_tm_mutex)
    return rc


cdef void table_mem_unmap(void *p, size_t size) noexcept nogil:
    global _ntables
    cdef tm_table *t
    if p == NULL:
        return
    pthread_mutex_lock(&pd_tm_mutex)
    t = _find(<size_t>p)
    if t != NULL:
        munmap(p, t.map_len)
        _table_bytes[t.node] -= <long>t.bytes
        _ntables -= 1
        t[0] = _tables[_ntables]
    pthread_mutex_unlock(&pd_tm_mutex)
    if t == NULL:
        munmap(p, size)


cdef void table_mem_zone_account(int node, long delta) noexcept nogil:
    if 0 <= node < PD_MAX_NUMA_NODES:
        pthread_mutex_lock(&pd_tm_mutex)
        _zone_bytes[node] += delta
        pthread_mutex_unlock(&pd_tm_mutex)


# ---- Python: the placement and what it holds --------------------------------------------

def place(int node, page_size, cap_bytes=None, bint cap_all=False, min_bytes=None):
    """Map tables from now on from `page_size` hugepages on NUMA `node`.

    Args:
        node: the NUMA node (>= 0) the tables' pages are bound to.
        page_size: bytes per hugepage (2 MiB: the tables' chunks).
        cap_bytes: -m/--socket-mem in bytes: zones and tables together may not
            pass it (on `node`, or on all nodes with cap_all); None: no cap.
        min_bytes: tables smaller than this stay on ordinary pages (default
            half a page).

    Raises:
        UsageError: a node, page size or cap out of range.
    """
    global _fail_kind
    if not 0 <= node < PD_MAX_NUMA_NODES:
        raise UsageError(f"table memory on NUMA node {node}: out of range", f"give 0..{PD_MAX_NUMA_NODES - 1}")
    if not isinstance(page_size, int) or page_size < 4096 or page_size & (page_size - 1):
        raise UsageError(f"table memory page size {page_size!r} is not a power of two", "give 2097152 (2 MiB)")
    if min_bytes is None:
        min_bytes = page_size // 2
    pthread_mutex_lock(&pd_tm_mutex)
    _fail_kind = FAIL_NONE
    _pl.node = node
    _pl.page = page_size
    _pl.page_shift = (<size_t>page_size).bit_length() - 1
    _pl.min_bytes = min_bytes
    _pl.cap = -1 if cap_bytes is None else cap_bytes
    _pl.cap_all = cap_all
    _pl.huge = 1
    pthread_mutex_unlock(&pd_tm_mutex)


def place_default():
    """Tables mapped from now on are lazily backed ordinary pages (THP where the
    kernel has them): what a process without an EAL gets."""
    pthread_mutex_lock(&pd_tm_mutex)
    _pl.huge = 0
    _pl.node = -1
    _pl.cap = -1
    pthread_mutex_unlock(&pd_tm_mutex)


def placement():
    """{"hugepages": bool, "node": int or None, "page_size": bytes or None, "min_bytes": bytes}."""
    if not _pl.huge:
        return {"hugepages": False, "node": None, "page_size": None, "min_bytes": 0}
    return {"hugepages": True, "node": _pl.node, "page_size": _pl.page, "min_bytes": _pl.min_bytes}


def usage():
    """{node: {"tables": n, "bytes": b}} of the tables on hugepages now (nodes with one or more)."""
    cdef size_t i
    out = {}
    pthread_mutex_lock(&pd_tm_mutex)
    for i in range(_ntables):
        u = out.setdefault(_tables[i].node, {"tables": 0, "bytes": 0})
        u["tables"] += 1
        u["bytes"] += _tables[i].bytes
    pthread_mutex_unlock(&pd_tm_mutex)
    return out


def mappings():
    """The tables on hugepages: [{"addr", "map_len", "node", "sparse", "bytes"}]."""
    cdef size_t i
    out = []
    pthread_mutex_lock(&pd_tm_mutex)
    for i in range(_ntables):
        out.append({"addr": _tables[i].addr, "map_len": _tables[i].map_len, "node": _tables[i].node,
                    "sparse": bool(_tables[i].sparse), "bytes": _tables[i].bytes})
    pthread_mutex_unlock(&pd_tm_mutex)
    return out


def mark():
    """Start counting the hugepage bytes tables ask for: a creation that maps
    several tables calls this first, so take_failure() names what all of them
    need, not only the one that failed."""
    global _marked, _tried, _fail_kind
    pthread_mutex_lock(&pd_tm_mutex)
    _marked, _tried, _fail_kind = 1, 0, FAIL_NONE
    pthread_mutex_unlock(&pd_tm_mutex)


def take_failure(what):
    """The ResourceError for the last table map this placement refused (then
    forgotten), or None: a hugepage shortage on the node (how many pages, and
    the reserve command) or over -m/--socket-mem. After mark(), the need is
    everything asked for since (the caller freed what it had made)."""
    global _fail_kind, _fail_need, _marked
    from pypdk.eal import hugepages as _hp
    kind, node, need, page, left = _fail_kind, _fail_node, _fail_need, _fail_page, _fail_left
    if _marked and _tried > need:
        need = _tried
    _fail_kind, _fail_need, _marked = FAIL_NONE, 0, 0
    if kind == FAIL_SHORTAGE:
        pages = -(-need // page)
        return _hp.shortage_error(pages, page, node, what, _hp.free_pages(page, node))
    if kind == FAIL_CAP:
        return ResourceError(f"{what} need {need >> 20} MB of table memory on node {node} but only "
                             f"{left >> 20} MB of the EAL's -m/--socket-mem is left",
                             "raise -m/--socket-mem (tables count with the zones) or make the tables smaller")
    return None
