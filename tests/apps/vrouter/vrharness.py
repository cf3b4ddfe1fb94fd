"""Golden-test harness for apps/vrouter: pcap-backed vifs, scapy in, scapy and tshark out.

`Node` builds a VRouter whose vifs are net_pcap ports: each vif reads
`<name>.in.pcap` (what the test feeds it) and writes `<name>.out.pcap`.
`node.run({vif: [pkts]})` writes the inputs, adds the vifs, forwards on the
test's thread until idle, closes the ports (flushing the captures) and
returns {vif: [scapy packets]}; every output capture is dissected by tshark,
which must report no malformed packet. The pool must get every mbuf back.
"""
import subprocess

import pytest
from scapy.all import wrpcap, rdpcap, PcapWriter

from pypdk.mempool import PktMbufPool
from pypdk.testing import netns as nsh

VR_MAC = "00:00:5e:00:01:00"
UNDERLAY = "192.168.50.1"
REMOTE = "192.168.50.2"
REMOTE_MAC = "02:00:00:00:50:02"
FABRIC_MAC = "02:00:00:00:50:01"


def tshark_check(path):
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-V"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    bad = [l for l in out.stdout.splitlines() if "Malformed" in l or "cut short" in l
           or "[Expert Info (Error" in l]
    assert not bad, f"tshark on {path}: {bad[:5]}"


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


