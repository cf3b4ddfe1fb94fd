# Input from the fabric (TF's vr_fabric_input, vr_mpls_input, vr_vxlan_input).
#
#   IPv4 to the underlay address:
#     MPLSoUDP (UDP 6635), MPLSoGRE (GRE 0x8847)  label -> nh (an encap nh: a
#         local VM) -> inner packet to the VM with its L2 header
#     VXLAN (UDP 4789)  VNI -> VRF -> bridged by the inner MAC (bridge.pxd)
#   IPv4 to a floating IP: DNAT to the VM through its flow
#   anything else (ARP, host traffic, IPv6): to the host (vhost vif); ARP is
#   also copied to the agent, which learns underlay neighbours from it.
#
# The VNI table (VNI -> VRF) and the floating-IP table (public IPv4 ->
# vif) are pypdk.net.flow_hash tables of 4-byte keys whose 32-bit data is
# the value; the MPLS label table is an array (label -> nh id). The control
# thread writes them (a changed value is one atomic store), the lcores read
# them lock-free.
#
# The outer IPv4 header is checked (length, checksum, no fragments) before
# anything is decapsulated, the inner one before it is delivered.

from libc.stdint cimport uint32_t
from pypdk.mempool.mbuf cimport pd_mbuf
from apps.vrouter.dp.vrouter cimport vr_router, vr_worker, vr_vif

# A burst (at most VR_BURST_MAX) received on the fabric vif: every mbuf is consumed (queued for tx,
# trapped, or freed and counted).
cdef void fabric_input(vr_worker *w, vr_vif *vif, pd_mbuf **pkts, uint32_t n) noexcept nogil

# Control (the control thread): 0, or -1 (table full / no such key).
cdef int vxlan_set(vr_router *r, uint32_t vni, uint32_t vrf) noexcept nogil
cdef int vxlan_clear(vr_router *r, uint32_t vni) noexcept nogil
cdef int fip_set(vr_router *r, uint32_t ip_be, uint32_t vif) noexcept nogil
cdef int fip_clear(vr_router *r, uint32_t ip_be) noexcept nogil
