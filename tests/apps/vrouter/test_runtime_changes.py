"""The Python API changes the tables while a worker lcore forwards.

The vRouter's forwarding loop runs on worker lcore 1 (`Router.add_worker`,
`rebalance`, `Worker.lcore_function()`, the way apps/vrouter/app.py plans
it); the test's thread is the control thread. VM and fabric vifs are
net_ring ports: the test puts frames on a VM's rx ring and takes what the
fabric sent from its tx ring. While packets are in flight it moves a route
between two tunnel nexthops, changes a nexthop in place, deletes and re-adds
a VM's nexthop and adds 10 000 routes, then checks that every packet went
where the tables said when it was sent (the outer destination changes), that
the counters add up and that the pool gets every mbuf back.

Ordering argument used by the asserts: a change returns after it is
published, and a frame enqueued after that is dequeued by the lcore after it
too (the ring's release/acquire), so it sees the new table; a frame enqueued
before may see either. No timing is asserted: waits poll counters, with a
generous guard against a hang.
"""
import itertools
import struct
import time

import pytest
from scapy.all import Ether, IP, UDP, Raw
from scapy.contrib.mpls import MPLS

from pypdk.mempool.mbuf import Mbuf
from tests.apps.vrouter.harness import (
    VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, VM3_MAC, VM3_IP, VM4_MAC, VM4_IP)

REMOTE2, REMOTE2_MAC = "192.168.50.3", "02:00:00:00:50:03"
REMOTE3, REMOTE3_MAC = "192.168.50.4", "02:00:00:00:50:04"
_ring_ids = itertools.count(800)


def ip_bytes(a):
    return bytes(int(x) for x in a.split("."))


class Live:
    """A VRouter forwarding on lcore 1, with net_ring vifs 0 (fabric), 3 and 4 (VMs)."""

    def __init__(self, eal, pool):
        from apps.vrouter.vrouter import VRouter
        self.eal, self.pool = eal, pool
        self.vr = VRouter(pool, VR_MAC, UNDERLAY)
        self.worker = None
        self.sent = 0
        vr = self.vr
        self.fab = self.ring_vif(0, "fabric", mac=FABRIC_MAC)
        self.vm3 = self.ring_vif(3, "virtual", vrf=1, mac=VM3_MAC, ip=VM3_IP)
        self.vm4 = self.ring_vif(4, "virtual", vrf=1, mac=VM4_MAC, ip=VM4_IP)
        for ip, mac in ((REMOTE, REMOTE_MAC), (REMOTE2, REMOTE2_MAC), (REMOTE3, REMOTE3_MAC)):
            vr.neighbor_add(ip, mac)
        vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
        vr.nh_add(21, "tunnel", encap="mplsoudp", dip=REMOTE2)
        vr.nh_add(11, "encap", vif=4)
        vr.route_add(1, f"{VM4_IP}/32", 11)
        vr.route_add(1, "10.1.2.0/24", 20, label=100)

    def ring_vif(self, id, type, **kw):
        self.vr.vif_add(id, type, port=f"net_ring{next(_ring_ids)},size=4096", **kw)
        return self.vr.vifs[id]["dev"]

    def start(self):
        self.worker = self.vr.dp.add_worker(1, 32)
        self.vr.dp.rebalance()
        self.eal.remote_launch(self.worker.lcore_function(), 1)
        self.wait(lambda: self.worker.running)

    def stop(self):
        if self.worker is not None and self.worker.running:
            self.worker.stop()
        if self.worker is not None:
            rc = self.eal.wait_lcore(1)
            self.worker = None
            return rc

    @staticmethod
    def wait(pred, guard=20.0):
        """Until pred() holds; the guard only stops a hang."""
        end = time.monotonic() + guard
        while not pred():
            assert time.monotonic() < end, "the lcore never got there"
            time.sleep(0.001)

    # ---- traffic ------------------------------------------------------------

    def frames(self, dst, n):
        """n UDP frames from VM3 to dst carrying sequence numbers self.sent.. (UDP checksum 0)."""
        tpl = bytes(Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=dst, ttl=64) /
                    UDP(sport=4242, dport=4343, chksum=0) / Raw(b"\0" * 8))
        out = []
        for i in range(n):
            out.append(tpl[:-4] + struct.pack("!I", self.sent + i))
        self.sent += n
        return out

    def send(self, dst, n):
        """Put n frames to dst on VM3's rx ring (the lcore takes them at once); their seqs."""
        first = self.sent
        mbufs = []
        for f in self.frames(dst, n):
            m = self.pool.alloc()
            m.append(f)
            mbufs.append(m)
        assert self.vm3.rx_ring(0).enqueue_burst(mbufs) == n
        return range(first, first + n)

    @staticmethod
    def take(dev):
        """[(outer dst, label, seq)] of what dev sent (tunnel frames), mbufs freed;
        for frames to a VM: (None, None, seq)."""
        out = []
        while True:
            addrs = dev.tx_ring(0).dequeue_burst(512)
            if not addrs:
                return out
            for a in addrs:
                m = Mbuf.from_addr(a)
                b = m.bytes()
                m.free()
                seq = struct.unpack("!I", b[-4:])[0]
                if b[23] == 17 and b[36:38] == b"\x19\xeb":          # MPLSoUDP to port 6635
                    out.append((b[30:34], int.from_bytes(b[42:45], "big") >> 4, seq))
                else:
                    out.append((None, None, seq))

    def collect(self, dev, n):
        """Take from dev until n frames came."""
        got = []
        self.wait(lambda: got.extend(self.take(dev)) or len(got) >= n)
        assert len(got) == n, f"{len(got)} frames, expected {n}"
        return got


@pytest.fixture
def live(eal_no_huge, pool):
    lv = Live(eal_no_huge, pool)
    try:
        yield lv
    finally:
        lv.stop()
        lv.vr.close()


def test_route_moves_between_tunnel_nexthops_while_forwarding(live):
    """Six route changes with packets in flight: each packet leaves with the
    outer destination and label of the route before or after the change that
    followed it; after the last change, all take the last route."""
    live.start()
    vr = live.vr
    states = [(ip_bytes(REMOTE), 100)]              # route state after change k
    batches = []
    for k in range(1, 7):
        seqs = live.send("10.1.2.7", 80)
        nh, dip = (21, REMOTE2) if k % 2 else (20, REMOTE)
        vr.route_add(1, "10.1.2.0/24", nh, label=100 + k)
        states.append((ip_bytes(dip), 100 + k))
        batches.append((seqs, {states[-2], states[-1]}))
    last = live.send("10.1.2.7", 80)
    got = live.collect(live.fab, 7 * 80)
    by_seq = {seq: (dip, label) for dip, label, seq in got}
    assert len(by_seq) == 7 * 80
    for seqs, allowed in batches:
        for s in seqs:
            assert by_seq[s] in allowed, f"seq {s}: {by_seq[s]} not in {allowed}"
    assert all(by_seq[s] == states[-1] for s in last)
    assert {d for d, _ in by_seq.values()} == {ip_bytes(REMOTE), ip_bytes(REMOTE2)}

    # A sample checked field by field: the last route (nh 20, label 106).
    live.send("10.1.2.7", 1)
    live.wait(lambda: live.fab.tx_ring(0).count > 0)
    m = Mbuf.from_addr(live.fab.tx_ring(0).dequeue_burst(1)[0])
    p = Ether(m.bytes())
    m.free()
    assert p[Ether].dst == REMOTE_MAC and p[IP].src == UNDERLAY and p[IP].dst == REMOTE
    assert p[MPLS].label == 106 and IP(bytes(p[MPLS].payload)).ttl == 63

    assert live.stop() == 0
    assert vr.vif_get(3)["stats"]["rx_packets"] == 7 * 80 + 1
    assert vr.vif_get(0)["stats"]["tx_packets"] == 7 * 80 + 1
    assert vr.vrfstats(1)["udp_mpls_encaps"] == 7 * 80 + 1
    assert sum(vr.dropstats().values()) == 0
    assert live.pool.in_use_count == 0


def test_nexthop_changed_in_place_while_forwarding(live):
    """nh_add on an existing tunnel nexthop (new destination) takes effect for
    what is sent after it; the replaced entry is reclaimed safely."""
    live.start()
    vr = live.vr
    before = live.send("10.1.2.9", 100)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE3)
    after = live.send("10.1.2.9", 100)
    got = {seq: dip for dip, _, seq in live.collect(live.fab, 200)}
    assert {got[s] for s in before} <= {ip_bytes(REMOTE), ip_bytes(REMOTE3)}
    assert {got[s] for s in after} == {ip_bytes(REMOTE3)}
    assert vr.nh_get(20)["dip"] == REMOTE3
    vr.dp.synchronize()
    assert live.stop() == 0
    assert vr.vif_get(0)["stats"]["tx_packets"] == 200
    assert live.pool.in_use_count == 0


def test_vm_nexthop_deleted_and_readded_while_forwarding(live):
    """VM3 -> VM4 while VM4's route and encap nexthop are deleted and added
    back, five times with packets in flight: nothing crashes, every packet is
    delivered or counted as no_route, and after the last re-add all arrive."""
    live.start()
    vr = live.vr
    first = live.send(VM4_IP, 50)
    live.collect(live.vm4, 50)                   # the path works
    vr.route_del(1, f"{VM4_IP}/32")
    vr.nh_del(11)
    dropped = live.send(VM4_IP, 50)              # sent with no route: all dropped
    live.wait(lambda: vr.dropstats(3)["no_route"] == 50)
    assert not live.take(live.vm4)
    vr.nh_add(11, "encap", vif=4)
    vr.route_add(1, f"{VM4_IP}/32", 11)
    inflight = 0
    for _ in range(5):
        inflight += len(live.send(VM4_IP, 40))
        vr.route_del(1, f"{VM4_IP}/32")
        vr.nh_del(11)
        inflight += len(live.send(VM4_IP, 40))
        vr.nh_add(11, "encap", vif=4)
        vr.route_add(1, f"{VM4_IP}/32", 11)
    last = live.send(VM4_IP, 50)
    total = len(first) + len(dropped) + inflight + len(last)
    seen = []
    live.wait(lambda: seen.extend(live.take(live.vm4)) or
              len(seen) + vr.dropstats(3)["no_route"] - 50 >= inflight + len(last))
    delivered = {s for _, _, s in seen}
    assert set(last) <= delivered                 # after the last re-add: all of them
    no_route = vr.dropstats(3)["no_route"]
    assert len(first) + len(seen) + no_route == total
    st3, st4 = vr.vif_get(3)["stats"], vr.vif_get(4)["stats"]
    assert st3["rx_packets"] == total
    assert st4["tx_packets"] == len(first) + len(seen)
    assert sum(vr.dropstats().values()) == no_route
    assert vr.nh_get(11)["vif"] == 4 and {"prefix": f"{VM4_IP}/32", "nh": 11, "label": None} in vr.route_dump(1)
    assert live.stop() == 0
    assert live.pool.in_use_count == 0


def test_ten_thousand_routes_added_while_forwarding(live):
    """10 000 /32 routes go in while traffic to an existing prefix flows
    (it never stops or strays); then traffic to a sample of the new routes
    follows each one's nexthop and label."""
    live.start()
    vr = live.vr
    steady = []
    for i in range(10000):
        a = 10 << 24 | 200 << 16 | i
        vr.route_add(1, f"10.200.{(a >> 8) & 255}.{a & 255}/32", 20 + (i & 1), label=1000 + i % 500)
        if i % 1000 == 0:
            steady += live.send("10.1.2.7", 20)
    got = live.collect(live.fab, len(steady))
    assert all(d == ip_bytes(REMOTE) and lbl == 100 for d, lbl, _ in got)
    assert len(vr.route_dump(1)) == 10002

    sample = [0, 1, 255, 256, 4097, 9998, 9999]
    want = {}
    for i in sample:
        dst = f"10.200.{(i >> 8) & 255}.{i & 255}"
        for s in live.send(dst, 3):
            want[s] = (ip_bytes(REMOTE2 if i & 1 else REMOTE), 1000 + i % 500)
    got = live.collect(live.fab, len(want))
    assert {s: (d, lbl) for d, lbl, s in got} == want
    # And past the new routes: the /24 still covers the rest of 10.1.2.0/24,
    # nothing covers 10.201.0.1.
    live.send("10.201.0.1", 2)
    live.wait(lambda: vr.dropstats(3)["no_route"] == 2)
    assert live.stop() == 0
    assert sum(vr.dropstats().values()) == 2
    assert vr.vif_get(0)["stats"]["tx_packets"] == len(steady) + len(want)
    assert live.pool.in_use_count == 0
