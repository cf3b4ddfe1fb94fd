"""Fixtures for the vRouter tests (helpers: vrharness.py)."""
import pytest

from pypdk.mempool import PktMbufPool
from pypdk.testing import netns as nsh

from vrharness import Node


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
    n = Node(tmp_path, pool)
    try:
        yield n
    finally:
        n.vr.close()
