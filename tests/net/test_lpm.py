"""LPM4 and LPM6 against the plain-Python oracle (_ref.LPM): random overlapping
route sets, deletes that must bring back the covering route, the /0, /32
and /128 corners, a million IPv4 routes, the limits, and nogil readers on a
worker lcore while the main thread changes the table."""
import ipaddress
import random
import time

import numpy as np
import pytest

from pypdk.errors import ResourceError, UsageError
from pypdk.net import _ref
from pypdk.net.lpm4 import LPM4, MAX_NH4
from pypdk.net.lpm6 import LPM6, MAX_NH6


def _check4(t, o, addrs):
    got = t.lookup_bulk(np.array(addrs, dtype=np.uint32))
    for a, g in zip(addrs, got):
        want = o.lookup(a)
        assert (None if g < 0 else g) == want, (str(ipaddress.IPv4Address(a)), g, want)
        assert t.lookup(a) == want


def _probe_addrs4(rnd, present, n):
    out = []
    for _ in range(n):
        if present and rnd.random() < 0.7:
            ip, d = rnd.choice(present)
            host = rnd.getrandbits(32 - d) if d < 32 else 0
            out.append(ip | host)
        else:
            out.append(rnd.getrandbits(32))
    return out


def test_lpm4_random_overlapping_routes_against_the_oracle():
    rnd = random.Random(1)
    t, o = LPM4(20000, 4096), _ref.LPM(32)
    present = set()
    bases = [0x0a000000, 0x0a0a0a00, 0xc0a80100, 0xac100000]
    for step in range(10000):
        if present and rnd.random() < 0.3:
            ip, d = rnd.choice(sorted(present))
            t.delete(ip, d)
            o.delete(ip, d)
            present.discard((ip, d))
        else:
            d = rnd.choice([0, 1, 7, 8, 15, 16, 20, 23, 24, 24, 25, 26, 27, 28, 29, 30, 31, 32, 32])
            ip = (rnd.choice(bases) | rnd.getrandbits(12)) if rnd.random() < 0.8 else rnd.getrandbits(32)
            ip &= o.mask(d)
            nh = rnd.randrange(MAX_NH4 + 1)
            t.add(ip, d, nh)
            o.add(ip, d, nh)
            present.add((ip, d))
        if step % 1000 == 999:
            t.reclaim()
            _check4(t, o, _probe_addrs4(rnd, sorted(present), 1000))
    assert len(t) == len(o)
    assert t.rules() == [(str(ipaddress.IPv4Address(p)), d, nh) for p, d, nh in o.rules()]
    for ip, d in sorted(present):
        t.delete(ip, d)
    assert len(t) == 0 and t.lookup("10.0.0.1") is None
    t.reclaim()
    assert t.tbl8_used == 0 and t.tbl8_free == t.number_tbl8s


def test_delete_restores_the_covering_route():
    t = LPM4(100, 16)
    t.add("10.0.0.0", 8, 1)
    t.add("10.1.0.0", 16, 2)
    t.add("10.1.1.0", 24, 3)
    t.add("10.1.1.128", 25, 4)
    t.add("10.1.1.129", 32, 5)
    assert [t.lookup(a) for a in ("10.1.1.129", "10.1.1.130", "10.1.1.1", "10.1.2.1", "10.2.0.0", "11.0.0.0")] == \
        [5, 4, 3, 2, 1, None]
    t.delete("10.1.1.128", 25)                  # the /32 inside stays, the rest falls to the /24
    assert [t.lookup(a) for a in ("10.1.1.129", "10.1.1.130", "10.1.1.200")] == [5, 3, 3]
    t.delete("10.1.1.0", 24)                    # the group keeps the /32, the rest falls to the /16
    assert [t.lookup(a) for a in ("10.1.1.129", "10.1.1.130", "10.1.1.1")] == [5, 2, 2]
    assert t.tbl8_used == 1
    t.delete("10.1.1.129", 32)                  # no route longer than /24 left: the group goes
    assert t.tbl8_used == 0 and t.tbl8_pending == 1
    assert t.lookup("10.1.1.129") == 2
    t.delete("10.1.0.0", 16)
    assert t.lookup("10.1.1.129") == 1
    t.add("0.0.0.0", 0, 99)
    t.delete("10.0.0.0", 8)
    assert t.lookup("10.1.1.129") == 99 and t.lookup("255.255.255.255") == 99
    t.delete("0.0.0.0", 0)
    assert t.lookup("10.1.1.129") is None
    assert t.reclaim() == 1 and t.tbl8_free == 16


def test_host_bits_are_ignored_and_next_hops_change_in_place():
    t = LPM4(10, 4)
    t.add("192.0.2.77", 24, 1)                  # host bits masked
    assert t.rules() == [("192.0.2.0", 24, 1)]
    t.add("192.0.2.0", 24, 2)                   # same route: new next hop
    assert len(t) == 1 and t.lookup("192.0.2.1") == 2 and t.get("192.0.2.0", 24) == 2
    t.add(0xc0000201, 32, MAX_NH4)
    assert t.lookup(0xc0000201) == MAX_NH4 and t.lookup("192.0.2.2") == 2
    assert t.get("192.0.2.0", 25) is None


def test_lpm4_limits():
    t = LPM4(3, 2)
    t.add("10.0.0.1", 32, 1)
    t.add("10.0.1.1", 32, 1)
    with pytest.raises(ResourceError, match="tbl8"):
        t.add("10.0.2.1", 32, 1)               # a third /24 with a long route: no group
    t.add("10.0.0.2", 32, 1)                    # same /24: no new group needed
    with pytest.raises(ResourceError, match="max_rules"):
        t.add("10.9.0.0", 16, 1)
    t.add("10.0.0.2", 32, 3)                    # changing an existing route needs no room
    t.delete("10.0.1.1", 32)
    with pytest.raises(ResourceError, match="reclaim"):
        t.add("10.0.3.1", 32, 1)               # the freed group waits for reclaim()
    assert t.tbl8_pending == 1 and t.reclaim() == 1
    t.add("10.0.3.1", 32, 1)
    assert t.lookup("10.0.3.1") == 1
    with pytest.raises(KeyError):
        t.delete("10.0.1.1", 32)
    for bad in [("10.0.0.0", 33, 1), ("10.0.0.0", -1, 1), ("10.0.0.0", 8, MAX_NH4 + 1), ("10.0.0.256", 8, 1),
                (1 << 32, 8, 1), ("10.0.0.0", 8, "x")]:
        with pytest.raises(UsageError):
            t.add(*bad)
    with pytest.raises(UsageError):
        LPM4(0, 1)
    t.close()
    with pytest.raises(UsageError):
        t.lookup("10.0.0.1")


def test_lookup_bulk_equals_single_lookups_at_any_length():
    rnd = random.Random(2)
    t = LPM4(1000, 512)
    for _ in range(500):
        d = rnd.randrange(33)
        t.add(rnd.getrandbits(32), d, rnd.randrange(1000))
    for n in (0, 1, 7, 8, 9, 16, 33, 1000):
        addrs = [rnd.getrandbits(32) for _ in range(n)]
        got = t.lookup_bulk(addrs)
        assert got.dtype == np.int64 and list(got) == [-1 if t.lookup(a) is None else t.lookup(a) for a in addrs]
    assert list(t.lookup_bulk(["10.0.0.1"])) == [-1 if t.lookup("10.0.0.1") is None else t.lookup("10.0.0.1")]


def _np_oracle(prefixes, depths, nhs, queries, bits=32):
    """Longest match of each query by sorted search per depth (IPv4)."""
    res = np.full(len(queries), -1, dtype=np.int64)
    todo = np.ones(len(queries), dtype=bool)
    for d in range(bits, -1, -1):
        sel = depths == d
        if not sel.any():
            continue
        order = np.argsort(prefixes[sel])
        keys, vals = prefixes[sel][order], nhs[sel][order]
        mask = np.uint32(0 if d == 0 else (0xffffffff << (32 - d)) & 0xffffffff)
        q = queries & mask
        idx = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
        hit = todo & (keys[idx] == q)
        res[hit] = vals[idx][hit]
        todo &= ~hit
    return res


def test_a_million_ipv4_routes():
    rng = np.random.default_rng(3)
    parts = []

    def routes(n, dmin, dmax, base=None):
        d = rng.integers(dmin, dmax + 1, n).astype(np.uint8)
        ip = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32) if base is None else \
            (base[rng.integers(0, len(base), n)] | rng.integers(0, 256, n).astype(np.uint32))
        mask = np.where(d == 0, 0, (np.uint64(0xffffffff) << (32 - d.astype(np.uint64))) & 0xffffffff)
        parts.append((ip & mask.astype(np.uint32), d))

    routes(700_000, 24, 24)
    routes(200_000, 16, 23)
    routes(1_500, 8, 15)
    long_base = (rng.integers(0, 1 << 24, 6000, dtype=np.uint32) << 8).astype(np.uint32)
    routes(160_000, 25, 32, long_base)
    parts.append((np.zeros(1, np.uint32), np.zeros(1, np.uint8)))
    ip = np.concatenate([p[0] for p in parts])
    d = np.concatenate([p[1] for p in parts])
    key = (ip.astype(np.uint64) << 6) | d
    _, first = np.unique(key, return_index=True)
    first = rng.permutation(first)
    ip, d = ip[first], d[first]
    nh = rng.integers(0, MAX_NH4 + 1, len(ip)).astype(np.uint32)
    n = len(ip)
    assert n > 1_000_000
    t = LPM4(n, 8192)
    assert t.add_bulk(ip, d, nh) == n and len(t) == n
    q = np.concatenate([rng.integers(0, 1 << 32, 500_000, dtype=np.uint64).astype(np.uint32),
                        long_base[rng.integers(0, len(long_base), 300_000)] | rng.integers(0, 256, 300_000).astype(np.uint32),
                        ip[:200_000] | rng.integers(0, 1 << 8, 200_000).astype(np.uint32)])
    assert (t.lookup_bulk(q) == _np_oracle(ip, d, nh, q)).all()
    # delete a tenth: the covering routes come back
    gone = rng.choice(n, n // 10, replace=False)
    for i in gone:
        t.delete(int(ip[i]), int(d[i]))
    keep = np.ones(n, dtype=bool)
    keep[gone] = False
    assert (t.lookup_bulk(q) == _np_oracle(ip[keep], d[keep], nh[keep], q)).all()
    t.delete_all()
    assert len(t) == 0 and (t.lookup_bulk(q[:1000]) == -1).all()
    t.reclaim()
    assert t.tbl8_free == 8192


# ---- IPv6 ---------------------------------------------------------------------------

def _probe_addrs6(rnd, present, n):
    out = []
    for _ in range(n):
        if present and rnd.random() < 0.7:
            ip, d = rnd.choice(present)
            out.append(ip | (rnd.getrandbits(128 - d) if d < 128 else 0))
        else:
            out.append(rnd.getrandbits(128))
    return out


def test_lpm6_random_overlapping_routes_against_the_oracle():
    rnd = random.Random(4)
    t, o = LPM6(20000, 40000), _ref.LPM(128)
    present = set()
    bases = [0x20010db8 << 96, (0x20010db8_00010002 << 64), (0xfd00 << 112), (0x20010db8_00010002_00030004 << 32)]
    depths = [0, 1, 8, 16, 23, 24, 25, 31, 32, 33, 40, 47, 48, 48, 56, 63, 64, 64, 65, 96, 112, 120, 127, 128, 128]
    for step in range(8000):
        if present and rnd.random() < 0.3:
            ip, d = rnd.choice(sorted(present))
            t.delete(ip, d)
            o.delete(ip, d)
            present.discard((ip, d))
        else:
            d = rnd.choice(depths)
            ip = (rnd.choice(bases) | rnd.getrandbits(rnd.choice([8, 24, 40, 72]))) if rnd.random() < 0.8 \
                else rnd.getrandbits(128)
            ip &= o.mask(d)
            nh = rnd.randrange(MAX_NH6 + 1)
            t.add(ip, d, nh)
            o.add(ip, d, nh)
            present.add((ip, d))
        if step % 800 == 799:
            t.reclaim()
            addrs = _probe_addrs6(rnd, sorted(present), 800)
            got = t.lookup_bulk(addrs)
            for a, g in zip(addrs, got):
                want = o.lookup(a)
                assert (None if g < 0 else g) == want, (str(ipaddress.IPv6Address(a)), g, want)
                assert t.lookup(a) == want
    assert t.rules() == [(str(ipaddress.IPv6Address(p)), d, nh) for p, d, nh in o.rules()]
    for ip, d in sorted(present):
        t.delete(ip, d)
    t.reclaim()
    assert len(t) == 0 and t.tbl8_used == 0


def test_lpm6_covering_routes_across_levels():
    t = LPM6(100, 64)
    t.add("2001:db8::", 32, 1)
    t.add("2001:db8:1::", 48, 2)
    t.add("2001:db8:1:2::", 64, 3)
    t.add("2001:db8:1:2::5", 128, 4)
    t.add("::", 0, 9)
    probe = ["2001:db8:1:2::5", "2001:db8:1:2::6", "2001:db8:1:3::", "2001:db8:2::", "2001:db9::", "::1"]
    assert [t.lookup(a) for a in probe] == [4, 3, 2, 1, 9, 9]
    used = t.tbl8_used
    assert used == 13                               # bytes 3..15 for the /128
    t.delete("2001:db8:1:2::", 64)
    assert [t.lookup(a) for a in probe] == [4, 2, 2, 1, 9, 9]
    t.delete("2001:db8:1:2::5", 128)               # the groups of bytes 6..15 become uniform
    assert [t.lookup(a) for a in probe] == [2, 2, 2, 1, 9, 9]
    assert t.tbl8_used == 3 and t.tbl8_pending == 10
    t.delete("2001:db8:1::", 48)
    t.delete("2001:db8::", 32)
    assert [t.lookup(a) for a in probe] == [9] * 6
    assert t.tbl8_used == 0
    t.reclaim()
    assert t.tbl8_free == 64
    t.add("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 128, MAX_NH6)
    assert t.lookup((1 << 128) - 1) == MAX_NH6 and t.lookup((1 << 128) - 2) == 9
    assert t.lookup(bytes(16)) == 9


def test_lpm6_limits():
    t = LPM6(4, 13)
    t.add("2001:db8::1", 128, 1)                   # 13 groups
    with pytest.raises(ResourceError, match="tbl8"):
        t.add("2001:db9::1", 128, 1)
    t.add("2001:db8::2", 128, 1)                   # shares all 13
    t.add("2001:db8::", 24, 1)
    t.add("2001:db8::", 25, 1)                     # uses the existing byte-3 group
    with pytest.raises(ResourceError, match="max_rules"):
        t.add("::", 0, 1)
    for bad in [("::", 129, 1), ("::", 8, MAX_NH6 + 1), ("not an address", 8, 1), (b"\x00" * 15, 8, 1)]:
        with pytest.raises(UsageError):
            t.add(*bad)
    with pytest.raises(KeyError):
        t.delete("2001:db8::3", 128)


def test_lpm6_many_routes():
    rng = np.random.default_rng(5)
    n48, n64, n128 = 200_000, 50_000, 50_000
    pre32 = np.array([0x20010db8, 0x2a0a0000, 0x2001067c], dtype=np.uint64)

    def addrs(n, depth, hi_words):
        a = np.zeros((n, 16), dtype=np.uint8)
        hi = hi_words[rng.integers(0, len(hi_words), n)]
        a[:, :4] = hi.astype(">u4").view(np.uint8).reshape(n, 4)
        a[:, 4:] = rng.integers(0, 256, (n, 12), dtype=np.uint8)
        full, rem = divmod(depth, 8)
        a[:, full + (1 if rem else 0):] = 0
        if rem:
            a[:, full] &= (0xff << (8 - rem)) & 0xff
        return a

    a48 = addrs(n48, 48, pre32)
    a64 = addrs(n64, 64, pre32[:1])
    a64[:, 4:6] = 0                                   # /64s under a few /48s
    a64[:, 6] = rng.integers(0, 4, n64)
    a128 = addrs(n128, 128, pre32[:1])
    a128[:, 4:8] = 0                                  # hosts in 16 /64s
    a128[:, 8:15] = 0
    a128[:, 7] = rng.integers(0, 16, n128)
    a128[:, 15] = rng.integers(0, 256, n128)
    p = np.concatenate([a48, a64, a128])
    d = np.concatenate([np.full(n48, 48), np.full(n64, 64), np.full(n128, 128)]).astype(np.uint8)
    keys = np.concatenate([p, d[:, None]], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    p, d = p[first], d[first]
    nh = rng.integers(0, MAX_NH6 + 1, len(p)).astype(np.uint32)
    t = LPM6(len(p) + 1, 1 << 14)
    t.add_bulk(p, d, nh)
    t.add("2001:db8::", 32, 77)
    o = _ref.LPM(128)
    for row, dd, h in zip(p, d, nh):
        o.add(int.from_bytes(row.tobytes(), "big"), int(dd), int(h))
    o.add(0x20010db8 << 96, 32, 77)
    sample = rng.choice(len(p), 20_000, replace=False)
    q = p[sample].copy()
    q[:, 15] ^= rng.integers(0, 2, len(q), dtype=np.uint8)
    got = t.lookup_bulk(q)
    want = [o.lookup(int.from_bytes(r.tobytes(), "big")) for r in q]
    assert list(got) == [-1 if w is None else w for w in want]
    assert t.tbl8_used < 1 << 14


# ---- readers on a worker lcore while the table changes ------------------------------------

def _enc4(ip, d):
    dd = min(d, 26)
    return (d << 18) | ((ip >> (32 - dd)) & ((1 << (dd - 8)) - 1))


def test_lpm4_readers_see_consistent_routes_during_updates(eal_no_huge):
    from tests.cy import net_readers
    rnd = random.Random(6)
    t, o = LPM4(5000, 48), _ref.LPM(32)             # few groups: they are recycled all the time
    t.add("10.0.0.0", 8, 7)
    o.add(0x0a000000, 8, 7)
    region = [0x0a010000 | (x << 8) for x in range(32)]           # 32 /24s in 10.1/16
    covered = [r | rnd.getrandbits(8) for r in region for _ in range(64)] + \
              [0x0a000000 | rnd.getrandbits(24) for _ in range(1024)]
    outside = [rnd.choice([0x0b000000, 0xc0a80000, 0x7f000000]) | rnd.getrandbits(16) for _ in range(512)]
    addrs = np.array(covered + outside, dtype=np.uint32)
    reader = net_readers.lpm4_reader(t, addrs, len(covered), 7, 5)
    reader.start(eal_no_huge, 1)
    present = set()
    ops = 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline or ops < 3000:
            if present and rnd.random() < 0.45:
                ip, d = rnd.choice(sorted(present))
                t.delete(ip, d)
                o.delete(ip, d)
                present.discard((ip, d))
            elif rnd.random() < 0.03:
                t.add(0, 0, 5)
                o.add(0, 0, 5)
                present.add((0, 0))
            else:
                d = rnd.choice([9, 12, 16, 20, 24, 25, 26, 27, 28, 29, 30, 31, 32, 32])
                ip = (rnd.choice(region) | rnd.getrandbits(8)) & o.mask(d)
                try:
                    t.add(ip, d, _enc4(ip, d))
                except ResourceError:                # out of groups: wait out the readers, recycle
                    reader.wait_quiescent()
                    t.reclaim()
                    continue
                o.add(ip, d, _enc4(ip, d))
                present.add((ip, d))
            ops += 1
            if ops % 50 == 0:
                reader.wait_quiescent()
                t.reclaim()
    finally:
        stats = reader.stop(eal_no_huge, 1)
    assert stats["errors"] == 0, stats
    assert stats["lookups"] > 100_000 and stats["passes"] > 1000
    _check4(t, o, list(addrs))


def _enc6(a, d):
    dd = min(d, 46)
    return (d << 14) | ((a >> (128 - dd)) & ((1 << (dd - 32)) - 1))


def test_lpm6_readers_see_consistent_routes_during_updates(eal_no_huge):
    from tests.cy import net_readers
    rnd = random.Random(7)
    t, o = LPM6(5000, 200), _ref.LPM(128)
    base = 0x20010db8 << 96
    t.add(base, 32, 7)
    o.add(base, 32, 7)
    region = [base | (x << 80) | (y << 64) for x in range(4) for y in range(8)]
    covered = [r | rnd.getrandbits(64) for r in region for _ in range(32)] + \
              [r | (rnd.getrandbits(8) << 56) for r in region for _ in range(8)]
    outside = [(0xfd00 << 112) | rnd.getrandbits(100) for _ in range(256)]
    addrs = np.frombuffer(b"".join(a.to_bytes(16, "big") for a in covered + outside), dtype=np.uint8).reshape(-1, 16)
    reader = net_readers.lpm6_reader(t, addrs, len(covered), 7, 5)
    reader.start(eal_no_huge, 1)
    present = set()
    ops = 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline or ops < 2000:
            if present and rnd.random() < 0.45:
                ip, d = rnd.choice(sorted(present))
                t.delete(ip, d)
                o.delete(ip, d)
                present.discard((ip, d))
            elif rnd.random() < 0.03:
                t.add(0, 0, 5)
                o.add(0, 0, 5)
                present.add((0, 0))
            else:
                d = rnd.choice([33, 40, 48, 56, 60, 64, 64, 72, 96, 127, 128, 128])
                ip = (rnd.choice(region) | rnd.getrandbits(64)) & o.mask(d)
                try:
                    t.add(ip, d, _enc6(ip, d))
                except ResourceError:
                    reader.wait_quiescent()
                    t.reclaim()
                    continue
                o.add(ip, d, _enc6(ip, d))
                present.add((ip, d))
            ops += 1
            if ops % 50 == 0:
                reader.wait_quiescent()
                t.reclaim()
    finally:
        stats = reader.stop(eal_no_huge, 1)
    assert stats["errors"] == 0, stats
    assert stats["lookups"] > 100_000
    got = t.lookup_bulk(addrs)
    want = [o.lookup(int.from_bytes(r.tobytes(), "big")) for r in addrs]
    assert list(got) == [-1 if w is None else w for w in want]


@pytest.mark.parametrize("cls, net", [(LPM4, "10.0.0.0"), (LPM6, "2001:db8::")])
def test_close_and_the_context_manager_free_the_tables(cls, net):
    with cls(16, 4) as t:
        t.add(net, 16, 7)
        assert t.lookup(net) == 7
    with pytest.raises(UsageError, match="closed"):
        t.lookup(net)
    t.close()                      # a second close is a no-op
