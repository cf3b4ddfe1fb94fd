"""Fixed-size object pools in EAL memory, with per-lcore caches.

The get/put fast path is inline in mempool.pxd. This module lays a pool out
in memory the caller owns (a memzone), frees it, runs the debug-mode checks,
and gives Python a `Mempool` for scripts and tests.

Layout: objects sit back to back from `base`, each `elt_size` bytes (a
multiple of the cache line so no two objects share one). The MP/MC ring
that stores free objects has exactly `size` capacity, so putting every
object back always fits.

Debug mode (`debug=True`) keeps a state byte per object: a put of an object
that is already in the pool counts `double_free`, a put of an address that is
not an object of this pool counts `wrong_pool`; either way the bad object is
not stored, so the pool stays consistent. Off by default: it costs a branch
per burst, and a byte touched per object, in benchmarks.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset, strncpy
from libc.errno cimport errno, EINVAL, ENOMEM
from cpython.mem cimport PyMem_Malloc, PyMem_Free

from pypdk.ring.ring cimport ring_create, ring_free, ring_mp_enqueue_bulk, PD_RING_F_EXACT_SZ
from pypdk.eal.memzone cimport Memzone

from pypdk.errors import UsageError, ResourceError

from pd_config cimport PD_NAME_SIZE

from pd_compiler cimport PD_CACHE_LINE


cdef size_t mempool_mem_size(uint32_t n, uint32_t elt_size) noexcept nogil:
    cdef size_t sz = (elt_size + PD_CACHE_LINE - 1) & ~(<size_t>PD_CACHE_LINE - 1)
    return sz * n


cdef pd_mempool *mempool_create_in(const char *name, uint32_t n, uint32_t elt_size,
                                   uint32_t cache_size, uint32_t flags, void *base,
                                   uint64_t base_iova, int socket_id) noexcept nogil:
    global errno
    cdef pd_mempool *mp
    cdef uint32_t i
    cdef void *obj
    if n == 0 or elt_size == 0 or cache_size > PD_MEMPOOL_CACHE_MAX or base == NULL:
        errno = EINVAL
        return NULL
    mp = <pd_mempool *>calloc(1, sizeof(pd_mempool))
    if mp == NULL:
        errno = ENOMEM
        return NULL
    strncpy(mp.name, name, PD_NAME_SIZE - 1)
    mp.size = n
    mp.elt_size = (elt_size + PD_CACHE_LINE - 1) & ~(<uint32_t>PD_CACHE_LINE - 1)
    mp.cache_size = cache_size
    mp.flags = flags
    mp.socket_id = socket_id
    mp.base = <char *>base
    mp.base_iova = base_iova
    mp.ring = ring_create(name, n, PD_RING_F_EXACT_SZ)
    # Untouched pages of these callocs are never committed: only the caches
    # of lcores that use the pool cost memory.
    mp.caches = <pd_mempool_cache *>calloc(PD_MAX_LCORE, sizeof(pd_mempool_cache))
    if flags & PD_MEMPOOL_F_DEBUG:
        mp.dbg_state = <uint8_t *>calloc(n, 1)
    if mp.ring == NULL or mp.caches == NULL or (flags & PD_MEMPOOL_F_DEBUG and mp.dbg_state == NULL):
        mempool_free(mp)
        errno = ENOMEM
        return NULL
    for i in range(PD_MAX_LCORE):
        mp.caches[i].size = cache_size
        mp.caches[i].flushthresh = cache_size + cache_size // 2
    for i in range(n):
        obj = mp.base + <size_t>i * mp.elt_size
        ring_mp_enqueue_bulk(mp.ring, &obj, 1)
    return mp


cdef void mempool_free(pd_mempool *mp) noexcept nogil:
    if mp == NULL:
        return
    ring_free(mp.ring)
    free(mp.caches)
    free(mp.dbg_state)
    free(mp)


cdef inline long _obj_index(pd_mempool *mp, void *obj) noexcept nogil:
    """Index of obj in mp, or -1 when obj is not an object of mp."""
    cdef uintptr_t off
    if <char *>obj < mp.base:
        return -1
    off = <uintptr_t>(<char *>obj - mp.base)
    if off % mp.elt_size != 0 or off // mp.elt_size >= mp.size:
        return -1
    return <long>(off // mp.elt_size)


cdef int mempool_debug_put(pd_mempool *mp, void **objs, uint32_t n) noexcept nogil:
    cdef uint32_t i
    cdef long idx
    for i in range(n):
        idx = _obj_index(mp, objs[i])
        if idx < 0:
            mp.dbg_wrong_pool += 1
            return -1
        if mp.dbg_state[idx] == 0:
            mp.dbg_double_free += 1
            return -1
    for i in range(n):
        mp.dbg_state[_obj_index(mp, objs[i])] = 0
    return 0


cdef void mempool_debug_got(pd_mempool *mp, void **objs, uint32_t n) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        mp.dbg_state[_obj_index(mp, objs[i])] = 1


cdef int check_debug(pd_mempool *mp, uint64_t df, uint64_t wp) except -1:
    """Raise if a debug-mode put since the counters read (df, wp) was refused."""
    from pypdk.errors import StateError
    name = mp.name.decode()
    if mp.dbg_double_free != df:
        raise StateError(f"mempool {name!r}: double free of an object already in the pool",
                         "free each object once (the object was not put back)")
    if mp.dbg_wrong_pool != wp:
        raise StateError(f"mempool {name!r}: freed an object that does not belong to it",
                         "free objects into the pool they came from")
    return 0


def _eal_memzone(str name, size_t size, int socket_id):
    from pypdk import eal
    return eal.current().memzone_reserve(name, size, socket_id=socket_id)


cdef class Mempool:
    """A pool of `n` fixed-size objects in EAL memory.

    Args:
        name: pool name (at most 31 bytes), also the memzone name.
        n: number of objects.
        elt_size: bytes per object (rounded up to 64).
        cache_size: objects each lcore keeps privately (0 to 512).
        socket_id: NUMA node for the memory (-1: any).
        debug: catch double free and wrong-pool puts (counted, see `debug_stats`).

    Objects are addresses (ints) from Python. Raises StateError before
    `pypdk.eal.init()`, ResourceError when memory is short, UsageError on a
    bad argument. `close()` (or leaving a ``with`` block) releases the pool
    and its memzone.
    """

    def __init__(self, str name, n, elt_size, cache_size=0, socket_id=-1, *, debug=False):
        self._create(name, n, elt_size, cache_size, socket_id,
                     PD_MEMPOOL_F_DEBUG if debug else 0)

    cdef _create(self, str name, uint32_t n, uint32_t elt_size, uint32_t cache_size,
                 int socket_id, uint32_t flags):
        cdef Memzone mz
        bname = name.encode()
        if len(bname) >= PD_NAME_SIZE:
            raise UsageError(f"mempool name {name!r} is longer than {PD_NAME_SIZE - 1} bytes",
                             "use a shorter name")
        if n == 0:
            raise UsageError(f"mempool {name!r}: n must be at least 1", "give n > 0")
        if cache_size > PD_MEMPOOL_CACHE_MAX:
            raise UsageError(f"mempool {name!r}: cache_size {cache_size} is above {PD_MEMPOOL_CACHE_MAX}",
                             f"use cache_size <= {PD_MEMPOOL_CACHE_MAX}")
        if cache_size and cache_size * 3 // 2 > n:
            raise UsageError(f"mempool {name!r}: cache_size {cache_size} is too big for {n} objects",
                             "use cache_size <= n / 1.5 (DPDK's rule)")
        mz = _eal_memzone(name, mempool_mem_size(n, elt_size), socket_id)
        self.mp = mempool_create_in(bname, n, elt_size, cache_size, flags, mz.mz.addr,
                                    mz.mz.iova, mz.mz.socket_id)
        if self.mp == NULL:
            mz.close()
            raise ResourceError(f"mempool {name!r}: out of memory for its ring and caches",
                                "use fewer objects")
        self.memzone = mz
        self.name = name

    def __dealloc__(self):
        mempool_free(self.mp)
        self.mp = NULL

    def close(self):
        """Release the pool and its memzone; idempotent (its objects must not be used after)."""
        mempool_free(self.mp)
        self.mp = NULL
        if self.memzone is not None:
            self.memzone.close()
            self.memzone = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check(self):
        if self.mp == NULL:
            from pypdk.errors import StateError
            raise StateError(f"mempool {self.name!r} was closed", "create a new pool")

    @property
    def addr(self):
        """Address of the pd_mempool, for Cython code that takes a pool pointer."""
        return <uintptr_t>self.mp

    @property
    def size(self):
        self._check()
        return self.mp.size

    @property
    def elt_size(self):
        self._check()
        return self.mp.elt_size

    @property
    def cache_size(self):
        self._check()
        return self.mp.cache_size

    @property
    def socket_id(self):
        self._check()
        return self.mp.socket_id

    @property
    def avail_count(self):
        """Objects in the pool (common store and every lcore cache)."""
        self._check()
        return mempool_avail_count(self.mp)

    @property
    def in_use_count(self):
        """Objects handed out and not yet put back."""
        self._check()
        return mempool_in_use_count(self.mp)

    @property
    def debug_stats(self):
        """{'double_free': n, 'wrong_pool': n} (debug mode; zeros otherwise)."""
        self._check()
        return {"double_free": self.mp.dbg_double_free, "wrong_pool": self.mp.dbg_wrong_pool}

    def get_bulk(self, n):
        """Take n objects (all or nothing). Returns their addresses, or [] if short."""
        self._check()
        cdef uint32_t k = n, i
        cdef int rc
        cdef void **tbl = <void **>PyMem_Malloc(max(k, 1) * sizeof(void *))
        if tbl == NULL:
            raise MemoryError()
        try:
            with nogil:
                rc = mempool_get_bulk(self.mp, tbl, k)
            return [<uintptr_t>tbl[i] for i in range(k)] if rc == 0 else []
        finally:
            PyMem_Free(tbl)

    def get(self):
        """Take one object; None when the pool is empty."""
        got = self.get_bulk(1)
        return got[0] if got else None

    def put_bulk(self, objs):
        """Give objects back. In debug mode a bad batch raises and is not stored."""
        self._check()
        cdef Py_ssize_t k = len(objs), i
        cdef uint64_t df = self.mp.dbg_double_free, wp = self.mp.dbg_wrong_pool
        cdef void **tbl = <void **>PyMem_Malloc(max(k, 1) * sizeof(void *))
        if tbl == NULL:
            raise MemoryError()
        try:
            for i in range(k):
                tbl[i] = <void *><uintptr_t>objs[i]
            with nogil:
                mempool_put_bulk(self.mp, tbl, <uint32_t>k)
        finally:
            PyMem_Free(tbl)
        check_debug(self.mp, df, wp)

    def put(self, obj):
        self.put_bulk((obj,))

    def __repr__(self):
        if self.mp == NULL:
            return f"Mempool({self.name!r}, closed)"
        return (f"Mempool({self.name!r}, size={self.mp.size}, elt_size={self.mp.elt_size}, "
                f"cache_size={self.mp.cache_size}, in_use={mempool_in_use_count(self.mp)})")

