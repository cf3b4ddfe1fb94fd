"""Mirroring: a policy with action mirror forwards the packet and copies it to the mirror
vif, both directions of the flow, on the routed and the bridged path."""
import pytest
from scapy.all import Ether, IP, UDP, TCP, Raw
from scapy.contrib.mpls import MPLS
from scapy.layers.vxlan import VXLAN

from tests.apps.vrouter.harness import (
    VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, VM3_MAC, VM3_IP, VM4_MAC, VM4_IP, mpls_udp,
    ring_vif, feed, drain)


def web(i, **tcp):
    return (Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7", ttl=64) /
            TCP(sport=40000, dport=80, seq=100 + i, **tcp) / Raw(b"G" * (i + 1)))


@pytest.mark.parametrize("fabric, analyzer", [(0, 6), (1, 0)], ids=["analyzer-vif6", "analyzer-vif0"])
def test_mirror_forwards_and_copies_both_directions(vr, fabric, analyzer):
    """A VM's TCP to port 80 is mirrored: each packet goes out through the
    tunnel AND a copy of what was forwarded leaves on the mirror vif; the
    reply of that flow (decapsulated to the VM) is delivered and mirrored too;
    other traffic is not copied. Any vif can be the analyzer, vif 0 too."""
    fab = ring_vif(vr, fabric, "fabric", mac=FABRIC_MAC)
    vm = ring_vif(vr, 3, vrf=1, mac=VM3_MAC, ip=VM3_IP, policy=True)
    ana = ring_vif(vr, analyzer, vrf=9, mac="02:00:00:00:09:06")
    vr.nh_add(10, "encap", vif=3)
    vr.mpls_add(17, 10)
    vr.route_add(1, f"{VM3_IP}/32", 10)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.route_add(1, "10.1.2.0/24", 20, label=100)
    rule = vr.policy_add(3, "mirror", proto="tcp", dst_port=80, mirror_vif=analyzer)
    assert rule["action"] == "mirror" and rule["mirror_vif"] == analyzer

    out = [web(0, flags="S"), web(1, flags="A"), web(2, flags="PA")]
    other = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / TCP(sport=40001, dport=443)
    feed(vr, vm, out + [other])
    vr.poll_until_idle()
    sent, copies = drain(fab), drain(ana)
    assert len(sent) == 4 and len(copies) == 3
    for p, c, ref in zip(sent, copies, out):
        assert p[IP].dst == REMOTE and p[MPLS].label == 100
        fwd = IP(bytes(p[MPLS].payload))
        assert fwd.ttl == 63 and fwd[TCP].seq == ref[TCP].seq
        assert c[Ether].type == 0x0800 and bytes(c[IP]) == bytes(fwd)     # a copy of what was forwarded
    assert IP(bytes(sent[3][MPLS].payload))[TCP].dport == 443

    # The reply of the mirrored flow, and one of the unmirrored flow.
    reply = mpls_udp(17, IP(src="10.1.2.7", dst=VM3_IP, ttl=60) / TCP(sport=80, dport=40000, flags="SA") / Raw(b"ok"))
    reply_other = mpls_udp(17, IP(src="10.1.2.7", dst=VM3_IP) / TCP(sport=443, dport=40001, flags="SA"))
    feed(vr, fab, [reply, reply_other])
    vr.poll_until_idle()
    delivered, copies = drain(vm), drain(ana)
    assert len(delivered) == 2 and len(copies) == 1
    assert delivered[0][Ether].dst == VM3_MAC and delivered[0][TCP].sport == 80
    assert bytes(copies[0]) == bytes(delivered[0])
    assert delivered[1][TCP].sport == 443

    st = vr.vif_get(analyzer)["stats"]
    assert st["tx_packets"] == 4 and st["rx_packets"] == 0
    flows = [f for f in vr.flow_list() if 80 in (f["sport"], f["dport"])]
    assert len(flows) == 2 and all(f["action"] == "mirror" and f["mirror_vif"] == analyzer for f in flows)
    assert sum(vr.dropstats().values()) == 0


def test_mirror_between_two_vms_on_the_node(vr):
    """VM -> VM on the same node with a mirror rule on the receiving VM: both
    the VM and the analyzer get the packet."""
    a = ring_vif(vr, 3, vrf=1, mac=VM3_MAC, ip=VM3_IP)
    b = ring_vif(vr, 4, vrf=1, mac=VM4_MAC, ip=VM4_IP, policy=True)
    ana = ring_vif(vr, 6, vrf=9, mac="02:00:00:00:09:06")
    vr.nh_add(10, "encap", vif=3)
    vr.nh_add(11, "encap", vif=4)
    vr.route_add(1, f"{VM3_IP}/32", 10)
    vr.route_add(1, f"{VM4_IP}/32", 11)
    vr.policy_add(4, "mirror", proto="udp", mirror_vif=6)
    feed(vr, a, [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=VM4_IP, ttl=9) / UDP(sport=5, dport=7) / Raw(b"x")])
    vr.poll_until_idle()
    got, copies = drain(b), drain(ana)
    assert len(got) == 1 and len(copies) == 1
    assert got[0][Ether].dst == VM4_MAC and got[0][IP].ttl == 8
    assert bytes(copies[0][IP]) == bytes(got[0][IP])
    assert not drain(a)


def test_mirror_on_a_bridged_vm(vr):
    """VXLAN decapsulated and bridged to an L2 VM whose policy mirrors UDP:
    the VM gets the frame and the analyzer an identical copy; TCP is not copied."""
    fab = ring_vif(vr, 0, "fabric", mac=FABRIC_MAC)
    vm = ring_vif(vr, 5, vrf=2, mac="02:00:00:00:02:05", mode="l2", policy=True)
    ana = ring_vif(vr, 6, vrf=9, mac="02:00:00:00:09:06")
    vr.nh_add(12, "encap", vif=5)
    vr.bridge_add(2, "02:00:00:00:02:05", 12)
    vr.vxlan_add(5000, 2)
    vr.policy_add(5, "mirror", proto="udp", mirror_vif=6)
    frames = [Ether(src="02:00:00:00:09:09", dst="02:00:00:00:02:05") / IP(src="10.2.0.9", dst="10.2.0.5") / l4
              for l4 in (UDP(sport=9, dport=10) / Raw(b"mirror me"), TCP(sport=9, dport=10))]
    feed(vr, fab, [Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
                   UDP(sport=40000, dport=4789) / VXLAN(vni=5000) / f for f in frames])
    vr.poll_until_idle()
    got, copies = drain(vm), drain(ana)
    assert [bytes(p) for p in got] == [bytes(f) for f in frames]
    assert [bytes(p) for p in copies] == [bytes(frames[0])]
    assert vr.vrfstats(2)["vxlan_decaps"] == 2 and sum(vr.dropstats().values()) == 0

