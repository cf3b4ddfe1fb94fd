"""Scenarios of the vRouter on three or more forwarding lcores, run on this host and in a guest.

Each scenario starts `pypdk-run apps/vrouter` in a `Place` (`HostPlace`: a
subprocess here, three forwarding lcores sharing cpu 1 through an lcore
group `(1-3)@1`; `GuestPlace`: a 6-vCPU two-node QEMU guest, `--lcores
2-5`, or four forwarding lcores with `--lcores 1-5`), with one input vif
per forwarding lcore (`inputs(place)`), programs it (with `pypdk-vrouter`,
or through `ctl_driver` for many operations in one Python start-up), stops it with SIGTERM and checks its
--stats-json: the counters of every forwarding lcore, the vifs' totals,
the flows. `--idle-sleep` keeps idle lcores from spinning (a guest's vCPUs
share this host's two cpus).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from scapy.all import Ether, IP, UDP, Raw, wrpcap, rdpcap

from tests.apps.vrouter.harness import VR_MAC

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_INPUTS = (3, 4, 5, 10, 11, 12)      # input vif ids, one per forwarding lcore
OUT_VIF, OUT_MAC, OUT_IP = 6, "02:00:00:00:00:06", "10.1.1.6"


def in_mac(v):
    return f"02:00:00:00:00:{v:02x}"


def inputs(place):
    """The input vifs of a scenario: one per forwarding lcore."""
    assert 3 <= len(place.workers) <= len(_INPUTS), place.workers
    return _INPUTS[:len(place.workers)]


class HostPlace:
    """Runs here: forwarding lcores 1-3 on cpu 1, main lcore 0, ordinary pages."""
    lcores, workers, eal_args = "0,(1-3)@1", (1, 2, 3), "--no-huge"
    python = sys.executable

    def __init__(self, work):
        self.work = work

    def run(self, cmd, timeout=300):
        r = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PYTHONPATH": ROOT})
        return r.returncode, r.stdout + r.stderr

    def spawn(self, cmd):
        return subprocess.Popen(f"exec {cmd}", shell=True, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def pid(self, job):
        return job.pid

    def stop(self, job):
        job.send_signal(signal.SIGTERM)
        out, _ = job.communicate(timeout=60)
        return job.returncode, out

    def alive(self, job):
        return job.poll() is None


class GuestPlace(HostPlace):
    """Runs in a vm.Guest with cpus 0-2 on node 0 and 3-5 on node 1."""
    lcores, workers, eal_args = "2-5", (3, 4, 5), "--socket-mem 64,64"
    python = "python3"

    def __init__(self, guest, work):
        self.g, self.work = guest, work

    def run(self, cmd, timeout=600):
        r = self.g.run(cmd, cwd=ROOT, timeout=timeout)
        return r.rc, r.out

    def spawn(self, cmd):
        return self.g.spawn(f"exec {cmd}", cwd=ROOT)

    def pid(self, job):
        return job.pid()

    def stop(self, job):
        job.signal()
        res = job.wait(240)
        return res.rc, res.out

    def alive(self, job):
        return not job.done()


def start(place, prefix, app_args=""):
    stats = os.path.join(place.work, f"{prefix}.json")
    job = place.spawn(f"{place.python} -m pypdk.cli apps/vrouter --lcores '{place.lcores}' {place.eal_args} "
                      f"--file-prefix {prefix} --stats-json {stats} -- --idle-sleep 100 {app_args}")
    return job, stats


def drive(place, prefix, plan):
    """Run a ctl_driver plan against the vRouter of `prefix`; the "op" results."""
    path = os.path.join(place.work, f"{prefix}-plan{time.monotonic_ns()}.json")
    with open(path, "w") as f:
        json.dump(plan, f)
    rc, out = place.run(f"{place.python} -m tests.apps.vrouter.ctl_driver /run/pypdk/{prefix}/vrouter.sock {path}")
    assert rc == 0, out[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def stop(place, job, stats):
    rc, out = place.stop(job)
    assert rc == 0, out[-3000:]
    with open(stats) as f:
        return json.load(f), out


def lcore_sum(doc, key):
    return sum(c[key] for c in doc["lcores"].values())


def pool_nodes(place, pid, prefix):
    """{pool: nodes its pages are on} from /proc/PID/numa_maps, and under "tables"
    the nodes of the tables on hugepages (anonymous hugetlb mappings, `huge`)."""
    rc, out = place.run(f"cat /proc/{pid}/numa_maps")
    found = {}
    for line in out.splitlines():
        m = re.search(r"file=/memfd:%s_(vrouter_pool\d+)" % re.escape(prefix), line)
        name = m.group(1) if m else ("tables" if "file=/anon_hugepage" in line and " huge " in line else None)
        if name:
            found.setdefault(name, set()).update(int(n) for n in re.findall(r"\bN(\d+)=", line))
    return found


def frames(v, n, src=None, sport0=1000):
    return [Ether(src=in_mac(v), dst=VR_MAC) / IP(src=src or f"10.1.1.{v}", dst=OUT_IP, ttl=30) /
            UDP(sport=sport0 + i, dport=2000) / Raw(b"y" * 18) for i in range(n)]


def out_vif_ops(port):
    return [["op", "vif_add", {"id": OUT_VIF, "type": "virtual", "port": port, "vrf": 1, "mac": OUT_MAC,
                               "ip": OUT_IP}],
            ["op", "nh_add", {"id": 16, "type": "encap", "vif": OUT_VIF}],
            ["op", "route_add", {"vrf": 1, "prefix": f"{OUT_IP}/32", "nh": 16}]]


# ---- the scenarios ---------------------------------------------------------------------

def live_on_three_lcores(place, prefix, n=40):
    """Empty at start, programmed with pypdk-vrouter: a pcap input on each
    forwarding lcore, into one pcap output (one tx queue: the queue lock)."""
    ins = inputs(place)
    w = place.work
    for v in ins:
        wrpcap(os.path.join(w, f"{prefix}-in{v}.pcap"), frames(v, n))
    out_pcap = os.path.join(w, f"{prefix}-out.pcap")
    job, stats = start(place, prefix)
    cli = f"{place.python} -m apps.vrouter.ctl.cli --file-prefix {prefix}"
    drive(place, prefix, [["op", "vif_list", {}]])          # up
    cmds = [f"{cli} vif --add {OUT_VIF} --type virtual --port net_pcap{OUT_VIF},tx_pcap={out_pcap} --vrf 1 "
            f"--mac {OUT_MAC} --ip {OUT_IP}",
            f"{cli} nh --add 16 --type encap --vif {OUT_VIF}",
            f"{cli} rt --add --vrf 1 --prefix {OUT_IP}/32 --nh 16"]
    cmds += [f"{cli} vif --add {v} --type virtual --port net_pcap{v},rx_pcap={w}/{prefix}-in{v}.pcap --vrf 1 "
             f"--mac {in_mac(v)} --ip 10.1.1.{v}" for v in ins]
    rc, out = place.run(" && ".join(f"{c} >/dev/null" for c in cmds) + f" && {cli} --json rxq")
    assert rc == 0, out[-3000:]
    rxq = json.loads(out[out.index("{"):])
    drive(place, prefix, [["wait_tx", OUT_VIF, len(ins) * n, 240]])
    pools = pool_nodes(place, place.pid(job), prefix)
    doc, _ = stop(place, job, stats)
    got = rdpcap(out_pcap)
    assert len(got) == len(ins) * n and all(p[Ether].dst == OUT_MAC and p[IP].ttl == 29 for p in got)
    per = {lc["lcore"]: [q["vif"] for q in lc["rxqs"]] for lc in rxq["lcores"]}
    assert sorted(per) == list(place.workers)
    assert all(any(v in ins for v in vifs) for vifs in per.values()), per      # an input each
    assert set(doc["lcores"]) == {str(lc) for lc in place.workers}
    assert all(doc["lcores"][str(lc)]["rx"] == n for lc in place.workers), doc["lcores"]
    assert lcore_sum(doc, "rx") == sum(doc["app"]["vifs"][str(v)]["rx_packets"] for v in ins) == len(ins) * n
    assert lcore_sum(doc, "tx") == doc["app"]["vifs"][str(OUT_VIF)]["tx_packets"] == len(ins) * n
    return doc, rxq, pools


RACE_VIF = '''
[[vif]]
id = {v}
type = "virtual"
port = "net_pcap{v},rx_pcap={rx}"
vrf = 1
mac = "{mac}"
ip = "10.1.1.{v}"
policy = true
'''


def race_flows(place, prefix, flows=64, rounds=4):
    """A policy vif per forwarding lcore, started together from --config, send the
    same 5-tuples at once: each becomes one flow pair, created once."""
    ins = inputs(place)
    w = place.work
    cfg = [f'[vrouter]\nmac = "{VR_MAC}"\nunderlay_ip = "192.168.50.1"\n',
           f'[[vif]]\nid = {OUT_VIF}\ntype = "virtual"\nport = "net_null{OUT_VIF},no-rx=1"\nvrf = 1\n'
           f'mac = "{OUT_MAC}"\nip = "{OUT_IP}"\n',
           f'[[nh]]\nid = 16\ntype = "encap"\nvif = {OUT_VIF}\n',
           f'[[route]]\nvrf = 1\nprefix = "{OUT_IP}/32"\nnh = 16\n']
    for v in ins:
        rx = os.path.join(w, f"{prefix}-race{v}.pcap")
        wrpcap(rx, [p for _ in range(rounds) for p in frames(v, flows, src="10.1.1.9", sport0=3000)])
        cfg.append(RACE_VIF.format(v=v, rx=rx, mac=in_mac(v)))
    path = os.path.join(w, f"{prefix}-race.toml")
    with open(path, "w") as f:
        f.write("".join(cfg))
    job, stats = start(place, prefix, f"--config {path} --flow-timeout 600")
    total = len(ins) * flows * rounds
    (fl,) = drive(place, prefix, [["wait_tx", OUT_VIF, total, 240], ["op", "flow_list", {}]])
    doc, _ = stop(place, job, stats)
    fwd = [f for f in fl if f["src"] == "10.1.1.9"]
    rev = [f for f in fl if f["dst"] == "10.1.1.9"]
    assert len(fl) == 2 * flows and len(fwd) == len(rev) == flows, fl[:4]
    assert sorted(f["sport"] for f in fwd) == list(range(3000, 3000 + flows))
    assert all(f["rflow"] is not None for f in fl)
    assert sum(f["packets"] for f in fwd) == total
    assert lcore_sum(doc, "flows_created") == flows
    assert all(doc["lcores"][str(lc)]["rx"] == flows * rounds for lc in place.workers), doc["lcores"]
    assert lcore_sum(doc, "tx") == doc["app"]["vifs"][str(OUT_VIF)]["tx_packets"] == total
    return doc


def churn(place, prefix, rounds=6):
    """Routes, nexthops and vifs change while the lcores forward (inputs replayed
    forever, outputs on net_null with a tx queue per lcore): nothing is lost."""
    ins = inputs(place)
    w = place.work
    for v in ins:
        wrpcap(os.path.join(w, f"{prefix}-churn{v}.pcap"), frames(v, 16))
    job, stats = start(place, prefix)
    plan = out_vif_ops(f"net_null{OUT_VIF},no-rx=1") + [
        ["op", "vif_add", {"id": 7, "type": "virtual", "port": "net_null7,no-rx=1", "vrf": 1, "mac": "02:00:00:00:00:07"}],
        ["op", "nh_add", {"id": 17, "type": "encap", "vif": 7}]]
    plan += [["op", "vif_add", {"id": v, "type": "virtual", "vrf": 1, "mac": in_mac(v), "ip": f"10.1.1.{v}",
                                "port": f"net_pcap{v},rx_pcap={w}/{prefix}-churn{v}.pcap,infinite_rx=1"}]
             for v in ins]
    plan += [["repeat", rounds, [
        ["op", "nh_add", {"id": 16, "type": "encap", "vif": 7}],           # the route's nexthop moves
        ["sleep", 0.05],
        ["op", "nh_add", {"id": 16, "type": "encap", "vif": OUT_VIF}],
        ["op", "route_add", {"vrf": 1, "prefix": "10.1.1.99/32", "nh": 17}],   # a route comes and goes
        ["op", "route_del", {"vrf": 1, "prefix": "10.1.1.99/32"}],
        ["op", "vif_add", {"id": 8, "type": "virtual", "port": "net_null8,no-rx=1", "vrf": 2, "mac": "02:00:00:00:00:08"}],
        ["op", "vif_del", {"id": 8}],        # its queue leaves the lcores before its port closes
        ["op", "vif_add", {"id": 7, "type": "virtual", "vrf": 1, "mac": "02:00:00:00:00:17"}],   # changed in place
        ["sleep", 0.05]]],
        ["op", "vif_get", {"id": 7}], ["op", "vif_get", {"id": OUT_VIF}], ["op", "rxq_show", {}]]
    res = drive(place, prefix, plan)
    rxq = res[-1]
    doc, out = stop(place, job, stats)
    vifs = doc["app"]["vifs"]
    rx_in = sum(vifs[str(v)]["rx_packets"] for v in ins)
    tx_out = vifs[str(OUT_VIF)]["tx_packets"] + vifs["7"]["tx_packets"]
    assert rx_in > 0 and vifs[str(OUT_VIF)]["tx_packets"] > 0 and vifs["7"]["tx_packets"] > 0, vifs
    assert {k: v for k, v in doc["app"]["dropstats"].items() if v} == {}, out[-2000:]
    assert tx_out == rx_in
    assert lcore_sum(doc, "rx") == rx_in and lcore_sum(doc, "tx") == tx_out
    assert all(doc["lcores"][str(lc)]["rx"] > 0 for lc in place.workers), doc["lcores"]
    assert len(rxq["lcores"]) == len(place.workers)
    return doc


def distribution(place, prefix, flows=96):
    """One input vif with `distribute` (one queue, as a SingleQ VM or MPLSoGRE): its
    packets are hashed by flow over all the lcores and all come out."""
    w = place.work
    wrpcap(os.path.join(w, f"{prefix}-dist.pcap"), frames(3, flows))
    out_pcap = os.path.join(w, f"{prefix}-distout.pcap")
    job, stats = start(place, prefix)
    plan = out_vif_ops(f"net_pcap{OUT_VIF},tx_pcap={out_pcap}") + [
        ["op", "vif_add", {"id": 3, "type": "virtual", "vrf": 1, "mac": in_mac(3), "ip": "10.1.1.3",
                           "distribute": True, "port": f"net_pcap3,rx_pcap={w}/{prefix}-dist.pcap"}],
        ["wait_tx", OUT_VIF, flows, 240], ["op", "vif_get", {"id": 3}]]
    res = drive(place, prefix, plan)
    assert res[-1]["distribute"] is True
    doc, _ = stop(place, job, stats)
    assert len(rdpcap(out_pcap)) == flows
    lcs = doc["lcores"]
    assert lcore_sum(doc, "rx") == flows                     # one lcore polled the queue
    assert lcore_sum(doc, "distributed") > 0 and lcore_sum(doc, "dist_ring_full") == 0
    assert all(lcs[str(lc)]["tx"] > 0 for lc in place.workers), lcs    # every lcore forwarded some
    assert lcore_sum(doc, "tx") == flows
    assert doc["app"]["vifs"]["3"]["rx_packets"] == flows
    return doc
