"""The kernel as a forwarding reference on the veth rig: routing or bridging between fin and fout.

`KernelForwarder(rig, "route" | "bridge")` moves the rig's forwarder ports
into a namespace of their own where the kernel routes (`ip_forward`) or
bridges between them, with RPS steering fin's receive processing to the
forwarder's cpu (veth_rig's docstring says where each piece of kernel work
runs); `Kernel` is that as a contender of `veth_rig.measure`.

    python -m benchmarks.kernel_ref --mode route --seconds 3   # the kernel alone (pktgen source)
"""
from __future__ import annotations

from benchmarks import veth_rig as V
from benchmarks.veth_rig import FWD_CPU, Rig
from pypdk.testing import netns as nn


class KernelForwarder:
    """The kernel forwards fin -> fout inside a namespace of its own.

    mode "route": fin 198.18.255.254/16, fout 198.19.255.254/16, ip_forward=1,
    rp_filter off, the sink's address (198.19.0.1, pktgen's default
    destination) a permanent neighbour at the sink's MAC; the source sends to
    fin's MAC. mode "bridge": br0 over fin and fout, a static FDB entry for
    the sink's MAC on fout; the source sends to the sink's MAC. In both, RPS
    steers fin's receive processing to FWD_CPU (see veth_rig's docstring).
    `dst_mac` is what the source must put in its frames.
    """

    def __init__(self, r: Rig, mode: str, dst_ip: str = "198.19.0.1"):
        if mode not in ("route", "bridge"):
            raise ValueError(f"mode {mode!r}: route or bridge")
        self.rig, self.mode = r, mode
        self.sink_mac = r.mac(r.sink)
        self.ns = nn.add_netns()
        try:
            for ifname in (r.fin, r.fout):
                nn.move_link(ifname, self.ns)
            r.fin_ns = ns = self.ns
            mask = format(1 << FWD_CPU, "x")
            for q in range(r.queues):
                nn.ns_run(ns, "sh", "-c", f"echo {mask} > /sys/class/net/{r.fin}/queues/rx-{q}/rps_cpus")
            if mode == "route":
                nn.ns_run(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
                for key in ("all", "default", r.fin, r.fout):
                    nn.ns_run(ns, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0")
                nn.add_addr(r.fin, "198.18.255.254/16", ns)
                nn.add_addr(r.fout, "198.19.255.254/16", ns)
                nn.add_neigh(r.fout, dst_ip, self.sink_mac, ns)
                self.dst_mac = nn.link_mac(r.fin, ns)
            else:
                nn.ns_run(ns, "ip", "link", "add", "br0", "type", "bridge")
                for ifname in (r.fin, r.fout):
                    nn.ns_run(ns, "ip", "link", "set", "dev", ifname, "master", "br0")
                    nn.set_link(ifname, ns, "up")
                nn.set_link("br0", ns, "up")
                nn.ns_run(ns, "bridge", "fdb", "replace", self.sink_mac, "dev", r.fout, "master", "static")
                self.dst_mac = self.sink_mac
        except BaseException:
            self.close()
            raise

    def close(self):
        """Delete the namespace; fin and fout go with it (and so their peers)."""
        if self.ns:
            nn.del_netns(self.ns)
            self.ns = None
            self.rig.fin_ns = None


class Kernel:
    """The kernel routing or bridging between fin and fout, as a contender of veth_rig.measure."""
    thread = None

    def __init__(self, r: Rig, mode: str):
        self.r, self.mode = r, mode

    def start(self):
        self.k = KernelForwarder(self.r, self.mode)
        self.dst_mac = self.k.dst_mac
        self.pid = None

    def stop(self):
        self.k.close()


def measure(mode: str, source: str = "af_xdp", seconds: float = V.SECONDS) -> dict:
    """One case of the kernel forwarding on a fresh rig (veth_rig.measure), named "kernel MODE"."""
    return {"case": f"kernel {mode}", **V.measure(lambda r: Kernel(r, mode), "fwd", source, seconds)}


def main(argv=None):
    import argparse
    import json
    ap = argparse.ArgumentParser(description="the kernel forwarding between two veth pairs")
    ap.add_argument("--mode", choices=("route", "bridge"), default="route")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--source", choices=("xdpgen", "af_xdp", "af_packet"), default="af_xdp")
    a = ap.parse_args(argv)
    print(json.dumps(measure(a.mode, a.source, a.seconds)))


if __name__ == "__main__":
    main()
