"""Ring enqueue+dequeue, burst of 32: pypdk SP/SC and MP/MC against Python's
deque and SimpleQueue and against DPDK's ring_perf_autotest, in one run.

Every case moves OBJECTS objects through the ring per round, so pytest-
benchmark's times compare directly; extra_info carries ns per object.
"""
import collections
import queue

import pytest

from benchmarks import dpdk_ref

OBJECTS = 4_000_000
BULK = 32


def _pypdk(single):
    from pypdk.ring import Ring
    from pypdk.perf import kernels
    r = Ring("bench_ring", 1024, sp=single, sc=single)
    return lambda: kernels.ring_enq_deq(r.addr, BULK, OBJECTS // BULK, single, True)


@pytest.mark.parametrize("mode", ["SP/SC", "MP/MC"])
def test_pypdk_ring_burst32(benchmark, eal, mode):
    benchmark.group = f"ring {mode} burst 32"
    run = _pypdk(mode == "SP/SC")
    ns = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["ns_per_object"] = round(ns, 3)


def _python_deque():
    d = collections.deque()
    objs = list(range(BULK))
    for _ in range(OBJECTS // BULK):
        d.extend(objs)
        for _ in range(BULK):
            d.popleft()


def _python_simplequeue():
    q = queue.SimpleQueue()
    objs = list(range(BULK))
    for _ in range(OBJECTS // BULK // 10):      # 10x fewer: it is slow; scaled below
        for o in objs:
            q.put(o)
        for _ in range(BULK):
            q.get()


@pytest.mark.parametrize("mode", ["SP/SC", "MP/MC"])
def test_python_deque(benchmark, mode):
    # A deque is what a Python program would use between threads (append and
    # popleft are atomic under the GIL): the same job as both ring modes.
    benchmark.group = f"ring {mode} burst 32"
    benchmark.pedantic(_python_deque, rounds=3, iterations=1)
    benchmark.extra_info["ns_per_object"] = round(benchmark.stats.stats.mean * 1e9 / OBJECTS, 3)


@pytest.mark.parametrize("mode", ["MP/MC"])
def test_python_simplequeue(benchmark, mode):
    benchmark.group = f"ring {mode} burst 32"
    benchmark.pedantic(_python_simplequeue, rounds=3, iterations=1)
    benchmark.extra_info["ns_per_object"] = round(benchmark.stats.stats.mean * 1e9 / (OBJECTS / 10), 3)
    benchmark.extra_info["note"] = "moves 1/10 of the objects; compare ns_per_object"


@pytest.mark.skipif(not dpdk_ref.available(), reason="dpdk-test (Debian dpdk-dev) not installed")
@pytest.mark.parametrize("mode", ["SP/SC", "MP/MC"])
def test_dpdk_ring_perf_autotest(benchmark, tsc_hz, mode):
    """DPDK 22.11's own figure for the same case (run once; its time is not the figure)."""
    benchmark.group = f"ring {mode} burst 32"
    figures = benchmark.pedantic(lambda: dpdk_ref.ring_perf(tsc_hz), rounds=1, iterations=1)
    benchmark.extra_info["ns_per_object"] = round(figures[f"ring {mode} burst 32"], 3)
    benchmark.extra_info["note"] = "dpdk-test ring_perf_autotest, cycles per call / 32 / TSC rate"
