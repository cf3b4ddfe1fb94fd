"""VXLAN, golden: decapsulation bridged by the inner MAC (unknown VNI dropped, broadcast
flooded locally), a VM's frames encapsulated, BUM traffic replicated to every remote."""
from scapy.all import Ether, IP, UDP, TCP, ARP
from scapy.layers.vxlan import VXLAN

from pypdk.testing.frames import ip_cksum_ok
from tests.apps.vrouter.harness import VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC


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

