"""The tests' top conftest: pypdk's pytest plugin and the tree on sys.path.

The fixtures (eal, eal_no_huge, pool, make_pool, netns, netns_factory,
veth_pair, veth_peer, make_veth_peer, tap_device) and the check that a test
leaves no namespace, tap, XDP program or hugepage file come from
`pypdk.testing.plugin`. An installed pypdk registers it through its `pytest11`
entry point; a tree that is only on sys.path loads it here.
"""
import os
import sys
from importlib.metadata import entry_points

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # `pytest tests/...` imports pypdk, apps and tests.* from the tree

PLUGIN = "pypdk.testing.plugin"
pytest_plugins = ["pytester"] + ([] if any(ep.value == PLUGIN for ep in entry_points(group="pytest11")) else [PLUGIN])
