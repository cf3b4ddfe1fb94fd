"""Several producer and consumer lcores pass millions of mbufs through one ring:
nothing lost, nothing duplicated, each producer's order kept."""
import pytest

from pypdk import eal as eal_mod
from pypdk.mempool import PktMbufPool
from pypdk.ring import Ring


@pytest.fixture
def eal4():
    # Two worker lcores on each cpu: producers and consumers cross cpus, and
    # lcores sharing a cpu exercise the preempted-claimant path of MP/MC.
    e = eal_mod.init(lcores="0,(1-2)@0,(3-4)@1")
    yield e
    e.close()


@pytest.mark.parametrize("sp,sc,producers,consumers,per_producer", [
    (True, True, [1], [3], 2_000_000),
    (False, False, [1, 3], [2, 4], 1_000_000),
    (False, True, [1, 2], [3], 1_000_000),
])
def test_mbufs_survive_the_ring(eal4, sp, sc, producers, consumers, per_producer):
    from tests.cy import ring_stress
    pool = PktMbufPool("stress_pool", 8192, cache_size=128)
    ring = Ring("stress", 1024, sp=sp, sc=sc)
    try:
        res = ring_stress.run(eal4, ring.addr, pool.addr, producers, consumers, per_producer)
        total = per_producer * len(producers)
        assert res == {"consumed": total, "total": total, "missing": 0,
                       "duplicates": 0, "out_of_order": 0}
        assert ring.count == 0 and pool.in_use_count == 0
    finally:
        pool.close()
