"""net_tap against the real kernel: the tap appears, moves into a namespace,
carries ARP and ping both ways, spreads flows over queues, and is removed
(created) or kept (attached) at close."""
import os
import time

import pytest
from scapy.all import Ether, ARP, IP, ICMP, UDP

import pypdk.pmd
from pypdk.errors import UsageError, ResourceError
from pypdk.mempool import PktMbufPool
from pypdk.testing import netns as nsh
from pypdk.testing.frames import to_mbufs

HOST_IP, PORT_IP = "10.77.0.1", "10.77.0.2"     # the kernel's side, the port's side


pytestmark = pytest.mark.pypdk_pool(size=2048)      # the `pool` fixture


@pytest.fixture
def ifname():
    """A unique tap name; the interface is deleted after the test if still there."""
    name = nsh.unique_name("pdt")
    yield name
    nsh.del_link(name)


def tun_flags(name, ns=None):
    out = nsh.ns_run(ns, "cat", f"/sys/class/net/{name}/tun_flags").stdout
    return int(out, 16)


def send(port, pool, frame, queue=0):
    """Transmit one scapy frame."""
    assert port.tx_burst(queue, to_mbufs(pool, [frame])) == 1


def send_chained(port, pool, frame, seg):
    """Transmit one frame as a chain of seg-byte segments."""
    assert port.tx_burst(0, to_mbufs(pool, [frame], seg)) == 1
    return True


def answer(port, pool, f, chain=None):
    """The port's side of ARP and ping, built with scapy. True if it replied."""
    mac = pypdk.pmd.mac_str(port.mac)
    if ARP in f and f[ARP].op == 1 and f[ARP].pdst == PORT_IP:
        out = Ether(dst=f.src, src=mac) / ARP(op=2, hwsrc=mac, psrc=PORT_IP,
                                              hwdst=f[ARP].hwsrc, pdst=f[ARP].psrc)
    elif IP in f and ICMP in f and f[ICMP].type == 8 and f[IP].dst == PORT_IP:
        out = (Ether(dst=f.src, src=mac) / IP(src=PORT_IP, dst=f[IP].src) /
               ICMP(type=0, id=f[ICMP].id, seq=f[ICMP].seq) / f[ICMP].payload)
    else:
        return False
    if chain:
        send_chained(port, pool, out, chain)
    else:
        send(port, pool, out)
    return True


def serve_ping(port, pool, ns, count=3, size=56, chain=None):
    """Ping PORT_IP from `ns` while answering in Python; (ping result, frames seen)."""
    proc = nsh.ns_popen(ns, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2",
                        "-s", str(size), PORT_IP)
    seen = []
    deadline = time.monotonic() + 60               # a hang guard, not a timing check
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            burst = port.rx_burst(0, 32)
            for m in burst:
                seen.append((m.nb_segs, Ether(m.bytes())))
                m.free()
            for _, f in seen[len(seen) - len(burst):]:
                answer(port, pool, f, chain)
            if not burst:
                time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out + err, seen


def tap_in_netns(port, name, ns):
    nsh.move_link(name, ns)
    nsh.add_addr(name, f"{HOST_IP}/24", ns)


# ---- life cycle -----------------------------------------------------------------

def test_port_creates_a_tap_the_kernel_sees_and_removes_it_at_close(pool, ifname):
    port = pypdk.pmd.open(f"net_tap0,iface={ifname}").setup(pool)
    assert nsh.link_exists(ifname)
    assert tun_flags(ifname) & 0x0002                      # IFF_TAP
    info = port.info()
    assert info["created"] is True and info["iface"] == ifname
    assert "UP" not in nsh.link_info(ifname)["flags"]
    port.start()
    assert "UP" in nsh.link_info(ifname)["flags"]
    assert port.link["admin_up"] is True
    assert tuple(port.link) == pypdk.pmd.LINK_KEYS and port.info()["ifindex"] > 0
    port.stop()
    assert "UP" not in nsh.link_info(ifname)["flags"]      # as found at open
    port.close()
    assert not nsh.link_exists(ifname)


def test_default_name_is_dtap_and_device_number(pool):
    name = "dtap7"
    nsh.del_link(name)
    try:
        port = pypdk.pmd.open("net_tap7").setup(pool)
        assert port.iface == name and nsh.link_exists(name)
        port.close()
        assert not nsh.link_exists(name)
    finally:
        nsh.del_link(name)


def test_attached_tap_is_left_existing_at_close(pool, tap_device):
    port = pypdk.pmd.open("net_tap0", iface=tap_device).setup(pool)
    assert port.info()["created"] is False
    port.start()
    assert "UP" in nsh.link_info(tap_device)["flags"]
    port.close()
    assert nsh.link_exists(tap_device)
    assert "UP" not in nsh.link_info(tap_device)["flags"]  # put back as it was


def test_persist_keeps_a_created_tap(pool, ifname):
    port = pypdk.pmd.open(f"net_tap0,iface={ifname},persist=1").setup(pool)
    assert port.info()["created"] is True
    port.close()
    assert nsh.link_exists(ifname)
    assert tun_flags(ifname) & 0x0800                      # IFF_PERSIST
    port = pypdk.pmd.open(f"net_tap0,iface={ifname}").setup(pool)
    assert port.info()["created"] is False                 # now we attach to it
    port.close()
    assert nsh.link_exists(ifname)


def test_mac_keys_and_mtu(pool, ifname):
    port = pypdk.pmd.open(f"net_tap3,iface={ifname},mac=fixed").setup(pool)
    assert pypdk.pmd.mac_str(port.mac) == "02:64:74:61:70:03"
    assert pypdk.pmd.mac_str(port.mac) != nsh.link_mac(ifname)           # the kernel's MAC is the peer's
    assert port.mtu == nsh.link_info(ifname)["mtu"] == 1500
    port.set_mtu(1400)
    assert nsh.link_info(ifname)["mtu"] == 1400 and port.mtu == 1400
    port.mtu = 1300                                         # the setter reaches the kernel too
    assert nsh.link_info(ifname)["mtu"] == 1300 and port.mtu == 1300
    port.close()
    port = pypdk.pmd.open(f"net_tap0,iface={ifname},mac=02:11:22:33:44:55")
    assert pypdk.pmd.mac_str(port.mac) == "02:11:22:33:44:55"
    port.close()
    with pytest.raises(UsageError, match="unicast"):
        pypdk.pmd.open(f"net_tap0,iface={ifname},mac=01:00:5e:00:00:01")
    with pytest.raises(UsageError, match="not a MAC"):
        pypdk.pmd.open(f"net_tap0,iface={ifname},mac=zz")
    assert pypdk.pmd.ports() == []


def test_bad_devices_are_refused_clearly(pool, veth_pair, tap_device):
    with pytest.raises(UsageError, match="is not a tap"):
        pypdk.pmd.open("net_tap0", iface=veth_pair[0])
    with pytest.raises(UsageError, match="without multi-queue"):
        pypdk.pmd.open("net_tap0", iface=tap_device, queues=2)
    with pytest.raises(UsageError, match="not a valid interface name"):
        pypdk.pmd.open("net_tap0", iface="a/b")
    port = pypdk.pmd.open("net_tap0", iface=nsh.unique_name("pdt"), queues=2)
    with pytest.raises(UsageError, match="configure 2 rx and tx queues"):
        port.configure(1, 1)                    # a queue nobody polls would eat flows
    port.close()
    assert pypdk.pmd.ports() == [] and nsh.link_exists(tap_device)


def test_missing_tun_device_is_a_resource_error_with_the_fix(pool, ifname, monkeypatch):
    import pypdk.pmd.tap as tap
    real_open = os.open

    def no_tun(path, *a, **kw):
        if path == "/dev/net/tun":
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_open(path, *a, **kw)
    monkeypatch.setattr(tap.os, "open", no_tun)
    with pytest.raises(ResourceError, match="modprobe tun"):
        pypdk.pmd.open("net_tap0", iface=ifname)
    monkeypatch.undo()
    assert pypdk.pmd.ports() == [] and not nsh.link_exists(ifname)


# ---- traffic with the kernel ----------------------------------------------------

def test_ping_through_a_tap_moved_into_a_netns(pool, ifname, netns):
    port = pypdk.pmd.open(f"net_tap0,iface={ifname}").setup(pool)
    port.start()
    tap_in_netns(port, ifname, netns)          # the fd stays valid across the move
    assert port.info()["in_this_netns"] is False
    assert port.link["up"] is True and port.link["operstate"] == "up"
    rc, out, seen = serve_ping(port, pool, netns, count=3)
    assert rc == 0, out
    assert "3 received" in out
    frames = [f for _, f in seen]
    assert any(ARP in f and f[ARP].op == 1 and f[ARP].pdst == PORT_IP for f in frames)
    echo = [f for f in frames if ICMP in f and f[ICMP].type == 8]
    assert len(echo) == 3 and all(f.src == nsh.link_mac(ifname, netns) for f in echo)
    st = port.stats()
    assert st["ipackets"] == len(seen) and st["opackets"] == 4     # ARP reply + 3 echo replies
    assert st["ierrors"] == st["oerrors"] == 0
    kst = nsh.link_stats(ifname, netns)
    assert kst["rx"]["packets"] == 4 and kst["tx"]["packets"] == len(seen)
    port.stop()
    assert "UP" not in nsh.link_info(ifname, netns)["flags"]       # stop reaches into the netns
    port.close()
    assert not nsh.link_exists(ifname, netns)


def test_big_frames_cross_as_chained_segments(eal_no_huge, ifname, netns):
    # 512-byte segments: a 1442-byte echo request arrives as 3 segments, and
    # the reply goes back as a chain of 400-byte segments (one writev).
    small = PktMbufPool(nsh.unique_name("seg"), 1024, data_room=512)
    try:
        port = pypdk.pmd.open(f"net_tap0,iface={ifname}").setup(small)
        port.start()
        tap_in_netns(port, ifname, netns)
        rc, out, seen = serve_ping(port, small, netns, count=2, size=1400, chain=400)
        assert rc == 0, out
        echo = [(nseg, f) for nseg, f in seen if ICMP in f and f[ICMP].type == 8]
        assert len(echo) == 2
        assert all(nseg == 3 and len(f) == 1442 and len(f[ICMP].payload) == 1400
                   for nseg, f in echo)
        port.close()
        assert small.in_use_count == 0
    finally:
        pypdk.pmd.close_all()
        small.close()


def test_frame_longer_than_the_receive_area_is_an_ierror(pool, ifname, netns):
    port = pypdk.pmd.open(f"net_tap0,iface={ifname},mac=fixed").setup(pool)
    port.start()
    tap_in_netns(port, ifname, netns)
    nsh.add_neigh(ifname, PORT_IP, pypdk.pmd.mac_str(port.mac), netns)
    nsh.set_link(ifname, netns, "mtu", "4000")             # behind the port's back
    nsh.ns_run(netns, "ping", "-c", "1", "-W", "0.3", "-s", "3000", PORT_IP, check=False)
    nsh.ns_run(netns, "ping", "-c", "1", "-W", "0.3", "-s", "100", PORT_IP, check=False)
    got = []
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        got = port.rx_burst(0, 32)
    frames = [Ether(m.bytes()) for m in got]
    for m in got:
        m.free()
    assert [len(f[ICMP].payload) for f in frames if ICMP in f] == [100]
    assert port.stats()["ierrors"] == 1 and port.xstats()["rx_q0_too_long"] == 1


def test_tx_on_a_down_interface_counts_oerrors_and_frees(pool, ifname, netns):
    port = pypdk.pmd.open(f"net_tap0,iface={ifname}").setup(pool)
    port.start()
    nsh.move_link(ifname, netns)                           # arrives down: writes fail (EIO)
    frame = Ether(src=pypdk.pmd.mac_str(port.mac)) / IP(dst="10.77.0.1") / UDP(dport=9)
    mbufs = []
    for _ in range(4):
        m = pool.alloc()
        m.append(bytes(frame))
        mbufs.append(m)
    assert port.tx_burst(0, mbufs) == 4                    # taken (and dropped)
    st = port.stats()
    assert (st["opackets"], st["oerrors"]) == (0, 4)
    assert port.xstats()["tx_q0_errno"] == 5               # EIO
    assert pool.in_use_count == 0


def test_multi_queue_tap_spreads_kernel_flows_over_both_queues(pool, ifname, netns):
    port = pypdk.pmd.open(f"net_tap0,iface={ifname},queues=2").setup(pool, nb_rxq=2, nb_txq=2)
    assert tun_flags(ifname) & 0x0100                      # IFF_MULTI_QUEUE
    port.start()
    tap_in_netns(port, ifname, netns)
    nsh.add_neigh(ifname, PORT_IP, pypdk.pmd.mac_str(port.mac), netns)
    flows = 64
    script = ("import socket\n"
              f"for i in range({flows}):\n"
              "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"    s.bind(('{HOST_IP}', 20000 + i))\n"
              f"    s.sendto(b'flow %d' % i, ('{PORT_IP}', 9999))\n"
              "    s.close()\n")
    nsh.ns_run(netns, "python3", "-c", script)
    per_queue = {0: set(), 1: set()}
    deadline = time.monotonic() + 30
    while sum(map(len, per_queue.values())) < flows and time.monotonic() < deadline:
        for q in (0, 1):
            for m in port.rx_burst(q, 32):
                f = Ether(m.bytes())
                m.free()
                if UDP in f and f[UDP].dport == 9999:
                    assert bytes(f[UDP].payload) == b"flow %d" % (f[UDP].sport - 20000)
                    per_queue[q].add(f[UDP].sport)
    assert sum(map(len, per_queue.values())) == flows
    assert per_queue[0] and per_queue[1]                   # both queues got flows
    # And both queues transmit: a frame from each reaches the kernel.
    before = nsh.link_stats(ifname, netns)["rx"]["packets"]
    for q in (0, 1):
        send(port, pool, Ether(dst=nsh.link_mac(ifname, netns), src=pypdk.pmd.mac_str(port.mac)) /
             IP(src=PORT_IP, dst=HOST_IP) / UDP(sport=9999, dport=9), queue=q)
    assert nsh.link_stats(ifname, netns)["rx"]["packets"] == before + 2
    qs = port.queue_stats()
    assert [q["packets"] for q in qs["tx"]] == [1, 1]
    port.close()
    assert not nsh.link_exists(ifname, netns)
