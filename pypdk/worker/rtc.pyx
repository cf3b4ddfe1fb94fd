"""Run-to-completion: one lcore polls its queues, processes and transmits each burst.

The model DPDK's l2fwd and testpmd use. An `RtcWorker` is the C struct one
lcore runs (`pd_rtc_conf`): a list of hops, each an rx queue and the tx queue
its packets leave by, a burst size, an optional C hook run on every burst
and the lcore's loop state. Its loop is the skeleton's (`lcore_loop`,
lcore_loop.pxd) with `rtc_round` as the round: allocation-free, the burst on
the stack, no Python; the quit flag is the only thing another thread writes.

    w = RtcWorker([(0, 0, 1, 0), (1, 0, 0, 0)], hook=macswap())
    eal.remote_launch(w.lcore_function(), 1)
    ...
    w.stop(); eal.wait_lcore(1)
    w.stats()        # {'polls': ..., 'rx': ..., 'tx': ..., 'tx_dropped': ...}

An app with its own per-packet code writes a `burst_hook_t` in Cython and
either hands it over as a `BurstHook` (one indirect call per burst), or
compiles `rtc_round` around it in its own module, runs `rtc_loop` over that
round and installs the result with `RtcWorker.set_main` (the compiler then
inlines the hook; l2fwd does this). A hook that takes packets over (queues
or sends them itself) returns `k | PD_HOOK_TOOK`: they count as `taken`,
not `app_dropped`.

Each hop's rx queue must be polled by one lcore only and each tx queue fed by
one lcore only: drivers' queues are single-threaded, as in DPDK.
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy

from pd_compiler cimport pd_unlikely
from pd_config cimport PD_BURST
from pypdk.worker.lcore_loop cimport burst_hook_new, conf_alloc, fill_hops, hops_stats

from pypdk.worker.lcore_loop import (LCORE_STAT_NAMES, HOP_STAT_NAMES, MAX_HOPS, MAX_BURST,
                                     DEFAULT_BURST, check_burst, check_yield_after, check_queue,
                                     _port_of)


cdef inline int32_t _rtc_round(void *arg) noexcept nogil:
    cdef pd_rtc_conf *c = <pd_rtc_conf *>arg
    return rtc_round(c, c.hook, c.hook_ctx)


cdef int rtc_main(void *arg) noexcept nogil:
    return rtc_loop(<pd_rtc_conf *>arg, _rtc_round)


# ---- built-in hooks ----------------------------------------------------------------------

cdef uint16_t _macswap(void *ctx, pd_hop *hop, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    # testpmd's macswap: send each frame back with source and destination
    # exchanged. A frame shorter than the two addresses is malformed: it goes
    # to the tail (freed and counted by the loop).
    cdef uint16_t i, keep = 0
    cdef unsigned char tmp[6]
    cdef unsigned char *eth
    cdef pd_mbuf *m
    for i in range(n):
        m = pkts[i]
        if pd_unlikely(m.data_len < 12):
            continue
        eth = <unsigned char *>m.buf_addr + m.data_off
        memcpy(tmp, eth, 6)
        memcpy(eth, eth + 6, 6)
        memcpy(eth + 6, tmp, 6)
        pkts[i] = pkts[keep]
        pkts[keep] = m
        keep += 1
    return keep


cdef uint16_t _drop(void *ctx, pd_hop *hop, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    return 0


def macswap():
    """A hook that swaps each frame's source and destination MAC (testpmd's macswap)."""
    return burst_hook_new(_macswap, NULL, None, "macswap")


def drop():
    """A hook that drops every packet (a sink; counted as app_dropped)."""
    return burst_hook_new(_drop, NULL, None, "drop")


# ---- Python owner ------------------------------------------------------------------------

cdef class RtcWorker(LcoreWorker):
    """What one lcore runs in the run-to-completion model.

    Args:
        hops: list of (rx_port, rx_queue, tx_port, tx_queue); ports are ids
            or EthDevs, already configured (queues exist). At most 64.
        burst: packets per rx burst (1..64, default 32).
        hook: a BurstHook run on every burst, or None to forward as is.
        yield_after: 0 (default) to spin; n > 0 to sched_yield() after n
            rounds with nothing received (for lcores sharing a cpu).

    Raises:
        UsageError: no hops, too many, a port or queue that does not exist,
            a bad burst.
    """

    def __cinit__(self, *a, **kw):
        self.c = <pd_rtc_conf *>conf_alloc(sizeof(pd_rtc_conf))
        self.set_conf(&self.c.lc, rtc_main, self.c)

    def __init__(self, hops, burst=PD_BURST, BurstHook hook=None, yield_after=0):
        check_burst(burst)
        check_yield_after(yield_after)
        self.hops = fill_hops(self.c.hops, hops)
        self.c.nb_hops = len(self.hops)
        self.c.burst = burst
        self.c.lc.yield_after = yield_after
        self.hook = hook
        if hook is not None:
            self.c.hook = hook.fn
            self.c.hook_ctx = hook.ctx

    def __dealloc__(self):
        free(self.c)
        self.c = NULL

    @property
    def burst(self):
        return self.c.burst

    def hop_stats(self):
        """Per hop: its ports/queues and its counters (HOP_STAT_NAMES)."""
        return hops_stats(self.c.hops, self.hops)

    def __repr__(self):
        hook = self.hook.name if self.hook is not None else "none"
        return f"<RtcWorker hops={self.hops} burst={self.c.burst} hook={hook}>"
