"""Run DPDK's testpmd (Debian's `dpdk-testpmd`, DPDK 22.11) as a forwarding reference.

The job matches `pypdk-run apps/l2fwd` on a net_null pair: two `net_null`
vdevs (64-byte packets by default in both), one forwarding lcore (testpmd's
`-l 0-1`: lcore 0 runs the prompt, lcore 1 forwards both streams, 0->1 and
1->0), `--forward-mode=io` (as is) or `mac` (rewrite the Ethernet source to
the output port's MAC and the destination to the peer's, the job of l2fwd's
MAC updating).

How it is measured: testpmd runs interactive with `--auto-start`, its
commands come from a pipe. Once the prompt shows, we wait `warmup` seconds,
send `show port stats all`, wait `duration`, send it again and quit. The
second block's "Throughput (since last show)" Tx-pps per port is testpmd's
own rate over exactly that interval (TSC cycles between the two commands),
so neither start-up nor our pipe's timing enters the figure. The CPU
time each testpmd thread used over the interval (benchmarks.cpu_time) is
kept too: on a shared machine the forwarding lcore may not have had its cpu
to itself, and `fwd_cpu_share` says how much of it it had. Mpps = the sum
over the ports of Tx-pps (packets forwarded per second), the same sum
pypdk's figure is.

Memory: `--no-huge -m 1024` by default (testpmd's default pool of ~155k
mbufs does not fit in 512 MB of ordinary pages; there is no hugetlbfs mount
for it here, pypdk uses memfd hugepages without one). `--no-shconf`
and a distinct `--file-prefix` per run, so parallel runs never meet; the
(empty) runtime directory DPDK still makes, /var/run/dpdk/PREFIX, is
removed after the run.

Not equal parts: DPDK 22.11's net_null counts packets with a sequentially
consistent atomic add per burst (`__atomic_fetch_add(..., __ATOMIC_SEQ_CST)`,
a `lock add` that waits for every store of the burst to drain) on rx and on
tx, and its tx frees mbufs one by one; pypdk's net_null counts with plain
stores (one writer per queue) and frees in bulk. See `bench_l2fwd.py`.

    python -m benchmarks.testpmd_ref --duration 4 --forward-mode io
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

from benchmarks.cpu_time import threads_cpu

TESTPMD = "dpdk-testpmd"
PROMPT = "testpmd> "
RUNTIME_DIR = "/var/run/dpdk"      # DPDK's runtime directory for root
_seq = itertools.count()


def available() -> bool:
    return shutil.which(TESTPMD) is not None


@dataclass
class Result:
    mpps: float                         # forwarded packets per second (sum of Tx-pps), millions
    tx_pps: dict[int, int]              # per port, over the measured interval
    rx_pps: dict[int, int]
    cmd: list[str]
    duration: float                     # requested measuring interval (s)
    cpu_share: dict[str, float] = field(default_factory=dict)   # thread name -> cpu s / interval s
    output: str = field(repr=False, default="")

    @property
    def fwd_cpu_share(self) -> float:
        """The forwarding lcore's share of its cpu over the interval (1.0: it had it all)."""
        return sum(v for k, v in self.cpu_share.items() if k.startswith("rte-worker"))


def command(forward_mode="io", lcores="0-1", vdevs=("net_null0", "net_null1"), no_huge=True,
            memory_mb=1024, file_prefix=None, burst=32, extra_eal=(), extra_app=()) -> list[str]:
    """The dpdk-testpmd command line (interactive, auto-started)."""
    cmd = [TESTPMD, "--no-pci", "-l", lcores, "--log-level", "error", "--no-shconf",
           "--file-prefix", file_prefix or f"pypdk_testpmd_{os.getpid()}_{next(_seq)}"]
    for v in vdevs:
        cmd += ["--vdev", v]
    if no_huge:
        cmd += ["--no-huge", "-m", str(memory_mb)]
    cmd += list(extra_eal)
    cmd += ["--", f"--forward-mode={forward_mode}", f"--burst={burst}", "-i", "--auto-start"]
    cmd += list(extra_app)
    return cmd


_PORT_BLOCK = re.compile(r"NIC statistics for port (\d+)\s*#+(.*?)#{20,}", re.S)
_PPS = re.compile(r"(Rx|Tx)-pps:\s+(\d+)")


def parse_throughput(text: str) -> tuple[dict[int, int], dict[int, int]]:
    """(rx_pps, tx_pps) per port from the last `show port stats` block of each port."""
    rx: dict[int, int] = {}
    tx: dict[int, int] = {}
    for m in _PORT_BLOCK.finditer(text):
        port = int(m.group(1))
        for kind, val in _PPS.findall(m.group(2)):
            (rx if kind == "Rx" else tx)[port] = int(val)
    return rx, tx


class _Reader(threading.Thread):
    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.chunks: list[str] = []
        self.lock = threading.Lock()

    def run(self):
        while True:
            data = self.stream.read1(4096) if hasattr(self.stream, "read1") else self.stream.read(4096)
            if not data:
                return
            with self.lock:
                self.chunks.append(data.decode(errors="replace"))

    def text(self) -> str:
        with self.lock:
            return "".join(self.chunks)


def run(duration=4.0, warmup=1.0, forward_mode="io", start_timeout=60.0, **kw) -> Result:
    """Run testpmd, measure `duration` seconds after `warmup`, return its rate.

    Args:
        duration: seconds between the two `show port stats all`.
        warmup: seconds after the prompt before the first one.
        forward_mode: testpmd's --forward-mode (io, mac, macswap...).
        kw: passed to `command()` (lcores, vdevs, no_huge, memory_mb, ...).

    Raises:
        RuntimeError: testpmd exited early or printed no throughput (its
            output is in the message).
    """
    cmd = command(forward_mode=forward_mode, **kw)
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    reader = _Reader(p.stdout)
    reader.start()

    def send(line):
        p.stdin.write(line.encode() + b"\n")
        p.stdin.flush()

    try:
        end = time.monotonic() + start_timeout
        while PROMPT not in reader.text():
            if p.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"testpmd did not start: {' '.join(cmd)}\n{reader.text()[-3000:]}")
            time.sleep(0.05)
        time.sleep(warmup)
        send("show port stats all")
        cpu0, t0 = threads_cpu(p.pid), time.monotonic()
        time.sleep(duration)
        send("show port stats all")
        cpu1, t1 = threads_cpu(p.pid), time.monotonic()
        time.sleep(0.3)
        send("stop")
        send("quit")
        p.stdin.close()
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        reader.join(timeout=5)
        prefix = cmd[cmd.index("--file-prefix") + 1]
        shutil.rmtree(os.path.join(RUNTIME_DIR, prefix), ignore_errors=True)
    text = reader.text()
    rx, tx = parse_throughput(text)
    if not tx or not any(tx.values()):
        raise RuntimeError(f"no throughput in testpmd's output: {' '.join(cmd)}\n{text[-3000:]}")
    share = {k: round((v - cpu0.get(k, 0.0)) / (t1 - t0), 3) for k, v in cpu1.items()}
    return Result(mpps=sum(tx.values()) / 1e6, tx_pps=tx, rx_pps=rx, cmd=cmd, duration=duration,
                  cpu_share=share, output=text)


def main(argv=None):
    import argparse
    import json
    ap = argparse.ArgumentParser(description="testpmd forwarding rate on a net_null pair")
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--forward-mode", default="io")
    ap.add_argument("--lcores", default="0-1")
    ap.add_argument("--hugepages", action="store_true", help="use hugepages (needs a hugetlbfs mount)")
    a = ap.parse_args(argv)
    r = run(a.duration, a.warmup, a.forward_mode, lcores=a.lcores, no_huge=not a.hugepages)
    print(json.dumps({"mpps": round(r.mpps, 3), "tx_pps": r.tx_pps, "rx_pps": r.rx_pps,
                      "cpu_share": r.cpu_share, "cmd": " ".join(r.cmd)}))


if __name__ == "__main__":
    main()
