"""make_plan's warning for an lcore that polls a port on another NUMA node (testpmd's warning)."""
import logging
from types import SimpleNamespace

from pypdk.worker import cross_node_polls, make_plan, RtcWorker


def test_cross_node_polls_name_the_lcore_the_port_and_the_node_to_use():
    workers = {1: SimpleNamespace(hops=[(0, 0, 1, 0), (1, 0, 0, 0)]),
               4: SimpleNamespace(hops=[(0, 1, 1, 1)])}
    port_node = {0: 1, 1: -1}.get          # port 1's node unknown: no warning for it
    lcore_node = {1: 0, 4: 1}.get
    lines = cross_node_polls(workers, port_node, lcore_node)
    assert lines == ["lcore 1 (node 0) polls port 0 (node 1): every packet crosses the interconnect; "
                     "poll it from an lcore on node 1"]


def test_make_plan_on_one_node_warns_nothing(eal_no_huge, make_pool, caplog):
    import pypdk.pmd
    pool = make_pool(1024)
    a, b = pypdk.pmd.open("net_null0"), pypdk.pmd.open("net_null1")
    try:
        for p in (a, b):
            p.setup(pool)
        with caplog.at_level(logging.WARNING, logger="pypdk"):
            make_plan({1: RtcWorker([(a.port_id, 0, b.port_id, 0)])})
        assert not [r for r in caplog.records if "node" in r.getMessage()]
    finally:
        a.close()
        b.close()
