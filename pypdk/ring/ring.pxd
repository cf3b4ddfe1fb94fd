# Lockless bounded rings of pointers (the C-level contract).
#
# A producer claims slots by moving prod.head (a plain store for a single
# producer, a CAS for several), writes its objects, then publishes them by
# moving prod.tail with a release store. A consumer does the same on the cons
# side. Each side reads the other side's tail with an acquire load that pairs
# with that release store, so the objects written before a tail moved are
# visible to whoever sees the new tail. Several producers publish in the
# order they claimed: each waits for the tail to reach its own head first.
#
# `bulk` = all n or nothing; `burst` = as many as fit / are there.
# These functions are `inline` here so a hot loop that cimports them pays no
# call; the Ring class in ring.pyx is the Python owner of the memory.

from libc.stdint cimport uint32_t

from pd_compiler cimport pd_likely, pd_unlikely, pd_pause
from pd_atomic cimport (pd_load_relaxed_u32, pd_load_acquire_u32, pd_store_relaxed_u32,
                        pd_store_release_u32, pd_fence_acquire, pd_cas_weak_u32)

cdef extern from "<sched.h>" nogil:
    int sched_yield()

from pd_ring cimport (pd_ring_headtail, pd_ring, PD_RING_F_SP_ENQ, PD_RING_F_SC_DEQ,
                      PD_RING_F_EXACT_SZ)


# ---- creation (ring.pyx) --------------------------------------------------

# A ring of `count` objects. Without PD_RING_F_EXACT_SZ, count must be a power
# of two and the capacity is count - 1 (one slot tells full from empty, as in
# DPDK); with it, any count works and slots are rounded up. NULL on bad
# arguments or no memory (errno set).
cdef pd_ring *ring_create(const char *name, uint32_t count, uint32_t flags) noexcept nogil
cdef void ring_free(pd_ring *r) noexcept nogil


# ---- the protocol ---------------------------------------------------------

cdef inline void _ring_wait_tail(pd_ring_headtail *ht, uint32_t old) noexcept nogil:
    # An earlier claimant has not published yet. Spin; if it stays put it
    # was probably preempted (lcores sharing a cpu), so give the cpu away.
    cdef unsigned spins = 0
    while pd_load_relaxed_u32(&ht.tail) != old:
        pd_pause()
        spins += 1
        if pd_unlikely(spins > 2048):
            sched_yield()
            spins = 0

cdef inline void _ring_publish(pd_ring_headtail *ht, uint32_t old, uint32_t new,
                               bint single) noexcept nogil:
    if not single:
        _ring_wait_tail(ht, old)
    # Release: pairs with the acquire load of this tail in the other side's
    # _ring_move_*_head, making the slots written (or read) before visible.
    pd_store_release_u32(&ht.tail, new)

cdef inline uint32_t _ring_move_prod_head(pd_ring *r, bint sp, uint32_t n, bint fixed,
                                          uint32_t *old_head) noexcept nogil:
    cdef uint32_t want = n, cons_tail, free_entries
    old_head[0] = pd_load_relaxed_u32(&r.prod.head)
    while True:
        n = want
        # Keep the head load above before the tail load below.
        pd_fence_acquire()
        # Acquire: pairs with the consumer's release of cons.tail, so the
        # slots it vacated are not still being read when we overwrite them.
        cons_tail = pd_load_acquire_u32(&r.cons.tail)
        free_entries = r.capacity + cons_tail - old_head[0]
        if n > free_entries:
            n = 0 if fixed else free_entries
        if n == 0:
            return 0
        if sp:
            r.prod.head = old_head[0] + n
            return n
        if pd_cas_weak_u32(&r.prod.head, old_head, old_head[0] + n):
            return n

cdef inline uint32_t _ring_move_cons_head(pd_ring *r, bint sc, uint32_t n, bint fixed,
                                          uint32_t *old_head) noexcept nogil:
    cdef uint32_t want = n, prod_tail, entries
    old_head[0] = pd_load_relaxed_u32(&r.cons.head)
    while True:
        n = want
        pd_fence_acquire()
        # Acquire: pairs with the producer's release of prod.tail, so the
        # objects it wrote into the slots are visible before we read them.
        prod_tail = pd_load_acquire_u32(&r.prod.tail)
        entries = prod_tail - old_head[0]
        if n > entries:
            n = 0 if fixed else entries
        if n == 0:
            return 0
        if sc:
            r.cons.head = old_head[0] + n
            return n
        if pd_cas_weak_u32(&r.cons.head, old_head, old_head[0] + n):
            return n

cdef inline void _ring_copy_in(pd_ring *r, uint32_t head, void **objs, uint32_t n) noexcept nogil:
    cdef uint32_t idx = head & r.mask, i, first
    if pd_likely(idx + n <= r.size):
        for i in range(n):
            r.slots[idx + i] = objs[i]
    else:
        first = r.size - idx
        for i in range(first):
            r.slots[idx + i] = objs[i]
        for i in range(first, n):
            r.slots[i - first] = objs[i]

cdef inline void _ring_copy_out(pd_ring *r, uint32_t head, void **objs, uint32_t n) noexcept nogil:
    cdef uint32_t idx = head & r.mask, i, first
    if pd_likely(idx + n <= r.size):
        for i in range(n):
            objs[i] = r.slots[idx + i]
    else:
        first = r.size - idx
        for i in range(first):
            objs[i] = r.slots[idx + i]
        for i in range(first, n):
            objs[i] = r.slots[i - first]

cdef inline uint32_t _ring_enqueue(pd_ring *r, void **objs, uint32_t n, bint sp,
                                   bint fixed) noexcept nogil:
    cdef uint32_t head
    n = _ring_move_prod_head(r, sp, n, fixed, &head)
    if n:
        _ring_copy_in(r, head, objs, n)
        _ring_publish(&r.prod, head, head + n, sp)
    return n

cdef inline uint32_t _ring_dequeue(pd_ring *r, void **objs, uint32_t n, bint sc,
                                   bint fixed) noexcept nogil:
    cdef uint32_t head
    n = _ring_move_cons_head(r, sc, n, fixed, &head)
    if n:
        _ring_copy_out(r, head, objs, n)
        _ring_publish(&r.cons, head, head + n, sc)
    return n


# ---- the API: DPDK's names ------------------------------------------------

cdef inline uint32_t ring_sp_enqueue_bulk(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    return _ring_enqueue(r, objs, n, True, True)
cdef inline uint32_t ring_mp_enqueue_bulk(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    return _ring_enqueue(r, objs, n, False, True)
cdef inline uint32_t ring_sp_enqueue_burst(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    return _ring_enqueue(r, objs, n, True, False)
cdef inline uint32_t ring_mp_enqueue_burst(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    return _ring_enqueue(r, objs, n, False, False)
cdef inline uint32_t ring_sc_dequeue_bulk(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    return _ring_dequeue(r, objs, n, True, True)
cdef inline uint32_t ring_mc_dequeue_bulk(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    return _ring_dequeue(r, objs, n, False, True)
cdef inline uint32_t ring_sc_dequeue_burst(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    return _ring_dequeue(r, objs, n, True, False)
cdef inline uint32_t ring_mc_dequeue_burst(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    return _ring_dequeue(r, objs, n, False, False)

# The mode chosen when the ring was created (one predictable branch).
cdef inline uint32_t ring_enqueue_bulk(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    if r.prod.single:
        return _ring_enqueue(r, objs, n, True, True)
    return _ring_enqueue(r, objs, n, False, True)
cdef inline uint32_t ring_enqueue_burst(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    if r.prod.single:
        return _ring_enqueue(r, objs, n, True, False)
    return _ring_enqueue(r, objs, n, False, False)
cdef inline uint32_t ring_dequeue_bulk(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    if r.cons.single:
        return _ring_dequeue(r, objs, n, True, True)
    return _ring_dequeue(r, objs, n, False, True)
cdef inline uint32_t ring_dequeue_burst(pd_ring *r, void **objs, uint32_t n) noexcept nogil:
    if r.cons.single:
        return _ring_dequeue(r, objs, n, True, False)
    return _ring_dequeue(r, objs, n, False, False)

cdef inline uint32_t ring_count(const pd_ring *r) noexcept nogil:
    cdef uint32_t c = pd_load_relaxed_u32(&r.prod.tail) - pd_load_relaxed_u32(&r.cons.tail)
    return c if c <= r.capacity else r.capacity

cdef inline uint32_t ring_free_count(const pd_ring *r) noexcept nogil:
    return r.capacity - ring_count(r)


# ---- Python owner ---------------------------------------------------------

cdef class Ring:
    cdef pd_ring *r
    cdef readonly str name
    cdef int _check(self) except -1
    cdef long _enqueue(self, objs, bint fixed) except -1
    cdef list _dequeue(self, n, bint fixed)
