# The lcore loop skeleton: what every worker lcore runs, whatever it does
# with the packets (the C-level contract of pypdk.worker).
#
#   pd_lcore         the loop's state: the quit flag, the idle policy's
#                    setting, the per-round callback and the counters
#   pd_lcore_stats   one lcore's loop counters (one set of names, LCORE_STAT_NAMES)
#   pd_hop           one rx queue -> one tx queue, with its own counters
#   burst_hook_t     the per-burst C hook (BurstHook owns one)
#   lcore_loop       the loop: rounds until quit, the idle policy after
#                    each round, then the per-round callback
#   lcore_rx         one rx burst, counted
#   hop_burst        one hop: rx burst, hook, tx burst, frees and counts
#   lcore_idle       the idle policy (sched_yield after yield_after empty rounds)
#
# Every worker's conf starts with its pd_lcore, so `<pd_lcore *>conf` is the
# loop state and the Python owner (LcoreWorker) reaches quit and counters
# the same way for every model.
#
# Counters are written only by the lcore that runs the loop (plain stores,
# no atomics); the main lcore reads them whenever it likes (an aligned
# 64-bit load cannot tear on the targets we build for). Only pypdk/stats.py
# sums and formats them.
#
# The hook contract: `hook(ctx, hop, pkts, n)` processes pkts[0:n] in place
# and returns k: pkts[0:k] are transmitted and pkts[k:n] are the tail. The
# tail is freed by the loop and counted as app_dropped, unless the hook
# returns `k | PD_HOOK_TOOK`: then the hook took the tail over (queued it,
# sent it or freed it itself, counting why) and the loop counts it as
# `taken` and leaves it alone. A hook that takes only some mbufs of a
# dropped tail sets their slots to NULL (freeing NULL is a no-op). It runs
# without the GIL and must not allocate or block.
#
# The round contract: `round(ctx)` polls everything the lcore owns once and
# returns the packets it received (0: an empty round, for the idle policy),
# or PD_ROUND_DONE when the worker has finished by itself. The per-round
# callback runs after every round, idle or not: it is the lcore's
# quiescent point (the vRouter publishes its epoch there).
#
# The loop and the per-burst pieces are inline: an app compiles them around
# its own round and hook (constant function pointers the C compiler
# inlines; apps/l2fwd/fwd.pyx, apps/vrouter/dp/datapath.pyx).

from libc.stdint cimport uint16_t, uint32_t, int32_t, uint64_t
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_free_bulk
from pypdk.pmd.ethdev cimport pd_eth_fp, fp_rx_burst, fp_tx_burst
from pypdk.eal.lcore cimport lcore_function_t

from pd_config cimport PD_BURST, PD_MAX_BURST, PD_MAX_ETHPORTS
from pd_compiler cimport pd_likely, pd_unlikely
from pd_atomic cimport pd_load_relaxed_int, pd_store_release_int

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef enum:
    PD_LCORE_MAX_HOPS = 64      # rx queues one lcore polls
    PD_PORT_NONE = 0xffff       # "no port" in a hop (pipeline worker stages)
    PD_HOOK_TOOK = 0x8000       # or-ed into a hook's result: the tail is the hook's
    PD_ROUND_DONE = -1          # a round's result: the worker finished, leave the loop

ctypedef struct pd_lcore_stats:
    uint64_t polls          # rx bursts (or ring dequeues) attempted
    uint64_t empty_polls    # ... that brought nothing
    uint64_t rx             # packets in
    uint64_t tx             # packets out (taken by a port or a ring)
    uint64_t tx_dropped     # refused by a tx queue: freed
    uint64_t app_dropped    # dropped by the hook: freed by the loop
    uint64_t taken          # taken over by the hook (sent, queued or dropped by it)
    uint64_t ring_full      # pipeline back-pressure: the next ring was full, freed
    uint64_t no_route       # pipeline tx stage: m.port has no route, freed
    uint64_t idle_yields    # sched_yield calls after yield_after empty rounds

ctypedef struct pd_hop_stats:
    uint64_t rx             # packets received on the hop's rx queue
    uint64_t tx             # packets the tx queue took
    uint64_t tx_dropped     # the tx queue (or next ring) refused them: freed
    uint64_t app_dropped    # the hook dropped them: freed
    uint64_t taken          # the hook took them over

ctypedef struct pd_hop:
    pd_eth_fp *rx_fp
    pd_eth_fp *tx_fp
    uint16_t rx_port
    uint16_t rx_queue
    uint16_t tx_port
    uint16_t tx_queue
    pd_hop_stats stats

ctypedef uint16_t (*burst_hook_t)(void *ctx, pd_hop *hop, pd_mbuf **pkts,
                                  uint16_t n) noexcept nogil
ctypedef int32_t (*lcore_round_t)(void *ctx) noexcept nogil
ctypedef void (*lcore_cb_t)(void *ctx) noexcept nogil

ctypedef struct pd_lcore:
    int quit                # set by the main lcore (release), polled relaxed
    uint32_t yield_after    # 0: spin forever; else sched_yield after that many empty rounds
    lcore_cb_t on_round     # NULL, or called after every round (the quiescent point)
    void *on_round_ctx
    pd_lcore_stats stats


cdef inline bint lcore_quit(pd_lcore *l) noexcept nogil:
    # Relaxed: pairs with LcoreWorker.stop()'s release store; the flag
    # publishes nothing else, it only has to be seen within a round or two.
    return pd_load_relaxed_int(&l.quit)


cdef inline void lcore_idle(pd_lcore *l, bint got, uint32_t *idle) noexcept nogil:
    """The idle policy: after yield_after rounds in a row with nothing, sched_yield."""
    if got:
        idle[0] = 0
    elif l.yield_after:
        idle[0] += 1
        if idle[0] >= l.yield_after:
            # Lcores sharing a cpu (--lcores '(1-3)@1', two vRouters on one
            # machine) make progress: each busy-polling loop would otherwise
            # halve the other's throughput.
            sched_yield()
            l.stats.idle_yields += 1
            idle[0] = 0


cdef inline int lcore_loop(pd_lcore *l, lcore_round_t round, void *ctx,
                           lcore_cb_t after, void *after_ctx) noexcept nogil:
    """The loop every worker lcore runs; returns 0 once quit is set or a round is DONE."""
    cdef uint32_t idle = 0
    cdef int32_t got
    while not lcore_quit(l):
        got = round(ctx)
        if pd_unlikely(got < 0):
            break
        lcore_idle(l, got != 0, &idle)
        if after != NULL:
            after(after_ctx)
    return 0


cdef inline uint16_t lcore_rx(pd_lcore *l, pd_eth_fp *fp, uint16_t queue, pd_mbuf **pkts,
                              uint16_t burst) noexcept nogil:
    """One rx burst, counted in the lcore's polls/empty_polls/rx."""
    cdef uint16_t nb = fp_rx_burst(fp, queue, pkts, burst)
    l.stats.polls += 1
    if nb == 0:
        l.stats.empty_polls += 1
    l.stats.rx += nb
    return nb


cdef inline void hop_free_tail(pd_mbuf **pkts, uint16_t keep, uint16_t n) noexcept nogil:
    if keep < n:
        pktmbuf_free_bulk(&pkts[keep], n - keep)


cdef inline uint16_t hook_result(pd_lcore *l, pd_hop *hop, pd_mbuf **pkts, uint16_t k,
                                 uint16_t n) noexcept nogil:
    """Apply a hook's result k to a burst of n: free or leave the tail, count it; what to send."""
    if k & PD_HOOK_TOOK:
        k &= ~PD_HOOK_TOOK
        hop.stats.taken += n - k
        l.stats.taken += n - k
    else:
        hop_free_tail(pkts, k, n)
        hop.stats.app_dropped += n - k
        l.stats.app_dropped += n - k
    return k


cdef inline uint16_t hop_burst(pd_lcore *l, pd_hop *hop, pd_mbuf **pkts, uint16_t burst,
                               burst_hook_t hook, void *ctx) noexcept nogil:
    """One hop: rx burst, the hook, tx burst; what was refused is freed. The packets received."""
    cdef uint16_t nb_rx, nb_keep, nb_tx
    nb_rx = lcore_rx(l, hop.rx_fp, hop.rx_queue, pkts, burst)
    if nb_rx == 0:
        return 0
    hop.stats.rx += nb_rx
    nb_keep = nb_rx
    if hook != NULL:
        nb_keep = hook(ctx, hop, pkts, nb_rx)
        if pd_unlikely(nb_keep != nb_rx):
            nb_keep = hook_result(l, hop, pkts, nb_keep, nb_rx)
    if nb_keep == 0:
        return nb_rx
    nb_tx = fp_tx_burst(hop.tx_fp, hop.tx_queue, pkts, nb_keep)
    hop.stats.tx += nb_tx
    l.stats.tx += nb_tx
    if pd_unlikely(nb_tx < nb_keep):
        # tx took nb_tx; the rest is ours to free (we drop rather than
        # retry: a full tx queue means the link is the bottleneck).
        hop_free_tail(pkts, nb_tx, nb_keep)
        hop.stats.tx_dropped += nb_keep - nb_tx
        l.stats.tx_dropped += nb_keep - nb_tx
    return nb_rx


cdef class BurstHook:
    """A C hook and its context, passed to the workers from Python."""
    cdef burst_hook_t fn
    cdef void *ctx
    cdef object keep
    cdef readonly str name

# The factory Cython modules use: burst_hook_new(my_hook, &self.ctx, self, "my_hook")
cdef BurstHook burst_hook_new(burst_hook_t fn, void *ctx, object keep, str name)


cdef class LcoreWorker:
    """The Python face every worker shares (lcore_function, stop, stats, port_stats)."""
    cdef pd_lcore *lc               # the loop state, first field of the worker's conf
    cdef lcore_function_t main      # what the lcore runs, given `arg`
    cdef void *arg
    cdef object _keep_main
    cdef readonly list hops         # (rx port, rx queue, tx port, tx queue), or None
    cdef object _on_round_keep
    # Run `main` (an app's compiled loop) instead of the model's own;
    # `keep` owns whatever main's code needs alive.
    cdef void set_main(self, lcore_function_t main, object keep)
    # Point the face at its conf: `lc` is the pd_lcore the conf starts with.
    cdef void set_conf(self, pd_lcore *lc, lcore_function_t main, void *arg)
    # Call fn(ctx) after every round (the lcore's quiescent point); `keep`
    # owns ctx. Models whose loop is compiled around a constant callback
    # (the vRouter's) do not read it.
    cdef void set_on_round(self, lcore_cb_t fn, void *ctx, object keep)


# Allocate a zeroed, cache-line aligned conf of `size` bytes (MemoryError).
cdef void *conf_alloc(size_t size) except NULL

# Check (rx port, rx queue, tx port, tx queue) hops (ports or port ids) and
# fill `out` (PD_LCORE_MAX_HOPS of them); returns the hops as port-id tuples.
# UsageError for no hops, too many, or a port/queue that does not exist.
cdef list fill_hops(pd_hop *out, hops)

# Per hop: its ports/queues and its counters (HOP_STAT_NAMES), as dicts.
cdef list hops_stats(pd_hop *hops, list ids)
