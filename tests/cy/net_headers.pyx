"""Header layouts and helpers of pypdk.net, seen from a module that cimports
them (tests only): sizes and offsets of the structs, a small parser that
walks a frame through the structs and helpers, and wrappers of the inline
field helpers. tests/net/test_headers.py checks them against scapy.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy

from pypdk.net.byteorder cimport (pd_ntohs, pd_ntohl, pd_htons, pd_htonl, pd_bswap16, pd_bswap32,
                                  pd_bswap64, PD_BE16, PD_BE32)
from pypdk.net.ether cimport (pd_ether_addr, pd_ether_hdr, pd_vlan_hdr, PD_ETHER_TYPE_IPV4,
                              PD_ETHER_TYPE_IPV6, PD_ETHER_TYPE_ARP, PD_ETHER_TYPE_VLAN,
                              PD_ETHER_TYPE_QINQ, PD_ETHER_TYPE_MPLS, PD_ETHER_TYPE_TEB,
                              vlan_tci_vid, vlan_tci_pcp, vlan_tci_dei, vlan_tci_make,
                              ether_addr_is_multicast, ether_addr_is_broadcast)
from pypdk.net.arp cimport pd_arp_hdr, pd_arp_ipv4
from pypdk.net.ipv4 cimport (pd_ipv4_hdr, ipv4_hdr_len, ipv4_hdr_ok, ipv4_is_fragment, ipv4_frag_offset,
                             ipv4_version, PD_IPPROTO_UDP, PD_IPPROTO_TCP, PD_IPPROTO_ICMP,
                             PD_IPPROTO_ICMPV6, PD_IPPROTO_GRE)
from pypdk.net.ipv6 cimport (pd_ipv6_hdr, pd_ipv6_frag_hdr, ipv6_skip_ext, ipv6_version,
                             ipv6_traffic_class, ipv6_flow_label, PD_IPV6_HDR_LEN)
from pypdk.net.icmp cimport (pd_icmp_hdr, pd_icmp6_hdr, pd_nd_ns_hdr, pd_nd_na_hdr, pd_nd_opt_hdr,
                             pd_nd_opt_lladdr, nd_opt_find, PD_ICMP6_NEIGH_SOLICIT,
                             PD_ICMP6_NEIGH_ADVERT, PD_ND_NA_FLAG_ROUTER, PD_ND_NA_FLAG_SOLICITED,
                             PD_ND_NA_FLAG_OVERRIDE)
from pypdk.net.udp cimport pd_udp_hdr, PD_UDP_PORT_VXLAN, PD_UDP_PORT_MPLS
from pypdk.net.tcp cimport pd_tcp_hdr, tcp_hdr_len
from pypdk.net.gre cimport pd_gre_hdr, gre_hdr_len, gre_hdr_ok, gre_key
from pypdk.net.mpls cimport (pd_mpls_hdr, mpls_lse_make, mpls_get_label, mpls_get_tc, mpls_get_bos,
                             mpls_get_ttl, mpls_set_label, mpls_set_tc, mpls_set_bos, mpls_set_ttl)
from pypdk.net.vxlan cimport pd_vxlan_hdr, vxlan_vni_valid, vxlan_get_vni, vxlan_hdr_set
from pypdk.net.cksum cimport cksum_add, cksum_finish


def sizes():
    return {
        "pd_ether_addr": sizeof(pd_ether_addr), "pd_ether_hdr": sizeof(pd_ether_hdr),
        "pd_vlan_hdr": sizeof(pd_vlan_hdr), "pd_arp_hdr": sizeof(pd_arp_hdr),
        "pd_arp_ipv4": sizeof(pd_arp_ipv4), "pd_ipv4_hdr": sizeof(pd_ipv4_hdr),
        "pd_ipv6_hdr": sizeof(pd_ipv6_hdr), "pd_ipv6_frag_hdr": sizeof(pd_ipv6_frag_hdr),
        "pd_icmp_hdr": sizeof(pd_icmp_hdr), "pd_icmp6_hdr": sizeof(pd_icmp6_hdr),
        "pd_nd_ns_hdr": sizeof(pd_nd_ns_hdr), "pd_nd_na_hdr": sizeof(pd_nd_na_hdr),
        "pd_nd_opt_lladdr": sizeof(pd_nd_opt_lladdr), "pd_udp_hdr": sizeof(pd_udp_hdr),
        "pd_tcp_hdr": sizeof(pd_tcp_hdr), "pd_gre_hdr": sizeof(pd_gre_hdr),
        "pd_mpls_hdr": sizeof(pd_mpls_hdr), "pd_vxlan_hdr": sizeof(pd_vxlan_hdr),
    }


cdef uint8_t _buf[64]


def offsets():
    """Offsets of the fields a parser leans on (from the struct, not from the header's asserts)."""
    cdef uintptr_t b = <uintptr_t>&_buf[0]
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>_buf
    cdef pd_ipv6_hdr *ip6 = <pd_ipv6_hdr *>_buf
    cdef pd_tcp_hdr *t = <pd_tcp_hdr *>_buf
    cdef pd_udp_hdr *u = <pd_udp_hdr *>_buf
    cdef pd_arp_hdr *a = <pd_arp_hdr *>_buf
    cdef pd_ether_hdr *e = <pd_ether_hdr *>_buf
    cdef pd_nd_na_hdr *na = <pd_nd_na_hdr *>_buf
    return {
        "ether.src": <uintptr_t>&e.src_addr - b,
        "ether.type": <uintptr_t>&e.ether_type - b,
        "ipv4.ttl": <uintptr_t>&ip.time_to_live - b,
        "ipv4.proto": <uintptr_t>&ip.next_proto_id - b,
        "ipv4.cksum": <uintptr_t>&ip.hdr_checksum - b,
        "ipv4.src": <uintptr_t>&ip.src_addr - b,
        "ipv4.dst": <uintptr_t>&ip.dst_addr - b,
        "ipv6.plen": <uintptr_t>&ip6.payload_len - b,
        "ipv6.hlim": <uintptr_t>&ip6.hop_limits - b,
        "ipv6.src": <uintptr_t>&ip6.src_addr[0] - b,
        "ipv6.dst": <uintptr_t>&ip6.dst_addr[0] - b,
        "tcp.seq": <uintptr_t>&t.sent_seq - b,
        "tcp.flags": <uintptr_t>&t.tcp_flags - b,
        "tcp.cksum": <uintptr_t>&t.cksum - b,
        "udp.cksum": <uintptr_t>&u.dgram_cksum - b,
        "arp.op": <uintptr_t>&a.arp_opcode - b,
        "arp.sip": <uintptr_t>&a.arp_data.arp_sip - b,
        "arp.tha": <uintptr_t>&a.arp_data.arp_tha - b,
        "arp.tip": <uintptr_t>&a.arp_data.arp_tip - b,
        "nd.target": <uintptr_t>&na.target[0] - b,
    }


cdef str _mac(const pd_ether_addr *a):
    return ":".join(f"{a.addr_bytes[i]:02x}" for i in range(6))


cdef str _ip4(uint32_t be):
    cdef uint32_t h = pd_ntohl(be)
    return f"{h >> 24}.{(h >> 16) & 255}.{(h >> 8) & 255}.{h & 255}"


def parse(const uint8_t[::1] frame not None):
    """Walk an Ethernet frame through the structs; a flat dict of what was found.

    Understands VLAN/QinQ tags, ARP, IPv4, IPv6 (extension headers), UDP
    (VXLAN on 4789, MPLS on 6635), TCP, ICMP, ICMPv6 (ND), GRE and MPLS.
    """
    cdef const uint8_t *p = &frame[0]
    cdef uint32_t n = frame.shape[0], off = 14, l4off, hl
    cdef const pd_ether_hdr *eth = <const pd_ether_hdr *>p
    cdef const pd_vlan_hdr *vl
    cdef const pd_ipv4_hdr *ip
    cdef const pd_ipv6_hdr *ip6
    cdef const pd_udp_hdr *udp
    cdef const pd_tcp_hdr *tcp
    cdef const pd_gre_hdr *gre
    cdef const pd_mpls_hdr *mpls
    cdef const pd_vxlan_hdr *vx
    cdef const pd_arp_hdr *arp
    cdef const pd_icmp_hdr *icmp
    cdef const pd_nd_na_hdr *nd
    cdef const pd_nd_opt_hdr *opt
    cdef uint16_t et
    cdef uint8_t proto = 0
    cdef int r
    out = {"eth.dst": _mac(&eth.dst_addr), "eth.src": _mac(&eth.src_addr),
           "eth.multicast": ether_addr_is_multicast(&eth.dst_addr),
           "eth.broadcast": ether_addr_is_broadcast(&eth.dst_addr)}
    et = pd_ntohs(eth.ether_type)
    vlans = []
    while et == PD_ETHER_TYPE_VLAN or et == PD_ETHER_TYPE_QINQ:
        vl = <const pd_vlan_hdr *>(p + off)
        vlans.append((vlan_tci_vid(vl.vlan_tci), vlan_tci_pcp(vl.vlan_tci), vlan_tci_dei(vl.vlan_tci)))
        et = pd_ntohs(vl.eth_proto)
        off += 4
    out["vlans"] = vlans
    out["ethertype"] = et
    labels = []
    if et == PD_ETHER_TYPE_MPLS:
        while True:
            mpls = <const pd_mpls_hdr *>(p + off)
            labels.append((mpls_get_label(mpls), mpls_get_tc(mpls), mpls_get_bos(mpls), mpls_get_ttl(mpls)))
            off += 4
            if mpls_get_bos(mpls):
                break
        out["mpls"] = labels
        return out
    if et == PD_ETHER_TYPE_ARP:
        arp = <const pd_arp_hdr *>(p + off)
        out.update({"arp.op": pd_ntohs(arp.arp_opcode), "arp.hwtype": pd_ntohs(arp.arp_hardware),
                    "arp.ptype": pd_ntohs(arp.arp_protocol), "arp.hlen": arp.arp_hlen, "arp.plen": arp.arp_plen,
                    "arp.sha": _mac(&arp.arp_data.arp_sha), "arp.sip": _ip4(arp.arp_data.arp_sip),
                    "arp.tha": _mac(&arp.arp_data.arp_tha), "arp.tip": _ip4(arp.arp_data.arp_tip)})
        return out
    if et == PD_ETHER_TYPE_IPV4:
        ip = <const pd_ipv4_hdr *>(p + off)
        out.update({"ip.version": ipv4_version(ip), "ip.ihl": ipv4_hdr_len(ip), "ip.tos": ip.type_of_service,
                    "ip.len": pd_ntohs(ip.total_length), "ip.id": pd_ntohs(ip.packet_id),
                    "ip.frag": ipv4_frag_offset(ip), "ip.is_fragment": ipv4_is_fragment(ip),
                    "ip.ttl": ip.time_to_live, "ip.proto": ip.next_proto_id,
                    "ip.chksum": pd_ntohs(ip.hdr_checksum), "ip.src": _ip4(ip.src_addr),
                    "ip.dst": _ip4(ip.dst_addr), "ip.ok": ipv4_hdr_ok(ip, n - off)})
        proto = ip.next_proto_id
        l4off = off + ipv4_hdr_len(ip)
        if ipv4_is_fragment(ip) and ipv4_frag_offset(ip):
            return out
    elif et == PD_ETHER_TYPE_IPV6:
        ip6 = <const pd_ipv6_hdr *>(p + off)
        out.update({"ipv6.version": ipv6_version(ip6), "ipv6.tc": ipv6_traffic_class(ip6),
                    "ipv6.fl": ipv6_flow_label(ip6), "ipv6.plen": pd_ntohs(ip6.payload_len),
                    "ipv6.nh": ip6.proto, "ipv6.hlim": ip6.hop_limits,
                    "ipv6.src": bytes(ip6.src_addr[:16]), "ipv6.dst": bytes(ip6.dst_addr[:16])})
        r = ipv6_skip_ext(ip6, n - off, &proto)
        out["ipv6.l4_offset"] = r
        if r < 0:
            return out
        l4off = off + r
    else:
        return out
    out["l4.proto"] = proto
    if proto == PD_IPPROTO_UDP:
        udp = <const pd_udp_hdr *>(p + l4off)
        out.update({"udp.sport": pd_ntohs(udp.src_port), "udp.dport": pd_ntohs(udp.dst_port),
                    "udp.len": pd_ntohs(udp.dgram_len), "udp.chksum": pd_ntohs(udp.dgram_cksum)})
        if pd_ntohs(udp.dst_port) == PD_UDP_PORT_VXLAN:
            vx = <const pd_vxlan_hdr *>(p + l4off + 8)
            out.update({"vxlan.valid": vxlan_vni_valid(vx), "vxlan.vni": vxlan_get_vni(vx)})
        elif pd_ntohs(udp.dst_port) == PD_UDP_PORT_MPLS:
            off = l4off + 8
            while True:
                mpls = <const pd_mpls_hdr *>(p + off)
                labels.append((mpls_get_label(mpls), mpls_get_tc(mpls), mpls_get_bos(mpls), mpls_get_ttl(mpls)))
                off += 4
                if mpls_get_bos(mpls):
                    break
            out["mpls"] = labels
    elif proto == PD_IPPROTO_TCP:
        tcp = <const pd_tcp_hdr *>(p + l4off)
        out.update({"tcp.sport": pd_ntohs(tcp.src_port), "tcp.dport": pd_ntohs(tcp.dst_port),
                    "tcp.seq": pd_ntohl(tcp.sent_seq), "tcp.ack": pd_ntohl(tcp.recv_ack),
                    "tcp.dataofs": tcp_hdr_len(tcp), "tcp.flags": tcp.tcp_flags,
                    "tcp.window": pd_ntohs(tcp.rx_win), "tcp.chksum": pd_ntohs(tcp.cksum),
                    "tcp.urgptr": pd_ntohs(tcp.tcp_urp)})
    elif proto == PD_IPPROTO_ICMP:
        icmp = <const pd_icmp_hdr *>(p + l4off)
        out.update({"icmp.type": icmp.icmp_type, "icmp.code": icmp.icmp_code,
                    "icmp.chksum": pd_ntohs(icmp.icmp_cksum), "icmp.id": pd_ntohs(icmp.icmp_ident),
                    "icmp.seq": pd_ntohs(icmp.icmp_seq_nb)})
    elif proto == PD_IPPROTO_ICMPV6:
        nd = <const pd_nd_na_hdr *>(p + l4off)
        out.update({"icmp6.type": nd.icmp6_type, "icmp6.code": nd.icmp6_code,
                    "icmp6.chksum": pd_ntohs(nd.icmp6_cksum)})
        if nd.icmp6_type == PD_ICMP6_NEIGH_SOLICIT or nd.icmp6_type == PD_ICMP6_NEIGH_ADVERT:
            out["nd.target"] = bytes(nd.target[:16])
            if nd.icmp6_type == PD_ICMP6_NEIGH_ADVERT:
                out.update({"nd.R": (pd_ntohl(nd.nd_flags) & PD_ND_NA_FLAG_ROUTER) != 0,
                            "nd.S": (pd_ntohl(nd.nd_flags) & PD_ND_NA_FLAG_SOLICITED) != 0,
                            "nd.O": (pd_ntohl(nd.nd_flags) & PD_ND_NA_FLAG_OVERRIDE) != 0})
            for t in (1, 2):
                opt = nd_opt_find(p + l4off + 24, n - l4off - 24, t)
                if opt != NULL:
                    out[f"nd.opt{t}"] = _mac(&(<const pd_nd_opt_lladdr *>opt).addr)
    elif proto == PD_IPPROTO_GRE:
        gre = <const pd_gre_hdr *>(p + l4off)
        out.update({"gre.ok": gre_hdr_ok(gre), "gre.len": gre_hdr_len(gre), "gre.proto": pd_ntohs(gre.proto),
                    "gre.key": gre_key(gre)})
        if pd_ntohs(gre.proto) == PD_ETHER_TYPE_MPLS:
            off = l4off + gre_hdr_len(gre)
            while True:
                mpls = <const pd_mpls_hdr *>(p + off)
                labels.append((mpls_get_label(mpls), mpls_get_tc(mpls), mpls_get_bos(mpls), mpls_get_ttl(mpls)))
                off += 4
                if mpls_get_bos(mpls):
                    break
            out["mpls"] = labels
    return out


def mpls_make(uint32_t label, uint8_t tc, bint bos, uint8_t ttl):
    cdef pd_mpls_hdr h
    h.lse = mpls_lse_make(label, tc, bos, ttl)
    return (<char *>&h)[:4]


def mpls_edit(const uint8_t[::1] lse not None, label=None, tc=None, bos=None, ttl=None):
    """Apply the setters given to a 4-byte entry; (bytes, (label, tc, bos, ttl)) after."""
    cdef pd_mpls_hdr h
    memcpy(&h, &lse[0], 4)
    if label is not None:
        mpls_set_label(&h, label)
    if tc is not None:
        mpls_set_tc(&h, tc)
    if bos is not None:
        mpls_set_bos(&h, bos)
    if ttl is not None:
        mpls_set_ttl(&h, ttl)
    return (<char *>&h)[:4], (mpls_get_label(&h), mpls_get_tc(&h), mpls_get_bos(&h), mpls_get_ttl(&h))


def vlan_make(uint16_t vid, uint8_t pcp, bint dei):
    """vlan_tci_make as the two bytes on the wire."""
    cdef uint16_t t = vlan_tci_make(vid, pcp, dei)
    return (<char *>&t)[:2]


def vxlan_make(uint32_t vni):
    cdef pd_vxlan_hdr h
    vxlan_hdr_set(&h, vni)
    return (<char *>&h)[:8]


def byteorder(uint64_t x):
    """The helpers on one value: a tuple of results to compare with Python's own."""
    return (pd_ntohs(<uint16_t>x), pd_htons(<uint16_t>x), pd_ntohl(<uint32_t>x), pd_htonl(<uint32_t>x),
            pd_bswap16(<uint16_t>x), pd_bswap32(<uint32_t>x), pd_bswap64(x),
            PD_BE16(0x0800), PD_BE32(0x08000000))


def ipv6_l4_offset(const uint8_t[::1] pkt not None):
    """ipv6_skip_ext over a packet from its IPv6 header: (offset or -1, protocol)."""
    cdef uint8_t proto = 0
    cdef int r = ipv6_skip_ext(<const pd_ipv6_hdr *>&pkt[0], pkt.shape[0], &proto)
    return r, proto


def ipv4_ok(const uint8_t[::1] pkt not None, uint32_t avail):
    return ipv4_hdr_ok(<const pd_ipv4_hdr *>&pkt[0], avail)


def cksum_split(const uint8_t[::1] data not None, size_t cut):
    """The checksum of data summed in two pieces (cut even): checks partial sums compose."""
    cdef uint64_t s = cksum_add(&data[0], cut, 0)
    s = cksum_add(&data[cut] if cut < <size_t>data.shape[0] else NULL, data.shape[0] - cut, s)
    return pd_ntohs(cksum_finish(s))
