"""net_vhost with a real guest: QEMU's vhost-user virtio-net and the guest's kernel driver.

One guest per module (2 vCPUs, a vhost-user virtio-net with 2 queue pairs). QEMU
listens on the socket (`server=on`) and every test starts its own backend in
client mode with `reconnect=1`, so each test also restarts pypdk under the
running guest. The last test kills QEMU and starts it again under a running
pypdk (a second boot).

- l2fwd between the vhost port and a tap in a namespace: the guest's link comes
  up, ping and TCP both ways with the content checked (sha256);
- two queue pairs, polled from this process: a sender pinned on each vCPU
  transmits on its own queue, every datagram is received once;
- reconnect: pypdk restarted (the guest keeps its device) and QEMU restarted
  (pypdk keeps its port); and on a second device, where QEMU is the client
  (`reconnect=1`), pypdk restarted as the server.

net_vhost offers no checksum offload, so the guest's TCP has full checksums.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import pypdk.pmd
from pypdk.testing import netns as nn
from pypdk.testing import vm

pytestmark = pytest.mark.vm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GUEST_MAC = "52:54:00:00:77:02"
HOST_IP, GUEST_IP = "10.77.0.1", "10.77.0.2"
# The second device: QEMU the client (reconnect=1), pypdk the server.
GUEST_MAC2, HOST_IP2, GUEST_IP2 = "52:54:00:00:78:02", "10.78.0.1", "10.78.0.2"


def boot(sock, sock2=None):
    devices = vm.vhost_user_net(sock, queues=2, mac=GUEST_MAC, server=True)
    if sock2:
        devices += vm.vhost_user_net(sock2, mac=GUEST_MAC2, reconnect=1)
    return vm.Guest(cpus=2, mem=512, iommu=False, shared_mem=True, boot_timeout=600, devices=devices)


def guest_ifname(g, mac=GUEST_MAC):
    g.run("modprobe virtio_net", check=True, timeout=120)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in g.run("ip -o link", check=True).out.splitlines():
            if mac in line:
                return line.split(":")[1].strip().split("@")[0]
        time.sleep(0.5)
    raise AssertionError("no virtio-net interface in the guest")


@pytest.fixture(scope="module")
def rig():
    """(guest, its interface, the socket, a scratch directory, {"fwd": the first l2fwd}).

    QEMU's vhost-user netdev waits for its backend before the machine starts, so
    the first l2fwd (client mode, retrying) is up before the guest boots."""
    d = tempfile.mkdtemp(dir="/var/tmp", prefix="pdvh")
    sock, sock2 = os.path.join(d, "vm.sock"), os.path.join(d, "vm2.sock")
    state = {"fwd": L2fwd(sock, os.path.join(d, "l2fwd.json"))}
    state["fwd2"] = L2fwd(sock2, os.path.join(d, "l2fwd2.json"), server=True, host_ip=HOST_IP2)
    g = None
    try:
        g = boot(sock, sock2)
        ifn = guest_ifname(g)
        g.run(f"ip link set {ifn} up && ip addr add {GUEST_IP}/24 dev {ifn}", check=True)
        state["ifn2"] = guest_ifname(g, GUEST_MAC2)
        g.run(f"ip link set {state['ifn2']} up && ip addr add {GUEST_IP2}/24 dev {state['ifn2']}", check=True)
        state["fwd2"].stop()            # the reconnect test starts its own
        yield g, ifn, sock, d, state
    finally:
        for k in ("fwd", "fwd2"):
            if state[k].proc.poll() is None:
                state[k].stop()
        if g is not None:
            g.close()
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class L2fwd:
    """pypdk-run apps/l2fwd: port 0 the guest's vhost port (client mode; server=True: the
    default server mode, one queue pair), port 1 a tap moved into a fresh namespace with
    host_ip."""

    def __init__(self, sock, stats, server=False, host_ip=HOST_IP):
        self.tap = nn.unique_name("pdvht")
        self.stats = stats
        vhost = f"net_vhost0,iface={sock}" + ("" if server else ",queues=2,client=1,reconnect=1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "--lcores", "0-1", "--no-huge",
             "--vdev", vhost,
             "--vdev", f"net_tap1,iface={self.tap}", "--stats-json", stats, "--",
             "--no-mac-updating", "--yield-after", "64"],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.ns = nn.add_netns()
        try:
            wait_for(lambda: nn.link_exists(self.tap) or self.proc.poll() is not None, 60, "the tap")
            assert self.proc.poll() is None, self.proc.communicate()[0][-3000:]
            nn.move_link(self.tap, self.ns)
            nn.add_addr(self.tap, f"{host_ip}/24", self.ns)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
        nn.del_netns(self.ns)
        return self.proc.returncode, out

    def ports(self):
        with open(self.stats) as f:
            return json.load(f)["ports"]


def guest_link_up(g, ifn):
    return "LOWER_UP" in g.run(f"ip link show {ifn}").out


def ping_until(g, timeout=90, ip=HOST_IP):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if g.run(f"ping -c 1 -W 2 {ip}").rc == 0:
            return True
    return False


# A sender of N deterministic bytes (seed s) to HOST:PORT, or a receiver printing their sha256.
SEND = ("import socket,random,sys; r=random.Random(int(sys.argv[3])); n=int(sys.argv[4]);"
        "d=bytes(r.getrandbits(8) for _ in range(n)); s=socket.create_connection((sys.argv[1],int(sys.argv[2])),60);"
        "s.sendall(d); s.close()")
RECV = ("import socket,hashlib,sys; l=socket.socket(); l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        "l.bind((\"\",int(sys.argv[1]))); l.listen(1); l.settimeout(120); c,_=l.accept(); c.settimeout(120);"
        "h=hashlib.sha256(); n=0\nwhile True:\n b=c.recv(65536)\n if not b: break\n h.update(b); n+=len(b)\n"
        "print(n, h.hexdigest())")


def expected(seed, n):
    import random
    r = random.Random(seed)
    return f"{n} {hashlib.sha256(bytes(r.getrandbits(8) for _ in range(n))).hexdigest()}"


def test_guest_link_ping_and_tcp_both_ways_through_l2fwd_and_a_tap(rig):
    g, ifn, sock, d, state = rig
    g.run(f"ethtool -L {ifn} combined 1", check=True)     # l2fwd polls one queue pair
    fwd = state["fwd"]
    try:
        wait_for(lambda: guest_link_up(g, ifn), 90, "the guest's link")
        assert ping_until(g), "no ping reply from the host namespace"
        p = nn.ping(fwd.ns, GUEST_IP, count=3, wait=5)
        assert p.returncode == 0, p.stdout + p.stderr
        n = 2 << 20
        # guest -> host
        srv = nn.ns_popen(fwd.ns, sys.executable, "-c", RECV, "5001", stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        res = g.run(f"python3 -c '{SEND}' {HOST_IP} 5001 1 {n}", timeout=300)
        out, _ = srv.communicate(timeout=120)
        assert res.rc == 0, res.out
        assert out.strip() == expected(1, n)
        # host -> guest
        rcv = g.spawn(f"python3 -c '{RECV}' 5002")
        time.sleep(3)
        for _ in range(30):
            snd = nn.ns_run(fwd.ns, sys.executable, "-c", SEND, GUEST_IP, "5002", "2", str(n),
                            check=False, timeout=300)
            if snd.returncode == 0:
                break
            time.sleep(1)             # the guest's listener is not up yet
        assert snd.returncode == 0, snd.stderr
        got = rcv.wait(300)
        assert got.rc == 0, got.out
        assert got.out.strip() == expected(2, n)
    finally:
        rc, out = fwd.stop()
    assert rc == 0, out[-3000:]
    ports = fwd.ports()
    vh, tap = ports["0"], ports["1"]
    assert vh["ipackets"] > 1000 and vh["opackets"] > 1000
    for rx, tx in ((vh, tap), (tap, vh)):
        assert tx["opackets"] <= rx["ipackets"] <= tx["opackets"] + tx["dropped"]


# Datagrams to a static neighbour (no ARP): "q<cpu> <seq>", N from each vCPU, each
# sender pinned so the guest's XPS puts its flows on that cpu's queue.
BLAST = ("import socket,sys; c=sys.argv[1]; n=int(sys.argv[2]); socks=[socket.socket(socket.AF_INET,socket.SOCK_DGRAM) for _ in range(4)]\n"
         "for i in range(n):\n socks[i%4].sendto(f'q{c} {i}'.encode().ljust(64,b'.'),('10.77.0.9',7000+i%4))")


def test_two_queue_pairs_flows_spread_and_every_datagram_counted_once(rig, make_pool):
    g, ifn, sock, d, state = rig
    if state['fwd'].proc.poll() is None:
        state['fwd'].stop()
    g.run(f"ethtool -L {ifn} combined 2 && ip neigh replace 10.77.0.9 lladdr 02:00:00:00:77:09 dev {ifn}",
          check=True)
    pool = make_pool(4096)
    port = pypdk.pmd.open("net_vhost9", iface=sock, queues="2", client="1", reconnect="1")
    port.setup(pool, nb_rxq=2, nb_txq=2, nb_rx_desc=256, nb_tx_desc=256)
    port.start()
    n = 300
    seen = {0: [], 1: []}

    def drain(t):
        end = time.monotonic() + t
        while time.monotonic() < end:
            for q in (0, 1):
                for mb in port.rx_burst(q, 64):
                    data = mb.bytes()
                    mb.free()
                    if data[12:14] == b"\x08\x00" and data[23] == 17:
                        body = data[42:].split(b".")[0].decode(errors="replace")
                        if body.startswith("q"):
                            seen[q].append(body)
            time.sleep(0.005)

    try:
        wait_for(lambda: port.link["up"], 90, "the port's link")
        wait_for(lambda: guest_link_up(g, ifn), 60, "the guest's link")
        jobs = [g.spawn(f"taskset -c {c} python3 -c \"{BLAST}\" {c} {n}") for c in (0, 1)]
        while not all(j.done() for j in jobs):
            drain(0.5)
        drain(2.0)
        for j in jobs:
            assert j.wait(10).rc == 0, j.output()
        xs = port.xstats()
    finally:
        port.close()
    both = seen[0] + seen[1]
    assert sorted(both) == sorted(f"q{c} {i}" for c in (0, 1) for i in range(n))   # each once
    assert all(b.startswith("q0") for b in seen[0]) and all(b.startswith("q1") for b in seen[1])
    assert len(seen[0]) == n and len(seen[1]) == n
    assert xs["connections"] == 1


def test_pypdk_server_restarted_and_qemu_reconnects(rig):
    """QEMU the client (`reconnect=1`): a new pypdk on the same socket gets the device back."""
    g, ifn, sock, d, state = rig
    sock2 = os.path.join(d, "vm2.sock")
    for round_ in range(2):
        fwd = L2fwd(sock2, os.path.join(d, f"srv{round_}.json"), server=True, host_ip=HOST_IP2)
        try:
            assert ping_until(g, ip=HOST_IP2), f"round {round_}: QEMU did not come back to pypdk"
        finally:
            rc, out = fwd.stop()
        assert rc == 0, out[-3000:]
        assert fwd.ports()["0"]["xstats"]["connections"] == 1
        assert not os.path.exists(sock2)            # the server's socket goes with it


def test_pypdk_restarted_then_qemu_restarted_the_port_comes_back(rig):
    g, ifn, sock, d, state = rig
    if state['fwd'].proc.poll() is None:
        state['fwd'].stop()
    g.run(f"ethtool -L {ifn} combined 1", check=True)
    for round_ in range(2):               # pypdk restarted under the running guest
        fwd = L2fwd(sock, os.path.join(d, f"re{round_}.json"))
        try:
            assert ping_until(g), f"round {round_}: no ping through a restarted pypdk"
        finally:
            rc, out = fwd.stop()
        assert rc == 0, out[-3000:]
    # QEMU killed and restarted under one running pypdk (a second guest boot).
    fwd = L2fwd(sock, os.path.join(d, "qemu.json"))
    try:
        assert ping_until(g)
        os.killpg(g.qemu.pid, signal.SIGKILL)
        g.qemu.wait()
        with boot(sock) as g2:
            ifn2 = guest_ifname(g2)
            g2.run(f"ethtool -L {ifn2} combined 1; ip link set {ifn2} up && "
                   f"ip addr add {GUEST_IP}/24 dev {ifn2}", check=True)
            assert ping_until(g2), "no ping through the port after QEMU came back"
            p = nn.ping(fwd.ns, GUEST_IP, count=2, wait=5)
            assert p.returncode == 0, p.stdout + p.stderr
    finally:
        rc, out = fwd.stop()
    assert rc == 0, out[-3000:]
    # The first QEMU, then the second (QEMU may also reconnect while a guest driver resets
    # the device, so there can be more).
    assert fwd.ports()["0"]["xstats"]["connections"] >= 2

