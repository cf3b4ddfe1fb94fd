"""Ring stress kernels: producer and consumer lcores passing mbufs (tests only).

Each producer allocates mbufs, stamps each with (producer id, sequence) in
udata64 and enqueues bursts; consumers dequeue, check that every producer's
sequence numbers rise (order kept per producer), mark each (producer, seq)
seen exactly once with an atomic exchange (nothing duplicated), and free
the mbuf. The test then checks every mark is set (nothing lost).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free

from pypdk.ring.ring cimport pd_ring, ring_enqueue_burst, ring_dequeue_burst
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free_bulk
from pypdk.eal.lcore cimport lcore_function_new

cdef extern from *:
    """
    static inline uint8_t st_xchg_u8(uint8_t *p, uint8_t v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
    static inline uint64_t st_add_u64(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }
    static inline uint64_t st_load_u64(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    """
    uint8_t st_xchg_u8(uint8_t *p, uint8_t v) nogil
    uint64_t st_add_u64(uint64_t *p, uint64_t v) nogil
    uint64_t st_load_u64(uint64_t *p) nogil

DEF MAXP = 8

ctypedef struct shared_t:
    pd_ring *ring
    pd_mempool *pool
    uint64_t per_producer
    uint32_t nprod
    uint64_t total
    uint64_t consumed
    uint8_t *seen              # nprod * per_producer marks
    uint64_t duplicates
    uint64_t out_of_order
    uint64_t alloc_retries

ctypedef struct worker_t:
    shared_t *sh
    uint32_t id
    uint64_t last[MAXP]        # consumer: last sequence seen per producer (+1)


cdef int producer(void *p) noexcept nogil:
    cdef worker_t *w = <worker_t *>p
    cdef shared_t *sh = w.sh
    cdef pd_mbuf *burst[32]
    cdef uint64_t seq = 0
    cdef uint32_t n, i, done
    while seq < sh.per_producer:
        n = 32 if sh.per_producer - seq >= 32 else <uint32_t>(sh.per_producer - seq)
        if pktmbuf_alloc_bulk(sh.pool, burst, n) != 0:
            st_add_u64(&sh.alloc_retries, 1)
            continue
        for i in range(n):
            burst[i].udata64 = (<uint64_t>w.id << 48) | (seq + i)
        done = 0
        while done < n:
            done += ring_enqueue_burst(sh.ring, <void **>&burst[done], n - done)
        seq += n
    return 0


cdef int consumer(void *p) noexcept nogil:
    cdef worker_t *w = <worker_t *>p
    cdef shared_t *sh = w.sh
    cdef pd_mbuf *burst[32]
    cdef uint32_t n, i, prod
    cdef uint64_t seq
    while st_load_u64(&sh.consumed) < sh.total:
        n = ring_dequeue_burst(sh.ring, <void **>burst, 32)
        if n == 0:
            continue
        for i in range(n):
            prod = <uint32_t>(burst[i].udata64 >> 48)
            seq = burst[i].udata64 & <uint64_t>0xffffffffffff
            if seq + 1 <= w.last[prod]:
                st_add_u64(&sh.out_of_order, 1)
            w.last[prod] = seq + 1
            if st_xchg_u8(&sh.seen[prod * sh.per_producer + seq], 1) != 0:
                st_add_u64(&sh.duplicates, 1)
        pktmbuf_free_bulk(burst, n)
        st_add_u64(&sh.consumed, n)
    return 0


cdef class Stress:
    cdef shared_t sh
    cdef worker_t workers[16]

    def __dealloc__(self):
        free(self.sh.seen)


def run(eal, uintptr_t ring_addr, uintptr_t pool_addr, producers, consumers,
        uint64_t per_producer):
    """Producers and consumers on the given worker lcores; returns the checks."""
    cdef Stress st = Stress()
    cdef uint64_t i, missing = 0
    cdef int k = 0
    if len(producers) > MAXP or len(producers) + len(consumers) > 16:
        raise ValueError("too many lcores")
    st.sh.ring = <pd_ring *>ring_addr
    st.sh.pool = <pd_mempool *>pool_addr
    st.sh.per_producer = per_producer
    st.sh.nprod = len(producers)
    st.sh.total = per_producer * len(producers)
    st.sh.seen = <uint8_t *>calloc(st.sh.total, 1)
    for pid, lc in enumerate(producers):
        st.workers[k].sh = &st.sh
        st.workers[k].id = pid
        eal.remote_launch(lcore_function_new(producer, &st.workers[k], st), lc)
        k += 1
    for lc in consumers:
        st.workers[k].sh = &st.sh
        eal.remote_launch(lcore_function_new(consumer, &st.workers[k], st), lc)
        k += 1
    eal.mp_wait_lcore()
    for i in range(st.sh.total):
        if st.sh.seen[i] == 0:
            missing += 1
    return {"consumed": st.sh.consumed, "total": st.sh.total, "missing": missing,
            "duplicates": st.sh.duplicates, "out_of_order": st.sh.out_of_order}
