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
# The outer IPv4 header is checked (length, checksum, no fragments) before
# anything is decapsulated, the inner one before it is delivered.

from libc.stdint cimport uint32_t
from pypdk.mempool.mbuf cimport pd_mbuf
from apps.vrouter.dp.vrouter cimport vr_worker, vr_vif

# A burst received on the fabric vif: every mbuf is consumed (queued for tx,
# trapped, or freed and counted).
cdef void fabric_input(vr_worker *w, vr_vif *vif, pd_mbuf **pkts, uint32_t n) noexcept nogil
