"""Toeplitz RSS: the published verification values for Microsoft's key, the
table-driven hash against the bit-by-bit definition and the oracle, and the
symmetric variants."""
import ipaddress
import random

import pytest

from pypdk.errors import UsageError
from pypdk.net import _ref, rss

# Microsoft's "Verifying the RSS Hash Calculation" tables (default key):
# (source, source port, destination, destination port, 2-tuple hash, 4-tuple hash).
IPV4_VECTORS = [
    ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323e8fc2, 0x51ccc178),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xd718262a, 0xc626b0ea),
    ("24.19.198.95", 12898, "12.22.207.184", 38024, 0xd2d0a5de, 0x5c2b394a),
    ("38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xafc7327f),
    ("153.39.163.191", 44251, "202.188.127.2", 1303, 0x5d1809c5, 0x10e828a2),
]
IPV6_VECTORS = [
    ("3ffe:2501:200:1fff::7", 2794, "3ffe:2501:200:3::1", 1766, 0x2cc18cd5, 0x40207d3d),
    ("3ffe:501:8::260:97ff:fe40:efab", 14230, "ff02::1", 4739, 0x0f0c461c, 0xdde51bbf),
    ("3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, "fe80::200:f8ff:fe21:67cf", 38024, 0x4b61e985, 0x02d1feef),
]


@pytest.mark.parametrize("src,sport,dst,dport,h2,h4", IPV4_VECTORS)
def test_ipv4_verification_suite(src, sport, dst, dport, h2, h4):
    r = rss.Rss()
    assert r.ipv4(src, dst) == h2
    assert r.ipv4(src, dst, sport, dport) == h4
    assert _ref.toeplitz(rss.KEY_DEFAULT, _ref.rss_tuple_ipv4(src, dst, sport, dport)) == h4
    assert rss.toeplitz(rss.KEY_DEFAULT, _ref.rss_tuple_ipv4(src, dst)) == h2


@pytest.mark.parametrize("src,sport,dst,dport,h2,h4", IPV6_VECTORS)
def test_ipv6_verification_suite(src, sport, dst, dport, h2, h4):
    r = rss.Rss()
    assert r.ipv6(src, dst) == h2
    assert r.ipv6(src, dst, sport, dport) == h4
    assert _ref.toeplitz(rss.KEY_DEFAULT, _ref.rss_tuple_ipv6(src, dst, sport, dport)) == h4
    assert rss.toeplitz(rss.KEY_DEFAULT, _ref.rss_tuple_ipv6(src, dst)) == h2


def test_tables_equal_the_definition_for_random_keys_and_inputs():
    rnd = random.Random(5)
    for _ in range(40):
        key = bytes(rnd.getrandbits(8) for _ in range(40))
        r = rss.Rss(key)
        assert r.key == key
        for _ in range(25):
            data = bytes(rnd.getrandbits(8) for _ in range(rnd.choice([0, 1, 4, 8, 12, 13, 32, 36])))
            want = _ref.toeplitz(key, data)
            assert r.hash(data) == want
            assert rss.toeplitz(key, data) == want


def test_bitwise_hash_takes_any_key_length():
    rnd = random.Random(6)
    for klen in (4, 5, 16, 52, 60):
        key = bytes(rnd.getrandbits(8) for _ in range(klen))
        data = bytes(rnd.getrandbits(8) for _ in range(klen - 4))
        assert rss.toeplitz(key, data) == _ref.toeplitz(key, data)
    with pytest.raises(UsageError):
        rss.toeplitz(b"\x00" * 8, b"\x00" * 5)


def test_the_hash_is_linear_in_the_input():
    r = rss.Rss()
    rnd = random.Random(8)
    for _ in range(200):
        a = rnd.getrandbits(96).to_bytes(12, "big")
        b = rnd.getrandbits(96).to_bytes(12, "big")
        x = bytes(i ^ j for i, j in zip(a, b))
        assert r.hash(x) == r.hash(a) ^ r.hash(b)


def test_symmetric_variants_give_both_directions_one_hash():
    rnd = random.Random(9)
    r = rss.Rss()
    for _ in range(500):
        a, b = ipaddress.IPv4Address(rnd.getrandbits(32)), ipaddress.IPv4Address(rnd.getrandbits(32))
        pa, pb = rnd.getrandbits(16), rnd.getrandbits(16)
        assert r.ipv4(a, b, pa, pb, symmetric=True) == r.ipv4(b, a, pb, pa, symmetric=True)
        assert r.ipv4(a, b, symmetric=True) == r.ipv4(b, a, symmetric=True)
        a6, b6 = ipaddress.IPv6Address(rnd.getrandbits(128)), ipaddress.IPv6Address(rnd.getrandbits(128))
        assert r.ipv6(a6, b6, pa, pb, symmetric=True) == r.ipv6(b6, a6, pb, pa, symmetric=True)
        assert r.ipv6(a6, b6, symmetric=True) == r.ipv6(b6, a6, symmetric=True)
        # the canonical order is one of the two plain hashes
        assert r.ipv4(a, b, pa, pb, symmetric=True) in (r.ipv4(a, b, pa, pb), r.ipv4(b, a, pb, pa))
    # same address both ways: the ports decide
    assert r.ipv4("10.0.0.1", "10.0.0.1", 5, 6, symmetric=True) == r.ipv4("10.0.0.1", "10.0.0.1", 6, 5, symmetric=True)


def test_symmetric_key_makes_the_plain_hash_symmetric():
    rnd = random.Random(10)
    r = rss.Rss(rss.KEY_SYMMETRIC)
    for _ in range(300):
        a, b = rnd.getrandbits(32), rnd.getrandbits(32)
        pa, pb = rnd.getrandbits(16), rnd.getrandbits(16)
        assert r.ipv4(a, b, pa, pb) == r.ipv4(b, a, pb, pa)
        a6, b6 = rnd.getrandbits(128), rnd.getrandbits(128)
        assert r.ipv6(a6, b6, pa, pb) == r.ipv6(b6, a6, pb, pa)


def test_bad_keys_and_inputs_are_refused():
    with pytest.raises(UsageError):
        rss.Rss(b"short")
    with pytest.raises(UsageError):
        rss.Rss().hash(b"\x00" * 37)
