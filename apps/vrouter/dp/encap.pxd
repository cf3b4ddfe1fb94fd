# Tunnel encapsulation: the outer headers in front of a packet going to
# another vRouter (or a VXLAN VTEP) over the fabric.
#
#   MPLSoUDP (RFC 7510)  eth | IPv4 | UDP 6635 | MPLS label | inner IP packet
#   MPLSoGRE (RFC 4023)  eth | IPv4 | GRE 0x8847 | MPLS label | inner IP packet
#   VXLAN (RFC 7348)     eth | IPv4 | UDP 4789 | VXLAN VNI | inner Ethernet frame
#
# The outer UDP source port carries the inner flow's hash (entropy for the
# fabric's ECMP, 49152..65535). A packet that would exceed the fabric vif's
# MTU once encapsulated is dropped (mtu_exceeded), with an ICMP
# "fragmentation needed" back to the VM for IPv4 with DF.

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy
from pypdk.mempool.mbuf cimport pd_mbuf, mbuf_prepend
from pypdk.net.byteorder cimport pd_htons, pd_load_u16, PD_BE16
from pypdk.net.ether cimport PD_ETHER_HDR_LEN, PD_ETHER_TYPE_IPV4, PD_ETHER_TYPE_MPLS
from pypdk.net.ipv4 cimport pd_ipv4_hdr, PD_IPPROTO_UDP, PD_IPPROTO_GRE, PD_IPV4_HDR_DF_FLAG, PD_IPV4_HDR_LEN
from pypdk.net.udp cimport pd_udp_hdr, PD_UDP_HDR_LEN, PD_UDP_PORT_MPLS, PD_UDP_PORT_VXLAN
from pypdk.net.gre cimport pd_gre_hdr, PD_GRE_HDR_LEN
from pypdk.net.mpls cimport pd_mpls_hdr, mpls_lse_make, PD_MPLS_HDR_LEN
from pypdk.net.vxlan cimport pd_vxlan_hdr, vxlan_hdr_set, PD_VXLAN_HDR_LEN
from pypdk.net.cksum cimport ipv4_hdr_cksum
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.vif cimport ETH_LEN, drop, eth_write, vif_tx

from pd_compiler cimport pd_unlikely

cdef enum:
    # outer headers written in front of the inner IP packet
    MPLSOUDP_HLEN = PD_ETHER_HDR_LEN + PD_IPV4_HDR_LEN + PD_UDP_HDR_LEN + PD_MPLS_HDR_LEN
    MPLSOGRE_HLEN = PD_ETHER_HDR_LEN + PD_IPV4_HDR_LEN + PD_GRE_HDR_LEN + PD_MPLS_HDR_LEN
    # in front of the inner Ethernet frame
    VXLAN_HLEN = PD_ETHER_HDR_LEN + PD_IPV4_HDR_LEN + PD_UDP_HDR_LEN + PD_VXLAN_HDR_LEN
    OUTER_TTL = 64

# Too big for the fabric once encapsulated (encap.pyx): counted; an IPv4
# packet with DF set gets an ICMP "fragmentation needed" back to the VM.
cdef void mtu_exceeded(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const uint8_t *l3,
                       uint8_t family, uint32_t fab_mtu, uint32_t overhead) noexcept nogil

cdef inline void outer_ipv4(pd_ipv4_hdr *o, uint32_t total, uint8_t proto, uint32_t sip,
                            uint32_t dip) noexcept nogil:
    o.version_ihl = 0x45
    o.type_of_service = 0
    o.total_length = pd_htons(<uint16_t>total)
    o.packet_id = 0
    o.fragment_offset = PD_BE16(PD_IPV4_HDR_DF_FLAG)
    o.time_to_live = OUTER_TTL
    o.next_proto_id = proto
    o.hdr_checksum = 0
    o.src_addr = sip
    o.dst_addr = dip
    o.hdr_checksum = ipv4_hdr_cksum(o)

# The fabric vif, or NULL.
cdef inline vr_vif *fabric_vif(vr_router *r) noexcept nogil:
    return vr_load_vif(&r.vifs[r.fabric_vif]) if r.fabric_vif != VR_NO_VIF else NULL

# L3 packet (eth + IP at the front of m) into MPLSoUDP / MPLSoGRE to nh.
cdef inline void encap_mpls(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const vr_nh *nh, uint32_t label,
                            uint32_t hash, uint8_t family, uint16_t vrf) noexcept nogil:
    cdef vr_router *r = w.r
    cdef vr_vif *fab = fabric_vif(r)
    cdef uint32_t hlen = MPLSOUDP_HLEN if nh.encap == TUN_MPLSOUDP else MPLSOGRE_HLEN
    cdef uint32_t inner = m.pkt_len - ETH_LEN
    cdef uint8_t *p
    cdef pd_udp_hdr *u
    cdef pd_gre_hdr *g
    cdef uint8_t *l3 = <uint8_t *>m.buf_addr + m.data_off + ETH_LEN
    if pd_unlikely(fab == NULL):
        drop(w, m, in_vif.id, DROP_INVALID_IF)
        return
    if pd_unlikely(label == VR_NONE):
        drop(w, m, in_vif.id, DROP_INVALID_LABEL)
        return
    if pd_unlikely(inner + hlen - ETH_LEN > fab.mtu):
        mtu_exceeded(w, in_vif, m, l3, family, fab.mtu, hlen - ETH_LEN)
        return
    p = <uint8_t *>mbuf_prepend(m, <uint16_t>(hlen - ETH_LEN))
    if pd_unlikely(p == NULL):
        drop(w, m, in_vif.id, DROP_PUSH)
        return
    eth_write(p, nh.dmac, r.mac, PD_BE16(PD_ETHER_TYPE_IPV4))
    if nh.encap == TUN_MPLSOUDP:
        outer_ipv4(<pd_ipv4_hdr *>(p + ETH_LEN), inner + MPLSOUDP_HLEN - PD_ETHER_HDR_LEN, PD_IPPROTO_UDP, nh.sip, nh.dip)
        u = <pd_udp_hdr *>(p + ETH_LEN + PD_IPV4_HDR_LEN)
        # RFC 7510: the source port carries the inner flow's entropy (49152-65535).
        u.src_port = pd_htons(<uint16_t>(0xc000 | (hash & 0x3fff)))
        u.dst_port = PD_BE16(PD_UDP_PORT_MPLS)
        u.dgram_len = pd_htons(<uint16_t>(inner + PD_UDP_HDR_LEN + PD_MPLS_HDR_LEN))
        u.dgram_cksum = 0
        (<pd_mpls_hdr *>(p + ETH_LEN + PD_IPV4_HDR_LEN + PD_UDP_HDR_LEN)).lse = mpls_lse_make(label, 0, True, OUTER_TTL)
        w.st.vrf[vrf][VRFS_UDP_MPLS_ENCAPS] += 1
    else:
        outer_ipv4(<pd_ipv4_hdr *>(p + ETH_LEN), inner + MPLSOGRE_HLEN - PD_ETHER_HDR_LEN, PD_IPPROTO_GRE, nh.sip, nh.dip)
        g = <pd_gre_hdr *>(p + ETH_LEN + PD_IPV4_HDR_LEN)
        g.flags_ver = 0
        g.proto = PD_BE16(PD_ETHER_TYPE_MPLS)
        (<pd_mpls_hdr *>(p + ETH_LEN + PD_IPV4_HDR_LEN + PD_GRE_HDR_LEN)).lse = mpls_lse_make(label, 0, True, OUTER_TTL)
        w.st.vrf[vrf][VRFS_GRE_MPLS_ENCAPS] += 1
    vif_tx(w, fab, m, hash)

# L2 frame (the whole of m) into VXLAN to nh with vni. in_vif: the VM it
# came from (NULL: flooded from elsewhere).
cdef inline void encap_vxlan(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const vr_nh *nh, uint32_t vni,
                             uint32_t hash, uint16_t vrf) noexcept nogil:
    cdef vr_router *r = w.r
    cdef vr_vif *fab = fabric_vif(r)
    cdef uint32_t inner = m.pkt_len
    cdef uint8_t *p
    cdef pd_udp_hdr *u
    cdef uint8_t *l3
    cdef uint16_t in_id = in_vif.id if in_vif != NULL else VR_NO_VIF
    if pd_unlikely(fab == NULL):
        drop(w, m, in_id, DROP_INVALID_IF)
        return
    if pd_unlikely(vni == VR_NONE):
        drop(w, m, in_id, DROP_INVALID_VNI)
        return
    if pd_unlikely(inner + VXLAN_HLEN - ETH_LEN > fab.mtu):
        l3 = <uint8_t *>m.buf_addr + m.data_off + ETH_LEN
        if in_vif != NULL and pd_load_u16(l3 - 2) == PD_BE16(PD_ETHER_TYPE_IPV4) and inner >= ETH_LEN + PD_IPV4_HDR_LEN:
            mtu_exceeded(w, in_vif, m, l3, 4, fab.mtu, VXLAN_HLEN)
        else:
            drop(w, m, in_id, DROP_MTU_EXCEEDED)
        return
    p = <uint8_t *>mbuf_prepend(m, VXLAN_HLEN)
    if pd_unlikely(p == NULL):
        drop(w, m, in_id, DROP_PUSH)
        return
    eth_write(p, nh.dmac, r.mac, PD_BE16(PD_ETHER_TYPE_IPV4))
    outer_ipv4(<pd_ipv4_hdr *>(p + ETH_LEN), inner + VXLAN_HLEN - PD_ETHER_HDR_LEN, PD_IPPROTO_UDP, nh.sip, nh.dip)
    u = <pd_udp_hdr *>(p + ETH_LEN + PD_IPV4_HDR_LEN)
    u.src_port = pd_htons(<uint16_t>(0xc000 | (hash & 0x3fff)))
    u.dst_port = PD_BE16(PD_UDP_PORT_VXLAN)
    u.dgram_len = pd_htons(<uint16_t>(inner + PD_UDP_HDR_LEN + PD_VXLAN_HDR_LEN))
    u.dgram_cksum = 0
    vxlan_hdr_set(<pd_vxlan_hdr *>(p + ETH_LEN + PD_IPV4_HDR_LEN + PD_UDP_HDR_LEN), vni)
    w.st.vrf[vrf][VRFS_VXLAN_ENCAPS] += 1
    vif_tx(w, fab, m, hash)
