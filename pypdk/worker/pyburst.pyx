"""A Python function per burst: the prototyping model (slow path).

The lcore polls its hops without the GIL like `RtcWorker`; when a burst
arrives it takes the GIL, wraps the packets as `Mbuf`s (zero-copy) and calls

    fn(mbufs: list[Mbuf]) -> iterable of Mbuf to send, or None

Whatever fn returns is transmitted on the hop's tx queue (inputs, modified
or not, or new mbufs it allocated); input mbufs it neither returned nor
freed are freed and counted as app_dropped. An exception in fn is a dropped
burst, not a dead lcore: it is counted (`py_errors`), the first traceback is
logged on the "pypdk.worker" logger, and the loop goes on.

Costs a GIL round trip and a list per burst: use it to try an idea, then
move the function to a nogil `burst_hook_t` (rtc.pxd). Idle polling does not
take the GIL. Several such lcores run their Python one at a time (the GIL).
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memset

import logging

from pypdk.mempool.mbuf cimport pd_mbuf, Mbuf, pktmbuf_free_bulk
from pypdk.pmd.ethdev cimport fp_rx_burst, fp_tx_burst
from pypdk.eal.lcore cimport lcore_function_new
from pypdk.worker.rtc cimport (pd_hop, pd_lcore_stats, PD_RTC_MAX_HOPS, PD_MAX_BURST, PD_BURST,
                               pd_unlikely, pd_load_relaxed_int, pd_store_release_int,
                               sched_yield, fill_hops)

from pypdk.errors import UsageError
from pypdk.worker.rtc import LCORE_STAT_NAMES, HOP_STAT_NAMES, check_burst, check_yield_after

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)

log = logging.getLogger("pypdk.worker")

# The lcore thread is a native thread with no Python thread state: each
# `with gil` would create one and delete it again (PyGILState_Ensure /
# Release at a zero count), and Python 3.11 maps and unmaps a frame-stack
# chunk for each new state: an mmap, a munmap and page faults per burst
# (this model ran at ~1.4 Mpps). The loop keeps one thread state for its
# whole run instead (Ensure once, then release the GIL with SaveThread), so a
# burst's `with gil` only takes and drops the GIL, and thread-locals the
# burst function sets survive to the next burst.
cdef extern from "Python.h":
    ctypedef struct PyThreadState:
        pass
    ctypedef int PyGILState_STATE
    PyGILState_STATE pd_gil_ensure "PyGILState_Ensure"() nogil
    void pd_gil_release "PyGILState_Release"(PyGILState_STATE) nogil
    PyThreadState *pd_save_thread "PyEval_SaveThread"() nogil
    void pd_restore_thread "PyEval_RestoreThread"(PyThreadState *) nogil

ctypedef struct pd_pyburst_conf:
    int quit
    uint16_t nb_hops
    uint16_t burst
    uint32_t yield_after
    uint64_t py_errors
    void *owner             # the PyBurstWorker; kept alive by the LcoreFunction
    pd_lcore_stats stats
    pd_hop hops[PD_RTC_MAX_HOPS]


cdef int _pyburst_main(void *arg) noexcept nogil:
    cdef pd_pyburst_conf *c = <pd_pyburst_conf *>arg
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    cdef uint16_t nb_rx, h
    cdef uint32_t idle = 0
    cdef bint got
    cdef pd_hop *hop
    cdef PyGILState_STATE gstate = pd_gil_ensure()    # this thread's state, for the whole loop
    cdef PyThreadState *tstate = pd_save_thread()     # ... without holding the GIL
    while not pd_load_relaxed_int(&c.quit):
        got = False
        for h in range(c.nb_hops):
            hop = &c.hops[h]
            nb_rx = fp_rx_burst(hop.rx_fp, hop.rx_queue, pkts, c.burst)
            c.stats.polls += 1
            if nb_rx == 0:
                c.stats.empty_polls += 1
                continue
            got = True
            hop.stats.rx += nb_rx
            c.stats.rx += nb_rx
            with gil:
                (<PyBurstWorker>c.owner)._burst(hop, pkts, nb_rx)
        if got:
            idle = 0
        elif c.yield_after:
            idle += 1
            if idle >= c.yield_after:
                sched_yield()
                c.stats.idle_yields += 1
                idle = 0
    pd_restore_thread(tstate)
    pd_gil_release(gstate)
    return 0


cdef class PyBurstWorker:
    """What one lcore runs when a Python function processes each burst.

    Args:
        hops: list of (rx_port, rx_queue, tx_port, tx_queue), as for RtcWorker.
        fn: called with a list of Mbuf per burst; returns the Mbufs to send.
        burst: packets per rx burst (1..64).
        yield_after: see RtcWorker (0: spin).
    """
    cdef pd_pyburst_conf *c
    cdef readonly object fn
    cdef readonly list hops

    def __cinit__(self, *a, **kw):
        cdef void *mem = NULL
        if posix_memalign(&mem, 64, sizeof(pd_pyburst_conf)) != 0:
            raise MemoryError()
        memset(mem, 0, sizeof(pd_pyburst_conf))
        self.c = <pd_pyburst_conf *>mem
        self.c.owner = <void *>self

    def __init__(self, hops, fn, burst=PD_BURST, yield_after=0):
        if not callable(fn):
            raise UsageError(f"{fn!r} is not callable", "give a function fn(mbufs) -> mbufs to send")
        check_burst(burst)
        check_yield_after(yield_after)
        self.fn = fn
        self.hops = fill_hops(self.c.hops, hops)
        self.c.nb_hops = len(self.hops)
        self.c.burst = burst
        self.c.yield_after = yield_after

    def __dealloc__(self):
        free(self.c)
        self.c = NULL

    cdef void _burst(self, pd_hop *hop, pd_mbuf **pkts, uint16_t n) noexcept:
        """Call fn on one burst (GIL held), send what it returns, free the rest."""
        cdef Mbuf mb
        cdef pd_mbuf *out[PD_MAX_BURST]
        cdef uint16_t k = 0, sent
        cdef uint64_t dropped = 0
        batch = [Mbuf.wrap(pkts[i]) for i in range(n)]
        try:
            result = self.fn(batch)
            result = [] if result is None else list(result)
        except BaseException as e:
            self.c.py_errors += 1
            if self.c.py_errors == 1:
                log.error("pypdk.worker: the burst function %r raised (burst dropped; "
                          "later errors are only counted as py_errors)", self.fn, exc_info=e)
            result = []
        for obj in result:
            if not isinstance(obj, Mbuf) or (<Mbuf>obj).m == NULL:
                # Not a live mbuf (freed, or returned twice): nothing to send.
                self.c.py_errors += 1
                continue
            mb = <Mbuf>obj
            out[k] = mb.m
            mb.m = NULL             # the tx queue (or the free below) owns it now
            k += 1
            if k == PD_MAX_BURST:
                dropped += self._send(hop, out, k)
                k = 0
        if k:
            dropped += self._send(hop, out, k)
        for mb in batch:
            if mb.m != NULL:        # neither sent nor freed by fn
                pktmbuf_free_bulk(&mb.m, 1)
                mb.m = NULL
                hop.stats.app_dropped += 1
                self.c.stats.app_dropped += 1

    cdef uint64_t _send(self, pd_hop *hop, pd_mbuf **out, uint16_t k) noexcept:
        cdef uint16_t sent
        with nogil:
            sent = fp_tx_burst(hop.tx_fp, hop.tx_queue, out, k)
            if pd_unlikely(sent < k):
                pktmbuf_free_bulk(&out[sent], k - sent)
        hop.stats.tx += sent
        self.c.stats.tx += sent
        hop.stats.tx_dropped += k - sent
        self.c.stats.tx_dropped += k - sent
        return k - sent

    def lcore_function(self):
        """The LcoreFunction to launch (clears the quit flag)."""
        pd_store_release_int(&self.c.quit, 0)
        return lcore_function_new(_pyburst_main, self.c, self)

    def stop(self):
        pd_store_release_int(&self.c.quit, 1)

    def stats(self):
        """The lcore's loop counters (rtc.LCORE_STAT_NAMES) plus py_errors."""
        cdef dict d = self.c.stats      # struct -> dict (a copy)
        out = {k: d[k] for k in LCORE_STAT_NAMES}
        out["py_errors"] = self.c.py_errors
        return out

    def hop_stats(self):
        out = []
        for i in range(self.c.nb_hops):
            s = <dict>self.c.hops[i].stats
            d = dict(zip(("rx_port", "rx_queue", "tx_port", "tx_queue"), self.hops[i]))
            d.update({k: s[k] for k in HOP_STAT_NAMES})
            out.append(d)
        return out

    def port_stats(self):
        from pypdk import stats
        return stats.port_counters_from_hops(self.hop_stats())

    def __repr__(self):
        return f"<PyBurstWorker hops={self.hops} fn={self.fn!r}>"
