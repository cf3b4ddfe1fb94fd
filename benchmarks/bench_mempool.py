"""Mempool get+put bulk 32 (with and without the lcore cache) and mbuf
alloc+free bulk 32: pypdk against a list-based Python pool and DPDK's
mempool_perf_autotest, in one run. extra_info carries ns per object."""
import os

import pytest

from benchmarks import dpdk_ref

OBJECTS = 8_000_000
BULK = 32


@pytest.fixture(scope="module")
def pools(eal):
    from pypdk.mempool import Mempool, PktMbufPool
    mp = Mempool("bench_mp", 8192, 2304, cache_size=256)
    pkt = PktMbufPool("bench_mbuf", 8192, cache_size=256)
    yield mp, pkt
    mp.close()
    pkt.close()


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_pypdk_mempool_get_put_bulk32(benchmark, pools, cache):
    from pypdk.perf import kernels
    mp, _ = pools
    benchmark.group = f"mempool get+put bulk 32 {'cache' if cache else 'no cache'}"
    ns = benchmark.pedantic(kernels.mempool_get_put, args=(mp.addr, BULK, OBJECTS // BULK, cache),
                            rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["ns_per_object"] = round(ns, 3)


def test_pypdk_mbuf_alloc_free_bulk32(benchmark, pools):
    from pypdk.perf import kernels
    _, pkt = pools
    benchmark.group = "mbuf alloc+free bulk 32"
    ns = benchmark.pedantic(kernels.mbuf_alloc_free, args=(pkt.addr, BULK, OBJECTS // BULK),
                            rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["ns_per_object"] = round(ns, 3)


def _python_pool(n_objects):
    # The obvious Python pool: a list used as a stack of preallocated buffers.
    free = [bytearray(64) for _ in range(8192)]
    for _ in range(n_objects // BULK):
        got = free[-BULK:]
        del free[-BULK:]
        free.extend(got)


@pytest.mark.parametrize("group", ["mempool get+put bulk 32 cache", "mbuf alloc+free bulk 32"])
def test_python_list_pool(benchmark, group):
    benchmark.group = group
    n = OBJECTS // 10
    benchmark.pedantic(_python_pool, args=(n,), rounds=3, iterations=1)
    benchmark.extra_info["ns_per_object"] = round(benchmark.stats.stats.mean * 1e9 / n, 3)


@pytest.fixture(scope="session")
def dpdk_mempool_figures():
    """DPDK's mempool_perf_autotest, run once in this session (it takes minutes)."""
    return dpdk_ref.mempool_perf()


@pytest.mark.skipif(not dpdk_ref.available() or os.environ.get("PYPDK_BENCH_DPDK_MEMPOOL") != "1",
                    reason="DPDK's mempool_perf_autotest takes ~20 min: set PYPDK_BENCH_DPDK_MEMPOOL=1")
@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_dpdk_mempool_perf_autotest(benchmark, cache, dpdk_mempool_figures):
    key = f"mempool get+put bulk 32 {'cache' if cache else 'no cache'}"
    benchmark.group = key
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info["ns_per_object"] = round(dpdk_mempool_figures.get(key, float("nan")), 3)
    benchmark.extra_info["note"] = "dpdk-test mempool_perf_autotest: best 1-core rate_persec at bulk 32"
