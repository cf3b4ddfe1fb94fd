"""Header structs and field helpers, read through a module that cimports them
(tests/cy/net_headers.pyx), against packets scapy builds."""
import struct

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                                ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrDestOpt, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, GRE, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from tests.cy import net_headers as H

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def test_struct_sizes_match_the_wire():
    assert H.sizes() == {
        "pd_ether_addr": 6, "pd_ether_hdr": 14, "pd_vlan_hdr": 4, "pd_arp_hdr": 28, "pd_arp_ipv4": 20,
        "pd_ipv4_hdr": 20, "pd_ipv6_hdr": 40, "pd_ipv6_frag_hdr": 8, "pd_icmp_hdr": 8, "pd_icmp6_hdr": 8,
        "pd_nd_ns_hdr": 24, "pd_nd_na_hdr": 24, "pd_nd_opt_lladdr": 8, "pd_udp_hdr": 8, "pd_tcp_hdr": 20,
        "pd_gre_hdr": 4, "pd_mpls_hdr": 4, "pd_vxlan_hdr": 8}


def test_field_offsets_match_the_rfcs():
    assert H.offsets() == {
        "ether.src": 6, "ether.type": 12, "ipv4.ttl": 8, "ipv4.proto": 9, "ipv4.cksum": 10, "ipv4.src": 12,
        "ipv4.dst": 16, "ipv6.plen": 4, "ipv6.hlim": 7, "ipv6.src": 8, "ipv6.dst": 24, "tcp.seq": 4,
        "tcp.flags": 13, "tcp.cksum": 16, "udp.cksum": 6, "arp.op": 6, "arp.sip": 14, "arp.tha": 18,
        "arp.tip": 24, "nd.target": 8}


def test_byte_order_helpers():
    x = 0x0102030405060708
    ntohs, htons, ntohl, htonl, b16, b32, b64, be16, be32 = H.byteorder(x)
    assert ntohs == htons == b16 == 0x0807
    assert ntohl == htonl == b32 == 0x08070605
    assert b64 == 0x0807060504030201
    assert struct.pack("=H", be16) == b"\x08\x00" and struct.pack("=I", be32) == b"\x08\x00\x00\x00"


def test_ipv4_udp_fields():
    p = Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC_A) / IP(src="10.1.2.3", dst="192.168.7.9", ttl=17, id=4242,
                                                      tos=0xb8, flags="DF") / UDP(sport=1234, dport=53) / (b"x" * 11)
    p = Ether(bytes(p))
    f = H.parse(bytes(p))
    assert f["eth.dst"] == "ff:ff:ff:ff:ff:ff" and f["eth.src"] == MAC_A
    assert f["eth.broadcast"] and f["eth.multicast"]
    assert f["ethertype"] == 0x0800 and f["vlans"] == []
    assert (f["ip.version"], f["ip.ihl"], f["ip.tos"], f["ip.len"], f["ip.id"], f["ip.ttl"], f["ip.proto"]) == \
        (4, 20, 0xb8, p[IP].len, 4242, 17, 17)
    assert f["ip.chksum"] == p[IP].chksum and f["ip.ok"] and not f["ip.is_fragment"]
    assert (f["ip.src"], f["ip.dst"]) == ("10.1.2.3", "192.168.7.9")
    assert (f["udp.sport"], f["udp.dport"], f["udp.len"], f["udp.chksum"]) == (1234, 53, 19, p[UDP].chksum)


def test_ipv4_options_and_fragments():
    p = Ether(bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="1.2.3.4", dst="5.6.7.8", options=b"\x01\x01\x01\x00", frag=185,
                                 flags="MF") / TCP()))
    f = H.parse(bytes(p))
    assert f["ip.ihl"] == 24 and f["ip.is_fragment"] and f["ip.frag"] == 185 * 8
    first = Ether(bytes(Ether(src=MAC_A, dst=MAC_B) / IP(flags="MF") / UDP()))
    f = H.parse(bytes(first))
    assert f["ip.is_fragment"] and f["ip.frag"] == 0 and "udp.sport" in f


def test_ipv4_hdr_ok_rejects_bad_headers():
    good = bytes(IP(src="1.1.1.1", dst="2.2.2.2") / UDP())
    assert H.ipv4_ok(good, len(good))
    assert not H.ipv4_ok(good, 19)                               # truncated
    assert not H.ipv4_ok(b"\x65" + good[1:], len(good))           # version 6
    assert not H.ipv4_ok(b"\x44" + good[1:], len(good))           # IHL 4
    assert not H.ipv4_ok(b"\x4f" + good[1:], len(good))           # IHL 15 > 28 bytes there
    bad_len = good[:2] + struct.pack("!H", 16) + good[4:]
    assert not H.ipv4_ok(bad_len, len(good))                      # total_length < IHL*4


def test_vlan_and_qinq_tags():
    p = Ether(src=MAC_A, dst=MAC_B) / Dot1AD(vlan=100, prio=5) / Dot1Q(vlan=4094, prio=1, dei=1) / \
        IP(src="1.1.1.1", dst="2.2.2.2") / TCP(sport=80, dport=8080, flags="SA", seq=7, ack=9, window=512)
    f = H.parse(bytes(p))
    assert f["vlans"] == [(100, 5, False), (4094, 1, True)]
    assert f["tcp.sport"] == 80 and f["tcp.dport"] == 8080 and f["tcp.flags"] == 0x12
    assert (f["tcp.seq"], f["tcp.ack"], f["tcp.window"], f["tcp.dataofs"]) == (7, 9, 512, 20)
    assert H.vlan_make(4094, 1, True) == bytes(Dot1Q(vlan=4094, prio=1, dei=1))[:2]
    assert H.vlan_make(0x1fff, 9, False) == bytes(Dot1Q(vlan=0xfff, prio=1))[:2]  # masked


def test_arp():
    p = Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC_A, psrc="10.0.0.1", pdst="10.0.0.2")
    f = H.parse(bytes(p))
    assert (f["arp.op"], f["arp.hwtype"], f["arp.ptype"], f["arp.hlen"], f["arp.plen"]) == (1, 1, 0x0800, 6, 4)
    assert (f["arp.sha"], f["arp.sip"], f["arp.tip"]) == (MAC_A, "10.0.0.1", "10.0.0.2")
    assert f["arp.tha"] == "00:00:00:00:00:00"


def test_icmp_echo():
    p = Ether(bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="1.1.1.1", dst="2.2.2.2") / ICMP(type=8, id=0x77, seq=3) / b"ping"))
    f = H.parse(bytes(p))
    assert (f["icmp.type"], f["icmp.code"], f["icmp.id"], f["icmp.seq"], f["icmp.chksum"]) == \
        (8, 0, 0x77, 3, p[ICMP].chksum)


def test_ipv6_neighbour_solicitation_and_advertisement():
    ns = Ether(src=MAC_A, dst="33:33:ff:00:00:02") / IPv6(src="fe80::1", dst="ff02::1:ff00:2", hlim=255) / \
        ICMPv6ND_NS(tgt="2001:db8::2") / ICMPv6NDOptSrcLLAddr(lladdr=MAC_A)
    ns = Ether(bytes(ns))
    f = H.parse(bytes(ns))
    assert f["ipv6.version"] == 6 and f["ipv6.hlim"] == 255 and f["ipv6.nh"] == 58
    assert f["eth.multicast"] and not f["eth.broadcast"]
    assert f["icmp6.type"] == 135 and f["icmp6.chksum"] == ns[ICMPv6ND_NS].cksum
    assert f["nd.target"] == bytes.fromhex("20010db8000000000000000000000002")
    assert f["nd.opt1"] == MAC_A and "nd.opt2" not in f
    na = Ether(src=MAC_B, dst=MAC_A) / IPv6(src="2001:db8::2", dst="fe80::1") / \
        ICMPv6ND_NA(tgt="2001:db8::2", R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=MAC_B)
    f = H.parse(bytes(na))
    assert f["icmp6.type"] == 136 and (f["nd.R"], f["nd.S"], f["nd.O"]) == (False, True, True)
    assert f["nd.opt2"] == MAC_B


def test_nd_option_walk_stops_on_zero_length():
    # RFC 4861: an option of length 0 makes the whole packet invalid: nothing is found.
    p = Ether(src=MAC_A, dst=MAC_B) / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6ND_NS(tgt="::1") / (b"\x03\x00" + b"\x00" * 6) / \
        ICMPv6NDOptSrcLLAddr(lladdr=MAC_A)
    f = H.parse(bytes(p))
    assert "nd.opt1" not in f


def test_ipv6_traffic_class_and_flow_label():
    f = H.parse(bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6(tc=0xa5, fl=0xabcde, src="::1", dst="::2") / UDP()))
    assert (f["ipv6.tc"], f["ipv6.fl"]) == (0xa5, 0xabcde)


def test_ipv6_extension_headers_are_skipped():
    l4 = UDP(sport=1, dport=2) / b"data"
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / \
        IPv6ExtHdrRouting(addresses=["2001:db8::9"]) / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(offset=0, m=1) / l4
    b = bytes(pkt)
    off, proto = H.ipv6_l4_offset(b)
    assert proto == 17 and b[off:] == bytes(pkt[UDP])
    f = H.parse(bytes(Ether(src=MAC_A, dst=MAC_B) / pkt))
    assert f["udp.sport"] == 1 and f["udp.dport"] == 2
    # a non-first fragment has no L4 header: the walk stops at the fragment header
    later = bytes(IPv6(src="::1", dst="::2") / IPv6ExtHdrFragment(offset=3, nh=17) / (b"\x00" * 16))
    assert H.ipv6_l4_offset(later) == (40, 44)
    # a header that runs past the buffer
    assert H.ipv6_l4_offset(bytes(pkt)[:48])[0] == -1


def test_gre_with_key_and_mpls_label_stack():
    p = Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2") / GRE(key_present=1, key=0xdeadbeef, proto=0x8847) / \
        MPLS(label=1000, cos=5, s=0, ttl=63) / MPLS(label=17, cos=0, s=1, ttl=1) / IP() / UDP()
    f = H.parse(bytes(p))
    assert f["gre.ok"] and f["gre.len"] == 8 and f["gre.proto"] == 0x8847 and f["gre.key"] == 0xdeadbeef
    assert f["mpls"] == [(1000, 5, False, 63), (17, 0, True, 1)]
    p = Ether(src=MAC_A, dst=MAC_B) / IP() / GRE(chksum_present=1, seqnum_present=1, sequence_number=5, proto=0x0800) / IP()
    f = H.parse(bytes(p))
    assert f["gre.ok"] and f["gre.len"] == 12 and f["gre.key"] == 0
    p = Ether(src=MAC_A, dst=MAC_B) / IP() / GRE(version=1, proto=0x880b) / (b"\x00" * 8)
    assert not H.parse(bytes(p))["gre.ok"]


def test_mpls_over_ethernet_and_udp():
    p = Ether(src=MAC_A, dst=MAC_B) / MPLS(label=0xfffff, cos=7, s=1, ttl=255) / IP()
    assert H.parse(bytes(p))["mpls"] == [(0xfffff, 7, True, 255)]
    p = Ether(src=MAC_A, dst=MAC_B) / IP() / UDP(sport=49152, dport=6635) / MPLS(label=42, s=1, ttl=64) / IP()
    assert H.parse(bytes(p))["mpls"] == [(42, 0, True, 64)]


def test_mpls_lse_helpers():
    assert H.mpls_make(1000, 5, True, 63) == bytes(MPLS(label=1000, cos=5, s=1, ttl=63))
    lse = bytes(MPLS(label=1000, cos=5, s=0, ttl=63))
    b, parts = H.mpls_edit(lse, label=0x12345)
    assert parts == (0x12345, 5, False, 63) and b == bytes(MPLS(label=0x12345, cos=5, s=0, ttl=63))
    b, parts = H.mpls_edit(b, tc=2, bos=True, ttl=9)
    assert parts == (0x12345, 2, True, 9) and b == bytes(MPLS(label=0x12345, cos=2, s=1, ttl=9))
    b, parts = H.mpls_edit(b, bos=False, label=0x1fffff)       # label masked to 20 bits
    assert parts == (0xfffff, 2, False, 9)


def test_vxlan():
    p = Ether(src=MAC_A, dst=MAC_B) / IP() / UDP(sport=5000, dport=4789) / VXLAN(vni=0xabcdef) / Ether(src=MAC_A, dst=MAC_B) / IP()
    f = H.parse(bytes(p))
    assert f["vxlan.valid"] and f["vxlan.vni"] == 0xabcdef
    assert H.vxlan_make(0xabcdef) == bytes(VXLAN(vni=0xabcdef, flags=0x08))
    p = Ether(src=MAC_A, dst=MAC_B) / IP() / UDP(sport=5000, dport=4789) / VXLAN(vni=5, flags=0)
    assert not H.parse(bytes(p))["vxlan.valid"]
