"""Run DPDK's own perf autotests (Debian's `dpdk-test`) and read their figures.

DPDK prints TSC cycles. Its ring_perf_autotest (22.11) prints cycles per
enqueue+dequeue *call*: the figures grow with the burst size (about 8.5,
18.6 and 40.8 cycles for 1, 8 and 32 objects here), so we divide by the
burst size and by the measured TSC rate to get ns per object, the unit of
`python -m pypdk.perf`. mempool_perf_autotest prints a rate (objects per
second, "rate_persec"), which converts directly.
"""
from __future__ import annotations

import re
import shutil
import subprocess

PREFIX = "pypdk_bench_ref"


def available() -> bool:
    return shutil.which("dpdk-test") is not None


def run_autotest(name: str, timeout=600) -> str:
    env = {"DPDK_TEST": name, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    try:
        out = subprocess.run(["dpdk-test", "--no-huge", "-m", "512", "-l", "0-1", "--no-pci",
                              "--file-prefix", PREFIX, "--log-level", "error"],
                             capture_output=True, text=True, timeout=timeout, env=env,
                             stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(f"/var/run/dpdk/{PREFIX}", ignore_errors=True)   # DPDK's runtime dir
    return out.stdout + out.stderr


_RING_LINE = re.compile(r"legacy APIs: (SP/SC|MP/MC): (single|burst|bulk)(?: \(size: (\d+)\))?: ([\d.]+)")


def ring_perf(tsc_hz: float) -> dict[str, float]:
    """{'ring SP/SC burst 32': ns per object, ...} from the single-lcore section."""
    text = run_autotest("ring_perf_autotest")
    out: dict[str, float] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("###"):
            section = line
            if "empty" in line or "two" in line or "all worker" in line:
                section = None
            continue
        m = _RING_LINE.search(line)
        if not m or section is None:
            continue
        mode, kind, size, cycles = m.group(1), m.group(2), m.group(3), float(m.group(4))
        size = int(size) if size else 1
        kind = "bulk" if kind == "single" else kind
        key = f"ring {mode} {kind} {size}"
        out.setdefault(key, cycles / size / tsc_hz * 1e9)
    return out


_MP_LINE = re.compile(r"cache=(\d+) cores=(\d+) n_get_bulk=(\d+) n_put_bulk=(\d+) "
                      r"n_keep=(\d+).*rate_persec=(\d+)")


def mempool_perf() -> dict[str, float]:
    """Best one-lcore rate (as ns per object) for each bulk size, with and without cache.

    Slow: DPDK runs every combination for 5 s (about 20 minutes in all)."""
    text = run_autotest("mempool_perf_autotest", timeout=3600)
    return parse_mempool(text)


def parse_mempool(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in _MP_LINE.finditer(text):
        cache, cores, get, put, rate = (int(m.group(i)) for i in (1, 2, 3, 4, 6))
        if cores == 1 and get == put and rate:
            key = f"mempool get+put bulk {get} {'cache' if cache else 'no cache'}"
            out[key] = min(out.get(key, 1e18), 1e9 / rate)
    return out
