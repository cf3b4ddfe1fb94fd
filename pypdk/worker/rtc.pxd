# Run-to-completion: an lcore polls its hops (rx port/queue -> tx port/queue),
# runs each burst through a C hook and transmits it (the C-level contract).
#
# The loop is the skeleton's (lcore_loop.pxd: lcore_loop, hop_burst, the
# hook contract); a round is one hop_burst per hop. `rtc_round` and
# `rtc_loop` are inline so an app compiles them around its own hook (a
# constant function pointer the C compiler inlines): see apps/l2fwd/fwd.pyx.

from libc.stdint cimport uint16_t, uint32_t, int32_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.worker.lcore_loop cimport (pd_lcore, pd_hop, burst_hook_t, lcore_round_t, lcore_loop,
                                      hop_burst, LcoreWorker, BurstHook, PD_LCORE_MAX_HOPS,
                                      PD_MAX_BURST)

ctypedef struct pd_rtc_conf:
    pd_lcore lc             # the loop state (quit, idle policy, per-round callback, counters)
    uint16_t nb_hops
    uint16_t burst
    burst_hook_t hook       # NULL: forward as is
    void *hook_ctx
    pd_hop hops[PD_LCORE_MAX_HOPS]


cdef inline int32_t rtc_round(pd_rtc_conf *c, burst_hook_t hook, void *ctx) noexcept nogil:
    """One round: a burst from every hop; the packets received."""
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    cdef uint16_t h
    cdef int32_t got = 0
    for h in range(c.nb_hops):
        got += hop_burst(&c.lc, &c.hops[h], pkts, c.burst, hook, ctx)
    return got


cdef inline int rtc_loop(pd_rtc_conf *c, lcore_round_t round) noexcept nogil:
    """The skeleton's loop over `round` (an app's rtc_round around its hook); 0 once quit."""
    return lcore_loop(&c.lc, round, c, c.lc.on_round, c.lc.on_round_ctx)


# What an lcore runs by default: rtc_round with the conf's own hook.
cdef int rtc_main(void *arg) noexcept nogil


cdef class RtcWorker(LcoreWorker):
    cdef pd_rtc_conf *c
    cdef readonly BurstHook hook
