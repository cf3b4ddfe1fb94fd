"""The vRouter on many lcores and two NUMA nodes, in a 6-vCPU guest (cpus 0-2 node 0, 3-5 node 1).

One boot for the module (TCG: behaviour only, runs kept short; the lcores
sleep when idle, `--idle-sleep`, so the guest's vCPUs leave this host's two
cpus to the work). The scenarios of lcore_scenarios.py with
`pypdk-run apps/vrouter --lcores 2-5` (main lcore 2 on node 0, forwarding
lcores 3-5 on node 1):

- it comes up empty, is programmed with pypdk-vrouter, forwards between
  pcap vifs on all three forwarding lcores and stops clean on SIGTERM; its
  one pool and its tables (flows, routes, bridge: hugepages) are on node 1
  in /proc/PID/numa_maps, as are its lcores (the main lcore is on node 0);
- the race, churn and software distribution scenarios on four forwarding
  lcores that really run at once (`--lcores 1-5`: lcore 2 on node 0, 3-5 on
  node 1).

And `--lcores 1-4` (forwarding lcores 2 on node 0, 3 and 4 on node 1): a
pool per node, each on its node in numa_maps and --stats-json; the tables on
node 1, the node of most forwarding lcores.
"""
import json
import os
import shutil
import tempfile

import pytest

from pypdk.testing import vm
from tests.apps.vrouter import lcore_scenarios as sc

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def place():
    work = tempfile.mkdtemp(dir="/var/tmp", prefix="pdlc")
    try:
        with vm.Guest(cpus=6, mem=1024, numa=vm.numa_nodes(["0-2", "3-5"], 512), rw=[work],
                      boot_timeout=600) as g:
            r = g.run("python3 -m pypdk.eal.hugepages --reserve 96M --node 0 && "
                      "python3 -m pypdk.eal.hugepages --reserve 96M --node 1 && "
                      "cat /sys/devices/system/node/node1/cpulist", cwd=sc.ROOT, check=True)
            assert r.out.strip().splitlines()[-1] == "3-5", r.out
            yield sc.GuestPlace(g, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_lcores_2_5_empty_programmed_live_forwards_on_three_lcores(place):
    doc, rxq, pools = sc.live_on_three_lcores(place, "lc25")
    assert all(lc["node"] == 1 for lc in rxq["lcores"])
    assert pools == {"vrouter_pool1": {1}, "tables": {1}}, pools
    assert {lc: e["node"] for lc, e in doc["eal"]["lcores"].items()} == {"2": 0, "3": 1, "4": 1, "5": 1}
    assert doc["app"]["tables_node"] == 1 and doc["eal"]["tables"]["node"] == 1
    assert doc["eal"]["memory"]["1"]["tables_mb"] >= 16 and doc["eal"]["memory"]["0"]["tables_mb"] == 0
    assert {k: v["node"] for k, v in doc["app"]["pools"].items()} == {"vrouter_pool1": 1}


def test_lcores_on_two_nodes_get_a_pool_on_each_node(place):
    prefix = "lc14"
    place.lcores, place.workers = "1-4", (2, 3, 4)
    try:
        job, stats = sc.start(place, prefix)
        plan = [["op", "vif_add", {"id": v, "type": "virtual", "port": f"net_ring{v}", "vrf": 1,
                                   "mac": sc.in_mac(v)}] for v in (3, 4, 5)]
        res = sc.drive(place, prefix, plan + [["op", "rxq_show", {}]])
        pools = sc.pool_nodes(place, place.pid(job), prefix)
        doc, _ = sc.stop(place, job, stats)
    finally:
        place.lcores, place.workers = sc.GuestPlace.lcores, sc.GuestPlace.workers
    assert {lc["lcore"]: lc["node"] for lc in res[-1]["lcores"]} == {2: 0, 3: 1, 4: 1}
    assert pools == {"vrouter_pool0": {0}, "vrouter_pool1": {1}, "tables": {1}}, pools
    assert doc["app"]["tables_node"] == 1 and doc["eal"]["memory"]["0"]["tables_mb"] == 0
    assert {k: v["node"] for k, v in doc["app"]["pools"].items()} == {"vrouter_pool0": 0, "vrouter_pool1": 1}
    assert doc["eal"]["memzones"]["vrouter_pool0"]["node"] == 0
    assert doc["eal"]["memzones"]["vrouter_pool1"]["node"] == 1
    assert {lc: e["node"] for lc, e in doc["eal"]["lcores"].items()} == {"1": 0, "2": 0, "3": 1, "4": 1}


def four_lcores(place):
    """The race scenarios on four forwarding lcores: `--lcores 1-5` (lcore 2 on node 0, 3-5 on node 1)."""
    place.lcores, place.workers = "1-5", (2, 3, 4, 5)
    return place


@pytest.fixture
def place4(place):
    try:
        yield four_lcores(place)
    finally:
        place.lcores, place.workers = sc.GuestPlace.lcores, sc.GuestPlace.workers


def test_same_five_tuples_from_four_lcores_become_one_flow_pair_each(place4):
    doc = sc.race_flows(place4, "lcrace")
    assert set(doc["lcores"]) == {"2", "3", "4", "5"}


def test_changes_while_four_lcores_forward_lose_nothing(place4):
    sc.churn(place4, "lcchurn")


def test_software_distribution_spreads_one_queue_over_four_lcores(place4):
    sc.distribution(place4, "lcdist")
