"""Benchmark fixtures: one EAL for the session (main lcore 0, worker lcore 1).

Run: python -m pytest benchmarks --benchmark-only --benchmark-group-by=group
Each case reports ns per object (or Mpps) in extra_info; cases that do the
same job share a `group`, so pypdk, plain Python and DPDK sit side by side.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def eal():
    from pypdk import eal as _eal
    e = _eal.init(lcores="0-1", no_huge=os.environ.get("PYPDK_BENCH_NO_HUGE") == "1")
    yield e
    e.close()


@pytest.fixture(scope="session")
def tsc_hz():
    from pypdk.eal.timer import tsc_hz
    return tsc_hz()
