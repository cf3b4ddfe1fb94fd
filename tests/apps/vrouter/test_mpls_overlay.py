"""MPLSoUDP and MPLSoGRE between VMs and the fabric, golden (scapy in, pcap vifs, fields
checked out): decapsulation to a VM, encapsulation from a VM (outer headers, the source
port's flow entropy), ECMP over tunnels, an IPv6 inner packet."""
from scapy.all import Ether, IP, IPv6, UDP, TCP, GRE, Raw
from scapy.contrib.mpls import MPLS

from pypdk.testing.frames import ip_cksum_ok
from tests.apps.vrouter.harness import (
    VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, VM3_MAC, VM3_IP, VM4_MAC, VM4_IP, mpls_udp,
    base, l3_tables)


def test_mplsoudp_decap_to_vm(node):
    base(node)
    inner = [IP(src="10.1.2.5", dst=VM3_IP, ttl=60) / UDP(sport=1000 + i, dport=80) / Raw(b"a" * (i * 10))
             for i in range(10)]
    node.setup({0: [mpls_udp(17, p) for p in inner]})
    l3_tables(node.vr)
    vr = node.vr
    out = node.run()
    got = out[3]
    assert len(got) == 10 and not out[0] and not out[4]
    for p, ref in zip(got, inner):
        assert p[Ether].dst == VM3_MAC and p[Ether].src == VR_MAC and p[Ether].type == 0x0800
        assert bytes(p[IP]) == bytes(ref)                  # inner packet untouched (TTL too)
        assert ip_cksum_ok(p[IP])
    assert vr.vrfstats(1)["udp_mpls_decaps"] == 10
    s0, s3 = vr.vif_get(0)["stats"], vr.vif_get(3)["stats"]
    assert s0["rx_packets"] == 10 and s3["tx_packets"] == 10
    assert s3["tx_bytes"] == sum(len(p) for p in got)
    assert sum(vr.dropstats().values()) == 0


def test_mplsogre_decap_to_vm(node):
    base(node)
    inner = IP(src="10.1.3.5", dst=VM4_IP, ttl=9) / TCP(sport=3333, dport=22, flags="S")
    pkt = (Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
           GRE(proto=0x8847) / MPLS(label=18, s=1, ttl=64) / inner)
    node.setup({0: [pkt] * 3})
    l3_tables(node.vr)
    vr = node.vr
    out = node.run()
    assert len(out[4]) == 3
    p = out[4][0]
    assert p[Ether].dst == VM4_MAC and p[Ether].src == VR_MAC
    assert bytes(p[IP]) == bytes(inner)
    assert vr.vrfstats(1)["gre_mpls_decaps"] == 3


def test_vm_to_mplsoudp_and_mplsogre_encap(node):
    base(node)
    pk = [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7", ttl=64) /
          TCP(sport=4000 + i, dport=443) / Raw(b"z" * 50) for i in range(8)]
    gre = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.3.9", ttl=5) / UDP(sport=5, dport=6)
    node.setup({3: pk + [gre]})
    l3_tables(node.vr)
    vr = node.vr
    out = node.run()
    fab = out[0]
    assert len(fab) == 9
    sports = set()
    for p, ref in zip(fab[:8], pk):
        assert p[Ether].src == VR_MAC and p[Ether].dst == REMOTE_MAC
        o = p[IP]
        assert o.src == UNDERLAY and o.dst == REMOTE and o.ttl == 64 and o.proto == 17
        assert ip_cksum_ok(o) and o.len == len(bytes(o))
        assert p[UDP].dport == 6635 and 49152 <= p[UDP].sport <= 65535 and p[UDP].len == len(bytes(p[UDP]))
        assert p[MPLS].label == 100 and p[MPLS].s == 1
        i = p[MPLS].payload
        i = IP(bytes(i))
        assert i.ttl == 63 and ip_cksum_ok(i) and i.src == VM3_IP and i[TCP].sport == ref[TCP].sport
        assert bytes(i[TCP]) == bytes(ref[TCP])
        sports.add(p[UDP].sport)
    assert len(sports) > 1                       # entropy from the inner flow
    g = fab[8]
    assert g[IP].proto == 47 and g[GRE].proto == 0x8847 and ip_cksum_ok(g[IP])
    assert g[MPLS].label == 200
    assert IP(bytes(g[MPLS].payload)).ttl == 4
    st = vr.vrfstats(1)
    assert st["udp_mpls_encaps"] == 8 and st["gre_mpls_encaps"] == 1


def test_same_flow_same_source_port(node):
    base(node)
    pk = [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=7, dport=8)] * 4
    node.setup({3: pk})
    l3_tables(node.vr)
    out = node.run()
    assert len({p[UDP].sport for p in out[0]}) == 1


def test_ecmp_spreads_flows_and_keeps_each_on_one_member(node):
    base(node)
    pk = []
    for i in range(64):
        pk += [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.9.0.1") / UDP(sport=1000 + i, dport=53)] * 2
    node.setup({3: pk})
    vr = node.vr
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.nh_add(22, "tunnel", encap="mplsoudp", dip="192.168.50.3")
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.neighbor_add("192.168.50.3", "02:00:00:00:50:03")
    vr.nh_add(30, "ecmp", members=[20, 22])
    vr.route_add(1, "10.9.0.0/16", 30, label=300)
    out = node.run()
    by_flow = {}
    for p in out[0]:
        by_flow.setdefault(IP(bytes(p[MPLS].payload))[UDP].sport, set()).add(p[IP].dst)
    assert len(by_flow) == 64 and all(len(s) == 1 for s in by_flow.values())
    members = [next(iter(s)) for s in by_flow.values()]
    assert members.count(REMOTE) > 10 and members.count("192.168.50.3") > 10
    assert vr.vrfstats(1)["ecmp"] == 128


def test_ipv6_vm_to_mplsoudp(node):
    base(node)
    p = Ether(src=VM3_MAC, dst=VR_MAC) / IPv6(src="fd00:1::3", dst="fd00:2::7", hlim=10) / UDP(sport=1, dport=2)
    node.setup({3: [p]})
    vr = node.vr
    l3_tables(vr)
    vr.route_add(1, "fd00:2::/64", 20, label=101)
    out = node.run()
    q = out[0][0]
    assert q[MPLS].label == 101
    i = IPv6(bytes(q[MPLS].payload))
    assert i.hlim == 9 and i.dst == "fd00:2::7"

