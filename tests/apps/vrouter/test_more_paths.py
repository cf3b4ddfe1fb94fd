"""The vRouter paths test_paths.py leaves out, golden and field by field.

- a multi-queue VM vif: the tx queue comes from the inner flow hash (flows
  spread, each flow on one queue, every packet counted once);
- a floating IP both ways: DNAT in, and the VM's reply SNATed to the public
  address on the fabric with valid IPv4/TCP/UDP checksums;
- mirror: a policy with action mirror forwards the packet and copies it to
  the mirror vif (both directions of the flow);
- flow aging: idle flows go, closed TCP flows go sooner, a full table drops
  and counts flow_table_full;
- the IPv6 overlay: VM -> remote VM over MPLSoUDP/MPLSoGRE, remote -> VM,
  VM -> VM on the node, hop limit, IPv6 policy. (IPv6 NS answered: test_paths.py.)

Ports are pcap files (vrharness.Node) or, where the test drives phases or reads
queues, net_ring ports it injects into and drains. The `pool` fixture checks
that every mbuf came back.
"""
import itertools

import pytest
from scapy.all import Ether, IP, IPv6, UDP, TCP, ICMP, GRE, Raw, ICMPv6EchoRequest
from scapy.contrib.mpls import MPLS
from scapy.layers.vxlan import VXLAN

from pypdk.mempool.mbuf import Mbuf
from vrharness import VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC
from test_paths import base, l3_tables, mpls_udp, ip_cksum_ok, VM3_MAC, VM3_IP, VM4_MAC, VM4_IP

VM5_MAC, VM5_IP = "02:00:00:00:01:05", "10.1.1.5"
_ring_ids = itertools.count(700)
PUBLIC = "192.168.100.10"
CLIENT = "198.51.100.7"


@pytest.fixture
def vr(pool):
    """A VRouter without pcap vifs (the test adds net_ring vifs and drives phases)."""
    from apps.vrouter.vrouter import VRouter
    v = VRouter(pool, VR_MAC, UNDERLAY)
    try:
        yield v
    finally:
        v.close()


# ---- helpers: net_ring vifs the test feeds and drains -------------------------------

def ring_vif(vr, id, type="virtual", queues=1, **kw):
    """Add a vif on a fresh net_ring port with `queues` queue pairs; its EthDev."""
    vr.vif_add(id, type, port=f"net_ring{next(_ring_ids)}", queues=queues, **kw)
    return vr.vifs[id]["dev"]


def feed(vr, dev, frames, q=0):
    """Put frames (scapy packets or bytes) on dev's rx ring, as if a VM sent them."""
    mbufs = []
    for f in frames:
        m = vr.pool.alloc()
        m.append(bytes(f))
        mbufs.append(m)
    assert dev.rx_ring(q).enqueue_burst(mbufs) == len(mbufs)


def drain(dev, q=0):
    """What dev transmitted on tx queue q, as scapy packets (the mbufs are freed)."""
    out = []
    while True:
        addrs = dev.tx_ring(q).dequeue_burst(256)
        if not addrs:
            return out
        for a in addrs:
            m = Mbuf.from_addr(a)
            out.append(Ether(m.bytes()))
            m.free()


def l4_cksum_ok(pkt):
    """The TCP/UDP checksum of an IPv4 or IPv6 packet is what scapy computes."""
    l3 = pkt[IP] if IP in pkt else pkt[IPv6]
    l4 = l3.payload
    ref = l3.copy()
    ref.payload.chksum = None
    if IP in pkt:
        ref.chksum = None
    return type(l3)(bytes(ref))[type(l4)].chksum == l4.chksum


# ---- 1. a multi-queue VM vif ---------------------------------------------------------

def test_multiqueue_vif_tx_queue_follows_the_inner_flow(node):
    """64 flows decapsulated to a VM with 4 tx queues: every flow on one queue,
    at least two queues used, and each packet counted once (per-queue counters
    = what the queues hold = the vif total = what came in)."""
    node.vif(0, "fabric", mac=FABRIC_MAC)
    flows = [(f"10.1.2.{5 + i % 7}", 1000 + i) for i in range(64)]
    pkts = [mpls_udp(17, IP(src=s, dst=VM5_IP) / UDP(sport=sp, dport=53) / Raw(b"q" * (n + 1)))
            for n in range(3) for s, sp in flows]
    node.setup({0: pkts})
    vr = node.vr
    dev = ring_vif(vr, 5, queues=4, vrf=1, mac=VM5_MAC, ip=VM5_IP)
    vr.nh_add(15, "encap", vif=5)
    vr.mpls_add(17, 15)
    vr.poll_until_idle()

    per_q = [drain(dev, q) for q in range(4)]
    queue_of = {}
    for q, got in enumerate(per_q):
        for p in got:
            assert p[Ether].dst == VM5_MAC and p[Ether].src == VR_MAC and p[IP].dst == VM5_IP
            key = (p[IP].src, p[UDP].sport)
            assert queue_of.setdefault(key, q) == q, f"flow {key} on queues {queue_of[key]} and {q}"
    assert set(queue_of) == set(flows)
    used = [q for q in range(4) if per_q[q]]
    assert len(used) >= 2, f"all flows on queue {used}"

    v = vr.vif_get(5)
    assert len(v["queue_stats"]) == 4
    for q in range(4):
        assert v["queue_stats"][q]["tx_packets"] == len(per_q[q])
        assert v["queue_stats"][q]["tx_bytes"] == sum(len(p) for p in per_q[q])
        assert dev.queue_stats()["tx"][q]["packets"] == len(per_q[q])
    assert v["stats"]["tx_packets"] == sum(len(g) for g in per_q) == len(pkts)
    assert vr.vif_get(0)["stats"]["rx_packets"] == len(pkts)
    assert vr.vrfstats(1)["udp_mpls_decaps"] == len(pkts)
    assert sum(vr.dropstats().values()) == 0
    node.finish()


# ---- 3. a floating IP in both directions ---------------------------------------------------

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


# ---- 4. mirror ----------------------------------------------------------------------------------

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


# ---- 5. flow aging -------------------------------------------------------------------------------

def tcp_from_vm(sport, flags):
    return Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / TCP(sport=sport, dport=80, flags=flags)


def tcp_to_vm(sport, flags):
    return mpls_udp(17, IP(src="10.1.2.7", dst=VM3_IP) / TCP(sport=80, dport=sport, flags=flags))


def flow_vrouter(vr):
    fab = ring_vif(vr, 0, "fabric", mac=FABRIC_MAC)
    vm = ring_vif(vr, 3, vrf=1, mac=VM3_MAC, ip=VM3_IP, policy=True)
    vr.nh_add(10, "encap", vif=3)
    vr.mpls_add(17, 10)
    vr.route_add(1, f"{VM3_IP}/32", 10)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.route_add(1, "10.1.2.0/24", 20, label=100)
    return fab, vm


def ports_of(vr):
    """{(sport, dport) of the VM side: flags} for the forward flows."""
    return {f["sport"]: f["flags"] for f in vr.flow_list() if f["src"] == VM3_IP}


def test_idle_flows_are_aged_and_closed_tcp_flows_sooner(vr):
    """Closed TCP flows (FIN both ways, or RST) go at the closed timeout;
    open, half-closed and UDP flows stay until the idle timeout; both
    directions of a flow go together. The aging call is driven with the
    timeouts (no sleeping): closed = 0 ticks, idle = a day; then idle = 0."""
    fab, vm = flow_vrouter(vr)
    feed(vr, vm, [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=1000, dport=53),
                  tcp_from_vm(2000, "S"), tcp_from_vm(3000, "S"), tcp_from_vm(4000, "S"), tcp_from_vm(5000, "S")])
    vr.poll_until_idle()
    feed(vr, fab, [tcp_to_vm(2000, "SA"), tcp_to_vm(3000, "R"), tcp_to_vm(4000, "SA"), tcp_to_vm(5000, "SA")])
    vr.poll_until_idle()
    feed(vr, vm, [tcp_from_vm(2000, "FA"), tcp_from_vm(5000, "FA")])     # 2000: FIN, 5000: half closed
    vr.poll_until_idle()
    feed(vr, fab, [tcp_to_vm(2000, "FA")])
    vr.poll_until_idle()
    assert len(drain(fab)) == 7 and len(drain(vm)) == 5
    assert sorted(ports_of(vr)) == [1000, 2000, 3000, 4000, 5000]
    assert vr.dp.flow_count() == 10

    hz = 1e9
    vr.dp.set_flow_timeouts(86400.0, 0.0, hz)
    assert vr.flow_age() == 4                               # 2000 and 3000, both directions
    assert sorted(ports_of(vr)) == [1000, 4000, 5000]
    assert vr.dp.flow_count() == 6
    assert vr.flow_age() == 0                               # nothing else is closed or idle

    vr.dp.set_flow_timeouts(0.0, 0.0, hz)
    assert vr.flow_age() == 6
    assert vr.flow_list() == [] and vr.dp.flow_count() == 0

    # The table is usable again: a new packet of an aged flow makes a new flow.
    created = vr.dp.totals()["flows_created"]
    feed(vr, vm, [tcp_from_vm(4000, "A")])
    vr.poll_until_idle()
    assert len(drain(fab)) == 1
    assert vr.dp.totals()["flows_created"] == created + 1 and sorted(ports_of(vr)) == [4000]


def test_a_flow_ages_as_a_pair_when_both_directions_are_idle(vr):
    """The clock is driven: at `now` the VM's side of a UDP flow is idle past
    the timeout but the remote's side is not; the flow stays whole (both
    entries, still linked). Later both are idle and both entries go."""
    from apps.vrouter.dp.router import rdtsc
    fab, vm = flow_vrouter(vr)
    hz = 1e9
    vr.dp.set_flow_timeouts(10.0, 1.0, hz)
    timeout = int(10.0 * hz)
    feed(vr, vm, [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=1000, dport=5000)])
    vr.poll_until_idle()
    t_mid = rdtsc()                     # after the VM's packet, before the remote's
    feed(vr, fab, [mpls_udp(17, IP(src="10.1.2.7", dst=VM3_IP) / UDP(sport=5000, dport=1000))] * 3)
    vr.poll_until_idle()
    assert len(drain(fab)) == 1 and len(drain(vm)) == 3
    assert vr.dp.flow_age(now=t_mid + timeout + 1) == 0
    flows = {f["src"]: f for f in vr.flow_list()}
    assert set(flows) == {VM3_IP, "10.1.2.7"}
    assert flows[VM3_IP]["rflow"] == flows["10.1.2.7"]["index"] and flows["10.1.2.7"]["rflow"] == flows[VM3_IP]["index"]
    assert flows["10.1.2.7"]["packets"] == 3
    assert vr.dp.flow_age(now=rdtsc() + timeout + 1) == 2
    assert vr.flow_list() == []


def test_full_flow_table_drops_new_flows_and_counts_flow_table_full(pool):
    """With room for a few flows, new flows past it are dropped as
    flow_table_full; packets of flows that exist still pass; after aging the
    table takes new flows again."""
    from apps.vrouter.vrouter import VRouter
    vr = VRouter(pool, VR_MAC, UNDERLAY, flow_max=16)
    try:
        fab, vm = flow_vrouter(vr)
        n = 24
        feed(vr, vm, [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=1000 + i, dport=53)
                      for i in range(n)])
        vr.poll_until_idle()
        sent = drain(fab)
        full = vr.dropstats()["flow_table_full"]
        assert full > 0 and len(sent) > 0
        assert len(sent) + full == n
        assert vr.dropstats(3)["flow_table_full"] == full
        assert vr.dp.flow_count() == 2 * len(sent) <= 16
        admitted = {IP(bytes(p[MPLS].payload))[UDP].sport for p in sent}
        # An existing flow still passes while the table is full.
        one = min(admitted)
        feed(vr, vm, [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=one, dport=53)])
        vr.poll_until_idle()
        assert len(drain(fab)) == 1 and vr.dropstats()["flow_table_full"] == full
        # Aged out, the refused flows get in.
        vr.dp.set_flow_timeouts(0.0, 0.0, 1e9)
        assert vr.flow_age() == 2 * len(sent)
        refused = sorted(set(range(1000, 1000 + n)) - admitted)[:len(sent)]
        feed(vr, vm, [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=s, dport=53)
                      for s in refused])
        vr.poll_until_idle()
        assert len(drain(fab)) == len(refused) and vr.dropstats()["flow_table_full"] == full
        assert vr.vif_get(3)["stats"]["rx_packets"] == n + 1 + len(refused)
    finally:
        vr.close()


# ---- 7. the IPv6 overlay ------------------------------------------------------------------------

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
