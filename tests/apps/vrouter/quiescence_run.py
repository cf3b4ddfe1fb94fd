"""Run by test_quiescence.py in a process of its own (an EAL with forwarding lcores
1-3 on cpu 1): a vRouter whose three lcores forward while the test's thread holds the
flow lock, so the lcore that must create a flow waits between two quiescent points.

Prints one JSON line of what it saw: whether `synchronize` gave up while that lcore
was held, the tbl8 groups a deleted route left pending before and after, and the
packets each vif counted.
"""
import json
import sys
import time

from scapy.all import Ether, IP, UDP, Raw

from pypdk import eal as _eal
from pypdk.errors import ResourceError
from pypdk.mempool.mbuf import Mbuf, PktMbufPool
from apps.vrouter.vrouter import VRouter
from tests.apps.vrouter.harness import VR_MAC, UNDERLAY, VM3_MAC, VM3_IP, VM4_MAC, VM4_IP
from tests.cy.vr_levers import hold_flow_lock, release_flow_lock

LCORES = (1, 2, 3)


def wait(pred, guard=30.0):
    end = time.monotonic() + guard
    while not pred():
        if time.monotonic() > end:
            raise RuntimeError("the lcores never got there")
        time.sleep(0.001)


def stop(e, workers):
    for lc, wk in workers.items():
        if wk.running:
            wk.stop()
    for lc in list(workers):
        e.wait_lcore(lc)


def frame(src_mac, src_ip, dst_ip, sport):
    return bytes(Ether(src=src_mac, dst=VR_MAC) / IP(src=src_ip, dst=dst_ip, ttl=64) /
                 UDP(sport=sport, dport=4343, chksum=0) / Raw(b"\0" * 8))


def main():
    e = _eal.init(lcores="0,(1-3)@1", no_huge=True)
    pool = PktMbufPool("qs_pool", 2047, cache_size=32)
    vr = VRouter(pool, VR_MAC, UNDERLAY, lcores={lc: 0 for lc in LCORES})
    out = {}
    workers = {}
    try:
        # vif 3: flows (policy, no rules: allowed); vifs 4 and 5 none. One rx queue each,
        # dealt one per lcore.
        vr.vif_add(3, "virtual", port="net_ring903,size=1024", vrf=1, mac=VM3_MAC, ip=VM3_IP, policy=True)
        vr.vif_add(4, "virtual", port="net_ring904,size=1024", vrf=1, mac=VM4_MAC, ip=VM4_IP)
        vr.vif_add(5, "virtual", port="net_ring905,size=1024", vrf=1, mac="02:00:00:00:00:05", ip="10.1.1.5")
        vr.nh_add(11, "encap", vif=4)
        vr.route_add(1, f"{VM4_IP}/32", 11)
        vr.route_add(1, "10.9.9.0/25", 11)            # longer than /24: a tbl8 group
        polls = {q["vif"]: lc["lcore"] for lc in vr.rxq_show()["lcores"] for q in lc["rxqs"]}
        out["lcores_of"] = {str(v): polls[v] for v in (3, 4, 5)}
        workers = dict(vr.fwd.workers)
        for lc, wk in workers.items():
            e.remote_launch(wk.lcore_function(), lc)
        wait(lambda: all(wk.running for wk in workers.values()))
        dev = {v: vr.vifs[v]["dev"] for v in (3, 4, 5)}

        def send(v, mac, ip, n, sport0):
            ms = []
            for i in range(n):
                m = pool.alloc()
                m.append(frame(mac, ip, VM4_IP, sport0 + i))
                ms.append(m)
            assert dev[v].rx_ring(0).enqueue_burst(ms) == n

        def tx4():
            return vr.vif_get(4)["stats"]["tx_packets"]

        hold = workers[polls[3]]
        hold_flow_lock(hold)
        try:
            send(3, VM3_MAC, VM3_IP, 1, 7000)             # a new flow: its lcore waits for the lock
            wait(lambda: hold.stats()["rx"] >= 1)
            try:                # the delete is published, then waits for quiescence (5 s)
                vr.route_del(1, "10.9.9.0/25")
                out["route_del_while_held"] = "returned"
            except ResourceError as err:
                out["route_del_while_held"] = err.problem
            out["route_after_delete"] = vr.dp.rt_lookup(1, 4, bytes([10, 9, 9, 1]))
            out["pending_after_delete"] = vr.dp.rt_tables(1)["rt4"]["tbl8_pending"]
            # The other lcores still forward (vif 5 has no flows) and pass quiescent points.
            send(5, "02:00:00:00:00:05", "10.1.1.5", 8, 100)
            wait(lambda: tx4() >= 8)
            out["tx4_while_held"] = tx4()
            try:
                vr.dp.synchronize(timeout=0.5)
                out["synchronize_while_held"] = "returned"
            except ResourceError as err:
                out["synchronize_while_held"] = err.problem
            out["pending_while_held"] = vr.dp.rt_tables(1)["rt4"]["tbl8_pending"]
        finally:
            release_flow_lock(hold)
        wait(lambda: tx4() >= 9)
        vr.dp.synchronize(timeout=10)
        out["pending_after_release"] = vr.dp.rt_tables(1)["rt4"]["tbl8_pending"]
        out["tx4"] = tx4()
        out["flows"] = len(vr.flow_list())
        stop(e, workers)
        out["lcore_rx"] = {str(lc): wk.stats()["rx"] for lc, wk in workers.items()}
        while True:                                       # what vif 4 sent, back to the pool
            got = dev[4].tx_ring(0).dequeue_burst(32)
            if not got:
                break
            for a in got:
                Mbuf.from_addr(a).free()
        out["pool_in_use"] = pool.in_use_count
    finally:
        stop(e, workers)                    # the lcores first: close frees what they read
        vr.close()
        pool.close()
        e.close()
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
