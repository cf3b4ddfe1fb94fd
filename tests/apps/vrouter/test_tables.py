"""The datapath's tables (apps/vrouter/dp: route, flow, bridge, decap) through the Python API:
a VRF's LPM made at its first route and freed with its last, growth past the
initial rule and tbl8 sizes with every route still found, deletes falling
back to the covering route, bridge and VNI entries, flow positions reused
after aging, the worker's lcore counters."""
import ipaddress

import pytest
from scapy.all import Ether, IP, UDP

from tests.apps.vrouter.harness import VR_MAC, UNDERLAY


@pytest.fixture
def vr(pool):
    from apps.vrouter.vrouter import VRouter
    v = VRouter(pool, VR_MAC, UNDERLAY)
    v.nh_add(1, "discard")
    v.nh_add(2, "receive")
    try:
        yield v
    finally:
        v.close()


def look(vr, vrf, addr):
    a = ipaddress.ip_address(addr)
    return vr.dp.rt_lookup(vrf, a.version, a.packed)


def test_a_vrf_table_exists_from_its_first_route_to_its_last(vr):
    assert vr.dp.rt_tables(7) == {"rt4": None, "rt6": None}
    vr.route_add(7, "10.0.0.0/8", 1)
    vr.route_add(7, "fd00::/64", 2, label=300)
    t = vr.dp.rt_tables(7)
    assert t["rt4"]["rules"] == 1 and t["rt6"]["rules"] == 1
    assert vr.dp.rt_tables(8) == {"rt4": None, "rt6": None}          # other VRFs untouched
    assert look(vr, 7, "10.9.9.9") == (1, None) and look(vr, 7, "fd00::1") == (2, 300)
    assert look(vr, 7, "11.0.0.1") is None and look(vr, 8, "10.9.9.9") is None
    vr.route_del(7, "10.0.0.0/8")
    assert vr.dp.rt_tables(7)["rt4"] is None and look(vr, 7, "10.9.9.9") is None
    vr.route_del(7, "fd00::/64")
    assert vr.dp.rt_tables(7) == {"rt4": None, "rt6": None}


def test_tables_grow_past_their_first_size_and_keep_every_route(vr):
    # 3000 /32s, each in its own /24: more rules (1024) and tbl8 groups (64)
    # than a new table has; the table is rebuilt bigger, nothing is lost.
    addrs = [f"10.{i >> 8}.{i & 255}.7" for i in range(3000)]
    for i, a in enumerate(addrs):
        vr.route_add(3, f"{a}/32", 1 + (i & 1))
    vr.route_add(3, "10.0.0.0/8", 2, label=42)
    t = vr.dp.rt_tables(3)["rt4"]
    assert t["rules"] == 3001 and t["max_rules"] >= 3001 and t["tbl8_groups"] >= 3000
    for i, a in enumerate(addrs):
        assert look(vr, 3, a) == (1 + (i & 1), None)
        assert look(vr, 3, a[:-1] + "8") == (2, 42)                  # the /8 around them
    # IPv6: /64s in distinct /48s need groups on three levels each.
    for i in range(600):
        vr.route_add(3, f"fd00:{i:x}:1::/64", 1)
    assert vr.dp.rt_tables(3)["rt6"]["rules"] == 600
    assert all(look(vr, 3, f"fd00:{i:x}:1::5") == (1, None) for i in range(600))
    # Deletes fall back to the covering route; the groups they free are reused.
    for a in addrs[:1500]:
        vr.route_del(3, f"{a}/32")
    assert look(vr, 3, addrs[0]) == (2, 42) and look(vr, 3, addrs[2999]) == (2, None)
    assert vr.dp.rt_tables(3)["rt4"]["tbl8_pending"] == 0           # reclaimed at the synchronize


def test_bulk_routes_size_the_table_once(vr):
    import numpy as np
    vr.route_add(1, "10.127.0.0/16", 1)
    idx = vr.rtdata[(1, None)][0]
    n = 100_000
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    assert vr.dp.rt_add_bulk(1, np.arange(base, base + n, dtype=np.uint32), np.full(n, 32, np.uint8), idx) == n
    t = vr.dp.rt_tables(1)["rt4"]
    assert t["rules"] == n + 1 and t["max_rules"] >= n + 1
    assert look(vr, 1, "10.128.0.0") == (1, None) and look(vr, 1, str(ipaddress.IPv4Address(base + n - 1))) == (1, None)
    assert look(vr, 1, str(ipaddress.IPv4Address(base + n))) is None


def test_bridge_and_vxlan_entries_change_in_place(vr):
    vr.nh_add(12, "tunnel", encap="vxlan", dip="192.168.50.2")
    vr.bridge_add(2, "02:00:00:00:02:05", 12, vni=5000)
    vr.bridge_add(2, "02:00:00:00:02:05", 12, vni=5001)             # a change, not a second entry
    assert vr.bridge_dump(2) == [{"mac": "02:00:00:00:02:05", "nh": 12, "vni": 5001}]
    assert (12, 5000) not in vr.rtdata and vr.rtdata[(12, 5001)][1] == 1
    vr.bridge_del(2, "02:00:00:00:02:05")
    assert (12, 5001) not in vr.rtdata and vr.bridge_dump(2) == []
    vr.vxlan_add(5000, 2)
    vr.vxlan_add(5000, 3)
    assert vr.vxlan_dump() == [{"vni": 5000, "vrf": 3}]


def test_aged_flow_positions_are_reused(pool):
    """A table of 16 entries: 8 flows fill it; aged, their positions are free again."""
    import pypdk.pmd
    from apps.vrouter.vrouter import VRouter
    vr = VRouter(pool, VR_MAC, UNDERLAY, flow_max=16)
    try:
        vm = vr.vif_add(3, "virtual", port="net_ring950", vrf=1, mac="02:00:00:00:01:03", ip="10.1.1.3",
                        policy=True)
        fab = vr.vif_add(0, "fabric", port="net_ring951")
        vr.nh_add(1, "discard")
        vr.route_add(1, "0.0.0.0/0", 1)
        dev = vr.vifs[3]["dev"]

        def send(ports):
            mbufs = []
            for p in ports:
                m = pool.alloc()
                m.append(bytes(Ether(src="02:00:00:00:01:03", dst=VR_MAC) / IP(src="10.1.1.3", dst="10.9.9.9") /
                               UDP(sport=p, dport=53)))
                mbufs.append(m)
            assert dev.rx_ring(0).enqueue_burst(mbufs) == len(mbufs)
            vr.poll_until_idle()

        send(range(1000, 1008))
        assert vr.dp.flow_count() == 16 and vr.dropstats()["flow_table_full"] == 0
        send([2000])
        assert vr.dropstats()["flow_table_full"] == 1
        assert vr.dp.flow_age(True) == 16 and vr.dp.flow_count() == 0
        send(range(3000, 3008))                                      # the aged positions, reused
        assert vr.dp.flow_count() == 16 and vr.dropstats()["flow_table_full"] == 1
        assert sorted(f["sport"] for f in vr.flow_list() if f["src"] == "10.1.1.3") == list(range(3000, 3008))
    finally:
        vr.close()
        pypdk.pmd.close_all()


def test_worker_counters_have_the_runners_lcore_keys(vr):
    from pypdk.stats import LCORE_COUNTERS
    from pypdk.worker import LcoreWorker
    wk = vr.dp.add_worker(1, 32, 64)
    st = wk.stats()
    assert {"polls", "empty_polls", "rx", "tx", "dropped", "idle_yields"} <= set(st)
    assert st["rx"] == st["tx"] == 0
    assert isinstance(wk, LcoreWorker)
    assert tuple(st)[:len(LCORE_COUNTERS)] == LCORE_COUNTERS     # pypdk's names, in pypdk's order
    assert st["taken"] == st["rx"]


@pytest.mark.parametrize("burst, yield_after", [(0, 0), (65, 0), (32, -1)])
def test_worker_refuses_a_burst_it_cannot_run_instead_of_clamping_it(vr, burst, yield_after):
    from pypdk.errors import UsageError
    n = len(vr.dp.workers)
    with pytest.raises(UsageError) as e:
        vr.dp.add_worker(1, burst, yield_after)
    assert ("burst" if burst != 32 else "yield_after") in e.value.problem
    assert len(vr.dp.workers) == n
