"""Regression tests for fixed vRouter bugs: L4 bounds before NAT and policy,
flow pairs linked when the reverse entry already existed, replacing a vif's
floating IP, the source vif's policy on the bridged path. The `pool` fixture
checks every mbuf came back."""
import pytest
from scapy.all import Ether, IP, UDP, TCP, Raw

from pypdk.errors import UsageError
from vrharness import VR_MAC, REMOTE_MAC, FABRIC_MAC
from test_paths import VM3_MAC, VM3_IP, ip_cksum_ok
from test_more_paths import vr, ring_vif, feed, drain, l4_cksum_ok, PUBLIC, CLIENT  # noqa: F401


def fip_vrouter(vr, policy=True):
    fab = ring_vif(vr, 0, "fabric", mac=FABRIC_MAC)
    dev = ring_vif(vr, 3, vrf=1, mac=VM3_MAC, ip=VM3_IP, policy=policy)
    vr.nh_add(10, "encap", vif=3)
    vr.route_add(1, f"{VM3_IP}/32", 10)
    vr.nh_add(50, "encap", vif=0, dmac=REMOTE_MAC)
    vr.route_add(0, "0.0.0.0/0", 50)
    vr.route_add(1, "0.0.0.0/0", 50)
    vr.fip_add(3, PUBLIC)
    return fab, dev


def to_public(l4, dst=PUBLIC):
    return Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=CLIENT, dst=dst) / l4


def truncated(frame, keep, pad=b""):
    """frame with `keep` bytes after its IP header; IP length and checksum consistent; then pad."""
    raw = bytes(frame[IP])[:20 + keep]
    hdr = IP(raw[:20])
    hdr.len, hdr.chksum = 20 + keep, None
    return bytes(frame)[:14] + bytes(hdr)[:20] + raw[20:] + pad


@pytest.mark.parametrize("pad", [b"", b"\xee" * 40], ids=["short-frame", "padded-frame"])
def test_truncated_l4_to_a_floating_ip_is_dropped_not_rewritten(vr, pad):
    """Bug 1: a TCP header shorter than 20 bytes or a UDP header shorter than
    8, to a floating IP, is invalid_packet: nothing reaches the VM and no flow
    is made (with padding, the frame is long enough but the IP total length is not)."""
    fab, dev = fip_vrouter(vr)
    bad = [truncated(to_public(TCP(sport=5000, dport=22)), 12, pad),
           truncated(to_public(UDP(sport=5001, dport=53)), 6, pad),
           truncated(to_public(TCP(sport=5002, dport=22)), 3, pad)]
    for b in bad:
        ip = Ether(b)[IP]
        assert ip_cksum_ok(ip) and ip.len < 20 + (20 if ip.proto == 6 else 8)
    good = to_public(UDP(sport=5003, dport=53) / Raw(b"ok"))
    feed(vr, fab, bad + [good])
    vr.poll_until_idle()
    got = drain(dev)
    assert len(got) == 1 and got[0][UDP].sport == 5003 and got[0][IP].dst == VM3_IP and l4_cksum_ok(got[0])
    assert vr.dropstats()["invalid_packet"] == 3
    assert {f["sport"] for f in vr.flow_list()} <= {5003, 53}
    assert drain(fab) == []


def test_truncated_l4_from_a_policy_vm_is_dropped(vr):
    """Bug 1, the VM side: policy port match and SNAT never read a cut-short L4 header."""
    fab, dev = fip_vrouter(vr)
    vr.policy_add(3, "drop", proto="tcp", dst_port=23)
    full = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=CLIENT) / TCP(sport=40000, dport=23)
    feed(vr, dev, [truncated(full, 10), truncated(full, 10, b"\0" * 30),
                   Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=CLIENT) / UDP(sport=1, dport=2)])
    vr.poll_until_idle()
    assert vr.dropstats()["invalid_packet"] == 2 and vr.dropstats()["flow_action_drop"] == 0
    out = drain(fab)
    assert len(out) == 1 and out[0][UDP].dport == 2


def test_new_forward_flow_links_an_existing_reverse_entry(vr):
    """Bug 2: the VM opened vm:22 -> client:5555 first (its flow pair exists);
    then the client reaches the floating IP from 5555 to 22: the DNAT forward's
    reverse key is the VM's existing entry. Both are linked to each other, the
    reverse translates (SNAT) and the old partner keeps no one-way link."""
    fab, dev = fip_vrouter(vr)
    feed(vr, dev, [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=CLIENT) / TCP(sport=22, dport=5555, flags="S")])
    vr.poll_until_idle()
    assert len(drain(fab)) == 1
    feed(vr, fab, [to_public(TCP(sport=5555, dport=22, flags="S"))])
    vr.poll_until_idle()
    got = drain(dev)
    assert len(got) == 1 and got[0][IP].dst == VM3_IP and l4_cksum_ok(got[0])
    flows = {f["index"]: f for f in vr.flow_list()}
    fwd = [f for f in flows.values() if f["dst"] == PUBLIC]
    assert len(fwd) == 1 and fwd[0]["action"] == "nat"
    rev = flows[fwd[0]["rflow"]]
    assert rev["src"] == VM3_IP and rev["sport"] == 22 and rev["dport"] == 5555
    assert rev["rflow"] == fwd[0]["index"] and rev["action"] == "nat" and rev["nat_ip"] == PUBLIC
    assert rev["packets"] == 1                    # its counters stay
    for f in flows.values():                      # no one-way links
        if f["rflow"] in flows:
            assert flows[f["rflow"]]["rflow"] == f["index"], (f, flows[f["rflow"]])
    # The VM's next packet on that connection leaves from the public address.
    feed(vr, dev, [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=CLIENT) / TCP(sport=22, dport=5555, flags="SA")])
    vr.poll_until_idle()
    out = drain(fab)
    assert len(out) == 1 and out[0][IP].src == PUBLIC and ip_cksum_ok(out[0][IP]) and l4_cksum_ok(out[0])
    assert vr.flow_age() >= 0 and vr.dp.flow_age(True) == len(flows)


def test_second_fip_add_on_a_vif_is_refused_and_changes_nothing(vr):
    """Bug 3: a vif has one floating IP; adding another is a UsageError naming
    the one it has, and the datapath still translates only that one. The same
    address again is a no-op; after fip_del the new one can be added."""
    fab, dev = fip_vrouter(vr)
    OTHER = "192.168.100.11"
    with pytest.raises(UsageError, match=rf"vif 3 already has floating IP {PUBLIC}; delete it first"):
        vr.fip_add(3, OTHER)
    assert vr.fip_add(3, PUBLIC) == {"vif": 3, "public": PUBLIC}
    feed(vr, fab, [to_public(UDP(sport=1, dport=2)), to_public(UDP(sport=3, dport=4), dst=OTHER)])
    vr.poll_until_idle()
    got = drain(dev)
    assert [p[UDP].sport for p in got] == [1]
    vr.fip_del(PUBLIC)
    vr.fip_add(3, OTHER)
    feed(vr, fab, [to_public(UDP(sport=5, dport=6)), to_public(UDP(sport=7, dport=8), dst=OTHER)])
    vr.poll_until_idle()
    got = drain(dev)
    assert [p[UDP].sport for p in got] == [7] and got[0][IP].dst == VM3_IP
    drain(fab)


def test_bridged_frame_evaluates_the_source_vm_policy(vr):
    """Bug 4: on the L2 path the source VM's policy applies, as on the L3 path
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
