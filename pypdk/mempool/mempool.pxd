# Fixed-size object pools with per-lcore caches (the C-level contract).
#
# The common store is an MP/MC ring of object pointers. In front of it each
# lcore has a private LIFO cache: get and put hit the cache without atomics
# and go to the ring only in bulk, when the cache runs dry or grows past its
# flush threshold (1.5 x cache size). A thread that is not an EAL lcore has
# no cache and uses the ring directly (still correct, just slower).
#
# get_bulk is all-or-nothing, like DPDK's rte_mempool_get_bulk: 0 on success,
# -1 (nothing taken) when the pool cannot supply n objects.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, uintptr_t
from pypdk.ring.ring cimport pd_ring, ring_mp_enqueue_bulk, ring_mc_dequeue_bulk, ring_count
from pypdk.eal.lcore cimport lcore_id
from pd_compiler cimport pd_likely, pd_unlikely
from pd_config cimport PD_MAX_LCORE, PD_MEMPOOL_CACHE_MAX
from pd_mempool cimport pd_mempool_cache, pd_mempool, PD_MEMPOOL_F_DEBUG, PD_MEMPOOL_F_PKT


# Debug-mode slow paths (mempool.pyx): check and record, skip bad objects.
cdef int mempool_debug_put(pd_mempool *mp, void **objs, uint32_t n) noexcept nogil
cdef void mempool_debug_got(pd_mempool *mp, void **objs, uint32_t n) noexcept nogil
# Python side: raise StateError if the debug counters moved past (df, wp).
cdef int check_debug(pd_mempool *mp, uint64_t df, uint64_t wp) except -1


cdef inline pd_mempool_cache *mempool_cache(pd_mempool *mp, unsigned lcore) noexcept nogil:
    """The cache of `lcore` (NULL: no cache for this pool or thread)."""
    if mp.cache_size == 0 or lcore >= PD_MAX_LCORE:
        return NULL
    return &mp.caches[lcore]

cdef inline pd_mempool_cache *mempool_default_cache(pd_mempool *mp) noexcept nogil:
    return mempool_cache(mp, lcore_id())

cdef inline void _mempool_put(pd_mempool *mp, void **objs, uint32_t n,
                              pd_mempool_cache *c) noexcept nogil:
    cdef uint32_t i
    cdef void **top
    if c == NULL or n > c.flushthresh:
        # No cache, or a put too big to be worth caching: straight to the
        # store. The ring holds every object, so this cannot fail.
        ring_mp_enqueue_bulk(mp.ring, objs, n)
        return
    top = &c.objs[c.len]
    for i in range(n):
        top[i] = objs[i]
    c.len += n
    if c.len >= c.flushthresh:
        # Keep `size` (the warm bottom of the stack is pushed back).
        ring_mp_enqueue_bulk(mp.ring, &c.objs[c.size], c.len - c.size)
        c.len = c.size

cdef inline int _mempool_get(pd_mempool *mp, void **objs, uint32_t n,
                             pd_mempool_cache *c) noexcept nogil:
    cdef uint32_t i, want
    cdef void **top
    if c == NULL:
        return 0 if ring_mc_dequeue_bulk(mp.ring, objs, n) == n else -1
    if c.len < n:
        if n >= c.size:
            # A big get: the ring supplies what the cache lacks, then the
            # cache is emptied into the rest (objects in a cache are never
            # stranded from their own lcore).
            want = n - c.len
            if ring_mc_dequeue_bulk(mp.ring, objs, want) == 0:
                return -1
            for i in range(c.len):
                objs[want + i] = c.objs[c.len - 1 - i]
            c.len = 0
            return 0
        # Refill so that after this get the cache is back at its size.
        want = n + c.size - c.len
        if ring_mc_dequeue_bulk(mp.ring, &c.objs[c.len], want) == 0:
            # Not enough for a full refill: take just what is missing.
            want = n - c.len
            if ring_mc_dequeue_bulk(mp.ring, &c.objs[c.len], want) == 0:
                return -1
        c.len += want
    # LIFO: hand out the most recently freed (warmest) objects.
    c.len -= n
    top = &c.objs[c.len]
    for i in range(n):
        objs[i] = top[n - 1 - i]
    return 0

cdef inline void mempool_put_bulk_cache(pd_mempool *mp, void **objs, uint32_t n,
                                        pd_mempool_cache *c) noexcept nogil:
    if pd_unlikely(mp.flags & PD_MEMPOOL_F_DEBUG):
        if mempool_debug_put(mp, objs, n) != 0:
            return              # bad objects recorded; none put back
    _mempool_put(mp, objs, n, c)

cdef inline int mempool_get_bulk_cache(pd_mempool *mp, void **objs, uint32_t n,
                                       pd_mempool_cache *c) noexcept nogil:
    cdef int rc = _mempool_get(mp, objs, n, c)
    if pd_unlikely(mp.flags & PD_MEMPOOL_F_DEBUG) and rc == 0:
        mempool_debug_got(mp, objs, n)
    return rc

cdef inline void mempool_put_bulk(pd_mempool *mp, void **objs, uint32_t n) noexcept nogil:
    mempool_put_bulk_cache(mp, objs, n, mempool_default_cache(mp))

cdef inline int mempool_get_bulk(pd_mempool *mp, void **objs, uint32_t n) noexcept nogil:
    return mempool_get_bulk_cache(mp, objs, n, mempool_default_cache(mp))

cdef inline void mempool_put(pd_mempool *mp, void *obj) noexcept nogil:
    mempool_put_bulk(mp, &obj, 1)

cdef inline int mempool_get(pd_mempool *mp, void **obj) noexcept nogil:
    return mempool_get_bulk(mp, obj, 1)

cdef inline uint32_t mempool_avail_count(pd_mempool *mp) noexcept nogil:
    """Objects in the ring plus every lcore's cache (not atomic as a whole)."""
    cdef uint32_t n = ring_count(mp.ring), i
    if mp.cache_size:
        for i in range(PD_MAX_LCORE):
            n += mp.caches[i].len
    return n if n <= mp.size else mp.size

cdef inline uint32_t mempool_in_use_count(pd_mempool *mp) noexcept nogil:
    return mp.size - mempool_avail_count(mp)


# Create a pool of n objects of elt_size bytes (rounded to a cache line) in
# memory at `base` (the caller owns it, e.g. a memzone). NULL with errno set.
cdef pd_mempool *mempool_create_in(const char *name, uint32_t n, uint32_t elt_size,
                                   uint32_t cache_size, uint32_t flags, void *base,
                                   uint64_t base_iova, int socket_id) noexcept nogil
cdef void mempool_free(pd_mempool *mp) noexcept nogil
cdef size_t mempool_mem_size(uint32_t n, uint32_t elt_size) noexcept nogil


cdef class Mempool:
    cdef pd_mempool *mp
    cdef object memzone
    cdef readonly str name
    cdef _create(self, str name, uint32_t n, uint32_t elt_size, uint32_t cache_size,
                 int socket_id, uint32_t flags)
