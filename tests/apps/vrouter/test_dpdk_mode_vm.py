"""The vRouter's DPDK mode with real guests: QEMU's virtio-net on vhost-user vifs.

Two compute nodes (pypdk.testing.cluster, MPLSoUDP; node 2 has a namespace VM,
vm21). Node 1 gets two vhost-user vifs live (`vhostuser:NAME`, TF's
uvh_vif_NAME sockets in the node's --vhost-dir), each served to a small TCG guest
(1 vCPU, 512 MiB; QEMU connects to the vRouter's socket): guest A on a SingleQ
vif, guest B on a MultiQ vif with two queue pairs. One boot of each per module.

- A and B, on one node, reach each other (routed by the vRouter, proxy ARP);
- A reaches vm21 on the second node over MPLSoUDP (ping, and TCP with its
  content checked), then over MPLSoGRE (both nodes' tunnels changed live);
  a third guest, bridged (l2), reaches it over VXLAN (a second topology and boot);
- B's flows to vm21 leave from both of its transmit queues (every queue polled)
  and vm21's flows to B are spread over both of its receive queues by the inner
  flow's hash, every packet counted once.
"""
import os
import subprocess
import sys
import threading
import time

import pytest

from pypdk.testing import cluster as cl
from pypdk.testing import netns as nn
from pypdk.testing import vm

pytestmark = pytest.mark.vm

A = {"vif": 5, "name": "vma", "mac": "02:00:00:00:01:15", "ip": "10.1.1.15", "queues": 1}
B = {"vif": 6, "name": "vmb", "mac": "02:00:00:00:01:16", "ip": "10.1.1.16", "queues": 2}
VM21_IP = "10.1.1.21"


def add_vhost_vm(c, topo, g):
    """vif, encap nexthop, /32 route and label on node 1; the route on node 2."""
    n1, n2 = topo.nodes
    v = c.call(n1, "vif_add", id=g["vif"], type="virtual", port=f"vhostuser:{g['name']}", vrf=cl.VRF,
               mac=g["mac"], ip=g["ip"], queues=g["queues"])
    c.call(n1, "nh_add", id=g["vif"], type="encap", vif=g["vif"])
    c.call(n1, "route_add", vrf=cl.VRF, prefix=f"{g['ip']}/32", nh=g["vif"])
    c.call(n1, "mpls_add", label=100 + g["vif"], nh=g["vif"])
    c.call(n2, "route_add", vrf=cl.VRF, prefix=f"{g['ip']}/32", nh=cl.NH_TUNNEL0 + 1, label=100 + g["vif"])
    return v


def boot(g, sock):
    return vm.Guest(cpus=1, mem=512, iommu=False, shared_mem=True, boot_timeout=600,
                    devices=vm.vhost_user_net(sock, queues=g["queues"], mac=g["mac"], reconnect=1))


def guest_up(guest, g):
    guest.run("modprobe virtio_net", check=True, timeout=120)
    ifn = None
    for _ in range(120):
        for line in guest.run("ip -o link", check=True).out.splitlines():
            if g["mac"] in line:
                ifn = line.split(":")[1].strip()
        if ifn:
            break
        time.sleep(0.5)
    assert ifn, "no virtio-net interface in the guest"
    guest.run(f"ip link set {ifn} up && ip addr add {g['ip']}/24 dev {ifn} && "
              f"ip route add default via {cl.VM_NET}.1 dev {ifn}"
              + (f" && ethtool -L {ifn} combined {g['queues']}" if g["queues"] > 1 else ""), check=True)
    return ifn


@pytest.fixture(scope="module")
def dc():
    topo = cl.Topology("mplsoudp", nodes=2, vms=1, policy=False, workdir=None)
    vhost_dir = os.path.join(topo.workdir, "vr")
    guests, socks = {}, {}
    with topo:
        c = cl.Cluster(topo, app=("--vhost-dir", vhost_dir))
        with c:
            for g in (A, B):
                v = add_vhost_vm(c, topo, g)
                socks[g["name"]] = v["socket"]["path"]
                assert v["socket"]["path"] == os.path.join(vhost_dir, f"uvh_vif_{g['name']}")
            errors = []

            def start(g):
                try:
                    guests[g["name"]] = boot(g, socks[g["name"]])
                except BaseException as e:       # reported below
                    errors.append(e)
            ts = [threading.Thread(target=start, args=(g,)) for g in (A, B)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            try:
                if errors:
                    raise errors[0]
                ifs = {g["name"]: guest_up(guests[g["name"]], g) for g in (A, B)}
                yield topo, c, guests, ifs
            finally:
                for guest in guests.values():
                    guest.close()
        assert all(rc == 0 for rc in c.returncodes.values()), c.returncodes
        assert not [s for s in socks.values() if os.path.exists(s)]     # removed with the vRouter


def ping(guest, ip, tries=30):
    for _ in range(tries):
        r = guest.run(f"ping -c 1 -W 3 {ip}")
        if r.rc == 0:
            return True
    return False


def test_two_guests_on_one_node_reach_each_other(dc):
    topo, c, guests, ifs = dc
    assert ping(guests["vma"], B["ip"]), "guest A got no reply from guest B"
    r = guests["vmb"].run(f"ping -c 3 -W 3 {A['ip']}")
    assert r.rc == 0, r.out
    n1 = topo.nodes[0]
    va, vb = c.call(n1, "vif_get", id=A["vif"]), c.call(n1, "vif_get", id=B["vif"])
    assert va["socket"]["connected"] and va["socket"]["link_up"] and va["socket"]["mode"] == "server"
    assert vb["socket"]["queues"] == 2
    assert va["stats"]["rx_packets"] >= 3 and vb["stats"]["tx_packets"] >= 3
    # pypdk-vrouter vif --get, as an operator runs it
    p = subprocess.run([sys.executable, "-m", "apps.vrouter.ctl.cli", "--socket", n1.socket, "vif", "--get",
                        str(B["vif"])], cwd=cl.ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert f"Socket: unix {vb['socket']['path']} Mode:server Connected Link:UP Queues:2" in p.stdout
    assert "Queues:2" in p.stdout.splitlines()[2] and "Queue 1 " in p.stdout


def test_guest_reaches_a_vm_on_the_second_node_over_mplsoudp(dc):
    topo, c, guests, ifs = dc
    ga = guests["vma"]
    assert ping(ga, VM21_IP), "guest A got no reply from vm21 on node 2"
    vm21 = topo.vm("vm21")
    p = nn.ping(vm21.ns, A["ip"], count=3, wait=5)
    assert p.returncode == 0, p.stdout + p.stderr
    # TCP from the guest to vm21, 1 MiB of seeded bytes, checked by sha256 at vm21.
    sink = nn.ns_popen(vm21.ns, sys.executable, "-c", cl._SINK, "5301", "120")
    try:
        assert "listening" in sink.stdout.readline()
        src = ga.run(f"python3 -c '{SOURCE}' {VM21_IP} 5301 {1 << 20} 7", timeout=400)
        assert src.rc == 0, src.out
        out, _ = sink.communicate(timeout=120)
    finally:
        if sink.poll() is None:
            sink.kill()
        sink.wait()
    assert out.split() == src.out.split()
    n1 = topo.nodes[0]
    assert c.call(n1, "vrfstats", vrf=cl.VRF)["udp_mpls_decaps"] > 0


def test_guest_reaches_the_second_node_over_mplsogre(dc):
    """The tunnel nexthops of both nodes changed live to MPLSoGRE: the same guest, the same labels."""
    topo, c, guests, ifs = dc
    n1, n2 = topo.nodes
    try:
        for n, other in ((n1, n2), (n2, n1)):
            c.call(n, "nh_add", id=cl.NH_TUNNEL0 + other.index, type="tunnel", encap="mplsogre",
                   dip=other.underlay_ip)
        before = c.call(n1, "vrfstats", vrf=cl.VRF)["gre_mpls_decaps"]
        assert ping(guests["vma"], VM21_IP), "guest A got no reply from vm21 over MPLSoGRE"
        assert c.call(n1, "vrfstats", vrf=cl.VRF)["gre_mpls_decaps"] > before
        assert c.call(n2, "vrfstats", vrf=cl.VRF)["gre_mpls_encaps"] > 0
    finally:
        for n, other in ((n1, n2), (n2, n1)):
            c.call(n, "nh_add", id=cl.NH_TUNNEL0 + other.index, type="tunnel", encap="mplsoudp",
                   dip=other.underlay_ip)


# The guest's side of cluster._SOURCE, without single quotes (it goes through the guest's shell).
SOURCE = ("import hashlib,random,socket,sys; n=int(sys.argv[3]); r=random.Random(int(sys.argv[4])); "
          "d=r.randbytes(n); c=socket.create_connection((sys.argv[1],int(sys.argv[2])),60); c.sendall(d); "
          "c.shutdown(socket.SHUT_WR); c.recv(1); c.close(); print(n, hashlib.sha256(d).hexdigest())")

# N UDP datagrams, one flow each (source port 20000+i), to HOST:PORT.
BLAST = ("import socket,sys; h=sys.argv[1]; n=int(sys.argv[2]); p=int(sys.argv[3])\n"
         "for i in range(n):\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((\"\",20000+i))\n"
         " s.sendto(b\"mq%d\" % i,(h,p)); s.close()")


def test_multiq_guest_flows_spread_over_its_queues_both_ways(dc):
    topo, c, guests, ifs = dc
    gb, n1 = guests["vmb"], topo.nodes[0]
    vm21 = topo.vm("vm21")
    assert ping(gb, VM21_IP)
    before = c.call(n1, "vif_get", id=B["vif"])["queue_stats"]
    n = 64
    # guest -> vm21: the guest's flow hash picks its transmit queue; the vRouter polls both
    r = gb.run(f"python3 -c '{BLAST}' {VM21_IP} {n} 9")
    assert r.rc == 0, r.out
    # vm21 -> guest: the vRouter picks the receive queue by the inner flow's hash
    nn.ns_run(vm21.ns, sys.executable, "-c", BLAST, B["ip"], str(n), "9")
    time.sleep(3)
    after = c.call(n1, "vif_get", id=B["vif"])["queue_stats"]
    rx = [a["rx_packets"] - b["rx_packets"] for a, b in zip(after, before)]
    tx = [a["tx_packets"] - b["tx_packets"] for a, b in zip(after, before)]
    assert len(rx) == 2 and all(rx), f"guest B transmitted on queues {rx}"
    assert all(tx), f"the vRouter sent to guest B on queues {tx}"
    assert sum(rx) >= n and sum(tx) >= n       # (plus ARP/ND the guest sent)
    vb = c.call(n1, "vif_get", id=B["vif"])
    assert vb["stats"]["rx_packets"] == sum(q["rx_packets"] for q in vb["queue_stats"])
    assert vb["stats"]["tx_packets"] == sum(q["tx_packets"] for q in vb["queue_stats"])


@pytest.fixture(scope="module")
def dc_vxlan():
    """Two nodes bridged over VXLAN (VNI 5000), a guest on a bridged (l2) vhost-user vif of node 1."""
    topo = cl.Topology("vxlan", nodes=2, vms=1, policy=False)
    vhost_dir = os.path.join(topo.workdir, "vr")
    g = dict(A, vif=7, name="vmx", mac="02:00:00:00:01:17", ip="10.1.1.17")
    with topo:
        c = cl.Cluster(topo, app=("--vhost-dir", vhost_dir))
        with c:
            n1, n2 = topo.nodes
            v = c.call(n1, "vif_add", id=g["vif"], type="virtual", port=f"vhostuser:{g['name']}", vrf=cl.VRF,
                       mac=g["mac"], ip=g["ip"], mode="l2")
            c.call(n1, "nh_add", id=g["vif"], type="encap", vif=g["vif"])
            c.call(n1, "bridge_add", vrf=cl.VRF, mac=g["mac"], nh=g["vif"])
            c.call(n2, "bridge_add", vrf=cl.VRF, mac=g["mac"], nh=cl.NH_TUNNEL0 + 1, vni=cl.VNI)
            with boot(g, v["socket"]["path"]) as guest:
                ifn = guest_up(guest, g)
                vm21 = topo.vm("vm21")
                # static neighbours both ways: the unicast path alone (flooding is not under test)
                guest.run(f"ip neigh replace {VM21_IP} lladdr {vm21.mac} dev {ifn}", check=True)
                nn.add_neigh(vm21.tap, g["ip"], g["mac"], vm21.ns)
                yield topo, c, guest, g


def test_guest_reaches_the_second_node_over_vxlan(dc_vxlan):
    topo, c, guest, g = dc_vxlan
    assert ping(guest, VM21_IP), "the bridged guest got no reply from vm21 over VXLAN"
    n1, n2 = topo.nodes
    assert c.call(n1, "vrfstats", vrf=cl.VRF)["vxlan_decaps"] > 0
    assert c.call(n2, "vrfstats", vrf=cl.VRF)["vxlan_decaps"] > 0
    assert c.call(n1, "vif_get", id=g["vif"])["socket"]["link_up"]
