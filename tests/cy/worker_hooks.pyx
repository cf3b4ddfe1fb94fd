# cython: language_level=3
"""C hooks and callbacks for the worker tests, through pypdk/worker/lcore_loop.pxd.

- `taker()`: a BurstHook that takes every odd-numbered packet of a burst
  over (frees it itself) and returns the rest with PD_HOOK_TOOK, so the loop
  counts the odd ones as `taken`, never as `app_dropped`.
- `RoundCounter`: a per-round callback that counts the rounds an lcore ran
  (installed with `RoundCounter.install(worker)`).
"""
from libc.stdint cimport uint16_t, uint64_t

from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_free_bulk
from pypdk.worker.lcore_loop cimport (BurstHook, burst_hook_new, pd_hop, LcoreWorker,
                                      PD_HOOK_TOOK, PD_MAX_BURST)


cdef uint16_t _take_odd(void *ctx, pd_hop *hop, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef pd_mbuf *odd[PD_MAX_BURST]
    cdef uint16_t i, keep = 0, nb_odd = 0
    for i in range(n):
        if i & 1:
            odd[nb_odd] = pkts[i]
            nb_odd += 1
        else:
            pkts[keep] = pkts[i]
            keep += 1
    for i in range(nb_odd):
        pkts[keep + i] = odd[i]
    pktmbuf_free_bulk(odd, nb_odd)      # the hook's own: the loop leaves the tail alone
    return keep | PD_HOOK_TOOK


def taker():
    """A hook that takes the odd packets of each burst over (see the module doc)."""
    return burst_hook_new(_take_odd, NULL, None, "take_odd")


cdef void _count_round(void *ctx) noexcept nogil:
    (<uint64_t *>ctx)[0] += 1


cdef class RoundCounter:
    """Counts the rounds of the worker it is installed on (its per-round callback)."""
    cdef uint64_t n

    def install(self, LcoreWorker w):
        w.set_on_round(_count_round, &self.n, self)

    @property
    def rounds(self):
        return self.n
