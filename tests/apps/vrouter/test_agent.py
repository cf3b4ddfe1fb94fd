"""The agent's slow path (apps/vrouter/agent.py) against a fake VRouter: frames in, API calls out."""
import ipaddress

from pypdk.net.arp_frames import ARP_OP_REPLY as ARP_REPLY, ARP_OP_REQUEST as ARP_REQUEST, arp_frame, parse_arp

from apps.vrouter.agent import TRAP_ARP, TRAP_RESOLVE, Agent

VR_MAC = bytes.fromhex("025000000001")
PEER_MAC = bytes.fromhex("025000000002")
ME, PEER = "192.168.50.1", "192.168.50.2"


def ip(a):
    return ipaddress.IPv4Address(a).packed


class FakeDp:
    def __init__(self):
        self.trapped, self.injected, self.aged = [], [], 0

    def trap_dequeue(self, n=64):
        out, self.trapped = self.trapped[:n], self.trapped[n:]
        return out

    def inject(self, vif, frame):
        self.injected.append((vif, frame))


class FakeVr:
    def __init__(self):
        self.dp = FakeDp()
        self.mac, self.underlay_ip = VR_MAC, ipaddress.IPv4Address(ME)
        self.vifs = {0: {"id": 0, "type": "fabric"}, 3: {"id": 3, "type": "virtual", "fip": "192.168.50.100"}}
        self.nhs = {2: {"type": "resolve"}, 102: {"type": "tunnel", "dip": PEER}}
        self.neighbors, self.routes = {}, [{"prefix": "192.168.50.0/24", "nh": 2}]
        self.calls = []

    def neighbor_add(self, ip, mac):
        self.neighbors[ip] = mac
        self.calls.append(("neighbor_add", ip, mac))

    def nh_add(self, id, type, vif=None, dmac=None):
        self.nhs[id] = {"type": type, "vif": vif, "dmac": dmac}
        self.calls.append(("nh_add", id, type, vif, dmac))

    def route_add(self, vrf, prefix, nh):
        self.calls.append(("route_add", vrf, prefix, nh))

    def route_dump(self, vrf, family=4):
        return list(self.routes) if vrf == 0 else []

    def flow_age(self):
        self.dp.aged += 1


def test_arps_for_unresolved_tunnels_once_per_retry_and_learns_the_reply():
    vr = FakeVr()
    ag = Agent(vr, arp_retry=1.0)
    ag.poll(now=10.0)
    ag.poll(now=10.5)                                    # not again within arp_retry
    assert len(vr.dp.injected) == 1
    vif, frame = vr.dp.injected[0]
    assert vif == 0
    op, sha, spa, _, tpa = parse_arp(frame)
    assert (op, sha, spa, tpa) == (ARP_REQUEST, VR_MAC, ip(ME), ip(PEER))
    assert len(frame) == 60 and frame[:6] == b"\xff" * 6
    vr.dp.trapped.append((TRAP_ARP, 0, arp_frame(ARP_REPLY, PEER_MAC, ip(PEER), VR_MAC, ip(ME))))
    ag.poll(now=11.0)
    assert ("neighbor_add", PEER, "02:50:00:00:00:02") in vr.calls
    ag.poll(now=20.0)
    assert len(vr.dp.injected) == 1                      # resolved: no more requests
    assert vr.dp.aged >= 2


def test_answers_arp_for_a_floating_ip_on_the_fabric_only():
    vr = FakeVr()
    vr.neighbors[PEER] = "02:50:00:00:00:02"
    ag = Agent(vr)
    req = arp_frame(ARP_REQUEST, PEER_MAC, ip(PEER), bytes(6), ip("192.168.50.100"))
    vr.dp.trapped += [(TRAP_ARP, 3, req), (TRAP_ARP, 0, req)]
    ag.poll(now=1.0)
    assert len(vr.dp.injected) == 1
    vif, frame = vr.dp.injected[0]
    op, sha, spa, tha, tpa = parse_arp(frame)
    assert (vif, op, sha, spa, tha, tpa) == (0, ARP_REPLY, VR_MAC, ip("192.168.50.100"), PEER_MAC, ip(PEER))
    assert frame[:6] == PEER_MAC


def test_resolve_route_installs_nh_and_route_and_sends_the_held_packet():
    vr = FakeVr()
    vr.neighbors[PEER] = "02:50:00:00:00:02"
    ag = Agent(vr)
    pkt = b"\x00" * 12 + b"\x08\x00" + b"\x45" + bytes(11) + ip("192.168.50.100") + ip("192.168.50.9") + b"data"
    vr.dp.trapped.append((TRAP_RESOLVE, 3, pkt))
    ag.poll(now=1.0)
    (vif, req), = vr.dp.injected
    assert parse_arp(req)[4] == ip("192.168.50.9")
    mac9 = bytes.fromhex("025000000009")
    vr.dp.trapped.append((TRAP_ARP, 0, arp_frame(ARP_REPLY, mac9, ip("192.168.50.9"), VR_MAC, ip(ME))))
    ag.poll(now=1.1)
    assert ("nh_add", 4095, "encap", 0, "02:50:00:00:00:09") in vr.calls
    assert ("route_add", 0, "192.168.50.9/32", 4095) in vr.calls
    vif, sent = vr.dp.injected[-1]
    assert vif == 0 and sent[:6] == mac9 and sent[6:12] == VR_MAC and sent[12:] == pkt[12:]
    assert ag.stats()["held_sent"] == 1


def test_a_resolve_outside_a_resolve_route_is_not_arped():
    vr = FakeVr()
    vr.neighbors[PEER] = "02:50:00:00:00:02"
    ag = Agent(vr)
    pkt = b"\x00" * 12 + b"\x08\x00" + b"\x45" + bytes(11) + ip("10.1.1.11") + ip("10.9.9.9")
    vr.dp.trapped.append((TRAP_RESOLVE, 3, pkt))
    ag.poll(now=1.0)
    assert vr.dp.injected == []


def test_garbage_is_ignored():
    vr = FakeVr()
    vr.neighbors[PEER] = "02:50:00:00:00:02"
    ag = Agent(vr)
    vr.dp.trapped += [(TRAP_ARP, 0, b"\x00" * 10), (TRAP_ARP, 0, b"\xff" * 12 + b"\x08\x06" + b"\x00" * 28),
                      (TRAP_RESOLVE, 3, b"short"), (99, 0, b"")]
    assert ag.poll(now=1.0) == 4
    assert vr.dp.injected == [] and vr.calls == []
