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


# ---- network namespaces, veth pairs, tap devices (pypdk.testing.netns) --------
# Each fixture makes uniquely named objects and deletes them after the test,
# pass or fail. They need root (CI runs as root); without it they error.

@pytest.fixture
def netns():
    """A fresh network namespace (lo up, IPv6 off); yields its name."""
    from pypdk.testing import netns as _n
    with _n.netns() as ns:
        yield ns


@pytest.fixture
def netns_factory():
    """Make as many namespaces as a test needs: `ns = netns_factory()`."""
    from pypdk.testing import netns as _n
    made = []

    def make(ipv6=False):
        made.append(_n.add_netns(ipv6=ipv6))
        return made[-1]
    try:
        yield make
    finally:
        for ns in reversed(made):
            _n.del_netns(ns)


@pytest.fixture
def veth_pair():
    """A veth pair (a, b) in this namespace, both ends down; deleted after."""
    from pypdk.testing import netns as _n
    with _n.veth_pair() as pair:
        yield pair


@pytest.fixture
def tap_device():
    """A persistent tap made by `ip tuntap add` (for attach tests); deleted after."""
    from pypdk.testing import netns as _n
    with _n.tap_device() as name:
        yield name
