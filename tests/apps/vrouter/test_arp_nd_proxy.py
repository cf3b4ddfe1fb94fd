"""ARP and IPv6 neighbour solicitations from a VM answered by the vRouter for its VRF, golden."""
from scapy.all import Ether, IPv6, ARP, ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr

from tests.apps.vrouter.harness import VR_MAC, VM3_MAC, VM3_IP, base, l3_tables


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

