"""pypdk.net's hot path: LPM lookups (IPv4: 1 route and a 1M-route table of
a BGP-like shape; IPv6), flow-hash lookups (1 flow and 1M flows), the
Internet checksum of a 1500-byte packet and of an IPv4 header, and the
Toeplitz hash, each beside its plain-Python equivalent (the _ref oracle, a
dict, scapy's checksum) and, where DPDK has the same case, beside DPDK's own
perf autotest (lpm_perf_autotest, hash_perf_autotest) in the same group.

The pypdk cases time nogil loops in benchmarks/net_kernels.pyx; their
extra_info carries ns per operation (the median of the rounds). Python
cases divide their mean time by the operations they did.

Run: python -m pytest benchmarks/bench_net.py --benchmark-only --benchmark-group-by=group
     (PYPDK_BENCH_DPDK_NET=1 adds DPDK's lpm and hash perf autotests, about 10 minutes)
"""
import gc
import os
import re

import numpy as np
import pytest

from benchmarks import dpdk_ref

LOOKUPS = 4_000_000          # per pypdk round
PY_OPS = 20_000              # per Python round
ADDRS = 1 << 20              # lookup inputs, walked in order, wrapping

# The prefix-length shape of DPDK's lpm_perf_autotest table (a BGP dump,
# 1,037,025 routes), as its histogram prints it: percent of routes per
# depth. Routes longer than /24 cost a tbl8 group per /24 they fall in.
BGP_SHAPE = {8: 0.0, 9: 0.0, 10: 0.01, 11: 0.01, 12: 0.04, 13: 0.07, 14: 0.20, 15: 0.34, 16: 6.44,
             17: 1.21, 18: 2.20, 19: 6.41, 20: 5.79, 21: 4.51, 22: 6.72, 23: 7.93, 24: 54.23, 25: 0.25,
             26: 0.52, 27: 0.60, 28: 0.66, 29: 1.20, 30: 0.56, 31: 0.0, 32: 0.09}


def _pypdk_case(benchmark, group, fn, *args):
    benchmark.group = group
    results = []
    benchmark.pedantic(lambda: results.append(fn(*args)), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["ns_per_op"] = round(float(np.median(results)), 3)


def _python_case(benchmark, group, fn, ops):
    # The fixtures hold millions of Python objects (reference tables, dicts):
    # freeze them so the cyclic GC's full passes over them do not land in
    # whichever loop happens to trigger one.
    gc.collect()
    gc.freeze()
    benchmark.group = group
    benchmark.pedantic(fn, rounds=3, iterations=1)
    benchmark.extra_info["ns_per_op"] = round(benchmark.stats.stats.mean * 1e9 / ops, 3)


# ---- DPDK's figures (run once per session; cycles -> ns through the TSC rate) ----------

_dpdk_cache = {}


def _dpdk(name, parse, tsc_hz):
    if name not in _dpdk_cache:
        _dpdk_cache[name] = parse(dpdk_ref.run_autotest(name, timeout=1800), tsc_hz)
    return _dpdk_cache[name]


def _parse_lpm_perf(text, tsc_hz):
    out = {}
    for label, key in (("Average LPM Lookup", "single"), ("BULK LPM Lookup", "bulk"), ("LPM LookupX4", "x4")):
        m = re.search(label + r": ([\d.]+) cycles", text)
        if m:
            out[key] = float(m.group(1)) / tsc_hz * 1e9
    return out


def _parse_hash_perf(text, tsc_hz):
    """Key size 40, no data, hash not precomputed, all keys in their primary bucket."""
    sec = text.split("ALL ELEMENTS IN PRIMARY LOCATION", 1)[-1].split("ELEMENTS IN PRIMARY OR SECONDARY", 1)[0]
    sec = sec.split("Without pre-computed hash values", 1)[-1]
    m = re.search(r"^40\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", sec, re.M)
    if not m:
        return {}
    return {"single": int(m.group(2)) / tsc_hz * 1e9, "bulk": int(m.group(3)) / tsc_hz * 1e9}


def _dpdk_case(benchmark, group, name, parse, key, tsc_hz, note):
    benchmark.group = group
    figures = benchmark.pedantic(lambda: _dpdk(name, parse, tsc_hz), rounds=1, iterations=1)
    if key not in figures:
        pytest.fail(f"dpdk-test {name} printed no '{key}' figure")
    benchmark.extra_info["ns_per_op"] = round(figures[key], 3)
    benchmark.extra_info["note"] = note


# DPDK's runs are slow (lpm_perf_autotest about 3 min: it adds a million routes one by one;
# hash_perf_autotest about 6 min): asked for with PYPDK_BENCH_DPDK_NET=1.
needs_dpdk = pytest.mark.skipif(not dpdk_ref.available() or os.environ.get("PYPDK_BENCH_DPDK_NET") != "1",
                                reason="set PYPDK_BENCH_DPDK_NET=1 (and install Debian's dpdk-test) for DPDK's figures")


# ---- LPM4 -----------------------------------------------------------------------------

def _bgp_like_table(rng, total=1_000_000):
    from pypdk.net.lpm4 import LPM4
    ips, depths = [], []
    for d, pct in BGP_SHAPE.items():
        n = int(total * pct / 100)
        if n == 0:
            continue
        space = 1 << d
        p = rng.choice(space, min(n, space), replace=False).astype(np.uint64) << (32 - d)
        ips.append(p.astype(np.uint32))
        depths.append(np.full(len(p), d, np.uint8))
    ip, dep = np.concatenate(ips), np.concatenate(depths)
    order = rng.permutation(len(ip))
    ip, dep = ip[order], dep[order]
    nh = rng.integers(0, 1 << 24, len(ip)).astype(np.uint32)
    t = LPM4(len(ip), 65536)
    t.add_bulk(ip, dep, nh)
    return t, ip, dep, nh


@pytest.fixture(scope="module")
def lpm4_tables():
    from pypdk.net import _ref
    from pypdk.net.lpm4 import LPM4
    rng = np.random.default_rng(1)
    one = LPM4(16, 16)
    one.add("10.0.0.0", 8, 1)
    one_addrs = (np.uint32(0x0a000000) | rng.integers(0, 1 << 24, ADDRS).astype(np.uint32))
    one_ref = _ref.LPM(32)
    one_ref.add(0x0a000000, 8, 1)
    big, ip, dep, nh = _bgp_like_table(rng)
    big_ref = _ref.LPM(32)
    for a, d, h in zip(ip.tolist(), dep.tolist(), nh.tolist()):
        big_ref.add(a, d, h)
    big_addrs = rng.integers(0, 1 << 32, ADDRS, dtype=np.uint64).astype(np.uint32)
    return {"1 route": (one, one_addrs, one_ref), "1M routes": (big, big_addrs, big_ref)}


@pytest.mark.parametrize("bulk", [1, 32], ids=["single", "bulk 32"])
@pytest.mark.parametrize("size", ["1 route", "1M routes"])
def test_pypdk_lpm4_lookup(benchmark, lpm4_tables, size, bulk):
    from benchmarks import net_kernels
    t, addrs, _ = lpm4_tables[size]
    _pypdk_case(benchmark, f"lpm4 lookup, {size}", net_kernels.lpm4_lookup_loop, t.addr, addrs, LOOKUPS, bulk)
    benchmark.extra_info["routes"] = len(t)


@pytest.mark.parametrize("size", ["1 route", "1M routes"])
def test_python_lpm4_lookup(benchmark, lpm4_tables, size):
    _, addrs, ref = lpm4_tables[size]
    probe = addrs[:PY_OPS].tolist()

    def run():
        for a in probe:
            ref.lookup(a)
    _python_case(benchmark, f"lpm4 lookup, {size}", run, PY_OPS)
    benchmark.extra_info["note"] = "_ref.LPM: a dict per prefix length, longest first"


@needs_dpdk
@pytest.mark.parametrize("key", ["single", "bulk"])
def test_dpdk_lpm_perf_autotest(benchmark, tsc_hz, key):
    """DPDK 22.11's figure on its own 1M-route BGP table, random addresses."""
    _dpdk_case(benchmark, "lpm4 lookup, 1M routes", "lpm_perf_autotest", _parse_lpm_perf, key, tsc_hz,
               "dpdk-test lpm_perf_autotest (--no-huge), cycles per lookup / TSC rate; bulk = rte_lpm_lookup_bulk")


# ---- LPM6 -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lpm6_table():
    from pypdk.net import _ref
    from pypdk.net.lpm6 import LPM6
    rng = np.random.default_rng(2)
    n = 100_000
    pre = np.zeros((n, 16), dtype=np.uint8)
    pre[:, 0:2] = (0x20, 0x01)
    pre[:, 2:4] = rng.integers(0, 256, (64, 2), dtype=np.uint8)[rng.integers(0, 64, n)]  # 64 /32s
    pre[:, 4:6] = rng.integers(0, 256, (n, 2), dtype=np.uint8)      # /48s under them
    _, first = np.unique(pre, axis=0, return_index=True)
    pre = pre[first]
    n = len(pre)
    depth = np.full(n, 48, np.uint8)
    nh = rng.integers(0, 1 << 22, n).astype(np.uint32)
    t = LPM6(n + 1, 1 << 16)
    t.add_bulk(pre, depth, nh)
    ref = _ref.LPM(128)
    for row, h in zip(pre, nh.tolist()):
        ref.add(int.from_bytes(row.tobytes(), "big"), 48, h)
    addrs = pre[rng.integers(0, n, ADDRS)].copy()
    addrs[:, 6:] = rng.integers(0, 256, (ADDRS, 10), dtype=np.uint8)
    return t, addrs, ref


@pytest.mark.parametrize("bulk", [1, 32], ids=["single", "bulk 32"])
def test_pypdk_lpm6_lookup(benchmark, lpm6_table, bulk):
    from benchmarks import net_kernels
    t, addrs, _ = lpm6_table
    _pypdk_case(benchmark, "lpm6 lookup, 100k /48 routes in 64 /32s", net_kernels.lpm6_lookup_loop, t.addr, addrs,
                LOOKUPS // 2, bulk)


def test_python_lpm6_lookup(benchmark, lpm6_table):
    _, addrs, ref = lpm6_table
    probe = [int.from_bytes(r.tobytes(), "big") for r in addrs[:PY_OPS // 4]]

    def run():
        for a in probe:
            ref.lookup(a)
    _python_case(benchmark, "lpm6 lookup, 100k /48 routes in 64 /32s", run, len(probe))


# ---- flow hash -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flow_tables():
    from pypdk.net.flow_hash import FlowHash
    rng = np.random.default_rng(3)
    one = FlowHash(16)
    k1 = rng.integers(0, 256, (1, 40), dtype=np.uint8)
    one.add(k1[0].tobytes(), 1)
    one_keys = np.repeat(k1, 64, axis=0)
    n = 1 << 20
    big = FlowHash(n)
    keys = rng.integers(0, 256, (n, 40), dtype=np.uint8)
    raw = [keys[i].tobytes() for i in range(n)]
    for i, k in enumerate(raw):
        big.add(k, i)
    lookups = keys[rng.permutation(n)]                 # every key, random order
    return {"1 flow": (one, one_keys, {k1[0].tobytes(): 1}),
            "1M flows": (big, lookups, dict(zip(raw, range(n))))}


@pytest.mark.parametrize("bulk", [1, 32], ids=["single", "bulk 32"])
@pytest.mark.parametrize("size", ["1 flow", "1M flows"])
def test_pypdk_flow_hash_lookup(benchmark, flow_tables, size, bulk):
    from benchmarks import net_kernels
    t, keys, _ = flow_tables[size]
    _pypdk_case(benchmark, f"flow hash lookup, {size}, 40-byte keys", net_kernels.flow_lookup_loop,
                t.addr, keys, LOOKUPS // 2, bulk)


@pytest.mark.parametrize("size", ["1 flow", "1M flows"])
def test_python_dict_lookup(benchmark, flow_tables, size):
    _, keys, d = flow_tables[size]
    probe = [keys[i].tobytes() for i in range(min(len(keys), 200_000))]

    def run():
        get = d.get
        for k in probe:
            get(k)
    _python_case(benchmark, f"flow hash lookup, {size}, 40-byte keys", run, len(probe))
    benchmark.extra_info["note"] = "dict.get of 40-byte bytes keys (hash cached in the bytes object)"


@needs_dpdk
@pytest.mark.parametrize("key", ["single", "bulk"])
def test_dpdk_hash_perf_autotest(benchmark, tsc_hz, key):
    """DPDK 22.11's rte_hash, 40-byte keys, hash computed in the lookup, keys in their first bucket."""
    _dpdk_case(benchmark, "flow hash lookup, 1M flows, 40-byte keys", "hash_perf_autotest", _parse_hash_perf,
               key, tsc_hz, "dpdk-test hash_perf_autotest (--no-huge, its own table size), cycles / TSC rate")


# ---- checksums and Toeplitz ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def packet():
    from scapy.layers.inet import IP, UDP
    p = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / os.urandom(1472))
    return np.frombuffer(p, dtype=np.uint8).copy()


def test_pypdk_cksum_1500(benchmark, packet):
    from benchmarks import net_kernels
    _pypdk_case(benchmark, "checksum, 1500 bytes", net_kernels.cksum_loop, packet, LOOKUPS // 4)


def test_scapy_cksum_1500(benchmark, packet):
    from scapy.utils import checksum
    b = packet.tobytes()

    def run():
        for _ in range(PY_OPS // 4):
            checksum(b)
    _python_case(benchmark, "checksum, 1500 bytes", run, PY_OPS // 4)
    benchmark.extra_info["note"] = "scapy.utils.checksum (array + sum)"


def test_python_ref_cksum_1500(benchmark, packet):
    from pypdk.net import _ref
    b = packet.tobytes()

    def run():
        for _ in range(200):
            _ref.cksum(b)
    _python_case(benchmark, "checksum, 1500 bytes", run, 200)


def test_pypdk_ipv4_hdr_cksum(benchmark, packet):
    from benchmarks import net_kernels
    _pypdk_case(benchmark, "checksum, IPv4 header", net_kernels.ipv4_hdr_cksum_loop, packet[:20].copy(), LOOKUPS)


def test_python_ref_ipv4_hdr_cksum(benchmark, packet):
    from pypdk.net import _ref
    h = packet[:20].tobytes()

    def run():
        for _ in range(PY_OPS):
            _ref.ipv4_hdr_cksum(h)
    _python_case(benchmark, "checksum, IPv4 header", run, PY_OPS)


@pytest.fixture(scope="module")
def rss_inputs():
    from pypdk.net.rss import Rss
    rng = np.random.default_rng(4)
    return Rss(), rng.integers(0, 256, (4096, 36), dtype=np.uint8)


@pytest.mark.parametrize("kind,name", [(4, "tables"), (5, "tables, symmetric"), (0, "bit by bit")])
def test_pypdk_toeplitz_ipv4(benchmark, rss_inputs, kind, name):
    from benchmarks import net_kernels
    r, tuples = rss_inputs
    _pypdk_case(benchmark, "toeplitz, IPv4 4-tuple", net_kernels.rss_loop, r.addr, tuples, LOOKUPS // 2, kind)
    benchmark.extra_info["variant"] = name


def test_python_ref_toeplitz_ipv4(benchmark, rss_inputs):
    from pypdk.net import _ref, rss
    _, tuples = rss_inputs
    rows = [tuples[i, :12].tobytes() for i in range(1000)]

    def run():
        for t in rows:
            _ref.toeplitz(rss.KEY_DEFAULT, t)
    _python_case(benchmark, "toeplitz, IPv4 4-tuple", run, len(rows))


def test_pypdk_toeplitz_ipv6(benchmark, rss_inputs):
    from benchmarks import net_kernels
    r, tuples = rss_inputs
    _pypdk_case(benchmark, "toeplitz, IPv6 4-tuple", net_kernels.rss_loop, r.addr, tuples, LOOKUPS // 2, 6)


def test_python_ref_toeplitz_ipv6(benchmark, rss_inputs):
    from pypdk.net import _ref, rss
    _, tuples = rss_inputs
    rows = [tuples[i].tobytes() for i in range(300)]

    def run():
        for t in rows:
            _ref.toeplitz(rss.KEY_DEFAULT, t)
    _python_case(benchmark, "toeplitz, IPv6 4-tuple", run, len(rows))
