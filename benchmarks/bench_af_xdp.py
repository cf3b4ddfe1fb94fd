"""pypdk on veth through AF_XDP (and AF_PACKET) against DPDK's testpmd and the kernel, in one run.

Every case runs on the rig of `kernel_ref` (two veth pairs, one source, one
XDP_DROP sink counted by the kernel) with the same source for every
contender, on cpu 0:

- `xdpgen` (default): the kernel's XDP traffic generator
  (BPF_PROG_RUN live frames, `kernel_ref.xdpgen`), one 64-byte IPv4/UDP
  flow, as fast as cpu 0 makes frames and gets them into `fin`. It is the
  only source here that outruns the forwarders: apps/pktgen pays an skb
  and a copy per frame in the kernel, as the forwarder's own transmit does,
  and caps every contender at its own rate.
- `af_xdp` / `af_packet`: apps/pktgen over that driver, 64 flows, both its
  lcores on cpu 0 (`--lcores '(0-1)@0'`).

Each contender gets cpu 1 for its polling lcore (pypdk-run and testpmd both
`-l 0-1`: main lcore 0, which sleeps, and lcore 1 polling), or, for the
kernel, its receive processing steered there by RPS. See kernel_ref's
docstring for where each piece of kernel work runs. The machine is shared:
every contender and the source run at nice -20 in sessions of their own
(autogroups at -20 too), and so does ksoftirqd for the kernel's deferred
softirq work, so other load takes little of their cpus (`fwd_cpu` shows it).

Groups (each case: a fresh rig, start the contender, start the source, 1 s
of warm-up, `PYPDK_BENCH_VETH_SECONDS` (default 3) measured, stop both):

- "veth rx-and-drop": a receiver on one veth end polls and frees what the
  source sends on the other. pypdk: `RxDrop` (pypdk/pmd/af_xdp/loops.pyx,
  the machinery of `python -m pypdk.pmd.af_xdp.bench`) on lcore 1 of its own
  process; testpmd: `--forward-mode=rxonly`. Mpps = packets the receiver
  got over the interval (its own counter).
- "veth forwarding": frames from the source enter `fin`, leave by `fout`,
  and are counted at the sink. pypdk: `pypdk-run apps/l2fwd` (MAC updating,
  and `--no-mac-updating`); testpmd: `--forward-mode=mac` and `io`; the
  kernel: `ip_forward` routing and a Linux bridge between the two pairs,
  as they come and with net.core.netdev_max_backlog at 8192 instead of 1000
  (`backlog-8192`: the RPS backlog then stops overflowing while cpu 1 idles).
  Mpps = frames the sink received over the interval.

Both groups have an af_xdp and an af_packet case for pypdk and testpmd (the
same job through the other kernel interface); ring sizes are 1024 and
bursts 32 on both sides, and both run on ordinary pages (--no-huge).

extra_info: mpps, offered_mpps (frames `fin` received: what the source got
into the contender's input; the rest of it was dropped there), fwd_cpu (cpu
seconds the polling thread used per second of the interval: below 1.0 it
lost its cpu to something else), cpu1 (/proc/stat shares of cpu 1: busy,
softirq, steal), and the ratios to the references of the group measured in
the same run (`vs_testpmd_af_xdp`, `vs_testpmd_mac_af_xdp`,
`vs_testpmd_io_af_xdp`, `vs_kernel_route`). The pytest-benchmark time of a
case is the whole run (start-up included): not the figure.

    python -m pytest benchmarks/bench_af_xdp.py --benchmark-only --benchmark-group-by=group
    python -m benchmarks.bench_af_xdp --rounds 3      # every case, interleaved rounds, medians, ratios
    python -m benchmarks.bench_af_xdp --source af_xdp --rounds 1    # pktgen as the source

Needs root, `dpdk-testpmd` (Debian's dpdk 22.11), ethtool, 2 cpus, kernel >= 5.18.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

import pytest

from benchmarks import kernel_ref as K
from pypdk.testing import netns as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = float(os.environ.get("PYPDK_BENCH_VETH_SECONDS", "3"))
WARMUP = 1.0
SOURCE = os.environ.get("PYPDK_BENCH_VETH_SOURCE", "xdpgen")
SIZE, FLOWS = 64, 64
OTHER_MAC = "02:00:00:00:00:00"     # frames for the userspace forwarders: nobody's address here
SOURCE_LCORES = "(0-1)@0"
FWD_LCORES = "0-1"
NB_DESC = 1024                      # rx/tx descriptors for both pypdk's l2fwd and testpmd
TESTPMD = "dpdk-testpmd"
GUARD = 60
# Every contender and the source run at this nice level, each in a session of its own whose
# autogroup gets the same nice (with CONFIG_SCHED_AUTOGROUP the scheduler first shares a cpu
# between sessions, whatever the processes' own nice): other load on a shared machine then takes
# little of their cpu (~1% for a nice-0 busy loop), as it takes little from the kernel forwarder,
# whose work runs in softirq ahead of any process.
NICE = int(os.environ.get("PYPDK_BENCH_VETH_NICE", "-20"))

GROUP_RX = "veth rx-and-drop 64B"
GROUP_FWD = "veth forwarding 64B (two veth pairs, count at the sink)"

# References first: a pypdk case's ratios (pytest) are to the reference measured just before it.
RX_CASES = ("testpmd af_xdp", "pypdk af_xdp", "testpmd af_packet", "pypdk af_packet")
FWD_CASES = ("kernel route", "kernel bridge", "kernel route backlog-8192", "kernel bridge backlog-8192",
             "testpmd mac af_xdp", "pypdk l2fwd af_xdp",
             "testpmd io af_xdp", "pypdk l2fwd-io af_xdp", "testpmd mac af_packet",
             "pypdk l2fwd af_packet")
REFS = {"rx": ("testpmd af_xdp", "testpmd af_packet", "pypdk af_xdp"),
        "fwd": ("testpmd mac af_xdp", "testpmd io af_xdp", "testpmd mac af_packet",
                "pypdk l2fwd af_xdp", "kernel route", "kernel bridge")}


# ---- processes -----------------------------------------------------------------------

class Proc:
    """A background process whose stdout and stderr are collected by threads
    (raw chunks: testpmd's prompt has no newline)."""

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


def pypdk_run(app: str, lcores: str, vdevs: list[str], app_args: list[str]) -> Proc:
    cmd = [sys.executable, "-m", "pypdk.cli", app, "--lcores", lcores, "--no-huge",
           "--stats-period", "1", "--duration", "600"]
    for v in vdevs:
        cmd += ["--vdev", v]
    return Proc(cmd + ["--", *app_args], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))


def vdev(driver: str, port: int, iface: str) -> str:
    return f"net_{driver}{port},iface={iface}"


def xdp_attached(ifname: str) -> bool:
    return "prog/xdp" in nn.run("ip", "-d", "link", "show", "dev", ifname).stdout


# ---- the source ----------------------------------------------------------------------

class Source:
    """The traffic source on the rig's `src` end, on cpu 0, the same for every contender.

    kind "xdpgen" (default): the kernel's XDP generator (kernel_ref.xdpgen),
    64-byte IPv4/UDP frames of one flow, as fast as cpu 0 makes them and
    `fin` takes them. kind "af_xdp" / "af_packet": apps/pktgen over that
    driver, 64 flows, both its lcores on cpu 0 (`--lcores '(0-1)@0'`).
    """

    def __init__(self, r: K.Rig, kind: str, dst_mac: str):
        self.r = r
        if kind == "xdpgen":
            frame = K.udp_frame(dst_mac, nn.link_mac(r.src), size=SIZE)
            self.proc = Proc(["taskset", "-c", str(K.SRC_CPU), sys.executable, "-m", "benchmarks.kernel_ref",
                              "_xdpgen", r.src, frame.hex()], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
        else:
            self.proc = pypdk_run("apps/pktgen", SOURCE_LCORES, [vdev(kind, 0, r.src)],
                                  ["--size", str(SIZE), "--flows", str(FLOWS), "--dst-mac", dst_mac])
        start = r.offered()
        self.proc.wait_for(lambda: r.offered() > start + 1000, f"the source ({kind}) sends")

    def stop(self) -> None:
        rc = self.proc.finish()
        if rc not in (0, -signal.SIGTERM):
            raise RuntimeError(f"the source exited {rc}:\n{self.proc.text()[-3000:]}")


# ---- contenders ----------------------------------------------------------------------

class PypdkL2fwd:
    thread = "lcore-1"

    def __init__(self, r: K.Rig, driver: str, mac_updating: bool = True):
        self.r, self.driver = r, driver
        self.args = [] if mac_updating else ["--no-mac-updating"]
        self.dst_mac = OTHER_MAC

    def start(self):
        self.proc = pypdk_run("apps/l2fwd", FWD_LCORES,
                              [vdev(self.driver, 0, self.r.fin), vdev(self.driver, 1, self.r.fout)],
                              self.args)
        self.proc.wait_for(lambda: self.proc.out, "l2fwd starts")     # first stats line: running
        self.pid = self.proc.p.pid

    def stop(self):
        rc = self.proc.finish()
        if rc != 0:
            raise RuntimeError(f"l2fwd exited {rc}:\n{self.proc.text()[-3000:]}")


class DpdkTestpmd:
    """dpdk-testpmd, interactive, auto-started; its commands come from a pipe."""
    thread = "rte-worker"            # DPDK 22.11 names its worker threads rte-worker-N

    def __init__(self, r: K.Rig | None, driver: str, mode: str, ifaces: list[str]):
        self.driver, self.mode, self.ifaces = driver, mode, ifaces
        self.dst_mac = OTHER_MAC
        self.prefix = f"pypdk_bench_{os.getpid()}_{nn.unique_name('t')}"

    def start(self):
        # stdbuf: testpmd's printf output is block-buffered into a pipe.
        cmd = ["stdbuf", "-oL", TESTPMD, "--no-pci", "-l", FWD_LCORES, "--no-huge", "-m", "1024", "--no-shconf",
               "--file-prefix", self.prefix, "--log-level", "error"]
        for i, ifname in enumerate(self.ifaces):
            cmd += ["--vdev", vdev(self.driver, i, ifname)]
        cmd += ["--", f"--forward-mode={self.mode}", f"--rxd={NB_DESC}", f"--txd={NB_DESC}",
                "--burst=32", "-i", "--auto-start"]
        self.proc = Proc(cmd, stdin=True)
        self.proc.wait_for(lambda: "testpmd> " in self.proc.text(), "testpmd starts")
        if self.driver == "af_xdp":
            self.proc.wait_for(lambda: all(xdp_attached(i) for i in self.ifaces), "testpmd attaches XDP")
        self.pid = self.proc.p.pid

    def rx_packets(self) -> int:
        """RX-packets of port 0 now (`show port stats 0`)."""
        return int(self.proc.ask("show port stats 0", r"RX-packets:\s+(\d+)", "testpmd port stats"))

    def stop(self):
        try:
            self.proc.send("stop")
            self.proc.send("quit")
            self.proc.p.stdin.close()
        except OSError:
            pass
        rc = self.proc.finish(sig=None, timeout=30)
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)
        if rc != 0:
            raise RuntimeError(f"testpmd exited {rc}:\n{self.proc.text()[-3000:]}")


class Kernel:
    """The kernel routing or bridging (kernel_ref.KernelForwarder); with
    `backlog`, net.core.netdev_max_backlog raised to it for the case (a
    global sysctl, put back after): with the default 1000, the RPS backlog of
    cpu 1 overflows while cpu 1 is still partly idle."""
    thread = None

    def __init__(self, r: K.Rig, mode: str, backlog: int | None = None):
        self.r, self.mode, self.backlog = r, mode, backlog
        self.saved_backlog = None

    def start(self):
        if self.backlog:
            self.saved_backlog = K.set_sysctl("net.core.netdev_max_backlog", self.backlog)
        try:
            self.k = K.KernelForwarder(self.r, self.mode)
        except BaseException:
            self._restore()
            raise
        self.dst_mac = self.k.dst_mac
        self.pid = None

    def _restore(self):
        if self.saved_backlog is not None:
            K.set_sysctl("net.core.netdev_max_backlog", self.saved_backlog)
            self.saved_backlog = None

    def stop(self):
        try:
            self.k.close()
        finally:
            self._restore()


class PypdkRxDrop:
    """RxDrop on lcore 1 of a child process (`_rxdrop` below), driven over a pipe."""
    thread = "lcore-1"

    def __init__(self, driver: str, iface: str):
        self.driver, self.iface = driver, iface
        self.dst_mac = OTHER_MAC

    def start(self):
        self.proc = Proc([sys.executable, "-m", "benchmarks.bench_af_xdp", "_rxdrop", self.driver,
                          self.iface], stdin=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
        self.proc.wait_for(lambda: "ready\n" in self.proc.out, "the pypdk receiver starts")
        self.pid = self.proc.p.pid

    def rx_packets(self) -> int:
        return int(self.proc.ask("count", r"count (\d+)\n", "the pypdk receiver counts"))

    def stop(self):
        try:
            self.proc.p.stdin.close()
        except OSError:
            pass
        rc = self.proc.finish(sig=None)
        if rc != 0:
            raise RuntimeError(f"the pypdk receiver exited {rc}:\n{self.proc.text()[-3000:]}")


def _rxdrop(driver: str, iface: str) -> int:
    """Child process: a port on iface, RxDrop on worker lcore 1; on each stdin
    line print the packets received so far; stop at EOF."""
    import pypdk.eal
    import pypdk.pmd
    from pypdk.mempool.mbuf import PktMbufPool
    from pypdk.pmd.af_xdp.loops import RxDrop
    eal = pypdk.eal.init(lcores=FWD_LCORES, no_huge=True)
    try:
        pool = PktMbufPool("rxdrop", 8192, cache_size=256)
        port = pypdk.pmd.open(vdev(driver, 0, iface))
        try:
            port.setup(pool, 1, 1, NB_DESC, NB_DESC)
            port.start()
            sink = RxDrop([(port, 0)])
            sink.launch(eal, eal.worker_lcores[0])
            print("ready", flush=True)
            for _ in sys.stdin:
                print("count", sink.total, flush=True)
            sink.stop()
        finally:
            port.close()
            pool.free()
    finally:
        eal.cleanup()
    return 0


# ---- measuring -----------------------------------------------------------------------

def _contender(name: str, r: K.Rig):
    if name.startswith("kernel"):
        words = name.split()           # "kernel route", "kernel bridge backlog-8192"
        backlog = int(words[2].split("-")[1]) if len(words) > 2 else None
        return Kernel(r, words[1], backlog)
    kind, _, driver = name.rpartition(" ")
    if kind == "pypdk l2fwd":
        return PypdkL2fwd(r, driver)
    if kind == "pypdk l2fwd-io":
        return PypdkL2fwd(r, driver, mac_updating=False)
    if kind in ("testpmd mac", "testpmd io"):
        return DpdkTestpmd(r, driver, kind.split()[1], [r.fin, r.fout])
    raise ValueError(f"no forwarding contender {name!r}")


def _sample(contender) -> dict:
    return {"t": time.monotonic(), "cpu": K.cpu_times(),
            "thread": K.thread_cpu(contender.pid, contender.thread) if contender.thread else 0.0}


def _shares(s0: dict, s1: dict, contender) -> dict:
    dt = s1["t"] - s0["t"]
    out = {"cpu1": K.cpu_shares(s0["cpu"], s1["cpu"], K.FWD_CPU)}
    if contender.thread:
        out["fwd_cpu"] = round((s1["thread"] - s0["thread"]) / dt, 3)
    return out


def measure_forward(name: str, source: str = SOURCE, seconds: float = SECONDS) -> dict:
    """One forwarding case on a fresh rig: {'mpps', 'offered_mpps', ...}."""
    with K.ksoftirqd_nice(NICE), K.rig() as r:
        c = _contender(name, r)
        c.start()
        src = None
        try:
            src = Source(r, source, c.dst_mac)
            time.sleep(WARMUP)
            sink0, off0, s0 = K.link_counter(r.sink), r.offered(), _sample(c)
            time.sleep(seconds)
            sink1, off1, s1 = K.link_counter(r.sink), r.offered(), _sample(c)
        finally:
            try:
                if src is not None:
                    src.stop()
            finally:
                c.stop()
    dt = s1["t"] - s0["t"]
    return {"case": name, "mpps": round((sink1 - sink0) / dt / 1e6, 4),
            "offered_mpps": round((off1 - off0) / dt / 1e6, 4), "seconds": round(dt, 3),
            "source": source, **_shares(s0, s1, c)}


def measure_rx(name: str, source: str = SOURCE, seconds: float = SECONDS) -> dict:
    """One receive-and-drop case: the source on r.src, the receiver on r.fin."""
    kind, _, driver = name.rpartition(" ")
    with K.ksoftirqd_nice(NICE), K.rig() as r:
        c = PypdkRxDrop(driver, r.fin) if kind == "pypdk" else DpdkTestpmd(r, driver, "rxonly", [r.fin])
        c.start()
        src = None
        try:
            src = Source(r, source, c.dst_mac)
            time.sleep(WARMUP)
            rx0, off0, s0 = c.rx_packets(), r.offered(), _sample(c)
            time.sleep(seconds)
            rx1, off1, s1 = c.rx_packets(), r.offered(), _sample(c)
        finally:
            try:
                if src is not None:
                    src.stop()
            finally:
                c.stop()
    dt = s1["t"] - s0["t"]
    return {"case": name, "mpps": round((rx1 - rx0) / dt / 1e6, 4),
            "offered_mpps": round((off1 - off0) / dt / 1e6, 4), "seconds": round(dt, 3),
            "source": source, **_shares(s0, s1, c)}


def with_ratios(results: dict[str, dict], refs) -> dict[str, dict]:
    for res in results.values():
        for ref in refs:
            base = results.get(ref)
            if base and base["mpps"] > 0 and res["case"] != ref:
                res[f"vs_{ref.replace(' ', '_')}"] = round(res["mpps"] / base["mpps"], 3)
    return results


# ---- pytest-benchmark ------------------------------------------------------------------

_done: dict[str, dict] = {}


def _check_tools():
    assert shutil.which(TESTPMD), f"{TESTPMD} is missing: apt-get install dpdk (scripts/setup.sh)"
    assert os.geteuid() == 0, "needs root (veth pairs, XDP programs, namespaces)"


def _bench(benchmark, fn, name):
    _check_tools()
    out = {}

    def once():
        out.update(fn(name))
    benchmark.pedantic(once, rounds=1, iterations=1)
    _done[name] = out
    refs = REFS["rx"] if fn is measure_rx else REFS["fwd"]
    with_ratios(_done, refs)
    benchmark.extra_info.update(out)


@pytest.mark.parametrize("name", RX_CASES)
def test_rx_and_drop(benchmark, name):
    benchmark.group = GROUP_RX
    _bench(benchmark, measure_rx, name)


@pytest.mark.parametrize("name", FWD_CASES)
def test_forwarding(benchmark, name):
    benchmark.group = GROUP_FWD
    _bench(benchmark, measure_forward, name)


# ---- command line: interleaved rounds ------------------------------------------------------

def run_rounds(rounds: int, seconds: float, source: str, cases=None, log=sys.stderr) -> dict:
    """Every case once per round, in order, `rounds` times; medians and ratios of the medians."""
    todo = [("rx", c) for c in RX_CASES] + [("fwd", c) for c in FWD_CASES]
    if cases:
        todo = [(k, c) for k, c in todo if c in cases]
    runs: dict[str, list[dict]] = {}
    for i in range(rounds):
        for kind, name in todo:
            fn = measure_rx if kind == "rx" else measure_forward
            try:
                res = fn(name, source, seconds)
            except Exception as e:          # one failed case must not lose the round
                res = {"case": name, "mpps": 0.0, "error": str(e)[-2000:]}
            runs.setdefault(name, []).append(res)
            print(f"round {i + 1} {name}: {json.dumps(res)}", file=log, flush=True)
    summary = {"rx": {}, "fwd": {}}
    for kind, name in todo:
        rs = runs[name]
        summary[kind][name] = {
            "case": name, "mpps": round(statistics.median(x["mpps"] for x in rs), 4),
            "all_mpps": [x["mpps"] for x in rs],
            "offered_mpps": round(statistics.median(x.get("offered_mpps", 0) for x in rs), 4),
            "fwd_cpu": round(statistics.median(x.get("fwd_cpu", 0) for x in rs), 3),
            "cpu1_steal": round(statistics.median(x.get("cpu1", {}).get("steal", 0) for x in rs), 3)}
    with_ratios(summary["rx"], REFS["rx"])
    with_ratios(summary["fwd"], REFS["fwd"])
    return summary


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_rxdrop":
        return _rxdrop(argv[1], argv[2])
    ap = argparse.ArgumentParser(description="pypdk over veth (AF_XDP, AF_PACKET) vs testpmd and the kernel")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=SECONDS)
    ap.add_argument("--source", choices=("xdpgen", "af_xdp", "af_packet"), default=SOURCE)
    ap.add_argument("--case", action="append", help="only these cases (repeatable)")
    a = ap.parse_args(argv)
    summary = run_rounds(a.rounds, a.seconds, a.source, a.case)
    for kind, title in (("rx", GROUP_RX), ("fwd", GROUP_FWD)):
        if not summary[kind]:
            continue
        print(f"\n{title} (median of {a.rounds}, source {a.source})")
        for name, s in summary[kind].items():
            ratios = " ".join(f"{k}={v}" for k, v in s.items() if k.startswith("vs_"))
            print(f"  {name:24s} {s['mpps']:7.3f} Mpps  offered {s['offered_mpps']:6.3f}  "
                  f"fwd_cpu {s['fwd_cpu']:5.2f}  runs {s['all_mpps']}  {ratios}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
