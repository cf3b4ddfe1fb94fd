# Run-to-completion: an lcore polls its hops (rx port/queue -> tx port/queue),
# runs each burst through a C hook and transmits it (the C-level contract).
#
# The pieces every processing model shares live here too, so pipeline.pyx
# and the apps cimport one file:
#   pd_hop / pd_hop_stats   one rx queue -> one tx queue and its counters
#   pd_lcore_stats          one lcore's loop counters
#   burst_hook_t            the per-burst C hook, and BurstHook its owner
#
# Counters are written only by the lcore that runs the loop (plain stores,
# no atomics); the main lcore reads them whenever it likes (an aligned
# 64-bit load cannot tear on the targets we build for). Only pypdk/stats.py
# sums them.
#
# The hook contract: `hook(ctx, hop, pkts, n)` processes pkts[0:n] in place
# and returns k: pkts[0:k] are transmitted, pkts[k:n] are freed by the loop
# (and counted as app_dropped). A hook that takes an mbuf over (queues it
# somewhere, frees it itself) sets its slot to NULL: freeing NULL is a no-op.
# It runs without the GIL and must not allocate or block.

from libc.stdint cimport uint16_t, uint32_t, uint64_t
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_free_bulk
from pypdk.pmd.ethdev cimport pd_eth_fp, fp_rx_burst, fp_tx_burst
from pypdk.eal.lcore cimport lcore_function_t

cdef extern from "pd_config.h":
    enum:
        PD_BURST
        PD_MAX_BURST
        PD_MAX_ETHPORTS

cdef extern from "pd_compiler.h":
    bint pd_likely(bint) nogil
    bint pd_unlikely(bint) nogil

cdef extern from "pd_atomic.h":
    int pd_load_relaxed_int(const int *p) nogil
    void pd_store_release_int(int *p, int v) nogil

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef enum:
    PD_RTC_MAX_HOPS = 64        # rx queues one lcore polls
    PD_PORT_NONE = 0xffff       # "no port" in a hop (pipeline worker stages)

ctypedef struct pd_hop_stats:
    uint64_t rx             # packets received on the hop's rx queue
    uint64_t tx             # packets the tx queue took
    uint64_t tx_dropped     # the tx queue (or next ring) refused them: freed
    uint64_t app_dropped    # the hook dropped them: freed

ctypedef struct pd_hop:
    pd_eth_fp *rx_fp
    pd_eth_fp *tx_fp
    uint16_t rx_port
    uint16_t rx_queue
    uint16_t tx_port
    uint16_t tx_queue
    pd_hop_stats stats

ctypedef struct pd_lcore_stats:
    uint64_t polls          # rx bursts (or ring dequeues) attempted
    uint64_t empty_polls    # ... that brought nothing
    uint64_t rx             # packets in
    uint64_t tx             # packets out (taken by a port or a ring)
    uint64_t tx_dropped     # refused by a tx queue: freed
    uint64_t app_dropped    # dropped by the hook: freed
    uint64_t ring_full      # pipeline back-pressure: the next ring was full, freed
    uint64_t no_route       # pipeline tx stage: m.port has no route, freed
    uint64_t idle_yields    # sched_yield calls after yield_after empty rounds

ctypedef uint16_t (*burst_hook_t)(void *ctx, pd_hop *hop, pd_mbuf **pkts,
                                  uint16_t n) noexcept nogil

ctypedef struct pd_rtc_conf:
    int quit                # set by the main lcore (release), polled relaxed
    uint16_t nb_hops
    uint16_t burst
    uint32_t yield_after    # 0: spin forever; else sched_yield after that many empty rounds
    burst_hook_t hook       # NULL: forward as is
    void *hook_ctx
    pd_lcore_stats stats
    pd_hop hops[PD_RTC_MAX_HOPS]


cdef inline void hop_free_tail(pd_mbuf **pkts, uint16_t keep, uint16_t n) noexcept nogil:
    if keep < n:
        pktmbuf_free_bulk(&pkts[keep], n - keep)


cdef inline int rtc_loop(pd_rtc_conf *c, burst_hook_t hook, void *ctx) noexcept nogil:
    """The run-to-completion loop; returns 0 once c.quit is set.

    Inline so an app can compile it around its own hook (a constant function
    pointer the C compiler inlines): see apps/l2fwd/fwd.pyx.
    """
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    cdef uint16_t nb_rx, nb_keep, nb_tx, h
    cdef uint16_t burst = c.burst
    cdef uint32_t idle = 0
    cdef bint got
    cdef pd_hop *hop
    while not pd_load_relaxed_int(&c.quit):
        got = False
        for h in range(c.nb_hops):
            hop = &c.hops[h]
            nb_rx = fp_rx_burst(hop.rx_fp, hop.rx_queue, pkts, burst)
            c.stats.polls += 1
            if nb_rx == 0:
                c.stats.empty_polls += 1
                continue
            got = True
            hop.stats.rx += nb_rx
            c.stats.rx += nb_rx
            nb_keep = nb_rx
            if hook != NULL:
                nb_keep = hook(ctx, hop, pkts, nb_rx)
                if pd_unlikely(nb_keep < nb_rx):
                    hop_free_tail(pkts, nb_keep, nb_rx)
                    hop.stats.app_dropped += nb_rx - nb_keep
                    c.stats.app_dropped += nb_rx - nb_keep
            if nb_keep == 0:
                continue
            nb_tx = fp_tx_burst(hop.tx_fp, hop.tx_queue, pkts, nb_keep)
            hop.stats.tx += nb_tx
            c.stats.tx += nb_tx
            if pd_unlikely(nb_tx < nb_keep):
                # tx took nb_tx; the rest is ours to free (we drop rather than
                # retry: a full tx queue means the link is the bottleneck).
                hop_free_tail(pkts, nb_tx, nb_keep)
                hop.stats.tx_dropped += nb_keep - nb_tx
                c.stats.tx_dropped += nb_keep - nb_tx
        if got:
            idle = 0
        elif c.yield_after:
            idle += 1
            if idle >= c.yield_after:
                # Lcores sharing a cpu (--lcores '(1-3)@1') make progress.
                sched_yield()
                c.stats.idle_yields += 1
                idle = 0
    return 0


# What an lcore runs by default: rtc_loop with the conf's own hook.
cdef int rtc_main(void *arg) noexcept nogil


cdef class BurstHook:
    """A C hook and its context, passed to the workers from Python."""
    cdef burst_hook_t fn
    cdef void *ctx
    cdef object keep
    cdef readonly str name

# The factory Cython modules use: burst_hook_new(my_hook, &self.ctx, self, "my_hook")
cdef BurstHook burst_hook_new(burst_hook_t fn, void *ctx, object keep, str name)


cdef class RtcWorker:
    cdef pd_rtc_conf *c
    cdef lcore_function_t main
    cdef readonly BurstHook hook
    cdef readonly list hops
    cdef object _keep_main
    # Run `main` (an app's compiled loop around rtc_loop) instead of rtc_main;
    # `keep` owns whatever main's code needs alive.
    cdef void set_main(self, lcore_function_t main, object keep)


# Check (rx port, rx queue, tx port, tx queue) hops (ports or port ids) and
# fill `out` (PD_RTC_MAX_HOPS of them); returns the hops as port-id tuples.
# UsageError for no hops, too many, or a port/queue that does not exist.
cdef list fill_hops(pd_hop *out, hops)
