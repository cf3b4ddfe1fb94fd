"""The vRouter end to end on real topologies: namespaces, veths, taps, the kernel as every peer.

Each test builds a topology (pypdk.testing.cluster), starts one
`pypdk-run apps/vrouter` process per compute node inside the node's
namespace, and checks traffic between VMs (kernel stacks in their own
namespaces) through the overlay; the operator's tools (pypdk-vrouter, the
control socket) program and inspect the running vRouters. After SIGTERM
nothing may remain: no tap, no XDP program, no hugepage file, no control
socket. Needs root (CI runs as root).

Scenarios: 1 two nodes over MPLSoUDP, MPLSoGRE, VXLAN; 2 a kernel
VXLAN peer; 3 a multi-queue VM; 4 policy and a floating IP; 5 a route moved
while traffic flows; 6 a clean stop (every test).
"""
import json
import os
import subprocess
import sys
import time

import pytest

from pypdk.testing.cluster import Cluster, Topology, tcp_transfer
from pypdk.testing import netns as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MB20 = 20 << 20


def cli(node, *args):
    """pypdk-vrouter against a node; its stdout (JSON-decoded with --json)."""
    p = subprocess.run([sys.executable, "-m", "apps.vrouter.ctl.cli", "--socket", node.socket, *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"pypdk-vrouter {' '.join(args)}: {p.stderr}"
    return json.loads(p.stdout) if "--json" in args else p.stdout


def assert_clean_stop(topo, cl):
    """Scenario 6: SIGTERM leaves no tap, XDP program, hugepage file or socket behind."""
    codes = cl.stop()
    for n in topo.nodes:
        assert codes[n.name] == 0, f"{n.name} exited {codes[n.name]}:\n{cl.output(n)[-3000:]}"
        assert not nn.link_exists("vhost0", n.ns)
        assert "xdp" not in nn.ns_run(n.ns, "ip", "-d", "link", "show", "dev", "eth0").stdout
        assert not os.path.exists(n.socket)
        for vm in n.vms:
            assert not nn.link_exists(vm.tap, vm.ns), f"{vm.tap} left in {vm.ns}"
            assert not nn.link_exists(vm.tap, n.ns)
    for d in ("/dev/hugepages", "/mnt/huge"):
        if os.path.isdir(d):
            left = [f for f in os.listdir(d) if f.startswith(topo.prefix)]
            assert not left, f"hugepage files left: {left}"


@pytest.fixture
def running(request):
    """running(topology kwargs..., cluster=dict(...)) -> (topo, cluster); torn down after."""
    made = []

    def make(*args, cluster=None, **kw):
        topo = Topology(*args, **kw).build()
        made.append((topo, None))
        cl = Cluster(topo, **(cluster or {})).start()
        made[-1] = (topo, cl)
        return topo, cl

    try:
        yield make
    finally:
        for topo, cl in reversed(made):
            if cl is not None:
                cl.stop()
            topo.teardown()
        assert not [ns for ns in nn.list_netns() for t, _ in made if ns.startswith(t.prefix + "-")]


def ping_ok(topo, src, dst, count=3):
    r = topo.ping(src, dst, count=count, wait=2)
    assert r.returncode == 0, f"ping {src} -> {dst}:\n{r.stdout}{r.stderr}"
    return r


def iperf_flows(src, dst, port):
    """iperf3 -P 8 for 2 s from VM src to VM dst (eight TCP flows); then the last packets drain."""
    srv = nn.ns_popen(dst.ns, "iperf3", "-s", "-1", "-p", str(port))
    try:
        time.sleep(0.5)
        c = nn.ns_run(src.ns, "iperf3", "-c", dst.ip, "-p", str(port), "-P", "8", "-t", "2", "-J",
                      check=False, timeout=60)
        assert c.returncode == 0, c.stdout[-2000:] + c.stderr
    finally:
        srv.wait(timeout=30)
    time.sleep(0.5)


# ---- 1. two compute nodes ---------------------------------------------------------------

@pytest.mark.parametrize("encap", ["mplsoudp", "mplsogre", "vxlan"])
def test_two_nodes_ping_and_20mb_tcp(running, encap):
    topo, cl = running(encap, cluster={"no_huge": encap != "mplsoudp"})   # one run on hugepages
    ping_ok(topo, "vm11", "10.1.1.21")
    ping_ok(topo, "vm22", "10.1.1.12")
    ping_ok(topo, "vm11", "10.1.1.12")                  # same node
    res = tcp_transfer(topo.vm("vm11").ns, topo.vm("vm21").ns, "10.1.1.21", nbytes=MB20)
    assert res["ok"], res
    n1 = topo.nodes[0]
    vrf = cl.call(n1, "vrfstats", vrf=1)
    key = {"mplsoudp": "udp_mpls_encaps", "mplsogre": "gre_mpls_encaps", "vxlan": "vxlan_encaps"}[encap]
    assert vrf[key] > MB20 // 9000
    out = cli(n1, "vif", "--list")
    assert "vif0/3" in out and "tvm11" in out and "RX packets:" in out
    assert cl.alive()
    assert_clean_stop(topo, cl)


def test_two_nodes_over_an_af_xdp_fabric(running):
    # The fabric vif on net_af_xdp (pypdk's own XDP program on each node's eth0):
    # the same overlay traffic, and SIGTERM detaches the program (assert_clean_stop).
    topo, cl = running("mplsoudp", fabric="af_xdp", cluster={"no_huge": True})
    ping_ok(topo, "vm11", "10.1.1.21")
    res = tcp_transfer(topo.vm("vm11").ns, topo.vm("vm21").ns, "10.1.1.21", nbytes=MB20)
    assert res["ok"], res
    fabric = cl.call(topo.nodes[0], "vif_get", id=0)["stats"]
    assert fabric["rx_packets"] > 0 and fabric["tx_packets"] > MB20 // 9000
    assert_clean_stop(topo, cl)


# ---- 2. a kernel VXLAN peer ----------------------------------------------------------------

def test_kernel_vxlan_peer(running):
    topo, cl = running("vxlan", nodes=1, peer_vxlan=True)
    ping_ok(topo, "peer", "10.1.1.11")
    ping_ok(topo, "vm11", "10.1.1.9")
    res = tcp_transfer(topo.peer_ns, topo.vm("vm11").ns, "10.1.1.11", nbytes=MB20)
    assert res["ok"], res
    res = tcp_transfer(topo.vm("vm12").ns, topo.peer_ns, "10.1.1.9", nbytes=4 << 20, port=5202)
    assert res["ok"], res
    assert cl.call(topo.nodes[0], "vrfstats", vrf=1)["vxlan_decaps"] > 0
    assert_clean_stop(topo, cl)


# ---- 3. a multi-queue VM ------------------------------------------------------------------------

def test_multiqueue_vm_spreads_flows_and_counts_each_packet_once(running):
    topo, cl = running("mplsoudp", nodes=1, vms=2, queues={"vm12": 4})
    vm11, vm12 = topo.vm("vm11"), topo.vm("vm12")
    ping_ok(topo, "vm12", vm11.ip)
    iperf_flows(vm12, vm11, 5301)
    v = cl.call(topo.nodes[0], "vif_get", id=vm12.vif)
    qs = v["queue_stats"]
    assert len(qs) == 4
    busy = [q for q in qs if q["rx_packets"] > 100]
    assert len(busy) >= 2, f"flows on one queue only: {qs}"
    kernel_sent = nn.link_stats(vm12.tap, vm12.ns)["tx"]["packets"]
    total = sum(q["rx_packets"] for q in qs)
    assert total == v["stats"]["rx_packets"]
    assert total == kernel_sent, f"kernel sent {kernel_sent}, vRouter counted {total}"
    assert "Queue 3" in cli(topo.nodes[0], "vif", "--get", str(vm12.vif))
    assert_clean_stop(topo, cl)


def test_fabric_on_two_rx_queues_dealt_to_two_lcores(running):
    """The fabric vif with two queues (af_packet fanout hashing the outer flow: MPLSoUDP's
    source port carries the inner flow's hash) on a vRouter with two forwarding lcores:
    each queue on its own lcore, both carry traffic, every packet counted once."""
    topo, cl = running("mplsoudp", nodes=2, vms=1, fabric_queues=2, cluster={"lcores": "0,(1-2)@1"})
    vm11, vm21 = topo.vm("vm11"), topo.vm("vm21")
    n2 = topo.nodes[1]
    ping_ok(topo, "vm11", vm21.ip)
    iperf_flows(vm11, vm21, 5302)
    rxq = cl.call(n2, "rxq_show")
    fabric_lcores = {lc["lcore"] for lc in rxq["lcores"] for q in lc["rxqs"] if q["vif"] == 0}
    assert len(fabric_lcores) == 2, rxq
    v = cl.call(n2, "vif_get", id=0)
    qs = v["queue_stats"]
    assert len(qs) == 2 and all(q["rx_packets"] > 100 for q in qs), f"one queue idle: {qs}"
    assert sum(q["rx_packets"] for q in qs) == v["stats"]["rx_packets"]
    assert "Queue 1" in cli(n2, "vif", "--get", "0")
    assert_clean_stop(topo, cl)


# ---- 4. policy and a floating IP -------------------------------------------------------------------

def test_policy_drops_tcp_5001_ping_passes_and_floating_ip(running):
    topo, cl = running("mplsoudp", peer=True, fip={"vm11": "192.168.50.100"})
    n2 = topo.nodes[1]
    vm21 = topo.vm("vm21")
    cli(n2, "policy", "--add", str(vm21.vif), "--action", "drop", "--proto", "tcp", "--dst-port", "5001")
    blocked = tcp_transfer(topo.vm("vm11").ns, vm21.ns, vm21.ip, nbytes=1 << 16, port=5001, timeout=4)
    assert not blocked["ok"]
    assert cli(n2, "--json", "dropstats")["flow_action_drop"] > 0
    assert "Flow Action Drop" in cli(n2, "dropstats")
    ping_ok(topo, "vm11", vm21.ip)
    assert tcp_transfer(topo.vm("vm11").ns, vm21.ns, vm21.ip, nbytes=1 << 20, port=5002)["ok"]
    flows = cli(n2, "--json", "flow", "-l")
    assert any(f["action"] == "drop" and f["dport"] == 5001 for f in flows)
    # The floating IP: the underlay host reaches vm11 at its public address.
    ping_ok(topo, "peer", "192.168.50.100")
    res = tcp_transfer(topo.peer_ns, topo.vm("vm11").ns, "192.168.50.100", nbytes=4 << 20, port=5003)
    assert res["ok"], res
    assert cl.call(topo.nodes[0], "vrfstats", vrf=1)["translates"] > 0
    assert_clean_stop(topo, cl)


# ---- 5. a route moved while traffic flows -----------------------------------------------------------

def test_route_moves_to_another_nexthop_under_traffic(running):
    topo, cl = running("mplsoudp")
    n1 = topo.nodes[0]
    vm11, vm21 = topo.vm("vm11"), topo.vm("vm21")
    ping = nn.ns_popen(vm11.ns, "ping", "-n", "-i", "0.02", "-c", "150", "-W", "1", vm21.ip)
    time.sleep(1)
    before = cl.call(n1, "vrfstats", vrf=1)
    cli(n1, "nh", "--add", "112", "--type", "tunnel", "--encap", "mplsogre", "--dip", topo.nodes[1].underlay_ip)
    cli(n1, "rt", "--add", "--vrf", "1", "--prefix", f"{vm21.ip}/32", "--nh", "112", "--label", str(vm21.label))
    out, _ = ping.communicate(timeout=60)
    after = cl.call(n1, "vrfstats", vrf=1)
    assert after["gre_mpls_encaps"] > before["gre_mpls_encaps"] + 20
    received = int(out.split(" received")[0].rsplit(" ", 1)[-1])
    assert received >= 140, out
    routes = cli(n1, "--json", "rt", "--dump", "1")
    assert {"prefix": f"{vm21.ip}/32", "nh": 112, "label": vm21.label} in routes
    assert cl.alive()
    assert_clean_stop(topo, cl)
