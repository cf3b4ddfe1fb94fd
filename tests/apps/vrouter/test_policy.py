"""A VM's policy: port matches never read a cut-short L4 header, and on the bridged path
the source VM's rules apply as on the routed path."""
from scapy.all import Ether, IP, UDP, TCP

from tests.apps.vrouter.harness import (
    VR_MAC, VM3_MAC, VM3_IP, CLIENT, ring_vif, feed, drain, fip_vrouter, truncated)


def test_truncated_l4_from_a_policy_vm_is_dropped(vr):
    """The policy port match and SNAT never read a cut-short L4 header."""
    fab, dev = fip_vrouter(vr)
    vr.policy_add(3, "drop", proto="tcp", dst_port=23)
    full = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=CLIENT) / TCP(sport=40000, dport=23)
    feed(vr, dev, [truncated(full, 10), truncated(full, 10, b"\0" * 30),
                   Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=CLIENT) / UDP(sport=1, dport=2)])
    vr.poll_until_idle()
    assert vr.dropstats()["invalid_packet"] == 2 and vr.dropstats()["flow_action_drop"] == 0
    out = drain(fab)
    assert len(out) == 1 and out[0][UDP].dport == 2


def test_bridged_frame_evaluates_the_source_vm_policy(vr):
    """On the L2 path the source VM's policy applies, as on the L3 path
    (the source's rules when it has policy; the destination's otherwise)."""
    a = ring_vif(vr, 5, vrf=2, mac="02:00:00:00:02:05", mode="l2", policy=True)
    b = ring_vif(vr, 6, vrf=2, mac="02:00:00:00:02:06", mode="l2")
    vr.nh_add(15, "encap", vif=5)
    vr.nh_add(16, "encap", vif=6)
    vr.bridge_add(2, "02:00:00:00:02:05", 15)
    vr.bridge_add(2, "02:00:00:00:02:06", 16)
    vr.policy_add(5, "drop", proto="tcp", dst_port=23)

    def frame(dport, l4=TCP):
        return (Ether(src="02:00:00:00:02:05", dst="02:00:00:00:02:06") / IP(src="10.2.0.5", dst="10.2.0.6") /
                l4(sport=1000, dport=dport))
    feed(vr, a, [frame(23), frame(80), frame(23, UDP)])
    vr.poll_until_idle()
    got = drain(b)
    assert [(p[IP].proto, p.dport) for p in got] == [(6, 80), (17, 23)]
    assert vr.dropstats()["flow_action_drop"] == 1
    fl = vr.flow_list()
    assert any(f["dport"] == 23 and f["action"] == "drop" for f in fl)
    # The reply B -> A finds the pair: the dropped flow stays dropped both ways.
    feed(vr, b, [Ether(src="02:00:00:00:02:06", dst="02:00:00:00:02:05") / IP(src="10.2.0.6", dst="10.2.0.5") /
                 TCP(sport=80, dport=1000), Ether(src="02:00:00:00:02:06", dst="02:00:00:00:02:05") /
                 IP(src="10.2.0.6", dst="10.2.0.5") / TCP(sport=23, dport=1000)])
    vr.poll_until_idle()
    back = drain(a)
    assert [p.sport for p in back] == [80]
    assert vr.dropstats()["flow_action_drop"] == 2
    # A truncated TCP header from the policy VM is invalid, not bridged unchecked.
    feed(vr, a, [truncated(frame(23), 8)])
    vr.poll_until_idle()
    assert drain(b) == [] and vr.dropstats()["invalid_packet"] == 1

