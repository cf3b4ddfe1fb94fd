"""The IPv6 overlay: VM to remote VM over MPLSoUDP/MPLSoGRE, remote to VM, VM to VM on the
node with the hop limit, IPv6 policy. (Neighbour solicitations: test_arp_nd_proxy.py.)"""
from scapy.all import Ether, IP, IPv6, UDP, TCP, GRE, Raw, ICMPv6EchoRequest
from scapy.contrib.mpls import MPLS

from pypdk.testing.frames import ip_cksum_ok, l4_cksum_ok
from tests.apps.vrouter.harness import (
    VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, VM3_MAC, VM3_IP, VM4_MAC, VM4_IP, mpls_udp,
    ring_vif, feed, drain)

VM3_IP6, REMOTE6, REMOTE6_GRE = "fd00:1::3", "fd00:2::7", "fd00:3::9"


def v6_vrouter(vr, policy=False):
    fab = ring_vif(vr, 0, "fabric", mac=FABRIC_MAC)
    vm = ring_vif(vr, 3, vrf=1, mac=VM3_MAC, ip=VM3_IP, ip6=VM3_IP6, policy=policy)
    vr.nh_add(10, "encap", vif=3)
    vr.mpls_add(17, 10)
    vr.route_add(1, f"{VM3_IP6}/128", 10)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.nh_add(21, "tunnel", encap="mplsogre", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.route_add(1, "fd00:2::/64", 20, label=101)
    vr.route_add(1, "fd00:3::/64", 21, label=201)
    return fab, vm


def test_ipv6_vm_to_remote_vm_over_mplsoudp_and_mplsogre(vr):
    """IPv6 from the VM, routed in the inet6 table: outer Ethernet/IPv4/UDP
    or GRE/MPLS field by field, the inner IPv6 packet intact but for the hop
    limit (its TCP/UDP checksum unchanged and valid)."""
    fab, vm = v6_vrouter(vr)
    udp = (Ether(src=VM3_MAC, dst=VR_MAC) / IPv6(src=VM3_IP6, dst=REMOTE6, hlim=10, tc=0x28, fl=0x12345) /
           UDP(sport=1111, dport=2222) / Raw(b"six" * 20))
    tcp = (Ether(src=VM3_MAC, dst=VR_MAC) / IPv6(src=VM3_IP6, dst=REMOTE6_GRE, hlim=64) /
           TCP(sport=3333, dport=443, flags="S", seq=77) / Raw(b"hello6"))
    feed(vr, vm, [udp, tcp])
    vr.poll_until_idle()
    out = drain(fab)
    assert len(out) == 2
    u, g = out
    for p in out:
        assert p[Ether].src == VR_MAC and p[Ether].dst == REMOTE_MAC and p[Ether].type == 0x0800
        o = p[IP]
        assert o.version == 4 and o.ihl == 5 and o.src == UNDERLAY and o.dst == REMOTE and o.ttl == 64
        assert o.len == len(bytes(o)) and ip_cksum_ok(o) and o.frag == 0
    assert u[IP].proto == 17 and u[UDP].dport == 6635 and 49152 <= u[UDP].sport <= 65535
    assert u[UDP].len == len(bytes(u[UDP]))
    assert u[UDP].chksum == 0 or l4_cksum_ok(u)
    assert u[MPLS].label == 101 and u[MPLS].s == 1
    assert g[IP].proto == 47 and g[GRE].proto == 0x8847 and g[GRE].chksum_present == 0 and g[GRE].key_present == 0
    assert g[MPLS].label == 201 and g[MPLS].s == 1
    for p, ref in ((u, udp), (g, tcp)):
        i = IPv6(bytes(p[MPLS].payload))
        r = IPv6(bytes(ref[IPv6]))
        assert i.version == 6 and i.tc == r.tc and i.fl == r.fl and i.plen == r.plen and i.nh == r.nh
        assert i.src == r.src and i.dst == r.dst and i.hlim == r.hlim - 1
        assert bytes(i.payload) == bytes(r.payload)
        assert l4_cksum_ok(i)
        assert len(bytes(p[MPLS].payload)) == 40 + r.plen          # nothing after the inner packet
    st = vr.vrfstats(1)
    assert st["udp_mpls_encaps"] == 1 and st["gre_mpls_encaps"] == 1
    assert sum(vr.dropstats().values()) == 0


def test_ipv6_remote_to_vm_decapsulated(vr):
    """MPLSoUDP and MPLSoGRE with an IPv6 inner packet: the VM gets it with
    its own MAC, ethertype 0x86dd, the packet untouched (hop limit too)."""
    fab, vm = v6_vrouter(vr)
    inner = [IPv6(src=REMOTE6, dst=VM3_IP6, hlim=33) / UDP(sport=2222, dport=1111) / Raw(b"r" * 7),
             IPv6(src=REMOTE6_GRE, dst=VM3_IP6, hlim=5) / TCP(sport=443, dport=3333, flags="SA")]
    gre = (Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) / GRE(proto=0x8847) /
           MPLS(label=17, s=1, ttl=64) / inner[1])
    feed(vr, fab, [mpls_udp(17, inner[0]), gre])
    vr.poll_until_idle()
    got = drain(vm)
    assert len(got) == 2
    for p, ref in zip(got, inner):
        assert p[Ether].dst == VM3_MAC and p[Ether].src == VR_MAC and p[Ether].type == 0x86DD
        assert bytes(p[IPv6]) == bytes(ref)
    st = vr.vrfstats(1)
    assert st["udp_mpls_decaps"] == 1 and st["gre_mpls_decaps"] == 1


def test_ipv6_vm_to_vm_on_the_node_hop_limit_and_no_route(vr):
    """IPv6 VM -> VM through an encap nexthop (L2 rewrite, hop limit - 1);
    hop limit 1 is dropped as ttl_exceeded; no inet6 route is no_route."""
    fab, vm = v6_vrouter(vr)
    vm4 = ring_vif(vr, 4, vrf=1, mac=VM4_MAC, ip=VM4_IP, ip6="fd00:1::4")
    vr.nh_add(11, "encap", vif=4)
    vr.route_add(1, "fd00:1::4/128", 11)
    ok = Ether(src=VM3_MAC, dst=VR_MAC) / IPv6(src=VM3_IP6, dst="fd00:1::4", hlim=2) / ICMPv6EchoRequest(id=7, seq=1)
    expiring = Ether(src=VM3_MAC, dst=VR_MAC) / IPv6(src=VM3_IP6, dst="fd00:1::4", hlim=1) / UDP(sport=1, dport=2)
    lost = Ether(src=VM3_MAC, dst=VR_MAC) / IPv6(src=VM3_IP6, dst="fd00:9::1") / UDP(sport=1, dport=2)
    feed(vr, vm, [ok, expiring, lost])
    vr.poll_until_idle()
    got = drain(vm4)
    assert len(got) == 1
    p = got[0]
    assert p[Ether].dst == VM4_MAC and p[Ether].src == VR_MAC and p[Ether].type == 0x86DD
    assert p[IPv6].hlim == 1 and bytes(p[IPv6].payload) == bytes(ok[IPv6].payload)
    assert p[IPv6].src == VM3_IP6 and p[IPv6].dst == "fd00:1::4"
    assert not drain(fab)
    d = vr.dropstats(3)
    assert d["ttl_exceeded"] == 1 and d["no_route"] == 1
    assert vr.vrfstats(1)["encaps"] == 1


def test_ipv6_policy_drops_by_prefix_and_port(vr):
    """IPv6 flows go through the vif's policy: a drop rule on fd00:2::/64
    UDP 53 drops (flow_action_drop), other IPv6 traffic passes; flows are
    listed with IPv6 addresses."""
    fab, vm = v6_vrouter(vr, policy=True)
    vr.policy_add(3, "drop", proto="udp", dst="fd00:2::/64", dst_port=53)
    dns = Ether(src=VM3_MAC, dst=VR_MAC) / IPv6(src=VM3_IP6, dst=REMOTE6) / UDP(sport=999, dport=53)
    ntp = Ether(src=VM3_MAC, dst=VR_MAC) / IPv6(src=VM3_IP6, dst=REMOTE6) / UDP(sport=999, dport=123)
    feed(vr, vm, [dns, dns, ntp])
    vr.poll_until_idle()
    out = drain(fab)
    assert len(out) == 1 and IPv6(bytes(out[0][MPLS].payload))[UDP].dport == 123
    assert vr.dropstats()["flow_action_drop"] == 2
    flows = {(f["dst"], f["dport"]): f for f in vr.flow_list() if f["src"] == VM3_IP6}
    assert flows[(REMOTE6, 53)]["action"] == "drop" and flows[(REMOTE6, 53)]["packets"] == 2
    assert flows[(REMOTE6, 123)]["action"] == "forward" and flows[(REMOTE6, 123)]["family"] == 6

