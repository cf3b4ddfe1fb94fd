"""Floating IPs: DNAT in and the VM's reply SNATed to the public address on the fabric
with valid IPv4/TCP/UDP checksums; only flows that came in are translated; a cut-short
L4 header to a floating IP is dropped, not rewritten; a new flow links the reverse entry
that already exists; a vif has one floating IP. The `pool` fixture checks that every
mbuf came back."""
import pytest
from scapy.all import Ether, IP, UDP, TCP, Raw
from scapy.contrib.mpls import MPLS

from pypdk.errors import UsageError
from pypdk.testing.frames import ip_cksum_ok, l4_cksum_ok
from tests.apps.vrouter.harness import (
    VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, VM3_MAC, VM3_IP, PUBLIC, CLIENT, ring_vif,
    feed, drain, fip_vrouter, to_public, truncated)


def fip_node(node, policy):
    node.vif(0, "fabric", mac=FABRIC_MAC)
    node.setup({0: [
        Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=CLIENT, dst=PUBLIC, ttl=50) /
        TCP(sport=5555, dport=40022, flags="S", seq=1000) / Raw(b"hello"),
        Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=CLIENT, dst=PUBLIC, ttl=50) /
        UDP(sport=6666, dport=40053) / Raw(b"query"),
        Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=CLIENT, dst=PUBLIC, ttl=50) /
        UDP(sport=7777, dport=40069, chksum=0) / Raw(b"no checksum"),
    ]})
    vr = node.vr
    dev = ring_vif(vr, 3, vrf=1, mac=VM3_MAC, ip=VM3_IP, policy=policy)
    vr.nh_add(10, "encap", vif=3)
    vr.route_add(1, f"{VM3_IP}/32", 10)
    vr.nh_add(50, "encap", vif=0, dmac=REMOTE_MAC)
    vr.route_add(0, "0.0.0.0/0", 50)
    vr.fip_add(3, PUBLIC)
    return vr, dev


@pytest.mark.parametrize("policy", [True, False], ids=["policy", "no-policy"])
def test_floating_ip_dnat_in_and_snat_reply_out(node, policy):
    """In: the public address becomes the VM's. Out: the VM's replies leave on
    the fabric from the public address, IPv4, TCP and UDP checksums valid (a
    UDP checksum of 0 stays 0). A vif without policy translates too: the
    floating IP needs the flow either way."""
    vr, dev = fip_node(node, policy)
    vr.poll_until_idle()
    got = drain(dev)
    assert len(got) == 3
    for p in got:
        assert p[Ether].dst == VM3_MAC and p[Ether].src == VR_MAC
        assert p[IP].src == CLIENT and p[IP].dst == VM3_IP and ip_cksum_ok(p[IP])
    tcp, udp, udp0 = got
    assert tcp[TCP].dport == 40022 and l4_cksum_ok(tcp) and bytes(tcp[TCP].payload) == b"hello"
    assert udp[UDP].dport == 40053 and l4_cksum_ok(udp)
    assert udp0[UDP].chksum == 0

    replies = [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=CLIENT, ttl=64) /
               TCP(sport=40022, dport=5555, flags="SA", seq=9000, ack=1006) / Raw(b"welcome"),
               Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=CLIENT, ttl=64) /
               UDP(sport=40053, dport=6666) / Raw(b"answer"),
               Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=CLIENT, ttl=64) /
               UDP(sport=40069, dport=7777, chksum=0) / Raw(b"no checksum back")]
    feed(vr, dev, replies)
    vr.poll_until_idle()
    out = node.finish()[0]
    assert len(out) == 3, [p.summary() for p in out]
    for p, ref in zip(out, replies):
        assert p[Ether].src == VR_MAC and p[Ether].dst == REMOTE_MAC
        assert p[IP].src == PUBLIC and p[IP].dst == CLIENT and p[IP].ttl == 63
        assert ip_cksum_ok(p[IP]) and p[IP].len == len(bytes(p[IP]))
        assert bytes(p[IP].payload.payload) == bytes(ref[IP].payload.payload)
    t, u, u0 = out
    assert t[TCP].sport == 40022 and t[TCP].dport == 5555 and t[TCP].flags == "SA"
    assert t[TCP].seq == 9000 and t[TCP].ack == 1006 and l4_cksum_ok(t)
    assert u[UDP].sport == 40053 and u[UDP].dport == 6666 and l4_cksum_ok(u)
    assert u0[UDP].chksum == 0
    assert vr.vrfstats(1)["translates"] == 6
    assert sum(vr.dropstats().values()) == 0
    nat = [f for f in vr.flow_list() if f["action"] == "nat"]
    assert len(nat) == 6


def test_floating_ip_reply_to_an_unknown_client_is_not_translated(node):
    """Only a flow that came in through the floating IP is SNATed: the VM
    talking to another address keeps its own source (and is routed in its VRF)."""
    vr, dev = fip_node(node, True)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.route_add(1, "0.0.0.0/0", 20, label=100)
    vr.poll_until_idle()
    drain(dev)
    feed(vr, dev, [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="203.0.113.9") / UDP(sport=40053, dport=6666)])
    vr.poll_until_idle()
    out = node.finish()[0]
    assert len(out) == 1
    p = out[0]
    assert p[IP].src == UNDERLAY and p[MPLS].label == 100
    inner = IP(bytes(p[MPLS].payload))
    assert inner.src == VM3_IP and inner.dst == "203.0.113.9"
    assert vr.vrfstats(1)["translates"] == 3            # the three DNATs in only


@pytest.mark.parametrize("pad", [b"", b"\xee" * 40], ids=["short-frame", "padded-frame"])
def test_truncated_l4_to_a_floating_ip_is_dropped_not_rewritten(vr, pad):
    """A TCP header shorter than 20 bytes or a UDP header shorter than
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


def test_new_forward_flow_links_an_existing_reverse_entry(vr):
    """The VM opened vm:22 -> client:5555 first (its flow pair exists);
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
    """A vif has one floating IP; adding another is a UsageError naming
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

