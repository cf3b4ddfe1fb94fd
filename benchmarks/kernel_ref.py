"""The kernel as a forwarding reference, and the veth rig every forwarding benchmark shares.

The rig: two veth pairs, a source end, a sink end and two forwarder ports.

    source ── src │ fin ══ forwarder ══ fout │ sink ── XDP_DROP, counted
      (cpu 0)      (pair A)              (pair B)     (rx_packets of `sink`)

`fin`/`fout` are what a forwarder works on: the ports of pypdk's l2fwd or
testpmd (net_af_xdp / net_af_packet), or the kernel itself when they are
moved into a namespace of their own that routes (`ip_forward`) or bridges
between them (`KernelForwarder`). The sink is the cheapest receiver there
is, a two-instruction XDP program returning XDP_DROP on `sink` (`XdpDrop`):
veth counts every frame its XDP program saw in `rx_packets`, so the sink
count is the kernel's, the same for every contender, and no frame reaches
this namespace's stack. (An skb an AF_XDP socket sends has little headroom,
so the sink's veth copies it into a page before running XDP; the kernel's
forwarded skbs come with XDP headroom from `fin` and are not copied. With
the stack as the sink instead, the AF_XDP forwarders measured ~13% more.)

The sources: `xdpgen` here (the kernel's XDP traffic generator, no skb per
frame: the only source that outruns a forwarder on this machine) or
apps/pktgen over a pypdk port (bench_af_xdp.Source). `fin` has GRO on, so
it has a NAPI ring even without an XDP program (xdpgen's frames need one).

Where the work runs (2 cpus):
- the source sends on cpu 0; the kernel work that follows in its context --
  `fin`'s NAPI poll, which runs the contender's XDP program and copies the
  frame into its AF_XDP ring, or for net_af_packet its packet tap copying
  into the socket's ring, or for the kernel builds the skb and hands it to
  RPS -- is on cpu 0 too;
- the userspace forwarder polls on cpu 1, and its transmit's kernel work
  (an skb per frame, veth transmit, the sink's XDP_DROP) is on cpu 1 in its
  context;
- the kernel forwarder has no thread: RPS on `fin` (rps_cpus = cpu 1)
  queues each skb to cpu 1's backlog, where routing or bridging, the
  transmit on `fout` and the sink's XDP_DROP run in softirq.
So cpu 0 carries the source and the receive-side copy, cpu 1 the forwarding
and everything after it, for every contender.

    python -m benchmarks.kernel_ref --mode route --seconds 3   # the kernel alone (pktgen source)
"""
from __future__ import annotations

import contextlib
import os
import struct
import time
from dataclasses import dataclass

from pypdk.testing import netns as nn

FWD_CPU = 1                 # the forwarder's cpu (userspace lcore 1, kernel RPS target)
SRC_CPU = 0


# ---- counters ------------------------------------------------------------------------

def link_counter(ifname: str, what: str = "rx_packets", ns: str | None = None) -> int:
    """A kernel interface counter (/sys/class/net/IF/statistics/WHAT)."""
    if ns is None:
        with open(f"/sys/class/net/{ifname}/statistics/{what}") as f:
            return int(f.read())
    return int(nn.ns_run(ns, "cat", f"/sys/class/net/{ifname}/statistics/{what}").stdout)


def cpu_times() -> dict[int, list[int]]:
    """/proc/stat per cpu: [user, nice, system, idle, iowait, irq, softirq, steal] in ticks."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                out[int(parts[0][3:])] = [int(x) for x in parts[1:9]]
    return out


def cpu_shares(t0: dict, t1: dict, cpu: int) -> dict[str, float]:
    """Shares of one cpu's time between two cpu_times() samples: busy, softirq, steal."""
    d = [b - a for a, b in zip(t0[cpu], t1[cpu])]
    total = sum(d) or 1
    return {"busy": round((total - d[3] - d[4]) / total, 3), "softirq": round(d[6] / total, 3),
            "steal": round(d[7] / total, 3)}


def thread_cpu(pid: int, name_prefix: str) -> float:
    """CPU seconds (user + system) used by the threads of `pid` whose name starts with name_prefix."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if comm.startswith(name_prefix):
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tck
    return total


@contextlib.contextmanager
def ksoftirqd_nice(nice: int, cpus=(SRC_CPU, FWD_CPU)):
    """Give ksoftirqd/N of `cpus` this nice level for the block, then restore it.

    Network softirq work runs where it was raised (a syscall's bottom half,
    an interrupt exit) until net_rx_action's budget runs out; the rest goes
    to ksoftirqd, an ordinary nice-0 thread that other load on a shared
    machine can starve (the kernel forwarder then lost half of its cpu here).
    Contenders run at `nice` (bench_af_xdp.NICE); so does this.
    """
    saved = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in {f"ksoftirqd/{c}" for c in cpus}:
            saved[int(pid)] = os.getpriority(os.PRIO_PROCESS, int(pid))
    try:
        for pid in saved:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        yield
    finally:
        for pid, old in saved.items():
            try:
                os.setpriority(os.PRIO_PROCESS, pid, old)
            except OSError:
                pass


# ---- the sink --------------------------------------------------------------------------

XDP_DROP_PROG = (struct.pack("<BBhi", 0xb7, 0, 0, 1)      # r0 = XDP_DROP
                 + struct.pack("<BBhi", 0x95, 0, 0, 0))   # exit


class XdpDrop:
    """XDP_DROP on an interface of this namespace, native mode, through a
    bpf_link this object holds: closing it (or this process dying) detaches."""

    def __init__(self, ifname: str):
        from pypdk.pmd.af_xdp import bpf
        self.ifname = ifname
        self.prog_fd = bpf.prog_load(XDP_DROP_PROG, name="pypdk_sink")
        try:
            self.link_fd = bpf.link_create_xdp(self.prog_fd, nn_ifindex(ifname), bpf.XDP_FLAGS_DRV_MODE)
        except BaseException:
            os.close(self.prog_fd)
            raise

    def close(self):
        for fd in (self.link_fd, self.prog_fd):
            if fd >= 0:
                os.close(fd)
        self.link_fd = self.prog_fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def nn_ifindex(ifname: str) -> int:
    import socket
    return socket.if_nametoindex(ifname)


# ---- the XDP traffic generator ---------------------------------------------------------

BPF_PROG_TEST_RUN = 10
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_FUNC_REDIRECT = 23


def udp_frame(dst_mac: str, src_mac: str, src_ip: str = "198.18.0.1", dst_ip: str = "198.19.0.1",
              size: int = 64, sport: int = 1024, dport: int = 9) -> bytes:
    """An Ethernet/IPv4/UDP frame of `size` bytes (no FCS): valid IPv4 header
    checksum, UDP checksum 0 (none, allowed over IPv4), TTL 64."""
    import ipaddress
    ip_len = size - 14
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0, 64, 17, 0,
                               ipaddress.IPv4Address(src_ip).packed,
                               ipaddress.IPv4Address(dst_ip).packed))
    c = sum(struct.unpack("!10H", ip))
    c = (c & 0xffff) + (c >> 16)
    c = (c & 0xffff) + (c >> 16)
    ip[10:12] = struct.pack("!H", ~c & 0xffff)
    udp = struct.pack("!HHHH", sport, dport, ip_len - 20, 0)
    mac = lambda m: bytes.fromhex(m.replace(":", ""))     # noqa: E731
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + bytes(ip) + udp + bytes(ip_len - 28)


def xdpgen(ifname: str, frame: bytes, seconds: float = 0, batch: int = 64) -> int:
    """Send `frame` out of `ifname` as fast as one cpu can; returns the frames sent.

    The kernel's own XDP traffic generator (BPF_PROG_RUN with
    BPF_F_TEST_XDP_LIVE_FRAMES, kernel >= 5.18; what xdp-trafficgen uses):
    an XDP program `return bpf_redirect(ifindex, 0)` run 2^20 times per call
    on frames made from `frame`, each redirected to the interface's
    ndo_xdp_xmit. On a veth no skb is built: the xdp_frame goes straight to
    the peer's NAPI ring (the peer needs an XDP program or GRO on, or the
    frames are dropped). It cannot be paced: a call costs 20-30 ms here
    whatever its size (its page_pool is made and torn down), so small paced
    calls would top out near 3000 frames per second.

    Runs until a signal (the syscall returns EINTR; the count is then
    approximate), or with seconds > 0 until the first call that ends past
    that (the count is exact).
    """
    import ctypes
    import errno
    import time
    from pypdk.pmd.af_xdp import bpf
    insns = (struct.pack("<BBhi", 0xb7, 1, 0, nn_ifindex(ifname))       # r1 = ifindex
             + struct.pack("<BBhi", 0xb7, 2, 0, 0)                      # r2 = 0
             + struct.pack("<BBhi", 0x85, 0, 0, BPF_FUNC_REDIRECT)      # call bpf_redirect
             + struct.pack("<BBhi", 0x95, 0, 0, 0))                     # exit
    prog = bpf.prog_load(insns, name="pypdk_xdpgen")
    repeat = 1 << 20
    data = ctypes.create_string_buffer(frame, len(frame))
    a = ctypes.create_string_buffer(bpf.ATTR_SIZE)
    struct.pack_into("=IIIIQQII", a, 0, prog, 0, len(frame), 0, ctypes.addressof(data), 0, repeat, 0)
    struct.pack_into("=III", a, 64, BPF_F_TEST_XDP_LIVE_FRAMES, 0, batch)
    sent = 0
    end = time.monotonic() + seconds if seconds > 0 else None
    try:
        while end is None or time.monotonic() < end:
            if bpf._libc.syscall(bpf.NR_BPF, ctypes.c_int(BPF_PROG_TEST_RUN), a, ctypes.c_uint(len(a))) < 0:
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    return sent
                raise bpf.BpfError(err, "bpf(PROG_TEST_RUN live frames)")
            sent += repeat
        return sent
    finally:
        os.close(prog)


# ---- the rig ---------------------------------------------------------------------------

@dataclass
class Rig:
    src: str            # the source's port (this namespace)
    fin: str            # forwarder input
    fout: str           # forwarder output
    sink: str           # XDP_DROP, counted (this namespace)
    queues: int = 1
    fin_ns: str | None = None       # where fin is (a KernelForwarder moves it)

    def offered(self) -> int:
        """Frames fin has received (what the source got into the forwarder's input)."""
        return link_counter(self.fin, "rx_packets", self.fin_ns)

    def mac(self, ifname: str, ns: str | None = None) -> str:
        return nn.link_mac(ifname, ns)


@contextlib.contextmanager
def rig(queues: int = 1):
    """Two veth pairs, all ends up in this namespace, IPv6 off, the sink
    dropping in XDP; everything deleted after (the sink's program with it)."""
    src, fin = nn.add_veth(nn.unique_name("bsrc"), nn.unique_name("bfin"), queues=queues)
    fout = sink = None
    drop = None
    try:
        fout, sink = nn.add_veth(nn.unique_name("bfou"), nn.unique_name("bsnk"), queues=queues)
        for ifname in (src, fin, fout, sink):
            nn.disable_ipv6(ifname)
            nn.set_link(ifname, None, "up")
        # GRO on fin gives it a NAPI ring even without an XDP program, which
        # the XDP generator's frames need (without it they are dropped); UDP
        # without a socket is not coalesced, so nothing else changes.
        nn.run("ethtool", "-K", fin, "gro", "on")
        drop = XdpDrop(sink)
        yield Rig(src, fin, fout, sink, queues)
    finally:
        if drop is not None:
            drop.close()
        for ifname in (src, fout):
            if ifname:
                nn.del_link(ifname)


class KernelForwarder:
    """The kernel forwards fin -> fout inside a namespace of its own.

    mode "route": fin 198.18.255.254/16, fout 198.19.255.254/16, ip_forward=1,
    rp_filter off, the sink's address (198.19.0.1, pktgen's default
    destination) a permanent neighbour at the sink's MAC; the source sends to
    fin's MAC. mode "bridge": br0 over fin and fout, a static FDB entry for
    the sink's MAC on fout; the source sends to the sink's MAC. In both, RPS
    steers fin's receive processing to FWD_CPU (see the module docstring).
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


def main(argv=None):
    import argparse
    import json
    import sys
    from benchmarks import bench_af_xdp as B
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_xdpgen":          # the generator's own process (bench_af_xdp.Source)
        seconds = float(argv[3]) if len(argv) > 3 else 0.0
        sent = xdpgen(argv[1], bytes.fromhex(argv[2]), seconds)
        print("sent", sent, flush=True)
        return
    ap = argparse.ArgumentParser(description="the kernel forwarding between two veth pairs")
    ap.add_argument("--mode", choices=("route", "bridge"), default="route")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--source", choices=("xdpgen", "af_xdp", "af_packet"), default="af_xdp")
    a = ap.parse_args(argv)
    print(json.dumps(B.measure_forward(f"kernel {a.mode}", a.source, a.seconds)))


if __name__ == "__main__":
    main()
