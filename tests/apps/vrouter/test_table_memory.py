"""The vRouter's tables (flows and their hash, the VRFs' LPMs, the bridge) in
the EAL's hugepages on the forwarding lcores' node, as `pypdk-run apps/vrouter`
runs: /proc/PID/numa_maps shows them huge and on the node, --stats-json counts
them per node, --no-huge keeps them on ordinary pages, a shortage or a
too-small -m is one line (exit 2)."""
import json
import os
import re
import subprocess
import sys
import time

from apps.vrouter.app import table_node
from pypdk.testing import netns as nsh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

CONFIG = '''
[vrouter]
mac = "00:00:5e:00:01:00"
underlay_ip = "192.168.50.1"
{extra}

[[vif]]
id = 3
type = "virtual"
port = "net_null3"
vrf = 1
mac = "02:00:00:00:00:03"
ip = "10.1.1.3"

[[nh]]
id = 10
type = "encap"
vif = 3

[[route]]
vrf = 1
prefix = "10.1.1.3/32"
nh = 10

[[route]]
vrf = 2
prefix = "172.16.0.0/12"
nh = 10
'''


def argv(tmp_path, *runner, extra=""):
    cfg = tmp_path / "vr.toml"
    cfg.write_text(CONFIG.format(extra=extra))
    return [sys.executable, "-m", "pypdk.cli", "apps/vrouter", *runner, "--file-prefix", nsh.unique_name("vrtm"),
            "--", "--config", str(cfg), "--ctl-socket", str(tmp_path / "ctl.sock"), "--no-agent"]


def table_maps(pid):
    """numa_maps lines of the process's anonymous hugetlb mappings: its tables (zones are memfds)."""
    with open(f"/proc/{pid}/numa_maps") as f:
        return [line for line in f if "file=/anon_hugepage" in line]


def run_and_look(tmp_path, *runner):
    """Start the vRouter, read its numa_maps once it serves, stop it; (table lines, --stats-json)."""
    stats = tmp_path / "s.json"
    p = subprocess.Popen(argv(tmp_path, *runner, "--duration", "2", "--stats-json", str(stats)),
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while not (tmp_path / "ctl.sock").exists():
            assert p.poll() is None and time.monotonic() < end, p.stderr.read() if p.poll() is not None else ""
            time.sleep(0.05)
        lines = table_maps(p.pid)
    finally:
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return lines, json.loads(stats.read_text())


def test_the_node_of_most_forwarding_lcores_else_the_main_lcores():
    assert table_node({1: 0, 2: 1, 3: 1}, 0) == 1
    assert table_node({1: 0, 2: 0, 3: 1}, 1) == 0
    assert table_node({1: 0, 2: 1}, 1) == 1           # a tie: the main lcore's node
    assert table_node({1: 0, 2: 1}, 0) == 0
    assert table_node({}, 1) == 1


def test_tables_on_hugepages_on_the_forwarding_node(tmp_path):
    lines, doc = run_and_look(tmp_path, "-l", "0-1")
    assert doc["app"]["tables_node"] == 0
    assert doc["eal"]["tables"] == {"hugepages": True, "node": 0, "page_size": 2 << 20, "min_bytes": 1 << 20}
    mem = doc["eal"]["memory"]["0"]
    # in 2 MiB pages: flows 4 MiB, their hash 4 + 2 (1 MiB of buckets), the bridge 2 + 2, and
    # a tbl24 chunk for each VRF's routes (their tbl8s are 64 KiB: ordinary pages)
    assert mem["tables"] == 7 and mem["tables_mb"] == 18.0, mem
    assert lines and all(" huge " in ln and "bind:0" in ln and "kernelpagesize_kB=2048" in ln for ln in lines)
    pages = sum(int(n) for ln in lines for n in re.findall(r"\bN\d+=(\d+)", ln))
    assert all(re.findall(r"\bN(\d+)=", ln) == ["0"] for ln in lines)
    assert pages * 2 == mem["tables_mb"]


def test_no_huge_keeps_the_tables_on_ordinary_pages(tmp_path):
    lines, doc = run_and_look(tmp_path, "-l", "0-1", "--no-huge")
    assert lines == []
    assert doc["eal"]["tables"]["hugepages"] is False and doc["eal"]["memory"]["0"]["tables_mb"] == 0


def test_hugepage_shortage_for_the_tables_is_one_line(tmp_path):
    # 16M flows: 1 GiB of entries, 1 GiB of hash records: more than the pool
    r = subprocess.run(argv(tmp_path, "-l", "0-1", extra="flow_max = 16777216"), cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "hugepages on node 0 for the vRouter's tables" in r.stderr
    assert "python -m pypdk.eal.hugepages --reserve" in r.stderr and "--no-huge" in r.stderr
    assert not (tmp_path / "ctl.sock").exists()


def test_tables_count_against_m(tmp_path):
    # the pool takes 36 of the 48 MB, the tables want 16 more
    r = subprocess.run(argv(tmp_path, "-l", "0-1", "-m", "48"), cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "table memory on node 0" in r.stderr and "-m/--socket-mem" in r.stderr
