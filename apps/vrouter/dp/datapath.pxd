# The vRouter's forwarding state and the per-lcore forwarding context.
#
# vr_router is what every lcore reads (tables, published pointers; see
# vrouter.pxd for the publication rule). vr_worker is one forwarding
# context: the (vif, queue) pairs it polls, its counters, its per-burst tx
# buffers. A worker runs on one lcore (or on the Python thread, for tests and
# benchmarks, through Router.poll / vr_worker_run_burst).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.ring.ring cimport pd_ring
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.tables cimport vr_rt_table, vr_hash

cdef enum:
    VR_NO_VIF = 0xffff
    VR_MAX_FIPS = 1024

ctypedef struct vr_router:
    uint8_t mac[6]
    uint16_t fabric_vif         # VR_NO_VIF when none
    uint16_t vhost_vif
    uint16_t agent_vif
    uint32_t underlay_ip        # network order
    uint32_t icmp_src           # source of ICMP errors the vRouter writes
    uint32_t tx_locking         # >1 forwarding lcore: tx queues take txlock
    uint32_t mpls_max
    uint32_t flow_max
    uint32_t flow_lock
    uint64_t flow_timeout       # tsc ticks idle before a flow is aged
    uint64_t flow_closed_timeout
    vr_vif *vifs[VR_MAX_VIFS]
    vr_nh *nhs[VR_MAX_NHS]
    uint64_t rtdata[VR_MAX_RTDATA]      # nh | label << 32
    vr_rt_table *rt4[VR_MAX_VRFS]
    vr_rt_table *rt6[VR_MAX_VRFS]
    uint32_t *mpls              # label -> nh id (VR_NONE: invalid)
    vr_hash *bridge             # (vrf, mac) -> slot
    uint64_t *bridge_val        # per slot: nh | vni << 32
    vr_hash *vxlan              # vni -> slot
    uint32_t *vxlan_vrf         # per slot
    vr_hash *fip                # public IPv4 -> slot
    uint32_t *fip_vif           # per slot
    vr_hash *flow_h             # vr_flow_key -> flow index
    vr_flow *flows
    pd_mempool *pool            # for copies (flood, mirror) and ICMP errors
    pd_ring *trap               # datapath -> agent
    pd_ring *inject             # agent -> datapath (m.port = output vif)
    uint32_t txlock[VR_MAX_VIFS][VR_MAX_QUEUES]

ctypedef struct vr_txslot:
    uint16_t vif
    uint16_t queue
    uint32_t n
    pd_mbuf *pkts[64]

ctypedef struct vr_worker:
    int quit                    # set by the main lcore (release), polled relaxed
    int running                 # inside its loop
    uint64_t epoch              # bumped at each quiescent point (release)
    uint64_t now                # the loop's clock (pd_rdtsc)
    vr_router *r
    vr_pollset *ps              # published by the control thread (acquire here)
    vr_stats *st
    uint32_t burst
    uint32_t nslots
    uint32_t owns_inject         # the one consumer of the inject ring
    uint64_t polls
    uint64_t empty_polls
    vr_txslot slots[VR_TX_SLOTS]

# Process a burst received on (vif, queue): every mbuf is consumed (sent,
# trapped or freed and counted). Output is buffered per (vif, queue) and
# flushed before returning.
cdef void vr_process_burst(vr_worker *w, uint16_t vif, uint16_t queue, pd_mbuf **pkts,
                           uint32_t n) noexcept nogil

# One round: poll every (vif, queue) of the worker once, and the inject ring.
# Returns the packets received.
cdef uint32_t vr_worker_poll(vr_worker *w) noexcept nogil
