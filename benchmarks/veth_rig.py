"""The veth rig every forwarding benchmark over veth shares, its sources, and one measured case.

The rig: two veth pairs, a source end, a sink end and two forwarder ports.

    source ── src │ fin ══ forwarder ══ fout │ sink ── XDP_DROP, counted
      (cpu 0)      (pair A)              (pair B)     (rx_packets of `sink`)

`fin`/`fout` are what a forwarder works on: the ports of pypdk's l2fwd or
testpmd (net_af_xdp / net_af_packet), or the kernel itself when they are
moved into a namespace of their own that routes (`ip_forward`) or bridges
between them (kernel_ref.KernelForwarder). The sink is the cheapest receiver
there is, a two-instruction XDP program returning XDP_DROP on `sink`
(`XdpDrop`): veth counts every frame its XDP program saw in `rx_packets`,
so the sink count is the kernel's, the same for every contender, and no
frame reaches this namespace's stack. (An skb an AF_XDP socket sends has
little headroom, so the sink's veth copies it into a page before running
XDP; the kernel's forwarded skbs come with XDP headroom from `fin` and are
not copied. With the stack as the sink instead, the AF_XDP forwarders
measured ~13% more.)

The sources (`Source`): the kernel's XDP traffic generator (benchmarks.xdpgen,
no skb per frame: the only source that outruns a forwarder on this machine)
or apps/pktgen over a pypdk port. `fin` has GRO on, so it has a NAPI ring
even without an XDP program (xdpgen's frames need one).

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

The machine is shared: every contender and the source run at nice `NICE`
(-20), each in a session of its own whose autogroup gets that nice too
(`Proc`), and ksoftirqd/0-1 get it for the case (`ksoftirqd_nice`).

`measure(make_contender, what, source, seconds)` is one case: a fresh rig,
start the contender, start the source, `WARMUP` seconds, `seconds`
measured (`PYPDK_BENCH_VETH_SECONDS`, default 3), stop both. A contender
has `start()`, `stop()`, `dst_mac` (what the source puts in its frames),
`pid` and `thread` (the process and thread-name prefix whose cpu time is
its `fwd_cpu`, or None) and, for a receive-and-drop case, `rx_packets()`.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from benchmarks import cpu_time
from benchmarks.xdpgen import udp_frame
from pypdk.testing import netns as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FWD_CPU = 1                 # the forwarder's cpu (userspace lcore 1, kernel RPS target)
SRC_CPU = 0
SECONDS = float(os.environ.get("PYPDK_BENCH_VETH_SECONDS", "3"))
WARMUP = 1.0
SIZE, FLOWS = 64, 64
SOURCE_LCORES = "(0-1)@0"
GUARD = 60
# Every contender and the source run at this nice level, each in a session of its own whose
# autogroup gets the same nice (with CONFIG_SCHED_AUTOGROUP the scheduler first shares a cpu
# between sessions, whatever the processes' own nice): other load on a shared machine then takes
# little of their cpu (~1% for a nice-0 busy loop), as it takes little from the kernel forwarder,
# whose work runs in softirq ahead of any process.
NICE = int(os.environ.get("PYPDK_BENCH_VETH_NICE", "-20"))


# ---- counters and scheduling ---------------------------------------------------------

def link_counter(ifname: str, what: str = "rx_packets", ns: str | None = None) -> int:
    """A kernel interface counter (/sys/class/net/IF/statistics/WHAT)."""
    if ns is None:
        with open(f"/sys/class/net/{ifname}/statistics/{what}") as f:
            return int(f.read())
    return int(nn.ns_run(ns, "cat", f"/sys/class/net/{ifname}/statistics/{what}").stdout)


@contextlib.contextmanager
def ksoftirqd_nice(nice: int, cpus=(SRC_CPU, FWD_CPU)):
    """Give ksoftirqd/N of `cpus` this nice level for the block, then restore it.

    Network softirq work runs where it was raised (a syscall's bottom half,
    an interrupt exit) until net_rx_action's budget runs out; the rest goes
    to ksoftirqd, an ordinary nice-0 thread that other load on a shared
    machine can starve (the kernel forwarder then lost half of its cpu here).
    Contenders run at `nice` (NICE); so does this.
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
            self.link_fd = bpf.link_create_xdp(self.prog_fd, socket.if_nametoindex(ifname),
                                               bpf.XDP_FLAGS_DRV_MODE)
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


# ---- processes -----------------------------------------------------------------------

class Proc:
    """A background process at nice NICE in a session (and autogroup) of its
    own, whose stdout and stderr are collected by threads (raw chunks:
    testpmd's prompt has no newline)."""

    def __init__(self, cmd: list[str], stdin=False, **kw):
        self.cmd = cmd = ["nice", "-n", str(NICE), *cmd]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  start_new_session=True, **kw)
        try:
            with open(f"/proc/{self.p.pid}/autogroup", "w") as f:
                f.write(str(NICE))
        except OSError:
            pass            # no autogroups: the process's own nice is what counts
        self.bufs = {"out": [], "err": []}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(s, k), daemon=True)
                        for s, k in ((self.p.stdout, "out"), (self.p.stderr, "err"))]
        for th in self.threads:
            th.start()

    def _read(self, stream, key):
        fd = stream.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            with self.lock:
                self.bufs[key].append(data.decode(errors="replace"))

    @property
    def out(self) -> str:
        with self.lock:
            return "".join(self.bufs["out"])

    def text(self) -> str:
        with self.lock:
            return "".join(self.bufs["out"]) + "".join(self.bufs["err"])

    def wait_for(self, pred, what: str, timeout: float = GUARD) -> None:
        end = time.monotonic() + timeout
        while not pred():
            if self.p.poll() is not None:
                raise RuntimeError(f"{what}: {' '.join(self.cmd)} exited {self.p.returncode}:\n"
                                   f"{self.text()[-3000:]}")
            if time.monotonic() > end:
                raise RuntimeError(f"{what}: timed out: {' '.join(self.cmd)}\n{self.text()[-3000:]}")
            time.sleep(0.02)

    def ask(self, line: str, pattern: str, what: str) -> str:
        """Send a line; wait for `pattern` in the output that follows; its first group."""
        start = len(self.out)
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()
        found = []

        def got():
            m = re.search(pattern, self.out[start:])
            if m:
                found.append(m.group(1))
            return bool(found)
        self.wait_for(got, what, timeout=10)
        return found[0]

    def send(self, line: str) -> None:
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def finish(self, sig=signal.SIGTERM, timeout: float = 20) -> int:
        if self.p.poll() is None:
            if sig is not None:
                self.p.send_signal(sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        for th in self.threads:
            th.join(timeout=5)
        return self.p.returncode


@contextlib.contextmanager
def stop_on_error(proc: Proc):
    """A process whose start-up failed is stopped (SIGTERM, then SIGKILL) before the error goes on."""
    try:
        yield
    except BaseException:
        proc.finish()
        raise


def start_pypdk_run(app: str, lcores: str, vdevs: list[str], app_args: list[str]) -> Proc:
    """`pypdk-run APP` in the background (--no-huge, stats every second, 600 s at most)."""
    cmd = [sys.executable, "-m", "pypdk.cli", app, "--lcores", lcores, "--no-huge",
           "--stats-period", "1", "--duration", "600"]
    for v in vdevs:
        cmd += ["--vdev", v]
    return Proc(cmd + ["--", *app_args], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))


def vdev(driver: str, port: int, iface: str) -> str:
    return f"net_{driver}{port},iface={iface}"


# ---- the source ----------------------------------------------------------------------

class Source:
    """The traffic source on the rig's `src` end, on cpu 0, the same for every contender.

    kind "xdpgen" (default): the kernel's XDP generator (benchmarks.xdpgen),
    64-byte IPv4/UDP frames of one flow, as fast as cpu 0 makes them and
    `fin` takes them. kind "af_xdp" / "af_packet": apps/pktgen over that
    driver, 64 flows, both its lcores on cpu 0 (`--lcores '(0-1)@0'`).
    """

    def __init__(self, r: Rig, kind: str, dst_mac: str):
        self.r = r
        if kind == "xdpgen":
            frame = udp_frame(dst_mac, nn.link_mac(r.src), size=SIZE)
            self.proc = Proc(["taskset", "-c", str(SRC_CPU), sys.executable, "-m", "benchmarks.xdpgen",
                              r.src, frame.hex()], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
        else:
            self.proc = start_pypdk_run("apps/pktgen", SOURCE_LCORES, [vdev(kind, 0, r.src)],
                                        ["--size", str(SIZE), "--flows", str(FLOWS), "--dst-mac", dst_mac])
        start = r.offered()
        with stop_on_error(self.proc):
            self.proc.wait_for(lambda: r.offered() > start + 1000, f"the source ({kind}) sends")

    def stop(self) -> None:
        rc = self.proc.finish()
        if rc not in (0, -signal.SIGTERM):
            raise RuntimeError(f"the source exited {rc}:\n{self.proc.text()[-3000:]}")


# ---- one case ------------------------------------------------------------------------

def _timed(read) -> tuple[int, float]:
    """(a counter, the middle of the time its read took): a counter read in
    another namespace or over a pipe takes milliseconds, so each rate is
    taken over its own counter's interval."""
    t0 = time.monotonic()
    v = read()
    return v, (t0 + time.monotonic()) / 2


def _rate(a: tuple[int, float], b: tuple[int, float]) -> float:
    return round((b[0] - a[0]) / (b[1] - a[1]) / 1e6, 4)


def _sample(contender) -> dict:
    return {"t": time.monotonic(), "cpu": cpu_time.cpu_times(),
            "thread": cpu_time.thread_cpu(contender.pid, contender.thread) if contender.thread else 0.0}


def _shares(s0: dict, s1: dict, contender) -> dict:
    dt = s1["t"] - s0["t"]
    out = {"cpu1": cpu_time.cpu_shares(s0["cpu"], s1["cpu"], FWD_CPU)}
    if contender.thread:
        out["fwd_cpu"] = round((s1["thread"] - s0["thread"]) / dt, 3)
    return out


def measure(make_contender, what: str = "fwd", source: str = "xdpgen", seconds: float = SECONDS) -> dict:
    """One case on a fresh rig: {'mpps', 'offered_mpps', 'seconds', 'source', 'cpu1'[, 'fwd_cpu']}.

    Args:
        make_contender: called with the Rig, returns the contender (not started).
        what: "fwd": mpps is what reached the sink; "rx": the contender's own
            count of what it received (`rx_packets()`).
        source: "xdpgen", "af_xdp" or "af_packet" (`Source`).
        seconds: the measured interval, after WARMUP.
    """
    with ksoftirqd_nice(NICE), rig() as r:
        c = make_contender(r)
        c.start()
        count = c.rx_packets if what == "rx" else (lambda: link_counter(r.sink))
        src = None
        try:
            src = Source(r, source, c.dst_mac)
            time.sleep(WARMUP)
            s0, n0, off0 = _sample(c), _timed(count), _timed(r.offered)
            time.sleep(seconds)
            s1, n1, off1 = _sample(c), _timed(count), _timed(r.offered)
        finally:
            try:
                if src is not None:
                    src.stop()
            finally:
                c.stop()
    dt = s1["t"] - s0["t"]
    return {"mpps": _rate(n0, n1), "offered_mpps": _rate(off0, off1), "seconds": round(dt, 3),
            "source": source, **_shares(s0, s1, c)}
