"""The counting of benchmarks/bench_vrouter_lcores.py (no timing): the packets a job fed
are the vifs' totals, the flows it made are the flow table's, and with software
distribution what was kept and what was handed over add up to what came in, and what a
drain job took from the ring is what was handed over.

The jobs run on worker lcore 1; the VRouter has the forwarding contexts of lcores 1 and
2 (a second context may run on any lcore, one job at a time), so the handover is real:
lcore 1's feed job fills context 2's ring, then a drain job with context 2 empties it.
"""
import pytest

from benchmarks import bench_vrouter_lcores as bl
from benchmarks.bench_vrouter import FRAMES

pytestmark = pytest.mark.pypdk_pool(eal="eal", size=4096)


def vif_stats(vr, vid):
    return vr.vif_get(vid)["stats"]


def test_fed_packets_and_flows_are_the_vrouters_counts(eal, pool):
    from benchmarks.vrouter_lcore_kernels import Jobs
    vif, frame, ports_off, _ = FRAMES["mplsoudp_encap"]
    vr, _ = bl.make({1: 0}, {0: pool}, flow_max=1 << 12)
    try:
        j = Jobs()
        j.feed(1, vr.fwd.workers[1], pool, vif, frame, ports_off, 256, 1000, scramble=False, max_pkts=1000)
        (r,) = bl.run_jobs(eal, j, 0, by_count=True)
        assert r["pkts"] == 1024                  # whole bursts of 32
        assert r["busy_pkts"] + 32 * r["preempted"] == r["pkts"]
        assert r["handed"] == r["ring_full"] == 0
        assert vr.dp.flow_count() == 2 * 256
        assert not {k: v for k, v in vr.dropstats().items() if v}
        assert vif_stats(vr, 3)["rx_packets"] == vif_stats(vr, 0)["tx_packets"] == 1024
        assert sum(w.stats()["rx"] for w in vr.fwd.workers.values()) == 1024
    finally:
        vr.close()


def test_distribution_kept_plus_handed_is_what_came_in_and_the_drain_takes_the_rest(eal, pool):
    from benchmarks.vrouter_lcore_kernels import Jobs
    vif, frame, ports_off, _ = FRAMES["mplsoudp_encap"]
    vr, specs = bl.make({1: 0, 2: 0}, {0: pool}, flow_max=1 << 12)
    try:
        bl.set_distribute(vr, specs, [1, 2], True)
        ws = vr.fwd.workers
        j = Jobs()
        j.feed(1, ws[1], pool, vif, frame, ports_off, 256, 0, scramble=False, max_pkts=512)
        (fed,) = bl.run_jobs(eal, j, 0, by_count=True)
        kept = vif_stats(vr, 0)["tx_packets"]
        assert fed["pkts"] == 512 and fed["ring_full"] == 0
        assert 0 < fed["handed"] < 512 and kept + fed["handed"] == 512
        d = Jobs()
        d.drain(1, ws[2])
        (drained,) = bl.run_jobs(eal, d, 0, drains=True, feeders=False)
        assert drained["pkts"] == fed["handed"]
        assert drained["busy_pkts"] <= drained["pkts"]
        assert vif_stats(vr, 0)["tx_packets"] == vif_stats(vr, 3)["rx_packets"] == 512
        assert ws[1].extra_stats()["distributed"] == fed["handed"]
        assert vr.dp.totals()["flows_created"] == 256
        assert vr.dp.flow_count() == 2 * 256
        assert not {k: v for k, v in vr.dropstats().items() if v}
    finally:
        vr.close()
