"""pypdk's pytest plugin: fixtures for tests of pypdk and of apps built on it.

Installed with pypdk (the `pytest11` entry point `pypdk`); a source tree that
is not installed loads it with `pytest_plugins = ["pypdk.testing.plugin"]`
in its top conftest.py. Fixtures (function scope):

    eal            the EAL on lcores 0-1, 2 MiB hugepages; cleaned up after
    eal_no_huge    the same on ordinary 4 KiB pages (--no-huge)
    pool           a PktMbufPool of 4096 mbufs; after the test every port is
                   closed and every mbuf must be back (else the test fails)
    make_pool      make_pool(n, **kw): more pools, checked the same way
    netns          a fresh network namespace (lo up, IPv6 off): its name
    netns_factory  netns_factory(ipv6=False): as many namespaces as needed
    veth_pair      (a, b): a veth pair here, both ends down
    veth_peer      a netns.VethPeer: end a here (up, IPv6 off), end b in a
                   fresh namespace with an address
    make_veth_peer make_veth_peer(queues=1): more of them
    tap_device     a persistent tap (`ip tuntap add`) for attach tests

`pool` and `make_pool` use the EAL that is up (an EAL fixture the test asked
for before them) or else `eal_no_huge`; a marker can name the EAL fixture and
set the pool: `@pytest.mark.pypdk_pool(eal="eal", size=256, cache_size=32)`
(on a test, or `pytestmark` on a module); the keys besides `eal` and `size`
go to PktMbufPool.

After every test the plugin checks that no network namespace, tap, XDP
program or hugepage file the test made is left (`pypdk.testing.leaks`); a
leftover fails the test at teardown, naming it, and is removed. Things a
module- or session-scoped fixture of the tests made are checked when that
fixture is gone. `pypdk_leak_check = false` in the pytest ini options turns
the check off. Everything here needs root, as the tests it serves do.
"""
from __future__ import annotations

import contextlib

import pytest

from pypdk.testing import leaks as _leaks
from pypdk.testing import netns as _nn


def pytest_addoption(parser):
    parser.addini("pypdk_leak_check", type="bool", default=True,
                  help="pypdk: fail a test that leaves a namespace, tap, XDP program or hugepage file")


def pytest_configure(config):
    config.addinivalue_line("markers", "pypdk_pool(eal='eal_no_huge', size=4096, **PktMbufPool_kwargs): "
                                       "how the pool and make_pool fixtures make their pools")
    if config.getini("pypdk_leak_check"):
        config.pluginmanager.register(_LeakCheck(), "pypdk-leak-check")


# ---- the EAL -----------------------------------------------------------------------

@pytest.fixture
def eal():
    """The EAL on lcores 0-1 (main lcore 0, worker lcore 1) with 2 MiB hugepages."""
    from pypdk import eal as _eal
    e = _eal.init(lcores="0-1")
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def eal_no_huge():
    """The EAL on lcores 0-1 on ordinary 4 KiB pages (--no-huge)."""
    from pypdk import eal as _eal
    e = _eal.init(lcores="0-1", no_huge=True)
    try:
        yield e
    finally:
        e.close()


# ---- mbuf pools that must get every mbuf back ----------------------------------------

@pytest.fixture
def make_pool(request):
    """make_pool(n=None, name=None, **kw) -> PktMbufPool (n: the marker's size, else 4096).
    After the test: every port closed, then each pool must hold all its mbufs."""
    from pypdk import eal as _eal
    from pypdk.errors import StateError
    from pypdk.mempool import PktMbufPool
    marker = request.node.get_closest_marker("pypdk_pool")
    opts = dict(marker.kwargs) if marker else {}
    if "eal" in opts:
        request.getfixturevalue(opts.pop("eal"))
    else:
        try:
            _eal.current()              # an EAL fixture the test asked for first
        except StateError:
            request.getfixturevalue("eal_no_huge")
    size = opts.pop("size", 4096)
    made = []

    def make(n=None, name=None, **kw):
        p = PktMbufPool(name or _nn.unique_name("pool"), size if n is None else n, **{**opts, **kw})
        made.append((p, p.in_use_count))
        return p

    try:
        yield make
    finally:
        import pypdk.pmd
        pypdk.pmd.close_all()
        leaked = [(p.name, p.in_use_count - base) for p, base in made if p.in_use_count != base]
        for p, _ in made:
            p.close()
        assert not leaked, "; ".join(f"{k} mbufs not returned to pool {n}" for n, k in leaked)


@pytest.fixture
def pool(make_pool):
    """A PktMbufPool (4096 mbufs, or as the pypdk_pool marker says), leak-checked."""
    return make_pool()


# ---- network namespaces, veth pairs, taps (pypdk.testing.netns) ----------------------

@pytest.fixture
def netns():
    """A fresh network namespace (lo up, IPv6 off); yields its name."""
    with _nn.netns() as ns:
        yield ns


@pytest.fixture
def netns_factory():
    """Make as many namespaces as a test needs: `ns = netns_factory()`."""
    made = []

    def make(ipv6=False):
        made.append(_nn.add_netns(ipv6=ipv6))
        return made[-1]
    try:
        yield make
    finally:
        for ns in reversed(made):
            _nn.del_netns(ns)


@pytest.fixture
def veth_pair():
    """A veth pair (a, b) in this namespace, both ends down; deleted after."""
    with _nn.veth_pair() as pair:
        yield pair


@pytest.fixture
def make_veth_peer():
    """make_veth_peer(queues=1, **kw) -> netns.VethPeer (see netns.veth_peer); deleted after."""
    with contextlib.ExitStack() as stack:
        yield lambda queues=1, **kw: stack.enter_context(_nn.veth_peer(queues=queues, **kw))


@pytest.fixture
def veth_peer(make_veth_peer):
    """A netns.VethPeer: end a of a veth pair here (up), end b in a fresh namespace with an address."""
    return make_veth_peer()


@pytest.fixture
def tap_device():
    """A persistent tap made by `ip tuntap add` (for attach tests); deleted after."""
    with _nn.tap_device() as name:
        yield name


# ---- the leftovers check ----------------------------------------------------------------

class _LeakCheck:
    """Snapshot before a test's setup, compare after its teardown (pypdk.testing.leaks)."""

    def __init__(self):
        self.before = None          # (Snapshot, nodeid of the first test it covers)
        self.wider = set()          # the tests' module/class/package/session fixtures set up now

    # A wider fixture of the tests (not of a plugin: those have an empty baseid) that
    # is set up makes what it made not yet a leftover; the public fixture hooks say
    # when it comes and goes.
    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        result = yield
        if fixturedef.scope != "function" and getattr(fixturedef, "baseid", ""):
            self.wider.add(fixturedef)
        return result

    def pytest_fixture_post_finalizer(self, fixturedef, request):
        self.wider.discard(fixturedef)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item):
        if self.before is None:
            self.before = (_leaks.snapshot(), item.nodeid)
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item, nextitem):
        try:
            result = yield
        except BaseException:
            self.check(item)        # cleans up; the teardown's own error is the report
            raise
        left = self.check(item)
        if left:
            pytest.fail(left, pytrace=False)
        return result

    def check(self, item) -> str | None:
        """What the test (and those since the snapshot) left, removed; None if nothing."""
        if self.before is None or self.wider:
            return None             # what a wider fixture made is checked when it is gone
        before, first = self.before
        self.before = None
        left = _leaks.leftovers(before, _leaks.snapshot())
        if not left:
            return None
        _leaks.clean(left)
        who = "this test" if first == item.nodeid else f"the tests from {first} to this one"
        return f"{who} left {_leaks.describe(left)} (removed now)"
