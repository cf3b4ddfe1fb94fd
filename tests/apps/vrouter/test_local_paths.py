"""Traffic that stays on the node, golden: VM to VM, VM to the host through a receive
nexthop, the host's frames passed through to the fabric and the fabric's to the host."""
from scapy.all import Ether, IP, UDP, TCP, ICMP, ARP, Raw

from pypdk.testing.frames import ip_cksum_ok
from tests.apps.vrouter.harness import (
    VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, VM3_MAC, VM3_IP, VM4_MAC, VM4_IP, VHOST_MAC,
    HOST, base, l3_tables)


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

