"""Tunnel encapsulation (encap.pxd): the MTU error path."""
from libc.stdint cimport uint8_t, uint32_t
from pypdk.net.byteorder cimport pd_htonl
from apps.vrouter.dp.arp cimport icmp4_error


cdef void mtu_exceeded(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const uint8_t *l3,
                       uint8_t family, uint32_t fab_mtu, uint32_t overhead) noexcept nogil:
    cdef const pd_ipv4_hdr *ip = <const pd_ipv4_hdr *>l3
    if family == 4 and (ip.fragment_offset & PD_BE16(PD_IPV4_HDR_DF_FLAG)):
        icmp4_error(w, in_vif, m, ip, 3, 4, pd_htonl((fab_mtu - overhead) & 0xffff))
    drop(w, m, in_vif.id, DROP_MTU_EXCEEDED)
