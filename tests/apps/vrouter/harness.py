"""Helpers of the vRouter tests (their fixtures: conftest.py).

Golden tests: pcap-backed vifs, scapy in, scapy and tshark out.

`Node` builds a VRouter whose vifs are net_pcap ports: each vif reads
`<name>.in.pcap` (what the test feeds it) and writes `<name>.out.pcap`.
`node.run({vif: [pkts]})` writes the inputs, adds the vifs, forwards on the
test's thread until idle, closes the ports (flushing the captures) and
returns {vif: [scapy packets]}; every output capture is dissected by tshark,
which must report no malformed packet. The pool must get every mbuf back.

Tests that drive phases or read queues use net_ring vifs instead: `ring_vif`
adds one, `feed` puts frames on its rx ring as if a VM sent them, `drain`
takes what it transmitted.
"""
import itertools

from scapy.all import Ether, IP, UDP, rdpcap, PcapWriter
from scapy.contrib.mpls import MPLS

from pypdk.mempool.mbuf import Mbuf
from pypdk.testing.frames import tshark_check, to_mbufs

VR_MAC = "00:00:5e:00:01:00"
UNDERLAY = "192.168.50.1"
REMOTE = "192.168.50.2"
REMOTE_MAC = "02:00:00:00:50:02"
FABRIC_MAC = "02:00:00:00:50:01"
VM3_MAC, VM3_IP = "02:00:00:00:01:03", "10.1.1.3"
VM4_MAC, VM4_IP = "02:00:00:00:01:04", "10.1.1.4"
VHOST_MAC = "02:00:00:00:00:f0"
HOST = "192.168.50.1"
PUBLIC = "192.168.100.10"            # a floating IP
CLIENT = "198.51.100.7"              # a client on the fabric side of it
_ring_ids = itertools.count(700)


class Node:
    def __init__(self, tmp_path, pool):
        from apps.vrouter.vrouter import VRouter
        self.tmp = tmp_path
        self.pool = pool
        self.vr = VRouter(pool, VR_MAC, UNDERLAY)
        self.specs = {}
        self.n = 0

    def vif(self, id, type, **kw):
        """Declare a vif backed by pcap files (added at run())."""
        self.specs[id] = (type, kw)

    def _spec(self, id):
        self.n += 1
        return (f"net_pcap{id * 100 + self.n},rx_pcap={self.tmp}/vif{id}.in.pcap,"
                f"tx_pcap={self.tmp}/vif{id}.out.pcap")

    def setup(self, inputs=None):
        inputs = inputs or {}
        for id, (type, kw) in self.specs.items():
            pkts = inputs.get(id, [])
            w = PcapWriter(str(self.tmp / f"vif{id}.in.pcap"), linktype=1, sync=True)
            w.write(pkts) if pkts else w.write_header(None)
            w.close()
            if type == "agent":
                self.vr.vif_add(id, type, **kw)
            else:
                self.vr.vif_add(id, type, port=self._spec(id), **kw)

    def run(self):
        """Forward what setup() fed until idle; returns outputs {vif: [pkts]}."""
        self.vr.poll_until_idle()
        return self.finish()

    def finish(self):
        self.vr.close_ports()
        out = {}
        for id, (type, kw) in self.specs.items():
            if type == "agent":
                continue
            path = self.tmp / f"vif{id}.out.pcap"
            out[id] = list(rdpcap(str(path)))
            if out[id]:
                tshark_check(path)
        return out


# ---- frames and checks -----------------------------------------------------------------

def mpls_udp(label, inner, sport=50000):
    return (Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
            UDP(sport=sport, dport=6635) / MPLS(label=label, s=1, ttl=64) / inner)


def to_public(l4, dst=PUBLIC):
    return Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=CLIENT, dst=dst) / l4


def truncated(frame, keep, pad=b""):
    """frame with `keep` bytes after its IP header; IP length and checksum consistent; then pad."""
    raw = bytes(frame[IP])[:20 + keep]
    hdr = IP(raw[:20])
    hdr.len, hdr.chksum = 20 + keep, None
    return bytes(frame)[:14] + bytes(hdr)[:20] + raw[20:] + pad



# ---- a node's tables ----------------------------------------------------------------------

def base(node, policy=False, mode="l3", vrf=1):
    node.vif(0, "fabric", mac=FABRIC_MAC)
    node.vif(1, "vhost", mac=VHOST_MAC)
    node.vif(3, "virtual", vrf=vrf, mac=VM3_MAC, ip=VM3_IP, policy=policy, mode=mode)
    node.vif(4, "virtual", vrf=vrf, mac=VM4_MAC, ip=VM4_IP, mode=mode)


def l3_tables(vr):
    vr.nh_add(10, "encap", vif=3)
    vr.nh_add(11, "encap", vif=4)
    vr.mpls_add(17, 10)
    vr.mpls_add(18, 11)
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip=REMOTE)
    vr.nh_add(21, "tunnel", encap="mplsogre", dip=REMOTE)
    vr.neighbor_add(REMOTE, REMOTE_MAC)
    vr.route_add(1, "10.1.1.3/32", 10)
    vr.route_add(1, "10.1.1.4/32", 11)
    vr.route_add(1, "10.1.2.0/24", 20, label=100)
    vr.route_add(1, "10.1.3.0/24", 21, label=200)


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



# ---- net_ring vifs the test feeds and drains --------------------------------------------

def ring_vif(vr, id, type="virtual", queues=1, **kw):
    """Add a vif on a fresh net_ring port with `queues` queue pairs; its EthDev."""
    vr.vif_add(id, type, port=f"net_ring{next(_ring_ids)}", queues=queues, **kw)
    return vr.vifs[id]["dev"]


def feed(vr, dev, frames, q=0):
    """Put frames (scapy packets or bytes) on dev's rx ring, as if a VM sent them."""
    mbufs = to_mbufs(vr.pool, frames)
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

