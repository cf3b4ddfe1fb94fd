"""The vRouter on three forwarding lcores, on this host (lcores 1-3 share cpu 1: `-l 0,(1-3)@1`).

The scenarios of lcore_scenarios.py: programmed live with pypdk-vrouter,
three inputs forwarded one per lcore into one output whose single tx
queue the lcores share under its lock; flows for the same 5-tuples
created from three lcores at once become one pair each, created once;
routes, nexthops and vifs changed while the lcores forward lose nothing
(lock-free tx queues per lcore on net_null); software distribution of a
single-queue vif over the three lcores. In each, the per-lcore counters
sum to the vifs' totals. The same scenarios run in a two-node guest in
test_lcores_vm.py.
"""
import pytest

from pypdk.testing import netns as nsh
from tests.apps.vrouter import lcore_scenarios as sc


@pytest.fixture
def place(tmp_path):
    return sc.HostPlace(str(tmp_path))


def test_live_vrouter_forwards_on_three_lcores(place):
    doc, rxq, pools = sc.live_on_three_lcores(place, nsh.unique_name("mlive"))
    assert all(lc["node"] == 0 for lc in rxq["lcores"])
    assert pools == {"vrouter_pool0": {0}} or pools == {"vrouter_pool0": set()}, pools
    assert {lc: e["node"] for lc, e in doc["eal"]["lcores"].items()} == {"0": 0, "1": 0, "2": 0, "3": 0}


def test_same_five_tuples_from_three_lcores_become_one_flow_pair_each(place):
    sc.race_flows(place, nsh.unique_name("mrace"))


def test_changes_while_three_lcores_forward_lose_nothing(place):
    sc.churn(place, nsh.unique_name("mchurn"))


def test_software_distribution_spreads_one_queue_over_three_lcores(place):
    sc.distribution(place, nsh.unique_name("mdist"))
