"""Checksums (cksum.pxd through cksum.pyx) against the plain-Python oracle
(_ref) on random data, and against what scapy puts in real packets."""
import random
import struct

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6,
                                IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop)

from pypdk.net import _ref, cksum
from tests.cy import net_headers as H


@settings(max_examples=400, deadline=None, database=None)
@given(st.binary(max_size=3000))
def test_inet_cksum_matches_the_oracle(data):
    assert cksum.inet(data) == _ref.cksum(data)
    assert cksum.fold_sum(data) == _ref.ones_sum(data)


def test_inet_cksum_every_length_and_alignment():
    rnd = random.Random(1)
    buf = bytes(rnd.getrandbits(8) for _ in range(600))
    for start in range(8):
        for n in range(0, 300):
            d = memoryview(buf)[start:start + n]
            assert cksum.inet(d) == _ref.cksum(bytes(d)), (start, n)


def test_all_ones_and_zero_buffers():
    assert cksum.inet(b"") == 0xffff
    assert cksum.inet(b"\x00" * 64) == 0xffff
    assert cksum.inet(b"\xff" * 1500) == 0x0000          # sum is 0xffff (-0)
    assert cksum.inet(b"\xff" * 1501) == _ref.cksum(b"\xff" * 1501)


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(min_size=2, max_size=2000), st.integers(min_value=0, max_value=1000))
def test_partial_sums_compose_at_even_cuts(data, cut):
    cut = min(cut, len(data)) & ~1
    assert H.cksum_split(data, cut) == _ref.cksum(data)


def _ip(**kw):
    kw.setdefault("src", "10.1.2.3")
    kw.setdefault("dst", "192.0.2.77")
    return IP(**kw)


@pytest.mark.parametrize("pkt", [
    _ip(ttl=64) / UDP(sport=1234, dport=53) / b"query",
    _ip(options=b"\x94\x04\x00\x00") / TCP(sport=443, dport=50000, flags="PA", seq=1, ack=2) / (b"z" * 1001),
    _ip(flags="DF", id=0) / TCP(sport=1, dport=2, options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]),
    _ip() / UDP(sport=4789, dport=4789) / (b"\x01" * 1471),
    _ip(src="255.255.255.255", dst="255.255.255.255") / UDP(sport=0xffff, dport=0xffff) / b"\xff\xff\xff",
])
def test_ipv4_udp_tcp_match_scapy(pkt):
    b = bytes(pkt)
    p = IP(b)
    l4 = p[UDP] if UDP in p else p[TCP]
    assert cksum.ipv4_hdr(b) == p.chksum
    assert cksum.ipv4_hdr_ok(b)
    assert cksum.ipv4_l4(b) == l4.chksum
    assert cksum.ipv4_l4_ok(b)
    hl = (b[0] & 15) * 4
    assert cksum.ipv4_l4(b) == _ref.ipv4_l4_cksum(int.from_bytes(b[12:16], "big"),
                                                   int.from_bytes(b[16:20], "big"), b[9], b[hl:])
    # corrupt one payload byte: both verifiers notice the one that covers it
    bad = bytearray(b)
    bad[-1] ^= 0x40
    assert not cksum.ipv4_l4_ok(bad)
    bad = bytearray(b)
    bad[8] ^= 1                                          # the TTL
    assert not cksum.ipv4_hdr_ok(bad)


def test_ipv4_header_field_is_ignored_not_zeroed_by_caller():
    b = bytearray(bytes(_ip() / UDP()))
    want = cksum.ipv4_hdr(b)
    b[10:12] = b"\x12\x34"
    assert cksum.ipv4_hdr(b) == want
    b[10:12] = struct.pack("!H", want)
    assert cksum.ipv4_hdr_ok(b)


def test_udp_zero_checksum_is_sent_as_ffff_and_means_none():
    # Choose the last payload word so the sum is all ones: the computed checksum is 0.
    b = bytearray(bytes(_ip() / UDP(sport=7, dport=7, chksum=0) / b"\x00\x00"))
    pseudo = struct.pack("!4s4sBBH", b[12:16], b[16:20], 0, 17, len(b) - 20)
    b[28:30] = struct.pack("!H", _ref.cksum(pseudo + bytes(b[20:])))
    assert _ref.ones_sum(pseudo + bytes(b[20:])) == 0xffff
    assert cksum.ipv4_l4(b) == 0xffff
    b[26:28] = b"\xff\xff"
    assert cksum.ipv4_l4_ok(b)
    b[26:28] = b"\x00\x00"
    assert cksum.ipv4_l4_ok(b)                            # 0: no checksum (IPv4)


def test_icmp_matches_scapy():
    p = IP(bytes(_ip() / ICMP(type=8, id=9, seq=10) / (b"abc" * 33)))
    assert cksum.icmp(bytes(p[ICMP])) == p[ICMP].chksum


V6 = dict(src="2001:db8:0:1::10", dst="fe80::abcd:1234")


@pytest.mark.parametrize("pkt", [
    IPv6(**V6) / UDP(sport=5353, dport=5353) / b"mdns",
    IPv6(**V6) / TCP(sport=22, dport=40000, flags="S") / (b"t" * 777),
    IPv6(**V6) / ICMPv6EchoRequest(id=1, seq=2, data=b"hello"),
    IPv6(src="fe80::1", dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt="2001:db8::2") /
    ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01"),
    IPv6(**V6) / ICMPv6ND_NA(tgt="2001:db8::2", R=1, S=1),
    IPv6(**V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2) / b"behind ext headers",
])
def test_ipv6_l4_match_scapy(pkt):
    b = bytes(pkt)
    p = IPv6(b)
    l4 = p.lastlayer()
    while l4.underlayer is not None and not hasattr(l4, "chksum") and not hasattr(l4, "cksum"):
        l4 = l4.underlayer
    field = l4.chksum if hasattr(l4, "chksum") else l4.cksum
    assert cksum.ipv6_l4(b) == field
    assert cksum.ipv6_l4_ok(b)
    bad = bytearray(b)
    bad[-1] ^= 0x10
    assert not cksum.ipv6_l4_ok(bad)


def test_ipv6_l4_matches_the_oracle_on_random_payloads():
    rnd = random.Random(7)
    for _ in range(300):
        proto = rnd.choice([6, 17, 58])
        payload = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(8 if proto != 6 else 20, 200)))
        src, dst = rnd.getrandbits(128).to_bytes(16, "big"), rnd.getrandbits(128).to_bytes(16, "big")
        hdr = struct.pack("!IHBB", 6 << 28, len(payload), proto, 64) + src + dst
        assert cksum.ipv6_l4(hdr + payload) == _ref.ipv6_l4_cksum(src, dst, proto, payload)


# ---- incremental (RFC 1624) ------------------------------------------------------

def test_update16_equals_recomputation_on_random_data():
    rnd = random.Random(11)
    for _ in range(5000):
        n = rnd.randrange(2, 80) & ~1
        data = bytes(rnd.getrandbits(8) for _ in range(n))
        if rnd.random() < 0.1:
            data = b"\xff" * n                            # sums near -0
        off = rnd.randrange(0, n, 2)
        new = rnd.getrandbits(16)
        old = int.from_bytes(data[off:off + 2], "big")
        want = _ref.cksum_after_change(data, off, new.to_bytes(2, "big"))
        assert cksum.update16(_ref.cksum(data), old, new) == want


def test_update32_equals_recomputation_on_random_data():
    rnd = random.Random(12)
    for _ in range(5000):
        n = rnd.randrange(4, 80) & ~1
        data = bytes(rnd.getrandbits(8) for _ in range(n))
        off = rnd.randrange(0, n - 3, 2)
        new = rnd.getrandbits(32)
        old = int.from_bytes(data[off:off + 4], "big")
        want = _ref.cksum_after_change(data, off, new.to_bytes(4, "big"))
        assert cksum.update32(_ref.cksum(data), old, new) == want


def test_update_from_a_zero_or_ffff_checksum():
    # The cases where RFC 1141's formula went wrong (-0 vs +0).
    data = bytearray(b"\x00\x00" * 4)
    data[0:2] = b"\xff\xff"                                # sum 0xffff, cksum 0
    assert _ref.cksum(bytes(data)) == 0
    assert cksum.update16(0, 0xffff, 0x0001) == _ref.cksum_after_change(bytes(data), 0, b"\x00\x01")
    assert cksum.update16(0, 0x0000, 0x0000) == 0
    assert cksum.udp_update16(0, 0x1234, 0x4321) == 0      # UDP "no checksum" stays so
    assert cksum.udp_update16(0xffff, 0, 0) == 0xffff
    assert cksum.udp_update32(0x5555, 0, 0x5555) == 0xffff  # a zero result is sent as 0xffff


def test_ttl_decrement_keeps_the_header_valid():
    rnd = random.Random(3)
    for _ in range(500):
        p = IP(src=rnd.getrandbits(32), dst=rnd.getrandbits(32), ttl=rnd.randrange(2, 256), id=rnd.getrandbits(16),
               proto=rnd.choice([1, 6, 17, 47])) / b"x"
        b = bytearray(bytes(p))
        ttl = b[8]
        assert cksum.ttl_dec(b) == ttl - 1
        assert b[8] == ttl - 1 and cksum.ipv4_hdr_ok(b)
        del p.chksum
        p.ttl = ttl - 1
        assert bytes(b)[10:12] == bytes(IP(bytes(p)))[10:12]


@pytest.mark.parametrize("l4", [UDP(sport=1000, dport=53) / b"udp data",
                                TCP(sport=1000, dport=80, flags="S", seq=99) / b"tcp data",
                                UDP(sport=1000, dport=53, chksum=0) / b"no cksum"])
@pytest.mark.parametrize("src", [True, False])
def test_nat_rewrite_equals_scapy_recomputation(l4, src):
    p = IP(src="10.0.0.5", dst="198.51.100.7") / l4
    b = bytearray(bytes(p))
    cksum.nat_rewrite(b, src, 0xcb007101, 40000)             # 203.0.113.1
    q = IP(bytes(p))
    if src:
        q.src, q[l4.__class__].sport = "203.0.113.1", 40000
    else:
        q.dst, q[l4.__class__].dport = "203.0.113.1", 40000
    del q.chksum
    if not (isinstance(l4, UDP) and l4.chksum == 0):
        del q[l4.__class__].chksum
    assert bytes(b) == bytes(q)
    assert cksum.ipv4_hdr_ok(b) and cksum.ipv4_l4_ok(b)
