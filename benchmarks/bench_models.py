"""The processing models on one job: run-to-completion, pipeline and a Python callback.

The job is bench_l2fwd's: a `net_null` pair (64-byte packets), port 0 -> 1
and 1 -> 0, measured in packets forwarded per second (Mpps, extra_info).
Each case runs `pypdk-run` on a small app that this module is (`options()`
and `setup()` below; the case writes a one-line app.py importing them into
a temporary APP_DIR), for a fixed duration, and reads --stats-json. Cases of
one job share a `group`; each carries `vs_rtc`, its rate over the
run-to-completion case of its group run just before, and `vs_rtc_per_cpu`,
the same for `mpps_per_cpu` (the rate per cpu-second the lcore threads
used: on a shared machine they may not get their cpus to themselves; see
bench_l2fwd).

io (frames leave as they came):

| case | lcores | what runs |
|---|---|---|
| rtc | `0-1` | lcore 1 (cpu 1): `RtcWorker`, both hops, no hook |
| pipeline-2cpu | `0,1,2@0` | lcore 1 (cpu 1): rx stage -> SP/SC ring -> lcore 2 (cpu 0): tx stage |
| pipeline-1cpu | `0,(1-2)@1` | the same two stages sharing cpu 1 (`yield_after=1`) |
| pyburst | `0-1` | lcore 1: `PyBurstWorker` calling `lambda mbufs: mbufs` per burst |

The machine has two cpus, and lcore 0 (the main lcore, pypdk-run's own
loop: it sleeps between 50 ms ticks) has cpu 0, so a two-stage pipeline with
a cpu per stage puts its tx stage beside the main lcore on cpu 0; it uses
two cpus where rtc uses one. It needs both stages running at once: on a
shared machine the tx stage may get a small share of cpu 0 (other users'
processes crowd there while cpu 1 is pinned busy), and while it waits the
rx stage fills the ring (1023 packets, microseconds of traffic) and frees
the rest (`ring_full`). `cpu_share` in extra_info shows what each lcore got.
Stages sharing a cpu take turns: with `yield_after=1` the rx stage yields
once the ring is full and the tx stage, once it is empty.

MAC rewrite (l2fwd's: destination 02:00:00:00:00:<out port>, source the
output port's MAC, 12 bytes per packet):

| case | what runs |
|---|---|
| rtc-inline | l2fwd's loop: `rtc_loop` compiled around `l2fwd_rewrite` (apps/l2fwd/fwd.pyx) |
| rtc-hook | `RtcWorker(hook=MacTable.hook())`: the same rewrite through the hook pointer |
| pyburst | `PyBurstWorker` with `m.data[0:12] = hdr` per packet in Python |

    python -m pytest benchmarks/bench_models.py --benchmark-only --benchmark-group-by=group
    python -m benchmarks.bench_models --rounds 3       # alternating runs, medians and ratios
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile

import click
import pytest

from benchmarks.bench_l2fwd import DURATION, pypdk_run

GROUP_IO = "forwarding models, net_null pair io"
GROUP_MAC = "forwarding models, net_null pair MAC rewrite"

# name: (group, lcores, app options)
CASES = {
    "io rtc": (GROUP_IO, "0-1", ["--model", "rtc"]),
    "io pipeline-2cpu": (GROUP_IO, "0,1,2@0", ["--model", "pipeline"]),
    "io pipeline-1cpu": (GROUP_IO, "0,(1-2)@1", ["--model", "pipeline", "--yield-after", "1"]),
    "io pyburst": (GROUP_IO, "0-1", ["--model", "pyburst"]),
    "mac rtc-inline": (GROUP_MAC, "0-1", ["--model", "rtc", "--job", "mac"]),
    "mac rtc-hook": (GROUP_MAC, "0-1", ["--model", "rtc-hook", "--job", "mac"]),
    "mac pyburst": (GROUP_MAC, "0-1", ["--model", "pyburst", "--job", "mac"]),
}

FIGURES: dict[str, float] = {}

APP_PY = "from benchmarks.bench_models import options, setup  # noqa: F401\n"


# ---- the app the cases run ------------------------------------------------------------------

def options():
    @click.command("fwd-models", help="Forward a port pair with one of pypdk's processing models.")
    @click.option("--model", type=click.Choice(["rtc", "rtc-hook", "pipeline", "pyburst"]), default="rtc")
    @click.option("--job", type=click.Choice(["io", "mac"]), default="io")
    @click.option("--burst", type=click.IntRange(1, 64), default=32)
    @click.option("--yield-after", type=click.IntRange(0), default=0)
    @click.option("--ring-size", type=int, default=1024)
    def command(**kw):
        pass
    return command


def _headers(ports, pair):
    """Per rx port: the 12 bytes l2fwd writes into frames leaving by its pair."""
    return {rx: bytes([2, 0, 0, 0, 0, tx & 0xff]) + ports[tx].mac for rx, tx in pair.items()}


def setup(eal, ports, opts):
    from pypdk.errors import UsageError
    from pypdk.mempool import PktMbufPool
    from pypdk.worker import Pipeline, PyBurstWorker, RtcWorker, make_plan

    if len(ports) != 2:
        raise UsageError(f"fwd-models forwards one port pair, got {len(ports)} ports", "give two --vdev")
    workers = sorted(eal.worker_lcores)
    by_id = {p.port_id: p for p in ports}
    a, b = sorted(by_id)
    pair = {a: b, b: a}
    hops = [(a, 0, b, 0), (b, 0, a, 0)]
    pool = PktMbufPool("fwd_models", 16384, cache_size=256)
    for p in ports:
        p.setup(pool, 1, 1, 1024, 1024)
    pipe = None
    if opts.model in ("rtc", "rtc-hook"):
        if opts.job == "io":
            w = {workers[0]: RtcWorker(hops, burst=opts.burst, yield_after=opts.yield_after)}
        else:
            from apps.l2fwd import fwd
            macs = fwd.MacTable()
            for p in ports:
                macs.set_port(p.port_id, p.mac)
            if opts.model == "rtc":
                w = {workers[0]: fwd.make_worker(hops, macs, opts.burst, opts.yield_after)}
            else:
                w = {workers[0]: RtcWorker(hops, burst=opts.burst, hook=macs.hook(),
                                           yield_after=opts.yield_after)}
    elif opts.model == "pipeline":
        if opts.job != "io":
            raise UsageError("the pipeline case forwards io only", "use --job io")
        pipe = Pipeline(rx=[(a, 0), (b, 0)], route={a: (b, 0), b: (a, 0)}, ring_size=opts.ring_size,
                        burst=opts.burst, yield_after=opts.yield_after, name="fwdm")
        w = pipe.workers(workers[:2])
    else:
        if opts.job == "io":
            def fn(mbufs):
                return mbufs
        else:
            hdr = _headers(by_id, pair)

            def fn(mbufs):
                for m in mbufs:
                    m.data[0:12] = hdr[m.port]
                return mbufs
        w = {workers[0]: PyBurstWorker(hops, fn, burst=opts.burst, yield_after=opts.yield_after)}
    for p in ports:
        p.start()

    def close():
        if pipe is not None:
            pipe.close()
        pool.close()

    return make_plan(w, close=close, app_stats=lambda: {"model": opts.model, "job": opts.job})


# ---- running a case -------------------------------------------------------------------------

def run_case(name: str, duration=DURATION) -> dict:
    """Run one CASES entry through pypdk-run; the --stats-json doc plus "mpps"."""
    group, lcores, args = CASES[name]
    app_dir = tempfile.mkdtemp(prefix="pypdk_fwd_models_")
    try:
        with open(os.path.join(app_dir, "app.py"), "w") as f:
            f.write(APP_PY)
        doc = pypdk_run(app_dir, args, lcores=lcores, duration=duration)
    finally:
        shutil.rmtree(app_dir, ignore_errors=True)
    doc["cmd"] = doc["cmd"].replace(app_dir, "FWD_MODELS_APP")
    return doc


def _lcore_summary(doc) -> dict:
    keys = ("rx", "tx", "ring_full", "app_dropped", "tx_dropped", "idle_yields", "py_errors")
    return {lc: {k: c[k] for k in keys if c.get(k)} for lc, c in doc["lcores"].items()}


@pytest.mark.parametrize("name", list(CASES))
def test_forwarding_model(benchmark, name):
    group = CASES[name][0]
    benchmark.group = group
    doc = benchmark.pedantic(run_case, args=(name,), rounds=1, iterations=1)
    FIGURES[name] = doc["mpps"]
    FIGURES[name + " per cpu"] = doc["mpps_per_cpu"]
    info = {"mpps": round(doc["mpps"], 3), "mpps_per_cpu": doc["mpps_per_cpu"], "cmd": doc["cmd"],
            "lcores": _lcore_summary(doc), "cpu_share": doc["cpu_share"]}
    base = "io rtc" if group == GROUP_IO else "mac rtc-inline"
    if FIGURES.get(base):
        info["vs_rtc"] = round(doc["mpps"] / FIGURES[base], 4)
    if FIGURES.get(base + " per cpu") and doc["mpps_per_cpu"]:
        info["vs_rtc_per_cpu"] = round(doc["mpps_per_cpu"] / FIGURES[base + " per cpu"], 4)
    benchmark.extra_info.update(info)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="pypdk processing models on a net_null pair")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=DURATION)
    ap.add_argument("--case", action="append", choices=list(CASES), help="only these (repeatable)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    names = a.case or list(CASES)
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(a.rounds):
        for name in names:
            doc = run_case(name, a.duration)
            runs.setdefault(name, []).append((doc["mpps"], doc["mpps_per_cpu"] or 0.0))
            if not a.json:
                print(f"{name:18} {doc['mpps']:9.3f} Mpps  cpu {doc['cpu_share']}  {_lcore_summary(doc)}",
                      flush=True)
    med = {k: statistics.median(m for m, _ in v) for k, v in runs.items()}
    per_cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    base = {GROUP_IO: "io rtc", GROUP_MAC: "mac rtc-inline"}

    def ratio(table, k):
        b = table.get(base[CASES[k][0]])
        return table[k] / b if b else None

    vs = {k: ratio(med, k) for k in med}
    vs_cpu = {k: ratio(per_cpu, k) for k in med}
    if a.json:
        print(json.dumps({"runs": runs, "median_mpps": med, "median_mpps_per_cpu": per_cpu,
                          "vs_rtc": vs, "vs_rtc_per_cpu": vs_cpu}, indent=1))
        return
    print("medians: Mpps, Mpps per cpu-second of the lcore threads, and both over the group's rtc case")
    for k in med:
        r = f"{vs[k]:.4f}" if vs[k] else "-"
        rc = f"{vs_cpu[k]:.4f}" if vs_cpu[k] else "-"
        print(f"  {k:18} {med[k]:9.3f} {per_cpu[k]:9.3f}   {r:>7} {rc:>7}")


if __name__ == "__main__":
    main()
