"""Fixtures of the vRouter tests (their helpers: harness.py)."""
import pytest

from pypdk.mempool import PktMbufPool
from pypdk.testing import netns as nsh

from tests.apps.vrouter.harness import VR_MAC, UNDERLAY, Node


@pytest.fixture
def pool(eal_no_huge):
    import pypdk.pmd
    p = PktMbufPool(nsh.unique_name("vr"), 4096)
    try:
        yield p
    finally:
        pypdk.pmd.close_all()
        leaked = p.in_use_count
        p.free()
        assert leaked == 0, f"{leaked} mbufs not returned to the pool"


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
