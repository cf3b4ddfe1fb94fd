"""A multi-queue VM vif: the tx queue comes from the inner flow hash (flows spread, each
flow on one queue, every packet counted once)."""
from scapy.all import Ether, IP, UDP, Raw

from tests.apps.vrouter.harness import VR_MAC, FABRIC_MAC, mpls_udp, ring_vif, drain

VM5_MAC, VM5_IP = "02:00:00:00:01:05", "10.1.1.5"


def test_multiqueue_vif_tx_queue_follows_the_inner_flow(node):
    """64 flows decapsulated to a VM with 4 tx queues: every flow on one queue,
    at least two queues used, and each packet counted once (per-queue counters
    = what the queues hold = the vif total = what came in)."""
    node.vif(0, "fabric", mac=FABRIC_MAC)
    flows = [(f"10.1.2.{5 + i % 7}", 1000 + i) for i in range(64)]
    pkts = [mpls_udp(17, IP(src=s, dst=VM5_IP) / UDP(sport=sp, dport=53) / Raw(b"q" * (n + 1)))
            for n in range(3) for s, sp in flows]
    node.setup({0: pkts})
    vr = node.vr
    dev = ring_vif(vr, 5, queues=4, vrf=1, mac=VM5_MAC, ip=VM5_IP)
    vr.nh_add(15, "encap", vif=5)
    vr.mpls_add(17, 15)
    vr.poll_until_idle()

    per_q = [drain(dev, q) for q in range(4)]
    queue_of = {}
    for q, got in enumerate(per_q):
        for p in got:
            assert p[Ether].dst == VM5_MAC and p[Ether].src == VR_MAC and p[IP].dst == VM5_IP
            key = (p[IP].src, p[UDP].sport)
            assert queue_of.setdefault(key, q) == q, f"flow {key} on queues {queue_of[key]} and {q}"
    assert set(queue_of) == set(flows)
    used = [q for q in range(4) if per_q[q]]
    assert len(used) >= 2, f"all flows on queue {used}"

    v = vr.vif_get(5)
    assert len(v["queue_stats"]) == 4
    for q in range(4):
        assert v["queue_stats"][q]["tx_packets"] == len(per_q[q])
        assert v["queue_stats"][q]["tx_bytes"] == sum(len(p) for p in per_q[q])
        assert dev.queue_stats()["tx"][q]["packets"] == len(per_q[q])
    assert v["stats"]["tx_packets"] == sum(len(g) for g in per_q) == len(pkts)
    assert vr.vif_get(0)["stats"]["rx_packets"] == len(pkts)
    assert vr.vrfstats(1)["udp_mpls_decaps"] == len(pkts)
    assert sum(vr.dropstats().values()) == 0
    node.finish()

