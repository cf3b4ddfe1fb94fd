"""l2fwd on a net_null pair, one forwarding lcore: pypdk against DPDK's testpmd, in one run.

The job: two `net_null` ports (64-byte packets, made up on rx from the
port's pool, freed on tx), everything port 0 receives leaves by port 1 and
the other way round, one lcore forwarding both directions while the main
lcore only keeps time. That is the framework's own cost per packet: an rx
burst (mbuf allocation), the forwarding loop, a tx burst (mbuf free).

    pypdk:   pypdk-run apps/l2fwd --lcores 0-1 --no-huge --vdev net_null0 --vdev net_null1 \\
                 --duration 3 --stats-json F -- --no-mac-updating     (or with MAC updating)
    testpmd: dpdk-testpmd --no-pci -l 0-1 --no-huge -m 1024 --vdev net_null0 --vdev net_null1 \\
                 -- --forward-mode=io (or mac) -i --auto-start        (benchmarks/testpmd_ref.py)

Groups: "io" (frames leave as they came: l2fwd --no-mac-updating, testpmd
io) and "MAC updating" (source = the output port's MAC, destination set per
output port: l2fwd's default, testpmd's mac mode). extra_info["mpps"] is
packets forwarded per second in millions: for pypdk the ports' `opackets`
summed, divided by the run's `duration` (both from --stats-json); for
testpmd the ports' Tx-pps summed over a measured interval after a warm-up.
The pytest-benchmark time of a case is the whole subprocess (start-up
included): it is not the figure.

Cases of pypdk carry `vs_testpmd`, their rate over the testpmd case of the
same group run just before. The machine is shared: a forwarding thread may
get only part of its cpu, so each case also records the CPU time its
forwarding thread(s) used over the measured interval (`fwd_cpu_share`, 1.0
= the whole cpu) and `mpps_per_cpu` = mpps / fwd_cpu_share, the rate per
cpu-second actually used: compare those when the shares differ.

Both sides run on ordinary pages (--no-huge): testpmd has no hugetlbfs mount
here, and pypdk's rate is the same with memfd hugepages within the noise.

    python -m pytest benchmarks/bench_l2fwd.py --benchmark-only --benchmark-group-by=group
    python -m benchmarks.bench_l2fwd --rounds 3     # alternating runs, medians and ratios
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

import pytest

from benchmarks import cpu_time, testpmd_ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = float(os.environ.get("PYPDK_BENCH_FWD_SECONDS", "3"))
NULL_PAIR = ("net_null0", "net_null1")
GROUP_IO = "l2fwd net_null pair io, 1 forwarding lcore"
GROUP_MAC = "l2fwd net_null pair MAC updating, 1 forwarding lcore"

# Figures of this session, so a pypdk case can say how it compares.
FIGURES: dict[str, float] = {}


def forwarded_mpps(doc: dict) -> float:
    """Packets sent by every port over the run, per second, in millions (--stats-json)."""
    sent = sum(p["opackets"] for p in doc["ports"].values())
    return sent / doc["duration"] / 1e6


def pypdk_run(app_dir: str, app_args=(), lcores="0-1", vdevs=NULL_PAIR, duration=DURATION,
              no_huge=True, extra=(), timeout=None) -> dict:
    """Run `pypdk-run APP_DIR` for `duration` seconds; its --stats-json doc plus "mpps", "cmd",
    "cpu_share" (CPU seconds of each worker lcore thread over the run's duration), "cpu_total"
    (their sum) and "mpps_per_cpu" (mpps / cpu_total).

    Raises:
        RuntimeError: pypdk-run failed (its stderr in the message).
    """
    fd, path = tempfile.mkstemp(prefix="pypdk_bench_", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "pypdk.cli", app_dir, "--lcores", lcores,
           "--file-prefix", f"pypdk_bench_{os.getpid()}", "--duration", str(duration),
           "--stats-json", path]
    if no_huge:
        cmd.append("--no-huge")
    for v in vdevs:
        cmd += ["--vdev", v]
    cmd += list(extra)
    if app_args:
        cmd += ["--", *app_args]
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL, text=True)
            # The lcore threads' CPU time, sampled while the process lives.
            cpu = cpu_time.sample_until_exit(p, timeout or duration + 60)
            err.seek(0)
            if p.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {err.read().strip()[-2000:]}")
        with open(path) as f:
            doc = json.load(f)
    finally:
        os.unlink(path)
    doc["mpps"] = forwarded_mpps(doc)
    doc["cpu_share"] = {k: round(v / doc["duration"], 3) for k, v in sorted(cpu.items())
                        if k.startswith("lcore-")}
    doc["cpu_total"] = round(sum(doc["cpu_share"].values()), 3)
    doc["mpps_per_cpu"] = round(doc["mpps"] / doc["cpu_total"], 3) if doc["cpu_total"] else None
    doc["cmd"] = " ".join(cmd[2:]).replace("pypdk.cli", "pypdk-run", 1)
    return doc


def l2fwd(mac_updating: bool, duration=DURATION) -> dict:
    return pypdk_run("apps/l2fwd", ["--mac-updating" if mac_updating else "--no-mac-updating"],
                     duration=duration)


def run_testpmd(mode: str, duration=DURATION) -> testpmd_ref.Result:
    return testpmd_ref.run(duration=duration, warmup=1.0, forward_mode=mode)


# ---- pytest-benchmark cases ----------------------------------------------------------------

MODES = [("io", GROUP_IO), ("mac", GROUP_MAC)]


@pytest.mark.skipif(not testpmd_ref.available(), reason="dpdk-testpmd (Debian dpdk) not installed")
@pytest.mark.parametrize("mode,group", MODES, ids=["io", "mac"])
def test_testpmd_forward(benchmark, mode, group):
    """DPDK 22.11 testpmd, --forward-mode io or mac, the reference for the same group."""
    benchmark.group = group
    r = benchmark.pedantic(run_testpmd, args=(mode,), rounds=1, iterations=1)
    FIGURES[f"testpmd {mode}"] = r.mpps
    benchmark.extra_info.update(mpps=round(r.mpps, 3), cmd=" ".join(r.cmd),
                                tx_pps={str(k): v for k, v in r.tx_pps.items()},
                                fwd_cpu_share=round(r.fwd_cpu_share, 3),
                                mpps_per_cpu=round(r.mpps / r.fwd_cpu_share, 3) if r.fwd_cpu_share else None,
                                note="sum of Tx-pps over the ports between two 'show port stats'")


@pytest.mark.parametrize("mac_updating,group", [(False, GROUP_IO), (True, GROUP_MAC)],
                         ids=["no-mac-updating", "mac-updating"])
def test_pypdk_l2fwd(benchmark, mac_updating, group):
    """pypdk-run apps/l2fwd on one worker lcore."""
    benchmark.group = group
    doc = benchmark.pedantic(l2fwd, args=(mac_updating,), rounds=1, iterations=1)
    info = {"mpps": round(doc["mpps"], 3), "cmd": doc["cmd"], "duration": doc["duration"],
            "dropped": sum(p["dropped"] for p in doc["ports"].values()),
            "fwd_cpu_share": doc["cpu_total"], "mpps_per_cpu": doc["mpps_per_cpu"]}
    ref = FIGURES.get(f"testpmd {'mac' if mac_updating else 'io'}")
    if ref:
        info["vs_testpmd"] = round(doc["mpps"] / ref, 3)
    benchmark.extra_info.update(info)


# ---- alternating runs from the command line -------------------------------------------------

def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="l2fwd vs testpmd on a net_null pair, alternating runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=DURATION)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args(argv)

    def tp(mode):
        r = run_testpmd(mode, a.duration)
        return r.mpps, r.fwd_cpu_share

    def pp(mac):
        d = l2fwd(mac, a.duration)
        return d["mpps"], d["cpu_total"]

    cases = [("testpmd io", lambda: tp("io")),
             ("pypdk l2fwd --no-mac-updating", lambda: pp(False)),
             ("testpmd mac", lambda: tp("mac")),
             ("pypdk l2fwd --mac-updating", lambda: pp(True))]
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(a.rounds):
        for name, fn in cases:
            mpps, share = fn()
            runs.setdefault(name, []).append((mpps, share))
            if not a.json:
                print(f"{name:34} {mpps:8.2f} Mpps  (forwarding thread had {share:.0%} of its cpu)",
                      flush=True)
    med = {k: statistics.median(m for m, _ in v) for k, v in runs.items()}
    # Per cpu-second of the forwarding thread: what it does when it runs.
    per_cpu = {k: statistics.median(m / s for m, s in v if s > 0) for k, v in runs.items()}
    pairs = {"io": ("pypdk l2fwd --no-mac-updating", "testpmd io"),
             "mac": ("pypdk l2fwd --mac-updating", "testpmd mac")}
    ratios = {k: med[p] / med[t] for k, (p, t) in pairs.items()}
    ratios_cpu = {k: per_cpu[p] / per_cpu[t] for k, (p, t) in pairs.items()}
    if a.json:
        print(json.dumps({"runs": runs, "median_mpps": med, "median_mpps_per_cpu": per_cpu,
                          "pypdk_over_testpmd": ratios, "pypdk_over_testpmd_per_cpu": ratios_cpu},
                         indent=1))
        return
    print("medians (Mpps; Mpps per cpu-second of the forwarding thread):")
    for k in med:
        print(f"  {k:34} {med[k]:8.2f}  {per_cpu[k]:8.2f}")
    print(f"pypdk / testpmd: io {ratios['io']:.2f} ({ratios_cpu['io']:.2f} per cpu), "
          f"MAC updating {ratios['mac']:.2f} ({ratios_cpu['mac']:.2f} per cpu)")


if __name__ == "__main__":
    main()
