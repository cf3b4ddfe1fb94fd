# Input from a VM (a virtual vif; TF's vm_rx / vr_virtual_input).
#
#   ARP, IPv6 NS   proxy answers with the vRouter's MAC (arp.pxd) on an L3
#                  vif; not answered: bridged on an L2 vif
#   L2 vif (or a frame not for the vRouter's MAC on an L2+L3 vif):
#                  bridged (bridge.pxd)
#   IPv4/IPv6      checked, then on a policy vif the flow (policy, NAT of a
#                  floating IP's replies), then the route in the vif's VRF ->
#                  nexthop (nexthop.pxd); a local destination VM with policy
#                  gets its own flow

from libc.stdint cimport uint32_t
from pypdk.mempool.mbuf cimport pd_mbuf
from apps.vrouter.dp.vrouter cimport vr_worker, vr_vif

# A burst (at most VR_BURST_MAX) received on a virtual vif: every mbuf is consumed.
cdef void vm_input(vr_worker *w, vr_vif *vif, pd_mbuf **pkts, uint32_t n) noexcept nogil
