"""The vRouter's forwarding paths on 1, 2 (and in a guest 4) forwarding lcores: per-lcore Mpps,
cycles per packet, the total and its ratio to one lcore; the cost of software distribution;
in the guest, the cost of an mbuf pool on the other NUMA node.

One VRouter (apps/vrouter/vrouter.py) per case and lcore count, with its forwarding lcores
(`VRouter(lcores=...)`: a Worker per lcore, a tx queue per lcore on every vif, the vifs on
net_null ports whose tx frees) and shared tables: routes, nexthops, labels, VNIs and the flow
table, as on the vRouter's own lcores. Each forwarding lcore runs a job of
benchmarks/vrouter_lcore_kernels.pyx on its own Worker: bursts of 32 mbufs allocated from the
pool of its NUMA node and filled with the path's frame (as a NIC would hand them over), a flow
word written per packet, then what the vRouter's lcore loop does with a burst it received
(dp/datapath.pyx: `dist_split` when the vif distributes, `vr_process_burst`). All jobs start
on one flag and run for `--duration` seconds. Paths (benchmarks/bench_vrouter.py's frames and
tables, flows on, the VM's policy):

  decap_own       fabric -> MPLSoUDP label -> VM; each lcore its own F flows (F = --flows,
                  16384 here, 4096 in the guest)
  decap_same      the same, every lcore hitting the same F flows (shared flow entries: their
                  counters' cache lines move between the lcores)
  encap_own       VM -> route -> MPLSoUDP tunnel; each lcore its own F flows
  encap_same      the same, the same F flows on every lcore
  encap_oneflow   the same, one flow for every packet of every lcore (a single flow entry,
                  written by every lcore: the worst case of a shared flow)
  bridge_own      fabric -> VXLAN VNI -> bridge -> VM; each lcore its own F flows
  encap_newflows  VM -> MPLSoUDP, every packet a new flow (flow creation: the flow lock and
                  the shared table), --new-flows packets per lcore (131072 here, 4096 in the
                  guest), a count instead of a duration
  encap_txlock    encap_own with the fabric port on one tx queue: the lcores take its queue
                  lock around each burst (a port without a tx queue per lcore)

The flows of the other paths are made first by an untimed pass on each lcore; the timed pass
visits them in a scrambled order. Per lcore: Mpps over its own run, TSC cycles per packet
(`pypdk.eal.timer.rdtsc`, start to stop), the share of that time its thread was on a cpu
(CLOCK_THREAD_CPUTIME_ID: below 1 when the cpu is shared), and busy cycles per packet: the
bursts' own cycles, preempted bursts (8x the cheapest per packet) left out, the cost on a cpu
(vrouter_lcore_kernels.pyx). The total is every lcore's packets over the longest run, `ratio`
the total over the same round's one-lcore total; `cpu ratio` the same with each lcore's rate
on a cpu of its own (TSC rate / busy cycles per packet), what N dedicated cpus would give.
Rounds alternate the order of the lcore counts.

Software distribution (`dist`): the encap path's VM vif with `distribute` (a single-queue VM):
one lcore feeds, hashes each packet's flow and hands those that hash elsewhere to that lcore's
ring; the others run the vRouter's own round (vr_worker_poll), which drains its ring and
processes. Against the same lcore processing everything itself (`distribute` off, the others
idle), alternated. The feeder waits (untimed) for room in the rings, so nothing is dropped for
a full ring while a drainer is preempted. The cost per packet handed over = (feeder's busy
cycles + the drainers' busy cycles - the local run's busy cycles per packet x packets) /
packets handed: the hash, the ring, the mbuf and packet cache lines moving to the other core,
and the mbufs coming back through the pool.

Cross-node pool (`--guest` only): one lcore on node 1, the encap and decap jobs with the pool
on node 1 against node 0, alternated, same VRouter.

Here (this machine: 2 cpus): EAL lcores `0-1,2@0`: main lcore 0 on cpu 0 (it sleeps while the
jobs run), forwarding lcore 1 on cpu 1 and, for the 2-lcore runs, lcore 2 on cpu 0 too: it
shares that cpu with the main lcore and whatever else the machine runs. With `--guest`: a
6-vCPU two-node TCG guest (cpus 0-2 node 0, 3-5 node 1), one boot, this module run inside it
with lcores 0-5 (forwarding [3], [3, 4], [2, 3, 4, 5]); its vCPUs are threads on this host's
two cpus, so more than two busy lcores cannot run at once.

    python -m benchmarks.bench_vrouter_lcores [--rounds 3] [--duration 1] [--cases a,b] [--json]
    python -m benchmarks.bench_vrouter_lcores --guest [--rounds 2] [--duration 1.5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (path, all lcores on the same flows, a new flow every packet, one shared fabric tx queue)
CASES = {
    "decap_own": ("mplsoudp_decap", False, False, False),
    "decap_same": ("mplsoudp_decap", True, False, False),
    "encap_own": ("mplsoudp_encap", False, False, False),
    "encap_same": ("mplsoudp_encap", True, False, False),
    "encap_oneflow": ("mplsoudp_encap", True, False, False),
    "bridge_own": ("vxlan_bridge", False, False, False),
    "encap_newflows": ("mplsoudp_encap", False, True, False),
    "encap_txlock": ("mplsoudp_encap", False, False, True),
}
HOST = {"lcores": "0-1,2@0", "sets": {1: [1], 2: [1, 2]}, "flows": 1 << 14, "new_flows": 1 << 17}
GUEST = {"lcores": "0-5", "sets": {1: [3], 2: [3, 4], 4: [2, 3, 4, 5]}, "flows": 1 << 12,
         "new_flows": 1 << 12, "numa_lcore": 3}
NB_MBUFS = 8192
_seq = [0]


def make(nodes, pools, flow_max, shared_tx=False):
    """A VRouter with the forwarding lcores of `nodes` ({lcore: node}) and bench_vrouter's
    tables, every poll set empty; (vr, {vif: port spec}). shared_tx: the fabric's port is
    set up here with one tx queue (the lcores share it under its lock); vr.close() leaves
    it open: it is specs["dev0"], for the caller to close."""
    from apps.vrouter.vrouter import VRouter
    from benchmarks.bench_vrouter import VR_MAC, UNDERLAY, VM_MAC, program
    from pypdk.eal.timer import tsc_hz
    lcs = sorted(nodes)
    vr = VRouter(pools[nodes[lcs[0]]], VR_MAC, UNDERLAY, flow_max=flow_max, mpls_max=1 << 12,
                 lcores=nodes, pools={n: pools[n] for n in set(nodes.values())}, tsc_hz=tsc_hz())
    specs = {}
    for vid in (0, 3, 5):
        _seq[0] += 1
        specs[vid] = f"net_null{_seq[0]},no-rx=1"
    if shared_tx:
        import pypdk.pmd
        dev = pypdk.pmd.open(specs[0])
        dev.setup(pools[nodes[lcs[0]]], 1, 1)
        dev.start()
        specs["dev0"] = dev
        vr.vif_add(0, "fabric", port=dev)
    else:
        vr.vif_add(0, "fabric", port=specs[0])
    vr.vif_add(3, "virtual", port=specs[3], vrf=1, mac=VM_MAC, ip="10.1.1.3", policy=True)
    vr.vif_add(5, "virtual", port=specs[5], vrf=2, mac="02:00:00:00:02:05", mode="l2", policy=True)
    program(vr)
    idle(vr, lcs)
    return vr, specs


def idle(vr, lcs):
    """Empty poll sets: the jobs feed the lcores, nothing polls the (no-rx) ports."""
    vr.dp.assign({lc: [] for lc in lcs})


def set_distribute(vr, specs, lcs, on):
    """The encap path's VM vif (3) with or without software distribution."""
    from benchmarks.bench_vrouter import VM_MAC
    vr.vif_add(3, "virtual", port=specs[3], vrf=1, mac=VM_MAC, ip="10.1.1.3", policy=True, distribute=on)
    idle(vr, lcs)


def per_lcore(res, hz):
    """The figures of one job's result."""
    p = max(res["pkts"], 1)
    share = res["cpu_ns"] / max(res["wall_ns"], 1)
    return {"lcore": res["lcore"], "mode": res["mode"], "pkts": res["pkts"],
            "mpps": round(res["pkts"] / max(res["wall_ns"], 1) * 1e3, 3),
            "cycles_per_pkt": round(res["cycles"] / p, 1),
            "cpu_share": round(share, 3),
            "busy_cycles_per_pkt": round(res["busy"] / max(res["busy_pkts"], 1), 1),
            "mpps_on_cpu": round(hz / max(res["busy"] / max(res["busy_pkts"], 1), 1) / 1e6, 3),
            "preempted": res["preempted"],
            "handed": res["handed"], "ring_full": res["ring_full"], "nombuf": res["nombuf"]}


def run_jobs(eal, jobs, duration, by_count=False, drains=False, feeders=True):
    """Launch and start `jobs`; the feeders stop by their count or after `duration`
    seconds, then the drains (if any) once their rings are empty; the results."""
    import time
    jobs.launch(eal)
    jobs.start()
    if feeders and by_count:
        jobs.wait_feeders(eal)
    elif feeders:
        time.sleep(duration)
        jobs.stop_feeders(eal)
    if drains:
        jobs.stop_drains(eal)
    return jobs.results()


def run_case(eal, pools, case, lcs, cfg, duration, hz):
    """One case on the lcores `lcs`: {"lcores": [per lcore], "total_mpps", ...}."""
    from benchmarks.bench_vrouter import FRAMES
    from benchmarks.vrouter_lcore_kernels import Jobs
    path, same, new, shared_tx = CASES[case]
    vif, frame, ports_off, _ = FRAMES[path]
    f = cfg["new_flows"] if new else 1 if case == "encap_oneflow" else cfg["flows"]
    n = len(lcs)
    vr, specs = make({lc: eal.socket_of(lc) for lc in lcs}, pools, flow_max=2 * (1 if same else n) * f + 4096,
                     shared_tx=shared_tx)
    try:
        workers = vr.fwd.workers

        def jobs_for(warm):
            j = Jobs()
            for k, lc in enumerate(lcs):
                j.feed(lc, workers[lc], pools[eal.socket_of(lc)], vif, frame, ports_off, f,
                       0 if same else k * f, scramble=not (warm or new), max_pkts=f if (warm or new) else 0)
            return j

        if not new:
            run_jobs(eal, jobs_for(True), 0, by_count=True)
        flows0 = vr.dp.flow_count()
        res = run_jobs(eal, jobs_for(False), duration, by_count=new)
        drops = {k: v for k, v in vr.dropstats().items() if v}
        flows = vr.dp.flow_count()
        own_txq = vr.dp.vif_lcore_txq(0)
    finally:
        vr.close()
        if "dev0" in specs:
            specs["dev0"].close()
    lc = [per_lcore(r, hz) for r in res]
    total = sum(r["pkts"] for r in res) / max(r["wall_ns"] for r in res) * 1e3
    out = {"case": case, "n": n, "lcores": lc, "total_mpps": round(total, 3),
           "total_mpps_on_cpu": round(sum(x["mpps_on_cpu"] for x in lc), 3), "drops": drops,
           "flow_entries": flows, "flows_made_timed": flows - flows0, "fabric_txq_per_lcore": own_txq}
    expect = 2 * f * (1 if same else n)
    if drops or flows != expect:
        out["error"] = f"drops {drops}, {flows} flow entries (expected {expect})"
    return out


def run_dist(eal, pools, lcs, cfg, duration, rounds, hz):
    """Software distribution against local processing, alternated, on one VRouter."""
    from benchmarks.bench_vrouter import FRAMES
    from benchmarks.vrouter_lcore_kernels import Jobs
    vif, frame, ports_off, _ = FRAMES["mplsoudp_encap"]
    f = cfg["flows"]
    a = lcs[0]
    vr, specs = make({lc: eal.socket_of(lc) for lc in lcs}, pools, flow_max=2 * f + 4096)
    workers = vr.fwd.workers
    pool = pools[eal.socket_of(a)]
    out = []
    try:
        j = Jobs()
        j.feed(a, workers[a], pool, vif, frame, ports_off, f, 0, scramble=False, max_pkts=f)
        run_jobs(eal, j, 0, by_count=True)
        for r in range(rounds):
            row = {}
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                set_distribute(vr, specs, lcs, on)
                d0 = sum(vr.dropstats().values())
                j = Jobs()
                j.feed(a, workers[a], pool, vif, frame, ports_off, f, 0, pace=True)
                if on:
                    for lc in lcs[1:]:
                        j.drain(lc, workers[lc])
                res = run_jobs(eal, j, duration, drains=on)
                row["dist" if on else "local"] = {"lcores": [per_lcore(x, hz) for x in res], "raw": res,
                                                  "drops": sum(vr.dropstats().values()) - d0}
            loc, dis = row["local"]["raw"][0], row["dist"]["raw"]
            feeder = dis[0]
            # Cycles on a cpu (busy cycles per packet, preempted bursts left out) times packets.
            cpp = lambda x: x["busy"] / max(x["busy_pkts"], 1)
            c_local = cpp(loc)
            spent = cpp(feeder) * feeder["pkts"] + sum(cpp(x) * x["pkts"] for x in dis[1:])
            handed = max(feeder["handed"], 1)
            row.update({"local_cycles_per_pkt": round(c_local, 1),
                        "feeder_cycles_per_pkt": round(cpp(feeder), 1),
                        "drain_cycles_per_pkt": [round(cpp(x), 1) for x in dis[1:]],
                        "dist_cycles_per_pkt": round(spent / feeder["pkts"], 1),
                        "handed_share": round(feeder["handed"] / feeder["pkts"], 3),
                        "ring_full_share": round(feeder["ring_full"] / feeder["pkts"], 3),
                        "ns_per_handed": round((spent - c_local * feeder["pkts"]) / handed / hz * 1e9, 1),
                        "ingress_ratio_cpu": round(c_local / cpp(feeder), 3),
                        "ingress_ratio": round((feeder["pkts"] / feeder["wall_ns"]) / (loc["pkts"] / loc["wall_ns"]), 3)})
            for side in ("local", "dist"):
                del row[side]["raw"]
            out.append(row)
    finally:
        vr.close()
    return out


def run_numa(eal, pools, lc, cfg, duration, rounds, hz):
    """One lcore, its jobs' pool on its own node against the other node, alternated."""
    from benchmarks.bench_vrouter import FRAMES
    from benchmarks.vrouter_lcore_kernels import Jobs
    node = eal.socket_of(lc)
    other = 1 - node
    f = cfg["flows"]
    vr, _ = make({lc: eal.socket_of(lc)}, pools, flow_max=2 * 2 * f + 4096)
    w = vr.fwd.workers[lc]
    out = []
    try:
        for k, path in enumerate(("mplsoudp_encap", "mplsoudp_decap")):
            vif, frame, ports_off, _ = FRAMES[path]
            j = Jobs()
            j.feed(lc, w, pools[node], vif, frame, ports_off, f, k * f, scramble=False, max_pkts=f)
            run_jobs(eal, j, 0, by_count=True)
        for r in range(rounds):
            for k, path in enumerate(("mplsoudp_encap", "mplsoudp_decap")):
                vif, frame, ports_off, _ = FRAMES[path]
                row = {"path": path}
                for pn in ((node, other) if r % 2 == 0 else (other, node)):
                    j = Jobs()
                    j.feed(lc, w, pools[pn], vif, frame, ports_off, f, k * f)
                    row["local" if pn == node else "remote"] = per_lcore(run_jobs(eal, j, duration)[0], hz)
                row["remote_over_local_cycles"] = round(row["remote"]["busy_cycles_per_pkt"]
                                                        / row["local"]["busy_cycles_per_pkt"], 3)
                out.append(row)
    finally:
        vr.close()
    return out


def bench(cfg, cases, rounds, duration, dist=True, numa=False, no_huge=False):
    """Every case on every lcore set, rounds alternating the order; the results document."""
    import pypdk.eal
    import pypdk.pmd
    from pypdk.eal.timer import tsc_hz
    from pypdk.mempool import PktMbufPool
    sets = cfg["sets"]
    doc = {"eal_lcores": cfg["lcores"], "sets": sets, "flows": cfg["flows"], "new_flows": cfg["new_flows"],
           "duration_s": duration, "rounds": []}
    with pypdk.eal.init(lcores=cfg["lcores"], no_huge=no_huge) as eal:
        hz = tsc_hz()
        doc["tsc_hz"] = hz
        doc["nodes"] = {lc: eal.socket_of(lc) for lc in eal.worker_lcores}
        nodes = sorted({eal.socket_of(lc) for lc in eal.worker_lcores})
        pools = {n: PktMbufPool(f"vrlc{n}", NB_MBUFS, socket_id=n) for n in nodes}
        try:
            for r in range(rounds):
                order = sorted(sets) if r % 2 == 0 else sorted(sets, reverse=True)
                rnd = {}
                for case in cases:
                    rnd[case] = {}
                    for n in order:
                        rnd[case][n] = run_case(eal, pools, case, sets[n], cfg, duration, hz)
                        _progress(rnd[case][n])
                    one = rnd[case][min(sets)]
                    for n in sets:
                        rnd[case][n]["ratio"] = round(rnd[case][n]["total_mpps"] / max(one["total_mpps"], 1e-9), 3)
                        rnd[case][n]["ratio_cpu"] = round(rnd[case][n]["total_mpps_on_cpu"]
                                                          / max(one["total_mpps_on_cpu"], 1e-9), 3)
                doc["rounds"].append(rnd)
            if dist:
                doc["dist_lcores"] = sets[2]
                doc["dist"] = run_dist(eal, pools, sets[2], cfg, duration, rounds, hz)
                for row in doc["dist"]:
                    print(f"dist: local {row['local_cycles_per_pkt']} cyc/pkt, feeder {row['feeder_cycles_per_pkt']}, "
                          f"drainers {row['drain_cycles_per_pkt']} per pkt drained, distributed "
                          f"{row['dist_cycles_per_pkt']} cyc/pkt, {row['handed_share']:.0%} handed "
                          f"({row['ring_full_share']:.0%} ring full), "
                          f"{row['ns_per_handed']} ns per handed packet", file=sys.stderr)
            if numa and len(nodes) > 1:
                doc["numa"] = run_numa(eal, pools, cfg["numa_lcore"], cfg, duration, rounds, hz)
                for row in doc["numa"]:
                    print(f"numa {row['path']}: remote/local cycles {row['remote_over_local_cycles']}",
                          file=sys.stderr)
        finally:
            pypdk.pmd.close_all()
            for p in pools.values():
                p.close()
    doc["summary"] = summary(doc)
    return doc


def _progress(res):
    lcs = ", ".join(f"lc{x['lcore']} {x['mpps']:.2f} Mpps {x['cycles_per_pkt']:.0f} cyc/pkt "
                    f"cpu {x['cpu_share']:.2f} ({x['busy_cycles_per_pkt']:.0f} busy)" for x in res["lcores"])
    print(f"{res['case']} x{res['n']}: total {res['total_mpps']:.2f} Mpps ({lcs})"
          + (f" ERROR {res['error']}" if "error" in res else ""), file=sys.stderr)


def _median(xs):
    return round(statistics.median(xs), 3)


def summary(doc):
    """Medians over the rounds, per case and lcore count."""
    out = {}
    for case in doc["rounds"][0]:
        out[case] = {}
        for n in doc["rounds"][0][case]:
            rs = [rnd[case][n] for rnd in doc["rounds"]]
            out[case][n] = {
                "total_mpps": _median(r["total_mpps"] for r in rs),
                "ratio": _median(r["ratio"] for r in rs),
                "ratio_cpu": _median(r["ratio_cpu"] for r in rs),
                "busy_cycles_per_pkt": [_median(r["lcores"][k]["busy_cycles_per_pkt"] for r in rs)
                                       for k in range(len(rs[0]["lcores"]))],
                "per_lcore_mpps": [_median(r["lcores"][k]["mpps"] for r in rs)
                                   for k in range(len(rs[0]["lcores"]))],
                "cycles_per_pkt": [_median(r["lcores"][k]["cycles_per_pkt"] for r in rs)
                                   for k in range(len(rs[0]["lcores"]))],
                "cpu_share": [_median(r["lcores"][k]["cpu_share"] for r in rs)
                              for k in range(len(rs[0]["lcores"]))],
                "errors": [r["error"] for r in rs if "error" in r]}
    if doc.get("dist"):
        out["dist"] = {k: _median(r[k] for r in doc["dist"])
                       for k in ("local_cycles_per_pkt", "feeder_cycles_per_pkt", "dist_cycles_per_pkt", "handed_share",
                                 "ring_full_share", "ns_per_handed", "ingress_ratio", "ingress_ratio_cpu")}
    if doc.get("numa"):
        out["numa"] = {p: _median(r["remote_over_local_cycles"] for r in doc["numa"] if r["path"] == p)
                       for p in ("mplsoudp_encap", "mplsoudp_decap")}
    return out


def print_table(doc, file=sys.stdout):
    s = doc["summary"]
    print(f"lcores {doc['eal_lcores']}, sets {doc['sets']}, {len(doc['rounds'])} rounds x "
          f"{doc['duration_s']} s, flows per lcore {doc['flows']}, new flows per lcore {doc['new_flows']}, "
          f"TSC {doc['tsc_hz'] / 1e9:.2f} GHz", file=file)
    print(f"{'case':16} {'n':>2} {'total Mpps':>10} {'ratio':>6} {'cpu ratio':>9}  "
          "per lcore: Mpps / cycles per pkt / cpu share / busy cycles per pkt", file=file)
    for case, by_n in s.items():
        if case in ("dist", "numa"):
            continue
        for n, v in by_n.items():
            per = "  ".join(f"{m:.2f}/{c:.0f}/{sh:.2f}/{cc:.0f}" for m, c, sh, cc in
                            zip(v["per_lcore_mpps"], v["cycles_per_pkt"], v["cpu_share"], v["busy_cycles_per_pkt"]))
            print(f"{case:16} {n:>2} {v['total_mpps']:>10.2f} {v['ratio']:>6.2f} {v['ratio_cpu']:>9.2f}  {per}"
                  + (f"  ERRORS {v['errors']}" if v["errors"] else ""), file=file)
    if "dist" in s:
        d = s["dist"]
        print(f"distribution (encap, lcores {doc['dist_lcores']}): local {d['local_cycles_per_pkt']} cycles/pkt, "
              f"feeder {d['feeder_cycles_per_pkt']} cycles/pkt in, "
              f"distributed {d['dist_cycles_per_pkt']} cycles/pkt in, {d['handed_share']:.0%} handed over "
              f"({d['ring_full_share']:.0%} ring full), {d['ns_per_handed']} ns per packet handed over, "
              f"ingress rate x{d['ingress_ratio']} (per cpu-second x{d['ingress_ratio_cpu']})", file=file)
    if "numa" in s:
        print("cross-node pool, cycles per packet remote/local: "
              + ", ".join(f"{p} {v}" for p, v in s["numa"].items()), file=file)


def guest_main(args):
    """Boot the 6-vCPU two-node guest once and run this module inside it."""
    import shutil
    from pypdk.testing import vm
    work = tempfile.mkdtemp(dir="/var/tmp", prefix="pdbl")
    try:
        with vm.Guest(cpus=6, mem=1024, numa=vm.numa_nodes(["0-2", "3-5"], 512), rw=[work]) as g:
            g.run("python3 -m pypdk.eal.hugepages --reserve 128M --node 0 && "
                  "python3 -m pypdk.eal.hugepages --reserve 128M --node 1", cwd=ROOT, check=True)
            out = os.path.join(work, "out.json")
            cmd = (f"python3 -m benchmarks.bench_vrouter_lcores --inside-guest --rounds {args.rounds} "
                   f"--duration {args.duration} --cases {','.join(args.cases)} --out {out}"
                   + (" --no-dist" if args.no_dist else "")
                   + (f" --flows {args.flows}" if args.flows else "")
                   + (f" --new-flows {args.new_flows}" if args.new_flows else ""))
            r = g.run(cmd, cwd=ROOT, timeout=3600)
            sys.stderr.write(r.out[-6000:])
            if r.rc != 0:
                raise SystemExit(f"guest run failed (rc {r.rc})")
            with open(out) as f:
                return json.load(f)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_vrouter_lcores", description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=None, help="seconds per timed run (1 here, 1.5 in the guest)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--flows", type=int, help="flows per lcore, a power of two (16384 here, 4096 in the guest)")
    ap.add_argument("--new-flows", type=int, help="packets (new flows) per lcore of encap_newflows")
    ap.add_argument("--guest", action="store_true", help="run in a 6-vCPU two-node TCG guest")
    ap.add_argument("--inside-guest", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-dist", action="store_true", help="leave out the software distribution runs")
    ap.add_argument("--no-huge", action="store_true", help="ordinary pages (here only)")
    ap.add_argument("--json", action="store_true", help="print the whole document as JSON")
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    bad = [c for c in args.cases if c not in CASES]
    if bad:
        ap.error(f"unknown case {bad[0]!r}; the cases are {', '.join(CASES)}")
    if args.duration is None:
        args.duration = 1.5 if (args.guest or args.inside_guest) else 1.0
    if args.flows is not None and (args.flows < 2 or args.flows & (args.flows - 1)):
        ap.error(f"--flows {args.flows} is not a power of two of at least 2; give e.g. 4096")
    if args.new_flows is not None and args.new_flows < 1:
        ap.error(f"--new-flows {args.new_flows} is below 1")
    if args.guest:
        doc = guest_main(args)
    else:
        cfg = dict(GUEST if args.inside_guest else HOST)
        cfg["flows"] = args.flows or cfg["flows"]
        cfg["new_flows"] = args.new_flows or cfg["new_flows"]
        doc = bench(cfg, args.cases, args.rounds, args.duration, dist=not args.no_dist,
                    numa=args.inside_guest, no_huge=args.no_huge)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f)
    if args.json:
        print(json.dumps(doc))
    else:
        print_table(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
