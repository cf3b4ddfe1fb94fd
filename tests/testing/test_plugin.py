"""pypdk's pytest plugin (pypdk.testing.plugin), run on small test files by pytester:
the pool fixture fails a test that keeps an mbuf, the leftovers check fails
the test that leaves a namespace or a tap (naming it, and removes it), and
what a module-scoped fixture makes is checked once that fixture is gone."""
from importlib.metadata import entry_points

from pypdk.testing import netns as nn

PLUGIN = "pypdk.testing.plugin"
LOAD = [] if any(ep.value == PLUGIN for ep in entry_points(group="pytest11")) else ["-p", PLUGIN]


def run(pytester, source, *args):
    pytester.makepyfile(test_it=source)
    return pytester.runpytest_inprocess(*LOAD, "-p", "no:cacheprovider", *args)


def test_clean_tests_pass_and_the_fixtures_clean_up(pytester):
    before = nn.made()
    r = run(pytester, """
from pypdk.testing import netns as nn

def test_pool(pool, eal_no_huge):
    m = pool.alloc()
    assert pool.in_use_count == 1
    m.free()

def test_tree(netns, veth_pair, tap_device, veth_peer):
    assert netns in nn.list_netns() and veth_peer.ns in nn.list_netns()
    assert nn.link_exists(veth_pair[0]) and nn.link_exists(tap_device)
    assert nn.link_exists(veth_peer.a) and nn.link_exists(veth_peer.b, veth_peer.ns)
""")
    r.assert_outcomes(passed=2)
    assert nn.made() == before


def test_a_kept_mbuf_fails_the_test(pytester):
    r = run(pytester, """
import pytest

@pytest.mark.pypdk_pool(size=64, cache_size=0)
def test_keeps_one(pool):
    assert pool.size == 64
    pool.alloc()
""")
    r.assert_outcomes(passed=1, errors=1)
    r.stdout.fnmatch_lines(["*1 mbufs not returned to pool pool*"])


def test_a_left_namespace_and_tap_fail_the_test_that_left_them(pytester):
    before = nn.made()
    r = run(pytester, """
from pypdk.testing import netns as nn

def test_leaves_a_namespace():
    nn.add_netns()

def test_leaves_a_tap():
    nn.add_tap()

def test_clean():
    pass
""")
    r.assert_outcomes(passed=3, errors=2)
    r.stdout.fnmatch_lines(["this test left namespace pdns* (removed now)",
                            "this test left tap pdtap* (removed now)"])
    assert nn.made() == before                       # removed by the check


def test_a_module_fixture_is_checked_when_it_is_gone(pytester):
    r = run(pytester, """
import pytest
from pypdk.testing import netns as nn

@pytest.fixture(scope="module")
def shared():
    with nn.netns() as ns:
        yield ns

def test_one(shared):
    pass

def test_not_using_it():
    pass

def test_two(shared):
    nn.add_netns()
""", "-rE")
    r.assert_outcomes(passed=3, errors=1)
    r.stdout.fnmatch_lines(["the tests from test_it.py::test_one to this one left namespace pdns* (removed now)"])


def test_the_check_can_be_turned_off(pytester):
    pytester.makeini("[pytest]\npypdk_leak_check = false\n")
    r = run(pytester, """
from pypdk.testing import netns as nn
NS = []

def test_leaves():
    NS.append(nn.add_netns())

def test_cleans_up():
    nn.del_netns(NS[0])
""")
    r.assert_outcomes(passed=2)
