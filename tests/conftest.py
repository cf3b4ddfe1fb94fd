"""Shared pytest fixtures: an initialised EAL (others add theirs below).

Only one EAL lives in a process, so each fixture initialises it for one test
and cleans it up after (joins the workers, frees every memzone).
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # `pytest tests/...` imports pypdk and tests.cy from the tree


@pytest.fixture
def eal():
    """The EAL on lcores 0-1 (main lcore 0, worker lcore 1) with 2 MiB hugepages."""
    from pypdk import eal as _eal
    e = _eal.init(lcores="0-1")
    try:
        yield e
    finally:
        e.cleanup()


@pytest.fixture
def eal_no_huge():
    """The EAL on lcores 0-1 on ordinary 4 KiB pages (--no-huge)."""
    from pypdk import eal as _eal
    e = _eal.init(lcores="0-1", no_huge=True)
    try:
        yield e
    finally:
        e.cleanup()
