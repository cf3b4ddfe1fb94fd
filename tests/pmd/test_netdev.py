"""pypdk.pmd.netdev, the Linux interface control under net_tap, net_af_packet and
net_af_xdp: flags, MTU, MAC, queue count, the veth peer, the NUMA node and the
one link dict, checked against what `ip` says."""
import time

import pytest

from pypdk.pmd import LINK_KEYS, netdev
from pypdk.testing import netns as nsh


def link_when(ctl, iface, **want):
    """netdev.link() once it shows `want` (the kernel's linkwatch runs
    asynchronously), or as it is after a few seconds."""
    deadline = time.monotonic() + 5
    while True:
        d = netdev.link(ctl, iface)
        if all(d[k] == v for k, v in want.items()) or time.monotonic() > deadline:
            return d
        time.sleep(0.02)


@pytest.fixture
def ctl():
    s = netdev.control_socket()
    yield s
    s.close()


def test_veth_in_one_namespace_is_seen_whole(ctl):
    with nsh.veth_pair(queues=2) as (a, b):
        assert netdev.ifindex(a) == nsh.link_info(a)["ifindex"]
        assert netdev.veth_peer(a) == b and netdev.veth_peer(b) == a
        assert netdev.queue_count(a) == 2 and netdev.queue_count(a, "tx") == 2
        assert netdev.numa_node(a) == -1                 # a veth has no device
        hatype, mac = netdev.hwaddr(ctl, a)
        assert hatype == netdev.ARPHRD_ETHER and ":".join(f"{x:02x}" for x in mac) == nsh.link_mac(a)
        netdev.set_mtu(ctl, a, 1400)
        assert netdev.get_mtu(ctl, a) == nsh.link_info(a)["mtu"] == 1400


def test_link_dict_follows_admin_state_and_carrier(ctl):
    with nsh.veth_pair() as (a, b):
        nsh.set_link(a, None, "down")
        nsh.set_link(b, None, "down")
        d = netdev.link(ctl, a)
        assert tuple(d) == LINK_KEYS
        assert d["up"] is False and d["admin_up"] is False and d["operstate"] == "down"
        assert netdev.set_up(ctl, a, True) is True and netdev.set_up(ctl, a, True) is False
        d = netdev.link(ctl, a)
        assert d["admin_up"] is True and d["up"] is False        # the peer is down: no carrier
        nsh.set_link(b, None, "up")
        d = link_when(ctl, a, up=True, operstate="up")
        assert d["up"] is True and d["operstate"] == "up" and d["speed_mbps"] > 0
        assert netdev.set_up(ctl, a, False) is True and not netdev.is_up(ctl, a)


def test_a_veth_whose_peer_is_elsewhere_has_no_peer_here():
    with nsh.netns() as ns:
        a, b = nsh.add_veth(ns_b=ns)
        try:
            assert netdev.veth_peer(a) is None
        finally:
            nsh.del_link(a)


def test_missing_interface(ctl):
    assert netdev.ifindex("pdnosuch0") == 0 and not netdev.exists("pdnosuch0")
    assert netdev.queue_count("pdnosuch0") is None and netdev.veth_peer("pdnosuch0") is None
    assert netdev.link(ctl, "pdnosuch0") == {"up": False, "speed_mbps": 0, "duplex": "unknown",
                                             "operstate": "gone", "admin_up": False}
    assert netdev.veth_peer("lo") is None
    assert not netdev.valid_name("") and not netdev.valid_name("a/b") and not netdev.valid_name("x" * 16)
    assert netdev.valid_name("eth0")
