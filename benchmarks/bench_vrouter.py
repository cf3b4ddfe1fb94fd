"""vRouter forwarding rate per lcore, per path (pytest-benchmark; Mpps in extra_info).

Each case builds a VRouter whose vifs are net_null ports (tx frees), then
times `vrouter_kernels.datapath_run`: bursts of 32 mbufs allocated and
filled with a frame (as a NIC would), processed by the datapath on the
calling thread (the Router's poller context), sent to the null port. Paths:

  mplsoudp_decap   fabric -> MPLSoUDP label -> VM (flows: the VM's policy)
  mplsoudp_encap   VM -> route -> MPLSoUDP tunnel (flows: the VM's policy)
  vxlan_bridge     fabric -> VXLAN VNI -> bridge -> VM (flows: the VM's policy)

each with flows off and on; with flows on, 1 flow and 2^20 (~1M) flows (the
inner ports take 2^20 values); for the encap path also 1 route and 2^20
/32 routes (the destination takes 2^20 values, one route each). The big
tables are built in Cython: the routes with Router.rt_add_bulk, the flows by
an untimed pass of one packet per flow through the datapath itself (flow
creation, policy and all). The timed pass then visits the flows (or
destinations) in a scrambled order, so consecutive packets do not touch
neighbouring table entries. Each case keeps the best of ROUNDS timed passes
(the machine is shared). A plain-Python reference in the same group (a dict
per table, the encap path on bytes) shows the ratio.

    python -m pytest benchmarks/bench_vrouter.py --benchmark-only -q -s

Table memory (pypdk.eal.tablemem), the cases with 1M flows or routes:
`python -m benchmarks.bench_vrouter --tables [--rounds R]` runs each of
them with the tables on 2 MiB hugetlb pages (Eal.place_tables, what
`pypdk-run apps/vrouter` does), on the default lazily backed pages with
THP (MADV_HUGEPAGE, when /sys/kernel/mm/transparent_hugepage/enabled allows
it) and on 4 KiB pages (THP off for this process: prctl PR_SET_THP_DISABLE),
alternating the order every round, and prints the medians and the ratios.
"""
import struct
import time

import pytest
from scapy.all import Ether, IP, UDP, Raw
from scapy.layers.vxlan import VXLAN
from scapy.contrib.mpls import MPLS

VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC = "00:00:5e:00:01:00", "192.168.50.1", "192.168.50.2", "02:00:00:00:50:02"
VM_MAC = "02:00:00:00:01:03"
N = 2_000_000                 # packets per timed pass
ROUNDS = 3
MANY = 1 << 20                # "1M" flows / routes: a power of two, so the timed pass can scramble
ROUTE_BASE = (10 << 24) | (128 << 16)   # the many routes: 10.128.0.0 + i, /32 each
GROUP = "vrouter"


def make(policy, flow_max=1 << 16):
    import pypdk.pmd
    from pypdk.mempool import PktMbufPool
    from apps.vrouter.vrouter import VRouter
    pool = PktMbufPool(f"vrb{id(object())}", 8192)
    vr = VRouter(pool, VR_MAC, UNDERLAY, flow_max=flow_max)
    vr.vif_add(0, "fabric", port=pypdk.pmd.open(f"net_null{len(pypdk.pmd.ports())}"))
    vr.vif_add(3, "virtual", port=pypdk.pmd.open(f"net_null{len(pypdk.pmd.ports())}"), vrf=1, mac=VM_MAC,
               ip="10.1.1.3", policy=policy)
    vr.vif_add(5, "virtual", port=pypdk.pmd.open(f"net_null{len(pypdk.pmd.ports())}"), vrf=2,
               mac="02:00:00:00:02:05", mode="l2", policy=policy)
    program(vr)
    return vr, pool


def program(vr):
    """The paths' tables, given vifs 0 (fabric), 3 (VM, vrf 1) and 5 (l2 VM, vrf 2):
    label 17 and 10.1.2.0/24 over MPLSoUDP for VM 3, VNI 5000 and VM 5's MAC in vrf 2."""
    vr.nh_add(10, "encap", vif=3)
    vr.nh_add(12, "encap", vif=5)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.mpls_add(17, 10)
    vr.vxlan_add(5000, 2)
    vr.bridge_add(2, "02:00:00:00:02:05", 12)
    vr.route_add(1, "10.1.2.0/24", 20, label=100)


def add_many_routes(vr, n):
    """n /32 routes in VRF 1 (10.128.0.0 + i) through the tunnel, in bulk."""
    import numpy as np
    vr.route_add(1, "10.127.0.0/16", 20, label=100)            # takes the rtdata index of (20, 100)
    idx = vr.rtdata[(20, 100)][0]
    vr.dp.rt_add_bulk(1, np.arange(ROUTE_BASE, ROUTE_BASE + n, dtype=np.uint32), np.full(n, 32, np.uint8), idx)


INNER = IP(src="10.1.2.5", dst="10.1.1.3") / UDP(sport=1, dport=2) / Raw(b"p" * 18)
# path: (input vif, frame, offset of the ports word, offset of the inner destination address)
FRAMES = {
    "mplsoudp_decap": (0, bytes(Ether(src=REMOTE_MAC, dst=VR_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
                                UDP(sport=5, dport=6635) / MPLS(label=17, s=1) / INNER), 14 + 20 + 8 + 4 + 20, None),
    "mplsoudp_encap": (3, bytes(Ether(src=VM_MAC, dst=VR_MAC) / IP(src="10.1.1.3", dst="10.1.2.5") /
                                UDP(sport=1, dport=2) / Raw(b"p" * 18)), 14 + 20, 14 + 16),
    "vxlan_bridge": (0, bytes(Ether(src=REMOTE_MAC, dst=VR_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
                              UDP(sport=5, dport=4789) / VXLAN(vni=5000) /
                              Ether(src="02:00:00:00:09:09", dst="02:00:00:00:02:05") / INNER),
                     14 + 20 + 8 + 8 + 14 + 20, None),
}

# (path, flows on, flows, routes)
CASES = [(p, pol, nf, 1) for p in FRAMES for pol, nf in ((False, 1), (True, 1), (True, MANY))]
CASES += [("mplsoudp_encap", False, 1, MANY), ("mplsoudp_encap", True, MANY, MANY)]


def _id(case):
    p, pol, nf, nr = case
    many = lambda n: "1M" if n == MANY else str(n)
    return f"{p}-{'flows' if pol else 'noflows'}-{many(nf)}flows-{many(nr)}routes"


TABLES = ("hugetlb", "thp", "4k")     # where the tables' pages come from (--tables)
PR_SET_THP_DISABLE = 41


def place(eal, tables):
    """Tables made from now on: on the EAL's 2 MiB hugepages, or lazily backed
    with THP allowed (the default) or forbidden for this process (4 KiB)."""
    import ctypes
    from pypdk.eal import tablemem
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_THP_DISABLE, 1 if tables == "4k" else 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_THP_DISABLE)")
    if tables == "hugetlb":
        eal.place_tables(eal.socket_of(eal.main_lcore))
    else:
        tablemem.place_default()


def table_pages():
    """(hugetlb MiB, THP MiB) this process holds now (smaps_rollup)."""
    got = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            got[k] = int(v.split()[0]) if v.strip() else 0
    return got.get("Private_Hugetlb", 0) >> 10, got.get("AnonHugePages", 0) >> 10


@pytest.mark.parametrize("path, flows_on, nflows, nroutes", CASES, ids=[_id(c) for c in CASES])
def test_vrouter_path(benchmark, eal, path, flows_on, nflows, nroutes):
    measure(benchmark.pedantic, benchmark, path, flows_on, nflows, nroutes)


def measure(pedantic, benchmark, path, flows_on, nflows, nroutes, info=None):
    from benchmarks.vrouter_kernels import datapath_run
    vif, frame, ports_off, dst_off = FRAMES[path]
    many = max(nflows, nroutes)
    vr, pool = make(flows_on, flow_max=2 * many + 4096)
    try:
        t0 = time.perf_counter()
        if nroutes > 1:
            add_many_routes(vr, nroutes)
            off, base, ip_off = dst_off, ROUTE_BASE, 14    # one destination (and flow) per route
        else:
            off, base, ip_off = ports_off, 0, 0
        best = {"t": None}

        def run():
            first = best["t"] is None
            t, n = datapath_run(vr.dp.poller_addr, vif, frame, N, off, many, warmup=first, base=base,
                                ip_off=ip_off)
            if first:
                best["setup"] = time.perf_counter() - t0 - t
            if best["t"] is None or t < best["t"]:
                best["t"], best["n"] = t, n

        pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        mpps = best["n"] / best["t"] / 1e6
        drops = sum(vr.dropstats().values())
        if info is not None:
            info.update(mpps=mpps, setup=best["setup"], pages=table_pages())
            assert drops == 0
            return
        benchmark.group = GROUP
        benchmark.extra_info.update({"path": path, "flows": flows_on, "nflows": nflows, "routes": nroutes,
                                     "mpps": round(mpps, 2), "ns_per_pkt": round(1e3 / mpps, 1),
                                     "flow_entries": vr.dp.flow_count(), "setup_s": round(best["setup"], 2),
                                     "drops": drops})
        print(f"\n{_id((path, flows_on, nflows, nroutes))}: {mpps:.2f} Mpps ({1e3 / mpps:.0f} ns/pkt), "
              f"{vr.dp.flow_count()} flow entries, setup {best['setup']:.2f} s")
        assert drops == 0
        if flows_on:
            assert vr.dp.flow_count() == 2 * nflows
    finally:
        vr.close()
        import pypdk.pmd
        pypdk.pmd.close_all()
        pool.close()


# ---- the plain-Python reference: the encap path with dicts ---------------------------------

def python_encap(frames, flows, routes, nhs, out):
    """VM -> MPLSoUDP as plain Python would write it: parse, flow dict, route
    dict (exact /32 and /24 tries), TTL and checksum, outer headers packed."""
    pack_outer = struct.Struct("!6s6sHBBHHHBBH4s4sHHHHI").pack
    for f in frames:
        ip = f[14:]
        src, dst, proto = ip[12:16], ip[16:20], ip[9]
        key = (1, src, dst, proto, ip[20:22], ip[22:24])
        fl = flows.get(key)
        if fl is None:
            fl = flows[key] = [0, 0]
        fl[0] += 1
        fl[1] += len(f)
        r = routes.get(dst) or routes.get(dst[:3])
        if r is None:
            continue
        nh, label = r
        dmac, sip, dip = nhs[nh]
        ttl = ip[8]
        if ttl <= 1:
            continue
        c = (int.from_bytes(ip[10:12], "big") + 0x100)           # RFC 1624: TTL - 1
        c = (c & 0xffff) + (c >> 16)
        inner = ip[:8] + bytes((ttl - 1,)) + ip[9:10] + c.to_bytes(2, "big") + ip[12:]
        total = 20 + 8 + 4 + len(inner)
        out.append(pack_outer(dmac, b"\x00\x00\x5e\x00\x01\x00", 0x0800, 0x45, 0, total, 0, 0x4000, 64, 17, 0,
                              sip, dip, 0xc000 | (hash(key) & 0x3fff), 6635, total - 20, 0,
                              (label << 12) | 0x100 | 64) + inner)


def test_python_dict_encap(benchmark):
    """The same job as mplsoudp_encap-flows-1Mflows, in plain Python (dicts), for the ratio."""
    vif, frame, ports_off, _ = FRAMES["mplsoudp_encap"]
    n = 200_000
    frames = [frame[:ports_off] + struct.pack("!I", (k * 0x9E3779B1) & (MANY - 1)) + frame[ports_off + 4:]
              for k in range(n)]
    routes = {bytes([10, 1, 2]): (20, 100)}
    nhs = {20: (bytes.fromhex("020000005002"), bytes([192, 168, 50, 1]), bytes([192, 168, 50, 2]))}
    flows = {}
    python_encap(frames, flows, routes, nhs, [])                 # the flows exist (as in the warm-up)
    best = {"t": None}

    def run():
        out = []
        t0 = time.perf_counter()
        python_encap(frames, flows, routes, nhs, out)
        t = time.perf_counter() - t0
        assert len(out) == n
        if best["t"] is None or t < best["t"]:
            best["t"] = t

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    mpps = n / best["t"] / 1e6
    benchmark.group = GROUP
    benchmark.extra_info.update({"path": "mplsoudp_encap (plain Python, dicts)", "flows": True,
                                 "nflows": len(flows), "routes": 1, "mpps": round(mpps, 3),
                                 "ns_per_pkt": round(1e3 / mpps, 1)})
    print(f"\npython dict encap: {mpps:.3f} Mpps ({1e3 / mpps:.0f} ns/pkt), {len(flows)} flows")


# ---- table memory side by side (python -m benchmarks.bench_vrouter --tables) ---------------

def _pedantic(fn, rounds, iterations, warmup_rounds):
    for _ in range(rounds):
        fn()


def main(argv=None):
    import argparse
    import json
    import statistics
    import pypdk.eal
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_vrouter",
                                 description="the vRouter paths with 1M flows/routes, tables on "
                                             "hugetlb, THP and 4 KiB pages, alternated")
    ap.add_argument("--tables", action="store_true", required=True, help="compare the table memory placements")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each runs every case on every side")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the figures here too")
    args = ap.parse_args(argv)
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        thp = f.read().strip()
    cases = [c for c in CASES if max(c[2], c[3]) > 1]
    got = {(_id(c), t): [] for c in cases for t in TABLES}
    pages = {}
    with pypdk.eal.init(lcores="0-1") as eal:
        for r in range(args.rounds):
            order = TABLES[r % len(TABLES):] + TABLES[:r % len(TABLES)]       # rotate who goes first
            for c in cases:
                for t in order:
                    place(eal, t)
                    info = {}
                    measure(_pedantic, None, *c, info=info)
                    got[(_id(c), t)].append(info["mpps"])
                    pages[(_id(c), t)] = info["pages"]
                    print(f"round {r} {_id(c)} {t}: {info['mpps']:.2f} Mpps, hugetlb/THP MiB {info['pages']}",
                          flush=True)
        place(eal, "thp")
    print(f"\nTHP: {thp}; medians of {args.rounds} rounds (each the best of {ROUNDS} passes of {N} packets), Mpps")
    print(f"{'case':52} {'hugetlb':>8} {'THP':>8} {'4K':>8} {'huge/THP':>9} {'huge/4K':>8}")
    out = {}
    for c in cases:
        m = {t: statistics.median(got[(_id(c), t)]) for t in TABLES}
        out[_id(c)] = {"mpps": m, "rounds": {t: got[(_id(c), t)] for t in TABLES},
                       "pages_mib": {t: pages[(_id(c), t)] for t in TABLES}}
        print(f"{_id(c):52} {m['hugetlb']:8.2f} {m['thp']:8.2f} {m['4k']:8.2f} "
              f"{m['hugetlb'] / m['thp']:9.2f} {m['hugetlb'] / m['4k']:8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"thp": thp, "cases": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
