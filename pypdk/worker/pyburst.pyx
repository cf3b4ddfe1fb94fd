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
from libc.stdint cimport uint16_t, uint32_t, int32_t, uint64_t
from libc.stdlib cimport free

import logging

from pypdk.mempool.mbuf cimport pd_mbuf, Mbuf, pktmbuf_free_bulk
from pypdk.pmd.ethdev cimport fp_tx_burst
from pypdk.worker.lcore_loop cimport (pd_lcore, pd_hop, LcoreWorker, lcore_loop, lcore_rx,
                                      conf_alloc, fill_hops, hops_stats, PD_LCORE_MAX_HOPS)
from pd_compiler cimport pd_unlikely
from pd_config cimport PD_MAX_BURST, PD_BURST

from pypdk.errors import UsageError
from pypdk.worker.lcore_loop import check_burst, check_yield_after

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
    pd_lcore lc             # the loop state (quit, idle policy, counters)
    uint16_t nb_hops
    uint16_t burst
    uint64_t py_errors
    void *owner             # the PyBurstWorker; kept alive by the LcoreFunction
    pd_hop hops[PD_LCORE_MAX_HOPS]


cdef int32_t _pyburst_round(void *arg) noexcept nogil:
    cdef pd_pyburst_conf *c = <pd_pyburst_conf *>arg
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    cdef uint16_t nb_rx, h
    cdef int32_t got = 0
    cdef pd_hop *hop
    for h in range(c.nb_hops):
        hop = &c.hops[h]
        nb_rx = lcore_rx(&c.lc, hop.rx_fp, hop.rx_queue, pkts, c.burst)
        if nb_rx == 0:
            continue
        got += nb_rx
        hop.stats.rx += nb_rx
        with gil:
            (<PyBurstWorker>c.owner)._burst(hop, pkts, nb_rx)
    return got


cdef int _pyburst_main(void *arg) noexcept nogil:
    cdef pd_pyburst_conf *c = <pd_pyburst_conf *>arg
    cdef PyGILState_STATE gstate = pd_gil_ensure()    # this thread's state, for the whole loop
    cdef PyThreadState *tstate = pd_save_thread()     # ... without holding the GIL
    lcore_loop(&c.lc, _pyburst_round, c, c.lc.on_round, c.lc.on_round_ctx)
    pd_restore_thread(tstate)
    pd_gil_release(gstate)
    return 0


cdef class PyBurstWorker(LcoreWorker):
    """What one lcore runs when a Python function processes each burst.

    Args:
        hops: list of (rx_port, rx_queue, tx_port, tx_queue), as for RtcWorker.
        fn: called with a list of Mbuf per burst; returns the Mbufs to send.
        burst: packets per rx burst (1..64).
        yield_after: see RtcWorker (0: spin).
    """
    cdef pd_pyburst_conf *c
    cdef readonly object fn

    def __cinit__(self, *a, **kw):
        self.c = <pd_pyburst_conf *>conf_alloc(sizeof(pd_pyburst_conf))
        self.c.owner = <void *>self
        self.set_conf(&self.c.lc, _pyburst_main, self.c)

    def __init__(self, hops, fn, burst=PD_BURST, yield_after=0):
        if not callable(fn):
            raise UsageError(f"{fn!r} is not callable", "give a function fn(mbufs) -> mbufs to send")
        check_burst(burst)
        check_yield_after(yield_after)
        self.fn = fn
        self.hops = fill_hops(self.c.hops, hops)
        self.c.nb_hops = len(self.hops)
        self.c.burst = burst
        self.c.lc.yield_after = yield_after

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
                self.c.lc.stats.app_dropped += 1

    cdef uint64_t _send(self, pd_hop *hop, pd_mbuf **out, uint16_t k) noexcept:
        cdef uint16_t sent
        with nogil:
            sent = fp_tx_burst(hop.tx_fp, hop.tx_queue, out, k)
            if pd_unlikely(sent < k):
                pktmbuf_free_bulk(&out[sent], k - sent)
        hop.stats.tx += sent
        self.c.lc.stats.tx += sent
        hop.stats.tx_dropped += k - sent
        self.c.lc.stats.tx_dropped += k - sent
        return k - sent

    def extra_stats(self):
        """py_errors: bursts whose function raised, and returned objects that were not live mbufs."""
        return {"py_errors": self.c.py_errors}

    def hop_stats(self):
        """Per hop: its ports/queues and its counters (HOP_STAT_NAMES)."""
        return hops_stats(self.c.hops, self.hops)

    def __repr__(self):
        return f"<PyBurstWorker hops={self.hops} fn={self.fn!r}>"
