"""pypdk.eal.timer: the TSC, its rate (measured once, cached) and CLOCK_MONOTONIC."""
import time

import pytest

from pypdk.eal import timer



def test_tsc_hz_is_measured_once_and_cached():
    hz = timer.tsc_hz()
    assert 1e8 < hz < 1e10
    t0 = time.perf_counter()
    assert timer.tsc_hz() == hz
    assert time.perf_counter() - t0 < 0.01


def test_read_tsc_counts_at_tsc_hz():
    hz = timer.tsc_hz()
    c0, t0 = timer.read_tsc(), time.monotonic_ns()
    time.sleep(0.05)
    c1, t1 = timer.read_tsc(), time.monotonic_ns()
    assert (c1 - c0) / hz == pytest.approx((t1 - t0) / 1e9, rel=0.05)
