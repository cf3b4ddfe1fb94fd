"""Proxy ARP/ND and ICMP errors (arp.pxd)."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy, memset
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_alloc, pktmbuf_free, mbuf_append
from pypdk.net.byteorder cimport pd_ntohs, pd_htons, pd_htonl, PD_BE16
from pypdk.net.ether cimport pd_ether_hdr, PD_ETHER_TYPE_IPV4
from pypdk.net.ipv4 cimport pd_ipv4_hdr, PD_IPPROTO_ICMP, PD_IPPROTO_ICMPV6, PD_IPV4_HDR_LEN
from pypdk.net.ipv6 cimport pd_ipv6_hdr, PD_IPV6_HDR_LEN
from pypdk.net.arp cimport pd_arp_hdr, PD_ARP_HRD_ETHER
from pypdk.net.icmp cimport (pd_icmp_hdr, pd_nd_ns_hdr, pd_nd_na_hdr, pd_nd_opt_lladdr, PD_ICMP6_NEIGH_SOLICIT,
                             PD_ICMP6_NEIGH_ADVERT, PD_ND_OPT_TARGET_LLADDR, PD_ND_NA_FLAG_ROUTER,
                             PD_ND_NA_FLAG_SOLICITED, PD_ND_NA_FLAG_OVERRIDE)
from pypdk.net.cksum cimport ipv4_hdr_cksum, icmp_cksum, ipv6_l4_cksum
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.vif cimport ETH_LEN, drop, eth_write, tx_enqueue
from apps.vrouter.dp.route cimport route_lookup

from pd_compiler cimport pd_unlikely

cdef enum:
    ICMP_TTL = 64


cdef void icmp4_error(vr_worker *w, vr_vif *vif, pd_mbuf *m, const pd_ipv4_hdr *ip,
                      uint8_t type, uint8_t code, uint32_t rest_be) noexcept nogil:
    cdef vr_router *r = w.r
    cdef pd_mbuf *e = pktmbuf_alloc(r.pool)
    cdef uint32_t quote = pd_ntohs(ip.total_length)
    cdef uint32_t avail = m.data_len - <uint32_t>(<const uint8_t *>ip - <uint8_t *>(<char *>m.buf_addr + m.data_off))
    cdef uint8_t *p
    cdef pd_ipv4_hdr *oip
    cdef pd_icmp_hdr *ic
    if e == NULL:
        w.st.drop[DROP_NO_MBUF] += 1
        return
    if quote > avail:
        quote = avail
    if quote > ICMP_QUOTE:
        quote = ICMP_QUOTE
    p = <uint8_t *>mbuf_append(e, <uint16_t>(ETH_LEN + PD_IPV4_HDR_LEN + sizeof(pd_icmp_hdr) + quote))
    if p == NULL:                       # a pool whose data room cannot hold the error
        pktmbuf_free(e)
        w.st.drop[DROP_NO_MBUF] += 1
        return
    eth_write(p, (<const pd_ether_hdr *>(<char *>m.buf_addr + m.data_off)).src_addr.addr_bytes,
              r.mac, PD_BE16(PD_ETHER_TYPE_IPV4))
    oip = <pd_ipv4_hdr *>(p + ETH_LEN)
    oip.version_ihl = 0x45
    oip.type_of_service = 0
    oip.total_length = pd_htons(<uint16_t>(PD_IPV4_HDR_LEN + sizeof(pd_icmp_hdr) + quote))
    oip.packet_id = 0
    oip.fragment_offset = 0
    oip.time_to_live = ICMP_TTL
    oip.next_proto_id = PD_IPPROTO_ICMP
    oip.src_addr = r.icmp_src
    oip.dst_addr = ip.src_addr
    oip.hdr_checksum = ipv4_hdr_cksum(oip)
    ic = <pd_icmp_hdr *>(p + ETH_LEN + PD_IPV4_HDR_LEN)
    ic.icmp_type = type
    ic.icmp_code = code
    memcpy(&ic.icmp_ident, &rest_be, 4)
    memcpy(p + ETH_LEN + PD_IPV4_HDR_LEN + sizeof(pd_icmp_hdr), ip, quote)
    ic.icmp_cksum = icmp_cksum(ic, sizeof(pd_icmp_hdr) + quote)
    tx_enqueue(w, vif.id, 0, e)


cdef bint arp_from_vm(vr_worker *w, vr_vif *vif, pd_mbuf *m) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef pd_arp_hdr *a = <pd_arp_hdr *>(p + ETH_LEN)
    cdef uint32_t nh, label, tip, sip
    cdef uint8_t dst4[20]
    if pd_unlikely(m.data_len < ETH_LEN + sizeof(pd_arp_hdr) or a.arp_hardware != PD_BE16(PD_ARP_HRD_ETHER)
                   or a.arp_protocol != PD_BE16(PD_ETHER_TYPE_IPV4) or a.arp_hlen != 6 or a.arp_plen != 4):
        drop(w, m, vif.id, DROP_INVALID_ARP)
        return True
    if not (vif.flags & VIF_F_L3):
        return False
    tip = a.arp_data.arp_tip
    sip = a.arp_data.arp_sip
    if a.arp_opcode != PD_BE16(1) or tip == sip or tip == vif.ip4:
        return False        # replies and gratuitous ARP: nothing to answer
    memcpy(dst4 + 16, &tip, 4)
    if route_lookup(r, vif.vrf, 4, dst4, &nh, &label) != 0:
        return False
    # The reply, in place: to the asker, from the vRouter's MAC.
    memcpy(p, p + 6, 6)
    memcpy(p + 6, r.mac, 6)
    a.arp_opcode = PD_BE16(2)
    memcpy(a.arp_data.arp_tha.addr_bytes, a.arp_data.arp_sha.addr_bytes, 6)
    memcpy(a.arp_data.arp_sha.addr_bytes, r.mac, 6)
    a.arp_data.arp_tip = sip
    a.arp_data.arp_sip = tip
    w.st.vrf[vif.vrf][VRFS_ARP_PROXY] += 1
    tx_enqueue(w, vif.id, 0, m)
    return True


cdef bint nd_from_vm(vr_worker *w, vr_vif *vif, pd_mbuf *m, int l4off) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef pd_ipv6_hdr *ip6 = <pd_ipv6_hdr *>(p + ETH_LEN)
    cdef pd_nd_ns_hdr *ns
    cdef pd_nd_na_hdr *na
    cdef pd_nd_opt_lladdr *tll
    cdef uint8_t tgt[40]
    cdef uint32_t nh, label, i, unspec = 1
    if l4off != PD_IPV6_HDR_LEN or <uint32_t>m.data_len < ETH_LEN + PD_IPV6_HDR_LEN + 24:
        return False
    ns = <pd_nd_ns_hdr *>(p + ETH_LEN + PD_IPV6_HDR_LEN)
    if ns.icmp6_type != PD_ICMP6_NEIGH_SOLICIT or ns.icmp6_code != 0 or ip6.hop_limits != 255:
        return False
    memcpy(tgt + 24, ns.target, 16)
    if route_lookup(r, vif.vrf, 6, tgt, &nh, &label) != 0:
        return False
    if m.buf_len - m.data_off < ETH_LEN + PD_IPV6_HDR_LEN + 32:
        return False
    for i in range(16):
        if ip6.src_addr[i]:
            unspec = 0
    memcpy(p, p + 6, 6)
    memcpy(p + 6, r.mac, 6)
    if unspec:
        # DAD: answer to all-nodes (RFC 4861 7.2.4).
        memset(ip6.dst_addr, 0, 16)
        ip6.dst_addr[0] = 0xff
        ip6.dst_addr[1] = 0x02
        ip6.dst_addr[15] = 1
        p[0] = 0x33
        p[1] = 0x33
        p[2] = 0
        p[3] = 0
        p[4] = 0
        p[5] = 1
    else:
        memcpy(ip6.dst_addr, ip6.src_addr, 16)
    memcpy(ip6.src_addr, tgt + 24, 16)
    ip6.payload_len = PD_BE16(32)
    ip6.proto = PD_IPPROTO_ICMPV6
    ip6.hop_limits = 255
    na = <pd_nd_na_hdr *>ns
    na.icmp6_type = PD_ICMP6_NEIGH_ADVERT
    na.icmp6_code = 0
    # R, S and O (no S for DAD: RFC 4861 7.2.4)
    na.nd_flags = pd_htonl(PD_ND_NA_FLAG_ROUTER | PD_ND_NA_FLAG_OVERRIDE if unspec
                           else PD_ND_NA_FLAG_ROUTER | PD_ND_NA_FLAG_SOLICITED | PD_ND_NA_FLAG_OVERRIDE)
    # target stays; one option: target link-layer address.
    tll = <pd_nd_opt_lladdr *>(<uint8_t *>na + sizeof(pd_nd_na_hdr))
    tll.type = PD_ND_OPT_TARGET_LLADDR
    tll.len = 1
    memcpy(tll.addr.addr_bytes, r.mac, 6)
    m.data_len = ETH_LEN + PD_IPV6_HDR_LEN + 32
    m.pkt_len = m.data_len
    na.icmp6_cksum = ipv6_l4_cksum(ip6, na, 32, PD_IPPROTO_ICMPV6)
    w.st.vrf[vif.vrf][VRFS_ND_PROXY] += 1
    tx_enqueue(w, vif.id, 0, m)
    return True
