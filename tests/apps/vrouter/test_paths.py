"""Every packet path of the vRouter, golden: scapy in, pcap vifs, fields checked out."""
import pytest
from scapy.all import Ether, IP, IPv6, UDP, TCP, ICMP, ARP, GRE, Raw, Dot1Q, ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr
from scapy.layers.vxlan import VXLAN
from scapy.contrib.mpls import MPLS

from vrharness import VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC

VM3_MAC, VM3_IP = "02:00:00:00:01:03", "10.1.1.3"
VM4_MAC, VM4_IP = "02:00:00:00:01:04", "10.1.1.4"
VHOST_MAC = "02:00:00:00:00:f0"
HOST = "192.168.50.1"


def ip_cksum_ok(ip):
    ref = ip.copy()
    ref.chksum = None
    return IP(bytes(ref)).chksum == ip.chksum


def l4_cksum_ok(ip):
    ref = ip.copy()
    ref.chksum = None
    l4 = ref.payload
    if hasattr(l4, "chksum"):
        l4.chksum = None
    return bytes(IP(bytes(ref))) == bytes(IP(bytes(ref)))  and \
        (not hasattr(ip.payload, "chksum") or IP(bytes(ref))[type(ip.payload)].chksum == ip.payload.chksum)


def mpls_udp(label, inner, sport=50000):
    return (Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
            UDP(sport=sport, dport=6635) / MPLS(label=label, s=1, ttl=64) / inner)


def base(node, policy=False, mode="l3", vrf=1):
    node.vif(0, "fabric", mac=FABRIC_MAC)
    node.vif(1, "vhost", mac=VHOST_MAC)
    node.vif(3, "virtual", vrf=vrf, mac=VM3_MAC, ip=VM3_IP, policy=policy, mode=mode)
    node.vif(4, "virtual", vrf=vrf, mac=VM4_MAC, ip=VM4_IP, mode=mode)


def l3_tables(vr):
    vr.nh_add(10, "encap", vif=3)
    vr.nh_add(11, "encap", vif=4)
    vr.mpls_add(17, 10)
    vr.mpls_add(18, 11)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.nh_add(21, "tunnel", encap="mplsogre", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.route_add(1, "10.1.1.3/32", 10)
    vr.route_add(1, "10.1.1.4/32", 11)
    vr.route_add(1, "10.1.2.0/24", 20, label=100)
    vr.route_add(1, "10.1.3.0/24", 21, label=200)


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


def test_vm_to_vm_same_node(node):
    base(node)
    p = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=VM4_IP, ttl=30) / ICMP() / Raw(b"ping")
    node.setup({3: [p]})
    l3_tables(node.vr)
    out = node.run()
    q = out[4][0]
    assert q[Ether].dst == VM4_MAC and q[Ether].src == VR_MAC
    assert q[IP].ttl == 29 and ip_cksum_ok(q[IP]) and q[ICMP].type == 8
    assert node.vr.vrfstats(1)["encaps"] == 1


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


def test_vm_to_host_host_to_fabric_and_fabric_to_host(node):
    base(node)
    to_host = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="169.254.0.1") / UDP(sport=1, dport=2)
    from_host = Ether(src=VHOST_MAC, dst=REMOTE_MAC) / IP(src=HOST, dst="192.168.50.9") / TCP(sport=22, dport=999)
    host_arp = Ether(src=VHOST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=HOST, pdst=REMOTE, hwsrc=VHOST_MAC)
    for_host = Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) / TCP(sport=999, dport=22)
    node.setup({3: [to_host], 1: [from_host, host_arp], 0: [for_host]})
    vr = node.vr
    l3_tables(vr)
    vr.nh_add(2, "receive")
    vr.route_add(1, "169.254.0.1/32", 2)
    out = node.run()
    assert [bytes(p) for p in out[0]] == [bytes(from_host), bytes(host_arp)]     # pass-through
    host = out[1]
    assert len(host) == 2
    rcv = next(p for p in host if p[IP].dst == "169.254.0.1")
    assert rcv[Ether].dst == VHOST_MAC and rcv[Ether].src == VR_MAC and rcv[IP].ttl == 63 and ip_cksum_ok(rcv[IP])
    assert bytes(for_host) in [bytes(p) for p in host]
    assert vr.vrfstats(1)["receives"] == 1


def test_proxy_arp_answers_for_the_vrf(node):
    base(node)
    req = Ether(src=VM3_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=VM3_MAC, psrc=VM3_IP, pdst="10.1.2.7")
    unknown = Ether(src=VM3_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=VM3_MAC, psrc=VM3_IP, pdst="10.200.0.1")
    node.setup({3: [req, unknown]})
    l3_tables(node.vr)
    out = node.run()
    assert len(out[3]) == 1
    r = out[3][0]
    assert r[Ether].dst == VM3_MAC and r[Ether].src == VR_MAC
    assert r[ARP].op == 2 and r[ARP].hwsrc == VR_MAC and r[ARP].psrc == "10.1.2.7"
    assert r[ARP].hwdst == VM3_MAC and r[ARP].pdst == VM3_IP
    assert node.vr.vrfstats(1)["arp_proxy"] == 1
    assert node.vr.dropstats(3)["invalid_arp"] == 1


def test_ipv6_neighbor_solicitation_answered(node):
    base(node)
    tgt = "fd00:2::7"
    ns = (Ether(src=VM3_MAC, dst="33:33:ff:00:00:07") / IPv6(src="fd00:1::3", dst="ff02::1:ff00:7", hlim=255) /
          ICMPv6ND_NS(tgt=tgt) / ICMPv6NDOptSrcLLAddr(lladdr=VM3_MAC))
    node.setup({3: [ns]})
    vr = node.vr
    l3_tables(vr)
    vr.route_add(1, "fd00:2::/64", 20, label=101)
    out = node.run()
    na = out[3][0]
    assert na[Ether].src == VR_MAC and na[Ether].dst == VM3_MAC
    assert na[IPv6].src == tgt and na[IPv6].dst == "fd00:1::3" and na[IPv6].hlim == 255
    assert na[ICMPv6ND_NA].tgt == tgt and na[ICMPv6ND_NA].S == 1 and na[ICMPv6ND_NA].R == 1
    assert na[ICMPv6NDOptDstLLAddr].lladdr == VR_MAC
    ref = na[IPv6].copy()
    ref[ICMPv6ND_NA].cksum = None
    assert IPv6(bytes(ref))[ICMPv6ND_NA].cksum == na[ICMPv6ND_NA].cksum
    assert vr.vrfstats(1)["nd_proxy"] == 1


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


def test_vxlan_decap_bridges_by_inner_mac(node):
    node.vif(0, "fabric", mac=FABRIC_MAC)
    node.vif(5, "virtual", vrf=2, mac="02:00:00:00:02:05", mode="l2")
    node.vif(6, "virtual", vrf=2, mac="02:00:00:00:02:06", mode="l2")
    frame = Ether(src="02:00:00:00:09:09", dst="02:00:00:00:02:05") / IP(src="10.2.0.9", dst="10.2.0.5") / UDP(sport=9, dport=10)
    bad_vni = (Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) / UDP(sport=40000, dport=4789) /
               VXLAN(vni=7777) / frame)
    good = (Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) / UDP(sport=40000, dport=4789) /
            VXLAN(vni=5000) / frame)
    bcast = (Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) / UDP(sport=40000, dport=4789) /
             VXLAN(vni=5000) / Ether(src="02:00:00:00:09:09", dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.2.0.5"))
    node.setup({0: [good, bad_vni, bcast]})
    vr = node.vr
    vr.nh_add(12, "encap", vif=5)
    vr.bridge_add(2, "02:00:00:00:02:05", 12)
    vr.vxlan_add(5000, 2)
    out = node.run()
    assert bytes(out[5][0]) == bytes(frame)
    assert out[5][1][ARP].pdst == "10.2.0.5" and out[6][0][ARP].pdst == "10.2.0.5"    # flooded locally
    assert not out[0]                                                # never back to the fabric
    assert vr.dropstats()["invalid_vni"] == 1
    assert vr.vrfstats(2)["vxlan_decaps"] == 2 and vr.vrfstats(2)["l2_floods"] == 1


def test_vm_to_vxlan_and_head_end_replication(node):
    node.vif(0, "fabric", mac=FABRIC_MAC)
    node.vif(5, "virtual", vrf=2, mac="02:00:00:00:02:05", mode="l2")
    node.vif(6, "virtual", vrf=2, mac="02:00:00:00:02:06", mode="l2")
    uni = Ether(src="02:00:00:00:02:05", dst="02:00:00:00:07:07") / IP(src="10.2.0.5", dst="10.2.0.7") / TCP(sport=1, dport=2)
    bum = Ether(src="02:00:00:00:02:05", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.2.0.5", pdst="10.2.0.7")
    node.setup({5: [uni, bum]})
    vr = node.vr
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.neighbor_add("192.168.50.3", "02:00:00:00:50:03")
    vr.nh_add(22, "tunnel", encap="vxlan", dip=REMOTE)
    vr.nh_add(23, "tunnel", encap="vxlan", dip="192.168.50.3")
    vr.nh_add(40, "composite", members=[22, 23], vnis=[5000, 5000])
    vr.bridge_add(2, "02:00:00:00:07:07", 22, vni=5000)
    vr.bridge_add(2, "ff:ff:ff:ff:ff:ff", 40)
    vr.vxlan_add(5000, 2)
    out = node.run()
    fab = out[0]
    assert len(fab) == 3
    u = fab[0]
    assert u[Ether].src == VR_MAC and u[Ether].dst == REMOTE_MAC and u[IP].dst == REMOTE and ip_cksum_ok(u[IP])
    assert u[UDP].dport == 4789 and u[VXLAN].vni == 5000 and u[VXLAN].flags == 0x08
    assert bytes(u[VXLAN].payload) == bytes(uni)
    assert {p[IP].dst for p in fab[1:]} == {REMOTE, "192.168.50.3"}
    assert all(bytes(p[VXLAN].payload) == bytes(bum) for p in fab[1:])
    assert bytes(out[6][0]) == bytes(bum) and not out[5]
    assert vr.vrfstats(2)["vxlan_encaps"] == 3


def test_ttl_expired_dropped_with_time_exceeded(node):
    base(node)
    p = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7", ttl=1) / UDP(sport=33434, dport=33434)
    node.setup({3: [p, p.copy()]})
    l3_tables(node.vr)
    out = node.run()
    assert not out[0]
    assert len(out[3]) == 2
    e = out[3][0]
    assert e[ICMP].type == 11 and e[IP].dst == VM3_IP and e[Ether].dst == VM3_MAC and ip_cksum_ok(e[IP])
    assert node.vr.dropstats()["ttl_exceeded"] == 2 and node.vr.dropstats(3)["ttl_exceeded"] == 2


def test_too_big_after_encap_gets_frag_needed(node):
    base(node)
    df = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7", flags="DF") / UDP(sport=1, dport=2) / Raw(b"j" * 1472)
    nodf = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=1, dport=2) / Raw(b"j" * 1472)
    fits = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=1, dport=2) / Raw(b"j" * 1440)
    node.setup({3: [df, nodf, fits]})
    l3_tables(node.vr)
    out = node.run()
    assert len(out[0]) == 1 and out[0][0][IP].len == 20 + 8 + 4 + 1468
    assert len(out[3]) == 1
    e = out[3][0]
    assert e[ICMP].type == 3 and e[ICMP].code == 4 and e[ICMP].nexthopmtu == 1500 - 32
    assert node.vr.dropstats()["mtu_exceeded"] == 2
