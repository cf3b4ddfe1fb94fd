"""pypdk on veth through AF_XDP (and AF_PACKET) against DPDK's testpmd and the kernel, in one run.

Every case runs on a fresh rig of `veth_rig` (two veth pairs: a source
end, the contender's input `fin` and output `fout`, and a sink end that
drops in XDP and is counted by the kernel). Within a group every contender
gets the same source, on cpu 0:

- `xdpgen`: the kernel's XDP traffic generator (BPF_PROG_RUN live frames,
  `benchmarks.xdpgen`), one 64-byte IPv4/UDP flow, as fast as cpu 0 makes
  frames and gets them into `fin` (3.5-4 Mpps into an AF_XDP socket). The
  only source here that outruns the forwarders: it builds no skb.
- `af_xdp`: apps/pktgen over net_af_xdp, 64 flows, both its lcores on cpu 0
  (`--lcores '(0-1)@0'`). Every frame costs it an skb and a copy in the
  kernel, as the forwarders' own transmit does, so it caps every contender
  near its own rate (~0.8 Mpps): the group shows who keeps up losslessly,
  not who is fastest.

Each contender gets cpu 1 for its polling lcore (pypdk-run and testpmd both
`-l 0-1`: main lcore 0, which sleeps, and lcore 1 polling), or, for the
kernel, its receive processing steered there by RPS; veth_rig's docstring
says where each piece of kernel work runs. The machine is shared: every
contender and the source run at nice -20, each in a session of its own whose
autogroup gets nice -20 too (the scheduler shares a cpu between autogroups
before a process's nice counts), and ksoftirqd/0-1 get nice -20 for the
case, so other load takes little of their cpus (`fwd_cpu` shows it).

Groups (each case: a fresh rig, start the contender, start the source, 1 s
of warm-up, `PYPDK_BENCH_VETH_SECONDS` (default 3) measured, stop both):

- "veth rx-and-drop" (xdpgen): a receiver on `fin` polls and frees. pypdk:
  `RxDrop` (pypdk/perf/traffic.pyx, the machinery of
  `python -m pypdk.perf af_xdp`) on lcore 1 of its own process;
  testpmd: `--forward-mode=rxonly`. Mpps = packets the receiver got over
  the interval (its own counter).
- "veth forwarding under overload" (xdpgen): `fin` -> `fout`, counted at the
  sink: the maximum forwarding rate with the input overloaded. pypdk:
  `pypdk-run apps/l2fwd` (MAC updating, and `--no-mac-updating`); testpmd:
  `--forward-mode=mac` and `io`; the kernel: `ip_forward` routing and a
  Linux bridge. Caveat for the kernel: the generator's frames become skbs
  whose pages belong to the generator's page_pool on cpu 0; freeing them on
  cpu 1 and the RPS backlog overflowing make the routing path collapse
  (0.3-0.4 Mpps here, where it forwards 0.85+ Mpps of ordinary skbs).
- "veth forwarding, pktgen" (af_xdp): the same contenders with apps/pktgen
  as the source: ordinary skbs into the kernel, and the source caps all.

Both forwarding groups have an af_packet case for pypdk and testpmd and the
rx group one for each (the same job through the other kernel interface).
Ring sizes are 1024 and bursts 32 on both sides, and both run on ordinary
pages (--no-huge); testpmd's af_xdp keeps its defaults (busy_budget=64;
pypdk with busy_budget=64 or testpmd with 0 made no difference here).

extra_info: mpps, offered_mpps (frames `fin` received: what the source got
into the contender's input; the rest was dropped there), fwd_cpu (cpu
seconds the polling thread used per second: below 1.0 it lost its cpu to
something else), cpu1 (/proc/stat shares of cpu 1: busy, softirq, steal),
and the ratios to the group's references measured in the same run
(`vs_testpmd_mac_af_xdp`, `vs_kernel_route`, ...). The pytest-benchmark time
of a case is the whole run (start-up included): not the figure.

    python -m pytest benchmarks/bench_af_xdp.py --benchmark-only --benchmark-group-by=group
    python -m benchmarks.bench_af_xdp --rounds 3      # every case, interleaved rounds, medians, ratios
    python -m benchmarks.bench_af_xdp --group fwd --case "pypdk l2fwd af_xdp" --rounds 1

Needs root, `dpdk-testpmd` (Debian's dpdk 22.11), ethtool, 2 cpus, kernel >= 5.18.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys

import pytest

from benchmarks import kernel_ref as K
from benchmarks import veth_rig as V
from benchmarks.veth_rig import ROOT, SECONDS, Proc, stop_on_error, vdev
from pypdk.testing import netns as nn

OTHER_MAC = "02:00:00:00:00:00"     # frames for the userspace forwarders: nobody's address here
FWD_LCORES = "0-1"
NB_DESC = 1024                      # rx/tx descriptors for both pypdk's l2fwd and testpmd
TESTPMD = "dpdk-testpmd"

# Groups: (key, title, what, source, cases, references). References come first in each
# case list: a pypdk case's ratios (pytest) are to the references measured before it.
GROUPS = (
    ("rx", "veth rx-and-drop 64B, XDP generator", "rx", "xdpgen",
     ("testpmd af_xdp", "pypdk af_xdp", "testpmd af_packet", "pypdk af_packet"),
     ("testpmd af_xdp", "testpmd af_packet", "pypdk af_xdp")),
    ("fwd", "veth forwarding 64B under overload, XDP generator", "fwd", "xdpgen",
     ("kernel route", "kernel bridge", "testpmd mac af_xdp", "pypdk l2fwd af_xdp", "testpmd io af_xdp",
      "pypdk l2fwd-io af_xdp", "testpmd mac af_packet", "pypdk l2fwd af_packet"),
     ("testpmd mac af_xdp", "testpmd io af_xdp", "testpmd mac af_packet", "pypdk l2fwd af_xdp",
      "kernel route", "kernel bridge")),
    ("fwd_pktgen", "veth forwarding 64B, pktgen over af_xdp as the source", "fwd", "af_xdp",
     ("kernel route", "kernel bridge", "testpmd mac af_xdp", "pypdk l2fwd af_xdp",
      "testpmd mac af_packet", "pypdk l2fwd af_packet"),
     ("testpmd mac af_xdp", "kernel route", "kernel bridge")),
)


# ---- contenders ----------------------------------------------------------------------

def xdp_attached(ifname: str) -> bool:
    return "prog/xdp" in nn.run("ip", "-d", "link", "show", "dev", ifname).stdout


class PypdkL2fwd:
    thread = "lcore-1"

    def __init__(self, r: V.Rig, driver: str, mac_updating: bool = True):
        self.r, self.driver = r, driver
        self.args = [] if mac_updating else ["--no-mac-updating"]
        self.dst_mac = OTHER_MAC

    def start(self):
        self.proc = V.start_pypdk_run("apps/l2fwd", FWD_LCORES,
                                      [vdev(self.driver, 0, self.r.fin), vdev(self.driver, 1, self.r.fout)],
                                      self.args)
        with stop_on_error(self.proc):
            self.proc.wait_for(lambda: self.proc.out, "l2fwd starts")     # first stats line: running
        self.pid = self.proc.p.pid

    def stop(self):
        rc = self.proc.finish()
        if rc != 0:
            raise RuntimeError(f"l2fwd exited {rc}:\n{self.proc.text()[-3000:]}")


class DpdkTestpmd:
    """dpdk-testpmd, interactive, auto-started; its commands come from a pipe."""
    thread = "rte-worker"            # DPDK 22.11 names its worker threads rte-worker-N

    def __init__(self, r: V.Rig | None, driver: str, mode: str, ifaces: list[str]):
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
        try:
            self.proc.wait_for(lambda: "testpmd> " in self.proc.text(), "testpmd starts")
            if self.driver == "af_xdp":
                self.proc.wait_for(lambda: all(xdp_attached(i) for i in self.ifaces), "testpmd attaches XDP")
        except BaseException:
            self.proc.finish(sig=signal.SIGKILL)
            shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)
            raise
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


class PypdkRxDrop:
    """RxDrop on lcore 1 of a child process (`_rxdrop` below), driven over a pipe."""
    thread = "lcore-1"

    def __init__(self, driver: str, iface: str):
        self.driver, self.iface = driver, iface
        self.dst_mac = OTHER_MAC

    def start(self):
        self.proc = Proc([sys.executable, "-m", "benchmarks.bench_af_xdp", "_rxdrop", self.driver,
                          self.iface], stdin=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
        with stop_on_error(self.proc):
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
    from pypdk.perf.traffic import RxDrop
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
            pool.close()
    finally:
        eal.close()
    return 0


# ---- measuring -----------------------------------------------------------------------

def _contender(name: str, r: V.Rig):
    if name.startswith("kernel"):
        return K.Kernel(r, name.split()[1])
    kind, _, driver = name.rpartition(" ")
    if kind == "pypdk l2fwd":
        return PypdkL2fwd(r, driver)
    if kind == "pypdk l2fwd-io":
        return PypdkL2fwd(r, driver, mac_updating=False)
    if kind in ("testpmd mac", "testpmd io"):
        return DpdkTestpmd(r, driver, kind.split()[1], [r.fin, r.fout])
    raise ValueError(f"no forwarding contender {name!r}")


def _receiver(name: str, r: V.Rig):
    kind, _, driver = name.rpartition(" ")
    return PypdkRxDrop(driver, r.fin) if kind == "pypdk" else DpdkTestpmd(r, driver, "rxonly", [r.fin])


def measure_forward(name: str, source: str = "xdpgen", seconds: float = SECONDS) -> dict:
    """One forwarding case on a fresh rig: {'mpps', 'offered_mpps', ...}."""
    return {"case": name, **V.measure(lambda r: _contender(name, r), "fwd", source, seconds)}


def measure_rx(name: str, source: str = "xdpgen", seconds: float = SECONDS) -> dict:
    """One receive-and-drop case: the source on r.src, the receiver on r.fin."""
    return {"case": name, **V.measure(lambda r: _receiver(name, r), "rx", source, seconds)}


def with_ratios(results: dict[str, dict], refs) -> dict[str, dict]:
    for res in results.values():
        for ref in refs:
            base = results.get(ref)
            if base and base["mpps"] > 0 and res["case"] != ref:
                res[f"vs_{ref.replace(' ', '_')}"] = round(res["mpps"] / base["mpps"], 3)
    return results


# ---- pytest-benchmark ------------------------------------------------------------------

_done: dict[str, dict[str, dict]] = {}


def _check_tools():
    assert shutil.which(TESTPMD), f"{TESTPMD} is missing: apt-get install dpdk (scripts/setup.sh)"
    assert shutil.which("ethtool"), "ethtool is missing: apt-get install ethtool (scripts/setup.sh)"
    assert os.geteuid() == 0, "needs root (veth pairs, XDP programs, namespaces)"


def _measure(what: str, name: str, source: str, seconds: float) -> dict:
    return (measure_rx if what == "rx" else measure_forward)(name, source, seconds)


@pytest.mark.parametrize("key,name", [(g[0], c) for g in GROUPS for c in g[4]])
def test_veth(benchmark, key, name):
    _check_tools()
    _, title, what, source, _, refs = next(g for g in GROUPS if g[0] == key)
    benchmark.group = title
    out = {}

    def once():
        out.update(_measure(what, name, source, SECONDS))
    benchmark.pedantic(once, rounds=1, iterations=1)
    done = _done.setdefault(key, {})
    done[name] = out
    with_ratios(done, refs)
    benchmark.extra_info.update(out)


# ---- command line: interleaved rounds ------------------------------------------------------

def run_rounds(rounds: int, seconds: float, groups=None, cases=None, log=sys.stderr) -> dict:
    """Every case once per round, in order, `rounds` times; per group, medians and ratios of the medians."""
    todo = [(g, c) for g in GROUPS for c in g[4]
            if (not groups or g[0] in groups) and (not cases or c in cases)]
    runs: dict[tuple, list[dict]] = {}
    for i in range(rounds):
        for g, name in todo:
            try:
                res = _measure(g[2], name, g[3], seconds)
            except Exception as e:          # one failed case must not lose the round
                res = {"case": name, "mpps": 0.0, "error": str(e)[-2000:]}
            runs.setdefault((g[0], name), []).append(res)
            print(f"round {i + 1} [{g[0]}] {name}: {json.dumps(res)}", file=log, flush=True)
    summary: dict[str, dict] = {}
    for g, name in todo:
        rs = runs[(g[0], name)]
        summary.setdefault(g[0], {})[name] = {
            "case": name, "mpps": round(statistics.median(x["mpps"] for x in rs), 4),
            "all_mpps": [x["mpps"] for x in rs],
            "offered_mpps": round(statistics.median(x.get("offered_mpps", 0) for x in rs), 4),
            "fwd_cpu": round(statistics.median(x.get("fwd_cpu", 0) for x in rs), 3),
            "cpu1_softirq": round(statistics.median(x.get("cpu1", {}).get("softirq", 0) for x in rs), 3)}
    for g in GROUPS:
        if g[0] in summary:
            with_ratios(summary[g[0]], g[5])
    return summary


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_rxdrop":
        return _rxdrop(argv[1], argv[2])
    ap = argparse.ArgumentParser(description="pypdk over veth (AF_XDP, AF_PACKET) vs testpmd and the kernel")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=SECONDS)
    ap.add_argument("--group", action="append", choices=[g[0] for g in GROUPS], help="only these groups")
    ap.add_argument("--case", action="append", help="only these cases (repeatable)")
    a = ap.parse_args(argv)
    summary = run_rounds(a.rounds, a.seconds, a.group, a.case)
    for g in GROUPS:
        if g[0] not in summary:
            continue
        print(f"\n{g[1]} (median of {a.rounds})")
        for name, s in summary[g[0]].items():
            ratios = " ".join(f"{k}={v}" for k, v in s.items() if k.startswith("vs_"))
            print(f"  {name:24s} {s['mpps']:7.3f} Mpps  offered {s['offered_mpps']:6.3f}  "
                  f"fwd_cpu {s['fwd_cpu']:5.2f}  runs {s['all_mpps']}  {ratios}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
