# The burst loop of a forwarding lcore (datapath.pyx).
#
# A worker (vr_worker, vrouter.pxd) polls its (vif, queue) pairs; each burst
# is counted, handed whole to the input path of the vif's type (decap.pxd
# for the fabric, vm.pxd for VMs; the host's frames pass to the fabric
# untouched), and its outputs, buffered per (vif, queue) (vif.pxd), are
# flushed before the next poll. One worker also drains the agent's inject
# ring. The end of each round is the worker's quiescent point.

from libc.stdint cimport uint16_t, uint32_t
from pypdk.mempool.mbuf cimport pd_mbuf
from apps.vrouter.dp.vrouter cimport vr_worker, vr_vif

# Process a burst received on (vif, queue): every mbuf is consumed (sent,
# trapped or freed and counted). Output is buffered per (vif, queue) and
# flushed before returning.
cdef void vr_process_burst(vr_worker *w, uint16_t vif, uint16_t queue, pd_mbuf **pkts,
                           uint32_t n) noexcept nogil

# Software distribution of a burst received on a vif with `distribute`: every
# packet whose inner flow hashes to another forwarding lcore goes to that
# lcore's ring; those that hash here stay, compacted in pkts; how many stayed.
# (vr_worker_poll calls it; benchmarks/ drive it with their own input.)
cdef uint32_t dist_split(vr_worker *w, vr_vif *vif, uint16_t queue, pd_mbuf **pkts,
                         uint32_t n) noexcept nogil

# One round: poll every (vif, queue) of the worker once, and the inject ring.
# Returns the packets received.
cdef uint32_t vr_worker_poll(vr_worker *w) noexcept nogil

# The lcore entry: pypdk's lcore loop (pypdk/worker/lcore_loop.pxd) over
# vr_worker_poll until quit, the epoch bumped after each round (its
# per-round callback).
cdef int vr_worker_main(void *arg) noexcept nogil
