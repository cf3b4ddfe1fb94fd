"""Measurement loops for `python -m pypdk.perf` and benchmarks/ (nogil, in Cython).

Each kernel runs its loop entirely without the GIL and times itself with
CLOCK_MONOTONIC around the whole loop, so Python's overhead is not in the
figure. They return nanoseconds per object (or the raw counts for the
two-lcore cases). Like DPDK's ring_perf/mempool_perf autotests, each case
moves `bulk` objects per call, many times over.
"""
from libc.stdint cimport uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, free

from pypdk.ring.ring cimport (pd_ring, ring_sp_enqueue_bulk, ring_mp_enqueue_bulk,
                              ring_sc_dequeue_bulk, ring_mc_dequeue_bulk,
                              ring_sp_enqueue_burst, ring_mp_enqueue_burst,
                              ring_sc_dequeue_burst, ring_mc_dequeue_burst, ring_count)
from pypdk.mempool.mempool cimport (pd_mempool, pd_mempool_cache, mempool_get_bulk_cache,
                                    mempool_put_bulk_cache, mempool_default_cache)
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free_bulk

from pypdk.eal.timer cimport now_ns
from pd_atomic cimport (pd_load_acquire_int, pd_store_release_int, pd_load_relaxed_u64,
                        pd_store_relaxed_u64)


def ring_enq_deq(uintptr_t ring_addr, uint32_t bulk, uint64_t iterations,
                 bint single, bint burst):
    """One thread: enqueue `bulk` then dequeue `bulk`, `iterations` times.

    Returns ns per object (an enqueue plus a dequeue of it)."""
    cdef pd_ring *r = <pd_ring *>ring_addr
    cdef void *objs[512]
    cdef uint64_t i, t0, t1
    cdef uint32_t k
    if bulk > 512:
        raise ValueError("bulk <= 512")
    for k in range(bulk):
        objs[k] = <void *><uintptr_t>(k + 1)
    with nogil:
        t0 = now_ns()
        if single and not burst:
            for i in range(iterations):
                ring_sp_enqueue_bulk(r, objs, bulk)
                ring_sc_dequeue_bulk(r, objs, bulk)
        elif single:
            for i in range(iterations):
                ring_sp_enqueue_burst(r, objs, bulk)
                ring_sc_dequeue_burst(r, objs, bulk)
        elif not burst:
            for i in range(iterations):
                ring_mp_enqueue_bulk(r, objs, bulk)
                ring_mc_dequeue_bulk(r, objs, bulk)
        else:
            for i in range(iterations):
                ring_mp_enqueue_burst(r, objs, bulk)
                ring_mc_dequeue_burst(r, objs, bulk)
        t1 = now_ns()
    return (t1 - t0) / <double>(iterations * bulk)


def mempool_get_put(uintptr_t mp_addr, uint32_t bulk, uint64_t iterations, bint use_cache):
    """Get `bulk` objects then put them back, `iterations` times; ns per object.

    use_cache=False bypasses this lcore's cache (straight to the common ring)."""
    cdef pd_mempool *mp = <pd_mempool *>mp_addr
    cdef pd_mempool_cache *c
    cdef void *objs[512]
    cdef uint64_t i, t0, t1, failed = 0
    if bulk > 512:
        raise ValueError("bulk <= 512")
    with nogil:
        c = mempool_default_cache(mp) if use_cache else NULL
        t0 = now_ns()
        for i in range(iterations):
            if mempool_get_bulk_cache(mp, objs, bulk, c) != 0:
                failed += 1
                continue
            mempool_put_bulk_cache(mp, objs, bulk, c)
        t1 = now_ns()
    if failed:
        raise RuntimeError(f"pool ran dry {failed} times")
    return (t1 - t0) / <double>(iterations * bulk)


def mbuf_alloc_free(uintptr_t mp_addr, uint32_t bulk, uint64_t iterations):
    """pktmbuf_alloc_bulk + pktmbuf_free_bulk of `bulk` mbufs; ns per mbuf."""
    cdef pd_mempool *mp = <pd_mempool *>mp_addr
    cdef pd_mbuf *mbufs[512]
    cdef uint64_t i, t0, t1, failed = 0
    if bulk > 512:
        raise ValueError("bulk <= 512")
    with nogil:
        t0 = now_ns()
        for i in range(iterations):
            if pktmbuf_alloc_bulk(mp, mbufs, bulk) != 0:
                failed += 1
                continue
            pktmbuf_free_bulk(mbufs, bulk)
        t1 = now_ns()
    if failed:
        raise RuntimeError(f"pool ran dry {failed} times")
    return (t1 - t0) / <double>(iterations * bulk)


# ---- two lcores through one ring ---------------------------------------------

from pypdk.eal.lcore cimport LcoreFunction, lcore_function_new

ctypedef struct _producer_arg:
    pd_ring *r
    uint32_t bulk
    int single
    int go                  # released by the consumer when it is ready
    uint64_t total


cdef int _producer(void *p) noexcept nogil:
    cdef _producer_arg *a = <_producer_arg *>p
    cdef void *objs[512]
    cdef uint64_t sent = 0
    cdef uint32_t k, n
    for k in range(a.bulk):
        objs[k] = <void *><uintptr_t>(k + 1)
    # Acquire: pairs with the consumer's release of `go`.
    while not pd_load_acquire_int(&a.go):
        pass
    while sent < a.total:
        n = a.bulk if a.total - sent >= a.bulk else <uint32_t>(a.total - sent)
        if a.single:
            sent += ring_sp_enqueue_burst(a.r, objs, n)
        else:
            sent += ring_mp_enqueue_burst(a.r, objs, n)
    return 0


cdef class _TwoLcore:
    cdef _producer_arg arg


def ring_two_lcores(eal, unsigned producer_lcore, uintptr_t ring_addr, uint32_t bulk,
                    uint64_t total, bint single):
    """A worker lcore enqueues `total` objects in bursts of `bulk`; this thread
    (the main lcore) dequeues them. ns per object moved between the two cpus."""
    cdef _TwoLcore st = _TwoLcore()
    cdef void *objs[512]
    cdef uint64_t got = 0, t0, t1
    if bulk > 512:
        raise ValueError("bulk <= 512")
    st.arg.r = <pd_ring *>ring_addr
    st.arg.bulk = bulk
    st.arg.single = single
    st.arg.total = total
    eal.remote_launch(lcore_function_new(_producer, &st.arg, st), producer_lcore)
    with nogil:
        t0 = now_ns()
        # Release: pairs with the producer's acquire load of `go`.
        pd_store_release_int(&st.arg.go, 1)
        while got < total:
            if single:
                got += ring_sc_dequeue_burst(st.arg.r, objs, bulk)
            else:
                got += ring_mc_dequeue_burst(st.arg.r, objs, bulk)
        t1 = now_ns()
    eal.wait_lcore(producer_lcore)
    return (t1 - t0) / <double>total
