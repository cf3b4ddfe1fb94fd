"""pypdk.net's Python helpers: MAC spelling, ARP frames (checked by scapy), protocol constants."""
import pytest
from scapy.layers.l2 import ARP, Ether

from pypdk.errors import UsageError
from pypdk.net import proto
from pypdk.net.addr import mac_str, parse_mac
from pypdk.net.arp_frames import ARP_OP_REPLY, ARP_OP_REQUEST, arp_frame, parse_arp

MAC_A, MAC_B = "02:00:00:00:01:03", "02:00:00:00:01:04"


def test_mac_round_trip_and_bad_spellings():
    b = parse_mac(MAC_A)
    assert b == bytes.fromhex("020000000103") and mac_str(b) == MAC_A
    assert parse_mac(b) == b and parse_mac("02:AB:cd:00:00:01") == bytes.fromhex("02abcd000001")
    for bad in ["zz", "02:00:00:00:01", "02:00:00:00:01:3", "02:00:00:00:01:03:04", "0g:00:00:00:01:03", 5]:
        with pytest.raises(UsageError, match=r"--dst-mac .* is not a MAC address"):
            parse_mac(bad, "--dst-mac")


def test_arp_request_and_reply_as_scapy_reads_them():
    ip_a, ip_b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    req = arp_frame(ARP_OP_REQUEST, parse_mac(MAC_A), ip_a, parse_mac(MAC_B), ip_b)
    p = Ether(req)
    assert len(req) == proto.ETHER_MIN_LEN and p.dst == "ff:ff:ff:ff:ff:ff" and p.src == MAC_A
    assert (p[ARP].op, p[ARP].hwsrc, p[ARP].psrc, p[ARP].hwdst, p[ARP].pdst) == (
        1, MAC_A, "10.0.0.1", "00:00:00:00:00:00", "10.0.0.2")
    rep = bytes(Ether(src=MAC_B, dst=MAC_A) / ARP(op=2, hwsrc=MAC_B, psrc="10.0.0.2", hwdst=MAC_A, pdst="10.0.0.1"))
    assert parse_arp(rep) == (ARP_OP_REPLY, parse_mac(MAC_B), ip_b, parse_mac(MAC_A), ip_a)
    assert Ether(arp_frame(ARP_OP_REPLY, parse_mac(MAC_B), ip_b, parse_mac(MAC_A), ip_a)).dst == MAC_A
    assert parse_arp(rep[:40]) is None and parse_arp(bytes(60)) is None


def test_protocol_constants_are_the_wire_values():
    assert (proto.ETHER_TYPE_IPV4, proto.ETHER_TYPE_ARP, proto.ETHER_TYPE_IPV6) == (0x0800, 0x0806, 0x86DD)
    assert (proto.UDP_PORT_VXLAN, proto.UDP_PORT_MPLS) == (4789, 6635)
    assert (proto.ETHER_HDR_LEN, proto.IPV4_HDR_LEN, proto.IPV6_HDR_LEN, proto.UDP_HDR_LEN) == (14, 20, 40, 8)
    assert (proto.IPPROTO_UDP, proto.IPPROTO_TCP, proto.IPPROTO_GRE) == (17, 6, 47)
