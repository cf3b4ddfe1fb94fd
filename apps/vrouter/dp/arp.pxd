# Answers the vRouter writes itself: proxy ARP and ND for addresses routed
# in a VM's VRF (the reply carries the vRouter's MAC, as TF's proxy does),
# and ICMP errors back to a VM (TTL exceeded, fragmentation needed). None
# of it is on the forwarding fast path: plain functions in arp.pyx.

from libc.stdint cimport uint8_t, uint32_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.net.ipv4 cimport pd_ipv4_hdr
from apps.vrouter.dp.vrouter cimport vr_worker, vr_vif

cdef enum:
    ICMP_QUOTE = 128                    # bytes of the offending packet an ICMP error quotes

# An ICMP error (type, code, 4-byte rest) about the IPv4 packet at `ip` (in
# m, from vif), sent back to the vif with the vRouter as source. m stays the
# caller's.
cdef void icmp4_error(vr_worker *w, vr_vif *vif, pd_mbuf *m, const pd_ipv4_hdr *ip,
                      uint8_t type, uint8_t code, uint32_t rest_be) noexcept nogil

# An ARP frame from a VM: True when consumed (answered with the vRouter's
# MAC for an address routed in the VM's VRF, or dropped as malformed);
# False when not answered (a reply, a gratuitous ARP, an address with no
# route, an L2-only vif): the caller bridges it on an L2 vif, else drops it
# (invalid_arp).
cdef bint arp_from_vm(vr_worker *w, vr_vif *vif, pd_mbuf *m) noexcept nogil

# An IPv6 neighbour solicitation from a VM for an address routed in its VRF:
# answered with an advertisement carrying the vRouter's MAC. True if handled.
cdef bint nd_from_vm(vr_worker *w, vr_vif *vif, pd_mbuf *m, int l4off) noexcept nogil
