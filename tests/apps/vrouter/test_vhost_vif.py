"""DPDK mode's VM vifs: a virtual vif on a vhost-user socket (apps/vrouter/vhostuser.py).

The guests are pypdk.testing.vhost_frontend's virtio-net devices (memfd memory,
real vhost-user messages over the vif's socket); tests/apps/vrouter/test_dpdk_mode_vm.py
does the same with QEMU guests. Socket names follow TF (uvh_vif_<name> in the
vRouter's vhost_dir), `vif --get` shows the socket and its queues, two VMs on one
node reach each other, MPLSoUDP reaches a MultiQ VM over every receive queue (by
the inner flow's hash) and its replies from every transmit queue are encapsulated,
proxy ARP and policy act on a vhost-user VM, and MPLSoGRE and VXLAN reach (and
leave) vhost-user VMs.
"""
import os

import pytest
from scapy.all import ARP, Ether, GRE, IP, UDP, Raw
from scapy.contrib.mpls import MPLS
from scapy.layers.vxlan import VXLAN

from apps.vrouter import vhostuser
from apps.vrouter.ctl import show
from apps.vrouter.vrouter import VRouter
from pypdk.testing.vhost_frontend import Frontend, GuestMemory, VirtioNet
from tests.apps.vrouter.harness import (VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, VM3_MAC, VM3_IP,
                                        VM4_MAC, VM4_IP, mpls_udp, ring_vif, feed, drain)


@pytest.fixture
def dpdk(pool, tmp_path):
    """A VRouter whose vhostuser:NAME sockets are in tmp_path, and a guest maker."""
    vr = VRouter(pool, VR_MAC, UNDERLAY, vhost_dir=str(tmp_path))
    guests = []

    def guest(name, queues=1):
        g = VirtioNet(Frontend.connect(vhostuser.socket_path(name, str(tmp_path)), timeout=10),
                      GuestMemory(), queues=queues)
        guests.append(g)
        for q in range(queues):
            g.give_rx(128, q=q)
        return g
    try:
        yield vr, guest
    finally:
        for g in guests:
            g.fe.close()
            g.close()
            g.mem.close()
        vr.close()


def recv_all(vr, g, q=0, want=1, rounds=50):
    got = []
    for _ in range(rounds):
        vr.poll_until_idle()
        got += [Ether(body) for _, body in g.recv(q)]
        if len(got) >= want:
            break
    return got


def test_socket_follows_tf_and_vif_get_shows_it(dpdk, tmp_path):
    vr, guest = dpdk
    v = vr.vif_add(3, "virtual", port="vhostuser:tap-vm3", vrf=1, mac=VM3_MAC, ip=VM3_IP, queues=2)
    path = str(tmp_path / "uvh_vif_tap-vm3")
    assert v["socket"] == {"type": "unix", "path": path, "mode": "server", "connected": False,
                           "queues": 2, "link_up": False}
    assert os.path.exists(path)
    guest("tap-vm3", queues=2)
    v = vr.vif_get(3)
    assert v["socket"]["connected"] and v["socket"]["link_up"]
    text = "\n".join(show.vif_block(v))
    assert f"Socket: unix {path} Mode:server Connected Link:UP Queues:2" in text
    assert "Queues:2" in text.splitlines()[2] and text.startswith("vif0/3      OS: tap-vm3")
    # an explicit --vdev spelling gets the vif's queues too, a path is taken as it is
    assert vhostuser.spec("net_vhost7,iface=/x/y.sock", 7, 4, "/d") == "net_vhost7,iface=/x/y.sock,queues=4"
    assert (vhostuser.spec(f"vhostuser:{tmp_path}/a.sock,client=1,reconnect=1", 5, 1, "/d")
            == f"net_vhost5,iface={tmp_path}/a.sock,client=1,reconnect=1,queues=1")
    # a new socket for the vif: the new port opens before the old one closes
    v = vr.vif_add(3, "virtual", port="vhostuser:tap-vm3b", vrf=1, queues=2)
    assert v["socket"]["path"] == str(tmp_path / "uvh_vif_tap-vm3b") and not os.path.exists(path)
    guest("tap-vm3b", queues=2)
    assert vr.vif_get(3)["socket"]["link_up"]
    vr.vif_del(3)
    assert not os.listdir(tmp_path)


def test_two_vms_on_vhost_user_vifs_reach_each_other(dpdk):
    vr, guest = dpdk
    vr.vif_add(3, "virtual", port="vhostuser:vm3", vrf=1, mac=VM3_MAC, ip=VM3_IP)
    vr.vif_add(4, "virtual", port="vhostuser:vm4", vrf=1, mac=VM4_MAC, ip=VM4_IP)
    vr.nh_add(10, "encap", vif=3)
    vr.nh_add(11, "encap", vif=4)
    vr.route_add(1, f"{VM3_IP}/32", 10)
    vr.route_add(1, f"{VM4_IP}/32", 11)
    a, b = guest("vm3"), guest("vm4")
    there = [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=VM4_IP) / UDP(sport=1000 + i, dport=7)
             / Raw(b"x" * (i * 20)) for i in range(20)]
    for p in there:
        a.send(bytes(p))
    got = recv_all(vr, b, want=20)
    assert len(got) == 20
    for p, ref in zip(got, there):
        assert p[Ether].src == VR_MAC and p[Ether].dst == VM4_MAC
        assert bytes(p[IP].payload) == bytes(ref[IP].payload) and p[IP].ttl == ref[IP].ttl - 1
    back = Ether(src=VM4_MAC, dst=VR_MAC) / IP(src=VM4_IP, dst=VM3_IP) / UDP(sport=7, dport=1000)
    b.send(bytes(back))
    got = recv_all(vr, a, want=1)
    assert len(got) == 1 and got[0][IP].src == VM4_IP and got[0][Ether].dst == VM3_MAC
    assert vr.vif_get(3)["stats"]["rx_packets"] == 20 and vr.vif_get(4)["stats"]["tx_packets"] == 20
    assert sum(vr.dropstats().values()) == 0


def test_multiq_vm_mplsoudp_spread_over_its_queues_both_ways(dpdk):
    vr, guest = dpdk
    fab = ring_vif(vr, 0, "fabric", mac=FABRIC_MAC)
    vr.vif_add(5, "virtual", port="vhostuser:mq5", vrf=1, mac=VM3_MAC, ip=VM3_IP, queues=2)
    vr.nh_add(10, "encap", vif=5)
    vr.mpls_add(17, 10)
    vr.route_add(1, f"{VM3_IP}/32", 10)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.route_add(1, "10.1.2.0/24", 20, label=100)
    g = guest("mq5", queues=2)
    # fabric -> MultiQ: the inner flow's hash picks the guest's receive queue
    flows = [(f"10.1.2.{5 + i % 7}", 2000 + i) for i in range(32)]
    feed(vr, fab, [mpls_udp(17, IP(src=s, dst=VM3_IP) / UDP(sport=sp, dport=53) / Raw(b"q" * 8))
                   for s, sp in flows])
    vr.poll_until_idle()
    per_q = [[Ether(b) for _, b in g.recv(q)] for q in (0, 1)]
    assert sum(map(len, per_q)) == len(flows) and all(per_q), [len(x) for x in per_q]
    keys = [{(p[IP].src, p[UDP].sport) for p in got} for got in per_q]
    assert not keys[0] & keys[1] and keys[0] | keys[1] == set(flows)
    # MultiQ -> underlay: every transmit queue is polled, each packet encapsulated once
    for q in (0, 1):
        for i in range(10):
            g.send(bytes(Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.9") /
                         UDP(sport=3000 + 100 * q + i, dport=53) / Raw(b"r")), q=q)
    vr.poll_until_idle()
    out = drain(fab)
    assert len(out) == 20
    sports = sorted(p[UDP].payload[IP][UDP].sport for p in out if p[IP].dst == REMOTE)
    assert sports == sorted(3000 + 100 * q + i for q in (0, 1) for i in range(10))
    qs = vr.vif_get(5)["queue_stats"]
    assert [q["rx_packets"] for q in qs] == [10, 10]
    assert [q["tx_packets"] for q in qs] == [len(x) for x in per_q]
    assert sum(vr.dropstats().values()) == 0


def test_proxy_arp_and_policy_on_a_vhost_user_vif(dpdk):
    vr, guest = dpdk
    fab = ring_vif(vr, 0, "fabric", mac=FABRIC_MAC)
    vr.vif_add(3, "virtual", port="vhostuser:vm3", vrf=1, mac=VM3_MAC, ip=VM3_IP, policy=True)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.route_add(1, "10.1.2.0/24", 20, label=100)
    vr.policy_add(3, "drop", proto="udp", dst_port=23)
    g = guest("vm3")
    g.send(bytes(Ether(src=VM3_MAC, dst="ff:ff:ff:ff:ff:ff") /
                 ARP(op=1, hwsrc=VM3_MAC, psrc=VM3_IP, pdst="10.1.2.7")))
    got = recv_all(vr, g, want=1)
    assert len(got) == 1 and got[0][ARP].op == 2 and got[0][ARP].hwsrc == VR_MAC
    for dport in (23, 53):
        g.send(bytes(Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=9, dport=dport)))
    vr.poll_until_idle()
    out = drain(fab)
    assert len(out) == 1 and out[0][UDP].payload[IP][UDP].dport == 53
    assert vr.dropstats()["flow_action_drop"] == 1


def test_mplsogre_and_vxlan_to_and_from_vhost_user_vifs(dpdk):
    vr, guest = dpdk
    fab = ring_vif(vr, 0, "fabric", mac=FABRIC_MAC)
    vr.vif_add(3, "virtual", port="vhostuser:vm3", vrf=1, mac=VM3_MAC, ip=VM3_IP)
    vr.vif_add(5, "virtual", port="vhostuser:vm5", vrf=2, mac="02:00:00:00:02:05", mode="l2")
    vr.nh_add(10, "encap", vif=3)
    vr.nh_add(12, "encap", vif=5)
    vr.mpls_add(17, 10)
    vr.route_add(1, f"{VM3_IP}/32", 10)
    vr.nh_add(21, "tunnel", encap="mplsogre", dip=REMOTE)
    vr.nh_add(22, "tunnel", encap="vxlan", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.route_add(1, "10.1.3.0/24", 21, label=200)
    vr.bridge_add(2, "02:00:00:00:02:05", 12)
    vr.bridge_add(2, "02:00:00:00:07:07", 22, vni=5000)
    vr.vxlan_add(5000, 2)
    g3, g5 = guest("vm3"), guest("vm5")
    # MPLSoGRE in to the L3 VM, and its reply out
    inner = IP(src="10.1.3.5", dst=VM3_IP) / UDP(sport=5, dport=6) / Raw(b"gre")
    feed(vr, fab, [Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) / GRE(proto=0x8847) /
                   MPLS(label=17, s=1, ttl=64) / inner])
    got = recv_all(vr, g3, want=1)
    assert len(got) == 1 and bytes(got[0][IP]) == bytes(inner)
    g3.send(bytes(Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.3.5") / UDP(sport=6, dport=5)))
    # VXLAN in to the L2 VM, bridged by the inner MAC, and its frame out
    frame = Ether(src="02:00:00:00:07:07", dst="02:00:00:00:02:05") / IP(src="10.2.0.7", dst="10.2.0.5") / UDP()
    feed(vr, fab, [Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
                   UDP(sport=40000, dport=4789) / VXLAN(vni=5000) / frame])
    got = recv_all(vr, g5, want=1)
    assert len(got) == 1 and bytes(got[0]) == bytes(frame)
    back = Ether(src="02:00:00:00:02:05", dst="02:00:00:00:07:07") / IP(src="10.2.0.5", dst="10.2.0.7") / UDP()
    g5.send(bytes(back))
    vr.poll_until_idle()
    out = drain(fab)
    assert len(out) == 2
    gre = [p for p in out if GRE in p]
    vx = [p for p in out if VXLAN in p]
    assert len(gre) == 1 and gre[0][MPLS].label == 200 and gre[0][MPLS].payload[IP].dst == "10.1.3.5"
    assert len(vx) == 1 and vx[0][VXLAN].vni == 5000 and bytes(vx[0][VXLAN].payload) == bytes(back)
    assert vr.vrfstats(1)["gre_mpls_decaps"] == 1 and vr.vrfstats(2)["vxlan_decaps"] == 1
