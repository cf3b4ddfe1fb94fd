"""vRouter forwarding rate per lcore, per path (pytest-benchmark; Mpps in extra_info).

Each case builds a VRouter whose vifs are net_null ports (tx frees), then
times `Router.bench`: bursts of 32 mbufs allocated and filled with a frame
(as a NIC would), processed by the datapath on the calling thread, sent to
the null port. Paths: MPLSoUDP decap to a VM, VM to MPLSoUDP encap, VXLAN
bridge (decap), each with and without flows (policy on the VM vif), 1 flow
vs many flows, 1 route vs many routes.

    python -m pytest benchmarks/bench_vrouter.py --benchmark-only -q
"""
import pytest
from scapy.all import Ether, IP, UDP, Raw
from scapy.layers.vxlan import VXLAN
from scapy.contrib.mpls import MPLS

VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC = "00:00:5e:00:01:00", "192.168.50.1", "192.168.50.2", "02:00:00:00:50:02"
VM_MAC = "02:00:00:00:01:03"
N = 1_000_000


@pytest.fixture(scope="module")
def eal():
    from pypdk import eal as _eal
    e = _eal.init(lcores="0-1", no_huge=True)
    yield e
    e.cleanup()


def make(eal, policy, routes=1, flow_max=1 << 16):
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
    vr.nh_add(10, "encap", vif=3)
    vr.nh_add(12, "encap", vif=5)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.mpls_add(17, 10)
    vr.vxlan_add(5000, 2)
    vr.bridge_add(2, "02:00:00:00:02:05", 12)
    vr.route_add(1, "10.1.2.0/24", 20, label=100)
    for i in range(routes - 1):
        vr.route_add(1, f"10.{100 + (i >> 16) % 100}.{(i >> 8) & 255}.{i & 255}/32", 20, label=100)
    return vr, pool


def frames():
    inner = IP(src="10.1.2.5", dst="10.1.1.3") / UDP(sport=1, dport=2) / Raw(b"p" * 18)
    return {
        "mplsoudp_decap": (0, bytes(Ether(src=REMOTE_MAC, dst=VR_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
                                    UDP(sport=5, dport=6635) / MPLS(label=17, s=1) / inner), 14 + 20 + 8 + 4 + 20),
        "mplsoudp_encap": (3, bytes(Ether(src=VM_MAC, dst=VR_MAC) / IP(src="10.1.1.3", dst="10.1.2.5") /
                                    UDP(sport=1, dport=2) / Raw(b"p" * 18)), 14 + 20),
        "vxlan_bridge": (0, bytes(Ether(src=REMOTE_MAC, dst=VR_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
                                  UDP(sport=5, dport=4789) / VXLAN(vni=5000) /
                                  Ether(src="02:00:00:00:09:09", dst="02:00:00:00:02:05") / inner),
                         14 + 20 + 8 + 8 + 14 + 20),
    }


CASES = [(p, pol, nf, nr) for p in ("mplsoudp_decap", "mplsoudp_encap", "vxlan_bridge")
         for pol in (False, True) for nf in (1, 100_000 if pol else 1) for nr in (1,)]
CASES += [("mplsoudp_encap", True, 1, 1000)]


@pytest.mark.parametrize("path, flows_on, nflows, nroutes", CASES,
                         ids=[f"{p}-{'flows' if f else 'noflows'}-{n}flows-{r}routes" for p, f, n, r in CASES])
def test_vrouter_path(benchmark, eal, path, flows_on, nflows, nroutes):
    vif, frame, off = frames()[path]
    vr, pool = make(eal, flows_on, nroutes, flow_max=(1 << 18) if nflows > 1 else 1 << 16)
    try:
        res = {}

        def run():
            res["t"], res["n"] = vr.dp.bench(vif, frame, N, off, nflows)

        benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
        mpps = res["n"] / res["t"] / 1e6
        benchmark.group = "vrouter"
        benchmark.extra_info.update({"path": path, "flows": flows_on, "nflows": nflows, "routes": nroutes,
                                     "mpps": round(mpps, 2), "drops": sum(vr.dropstats().values())})
        print(f"\n{path} flows={flows_on} nflows={nflows} routes={nroutes}: {mpps:.2f} Mpps")
        assert sum(vr.dropstats().values()) == 0
    finally:
        vr.close()
        import pypdk.pmd
        pypdk.pmd.close_all()
        pool.free()
