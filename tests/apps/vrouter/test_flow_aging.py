"""Flow aging: idle flows go, closed TCP flows go sooner, a flow ages as a pair, a full
table drops new flows and counts flow_table_full."""
from scapy.all import Ether, IP, UDP, TCP
from scapy.contrib.mpls import MPLS

from tests.apps.vrouter.harness import (
    VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, VM3_MAC, VM3_IP, mpls_udp, ring_vif, feed,
    drain)


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

