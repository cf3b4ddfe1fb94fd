"""The rx queue → lcore map (apps/vrouter/lcores.py), on this host.

The dealing rules against a stand-in datapath and ports that claim a NUMA
node (this host has one): queues go to the lcores of the port's node
first, least loaded first; each queue's mbufs come from the pool of its
lcore's node; a queue only an lcore of another node can poll is a one-line
warning; a rebalance by measured load moves queues only within their node.
Then the real thing with one forwarding lcore: `pypdk-vrouter rxq` shows
the map with busy shares, `rxq --rebalance` answers, --stats-json has each
lcore's node and each pool's node.
"""
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from apps.vrouter.lcores import Lcores
from pypdk.testing import netns as nsh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class FakeWorker:
    def __init__(self, lc, txq):
        self.lcore, self.txq = lc, txq


class FakeDp:
    def __init__(self):
        self.workers, self.sets, self.cycles = [], None, {}

    def add_worker(self, lc, burst, yield_after, sleep_us=0):
        w = FakeWorker(lc, len(self.workers))
        self.workers.append(w)
        return w

    def assign(self, sets):
        self.sets = sets
        return sets

    def rxq_cycles(self):
        return dict(self.cycles)


class FakeDev:
    max_tx_queues = 16

    def __init__(self, name, node, nb_rxq):
        self.name, self.socket_id, self.nb_rx_queues = name, node, nb_rxq
        self.rx, self.nb_tx = {}, None

    def configure(self, nrx, ntx):
        self.nb_tx = ntx

    def rx_queue_setup(self, q, nb_desc, pool):
        self.rx[q] = pool

    def tx_queue_setup(self, q, nb_desc):
        pass


def make(nodes):
    dp = FakeDp()
    return dp, Lcores(dp, nodes, {n: f"pool{n}" for n in set(nodes.values())}, tsc_hz=1.0)


def add(lcs, vifs, vid, dev):
    lcs.setup_port(dev, dev.nb_rx_queues, 1)
    vifs[vid] = {"dev": dev}
    return lcs.deal(vifs)


def test_queues_go_to_the_ports_node_least_loaded_first_pool_of_that_node():
    dp, lcs = make({1: 0, 2: 0, 3: 1, 4: 1})
    vifs = {}
    n1 = FakeDev("nic1", 1, 4)
    sets = add(lcs, vifs, 0, n1)
    assert sets == {1: [], 2: [], 3: [(0, 0), (0, 2)], 4: [(0, 1), (0, 3)]}
    assert set(n1.rx.values()) == {"pool1"} and n1.nb_tx == 4     # a tx queue per lcore
    sw = FakeDev("net_ring5", -1, 2)                                # no node: any lcore, least loaded
    sets = add(lcs, vifs, 5, sw)
    assert sets[1] == [(5, 0)] and sets[2] == [(5, 1)] and set(sw.rx.values()) == {"pool0"}
    assert lcs.warnings == []


def test_a_driver_of_queue_pairs_keeps_its_one_tx_queue():
    from pypdk.errors import UsageError

    class PairDev(FakeDev):
        def configure(self, nrx, ntx):
            if nrx != ntx:
                raise UsageError("needs as many rx as tx queues", "configure queue pairs")
            self.nb_tx = ntx

    dp, lcs = make({1: 0, 2: 0, 3: 0})
    dev = PairDev("net_ring0", -1, 1)
    add(lcs, {}, 0, dev)
    assert dev.nb_tx == 1


def test_a_port_on_a_node_without_lcores_is_a_one_line_warning(caplog):
    dp, lcs = make({1: 0, 2: 0})
    with caplog.at_level(logging.WARNING, logger="pypdk.vrouter"):
        add(lcs, {}, 0, FakeDev("nic1", 1, 1))
    assert lcs.warnings == ["lcore 1 (node 0) polls nic1 rx queue 0 on node 1: cross-node memory access; "
                            "give the vRouter an lcore on node 1"]
    assert len(caplog.records) == 1


def test_rebalance_by_load_stays_within_the_node_and_show_reports_busy_shares():
    dp, lcs = make({1: 0, 2: 0, 3: 1})
    vifs = {}
    add(lcs, vifs, 0, FakeDev("a", 0, 4))       # 1: q0 q2, 2: q1 q3
    lcs.show(vifs)
    dp.cycles = {(0, 0): 0.5, (0, 2): 0.3, (0, 1): 0.01, (0, 3): 0.01}
    lcs._sample = (time.monotonic() - 1.0, {})
    r = lcs.rebalance(vifs)
    by = {lc["lcore"]: {(q["vif"], q["queue"]) for q in lc["rxqs"]} for lc in r["lcores"]}
    assert by[3] == set()                       # node 1 takes none of node 0's queues
    assert by[1] == {(0, 0)} and by[2] == {(0, 2), (0, 1), (0, 3)}
    assert dp.sets[1] == [(0, 0)]
    busy = {lc["lcore"]: lc["busy"] for lc in r["lcores"]}
    assert busy[1] == pytest.approx(0.5, rel=0.05) and busy[2] == pytest.approx(0.32, rel=0.05)


def test_deleting_a_vif_takes_its_queues_off_the_lcores():
    dp, lcs = make({1: 0, 2: 0})
    vifs = {}
    add(lcs, vifs, 0, FakeDev("a", 0, 2))
    del vifs[0]
    assert lcs.deal(vifs) == {1: [], 2: []}


def test_rxq_show_and_rebalance_over_the_socket_and_nodes_in_stats_json(tmp_path):
    prefix = nsh.unique_name("vrrxq")
    stats = tmp_path / "s.json"
    p = subprocess.Popen([sys.executable, "-m", "pypdk.cli", "apps/vrouter", "-l", "0-1", "--no-huge",
                          "--file-prefix", prefix, "--stats-json", str(stats)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cli = [sys.executable, "-m", "apps.vrouter.ctl.cli", "--file-prefix", prefix]
    try:
        end = time.monotonic() + 30
        while not os.path.exists(f"/run/pypdk/{prefix}/vrouter.sock"):
            assert p.poll() is None and time.monotonic() < end
            time.sleep(0.05)
        for v in (3, 4):
            subprocess.run([*cli, "vif", "--add", str(v), "--type", "virtual", "--port", f"net_null{v}",
                            "--vrf", "1", "--mac", f"02:00:00:00:00:0{v}"], check=True, capture_output=True)
        time.sleep(0.5)
        r = subprocess.run([*cli, "--json", "rxq"], check=True, capture_output=True, text=True)
        show = json.loads(r.stdout)
        (lc,) = show["lcores"]
        assert lc["lcore"] == 1 and lc["node"] == 0
        assert [(q["vif"], q["queue"]) for q in lc["rxqs"]] == [(3, 0), (4, 0)]
        assert 0 < lc["busy"] <= 1.05 and all(q["busy"] > 0 for q in lc["rxqs"])
        table = subprocess.run([*cli, "rxq", "--rebalance"], check=True, capture_output=True, text=True).stdout
        assert "lcore 1  node 0" in table and "vif 3" in table and "vif 4" in table
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    doc = json.loads(stats.read_text())
    assert doc["eal"]["lcores"] == {"0": {"cpu": 0, "node": 0, "main": True},
                                    "1": {"cpu": 1, "node": 0, "main": False}}
    assert doc["app"]["pools"]["vrouter_pool0"]["node"] == 0
    assert doc["eal"]["memzones"]["vrouter_pool0"]["node"] == 0
    assert doc["app"]["lcore_nodes"] == {"1": 0}
