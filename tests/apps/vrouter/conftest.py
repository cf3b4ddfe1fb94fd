"""Fixtures of the vRouter tests (their helpers: harness.py; `pool`, `eal_no_huge`
and the rest: pypdk.testing.plugin)."""
import pytest

from tests.apps.vrouter.harness import VR_MAC, UNDERLAY, Node


@pytest.fixture
def node(tmp_path, pool):
    """A VRouter on pcap-backed vifs (harness.Node)."""
    n = Node(tmp_path, pool)
    try:
        yield n
    finally:
        n.vr.close()


@pytest.fixture
def vr(pool):
    """A VRouter without pcap vifs (the test adds net_ring vifs and drives phases)."""
    from apps.vrouter.vrouter import VRouter
    v = VRouter(pool, VR_MAC, UNDERLAY)
    try:
        yield v
    finally:
        v.close()
