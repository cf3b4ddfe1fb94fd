"""net_af_packet against the real kernel: a veth pair, one end ours, the other
in a namespace the test makes. What the kernel sends there (ping, a UDP
socket, scapy's sendp) arrives in pypdk byte for byte; what pypdk sends is
captured there (tcpdump) and accepted by the kernel's UDP stack; several
queues split flows with each frame counted once; kernel ring drops show as
imissed; the pool gets every mbuf back and nothing is left behind."""
import os
import subprocess
import sys
import time

import pytest
from scapy.all import ARP, Dot1Q, Ether, ICMP, IP, IPv6, Raw, TCP, UDP, rdpcap, wrpcap

import pypdk.pmd
from pypdk.errors import ResourceError, UsageError
from pypdk.mempool import PktMbufPool
from pypdk.testing import netns as nsh
from pypdk.testing.frames import ns_send_raw, to_mbufs

HOST_IP, PORT_IP = "10.79.0.1", "10.79.0.2"     # the kernel's side (in the netns), the port's
GUARD = 20                                       # seconds: hang protection, never asserted on


@pytest.fixture
def wire():
    """(ours, peer, ns): a veth pair, `peer` in a fresh namespace with HOST_IP.

    Both namespaces have IPv6 off on the pair, so the kernel sends nothing
    by itself. Everything is deleted after the test, and checked gone.
    """
    ns = nsh.add_netns()
    a = b = None
    try:
        a, b = nsh.add_veth(ns_b=ns)
        nsh.disable_ipv6(a)
        nsh.disable_ipv6(b, ns)
        nsh.add_addr(b, f"{HOST_IP}/24", ns)
        yield a, b, ns
    finally:
        if a is not None:
            nsh.del_link(a)
        nsh.del_netns(ns)
    assert not nsh.link_exists(a) and ns not in nsh.list_netns()


def open_port(iface, **keys):
    spec = f"net_af_packet0,iface={iface}" + "".join(f",{k}={v}" for k, v in keys.items())
    return pypdk.pmd.open(spec)


def receive(port, want, queues=(0,), burst=32):
    """Poll `queues` until `want` frames came (or the guard ran out).

    Returns [(queue, bytes, nb_segs, mbuf.port)]; mbufs are freed."""
    got = []
    deadline = time.monotonic() + GUARD
    while len(got) < want and time.monotonic() < deadline:
        idle = True
        for q in queues:
            for m in port.rx_burst(q, burst):
                idle = False
                got.append((q, m.bytes(), m.nb_segs, m.port))
                m.free()
        if idle:
            time.sleep(0.002)
    return got


def drain(port, queues=(0,), quiet=0.3):
    """Everything that arrives until nothing has for `quiet` seconds."""
    got = []
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        for q in queues:
            for m in port.rx_burst(q, 32):
                got.append((q, m.bytes()))
                m.free()
                last = time.monotonic()
        time.sleep(0.002)
    return got


def ns_sendp(ns, iface, frames, tmp_path):
    """scapy's sendp inside the namespace, frames taken from a pcap we write."""
    path = tmp_path / "send.pcap"
    wrpcap(str(path), frames)
    nsh.ns_run(ns, sys.executable, "-c",
               "import sys; from scapy.all import rdpcap, sendp; "
               "sendp(rdpcap(sys.argv[1]), iface=sys.argv[2], verbose=0)", str(path), iface,
               timeout=GUARD * 3)


def tx_frames(port, pool, frames, queue=0, seg=None):
    """Transmit frames (bytes); with `seg`, each as a chain of seg-byte segments."""
    mbufs = to_mbufs(pool, frames, seg)
    sent = port.tx_burst(queue, mbufs)
    for m in mbufs[sent:]:
        m.free()
    return sent


class Capture:
    """tcpdump in the namespace: `count` frames from the port's MAC, to a pcap."""

    def __init__(self, ns, iface, count, mac, path):
        self.path = str(path)
        self.proc = nsh.ns_popen(ns, "tcpdump", "-n", "-U", "-i", iface, "-c", str(count),
                                 "-w", self.path, "ether", "src", mac)
        line = ""
        deadline = time.monotonic() + GUARD
        while "listening on" not in line and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump failed: {self.proc.stderr.read()}")

    def frames(self):
        try:
            self.proc.wait(timeout=GUARD)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return [bytes(p) for p in rdpcap(self.path)]


# ---- probing and keys -------------------------------------------------------------

def test_a_missing_interface_is_a_resource_error_naming_the_fix(pool):
    with pytest.raises(ResourceError) as e:
        pypdk.pmd.open("net_af_packet0,iface=pdnothere0")
    assert "pdnothere0" in e.value.problem and "ip link add" in e.value.fix
    assert pypdk.pmd.ports() == []


def test_iface_is_required_and_geometry_is_checked(pool, wire):
    a, _, _ = wire
    with pytest.raises(UsageError, match="'iface' is required"):
        pypdk.pmd.open("net_af_packet0")
    with pytest.raises(UsageError, match="qpairs"):
        open_port(a, qpairs=17)
    with pytest.raises(UsageError, match="power of two"):
        open_port(a, blocksz=5000)
    with pytest.raises(UsageError, match="framesz"):
        open_port(a, framesz=100)
    with pytest.raises(UsageError, match="framecnt=512"):
        open_port(a, framecnt=513)
    with pytest.raises(UsageError, match="fanout_mode"):
        open_port(a, fanout_mode="nope")
    with pytest.raises(UsageError, match="not an interface name"):
        open_port("a/b")
    assert pypdk.pmd.ports() == []


def test_no_permission_is_a_resource_error_naming_cap_net_raw(pool, wire):
    """Root without CAP_NET_RAW (dropped from the bounding set by setpriv)."""
    a, _, _ = wire
    code = ("import pypdk.pmd\n"
            "from pypdk.errors import ResourceError\n"
            "try:\n"
            f"    pypdk.pmd.open('net_af_packet0,iface={a}')\n"
            "except ResourceError as e:\n"
            "    print(e.line())\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run(["setpriv", "--bounding-set", "-net_raw", sys.executable, "-c", code],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=root),
                       timeout=GUARD * 3)
    assert "CAP_NET_RAW" in r.stdout and "run as root" in r.stdout, (r.stdout, r.stderr)


def test_port_takes_the_interface_mac_and_mtu_and_restores_link_state(pool, wire):
    a, _, _ = wire
    nsh.set_link(a, None, "mtu", "1400")
    port = open_port(a)
    assert pypdk.pmd.mac_str(port.mac) == nsh.link_mac(a)
    assert port.mtu == 1400
    assert port.max_rx_queues == 1
    port.setup(pool)
    assert "UP" not in nsh.link_info(a)["flags"]
    port.start()
    info = nsh.link_info(a)
    assert "UP" in info["flags"]
    assert info["promiscuity"] == 1              # PACKET_MR_PROMISC held while started
    port.set_promiscuous(False)
    assert nsh.link_info(a)["promiscuity"] == 0
    port.set_promiscuous(True)
    assert nsh.link_info(a)["promiscuity"] == 1
    port.set_mtu(1500)
    assert nsh.link_info(a)["mtu"] == 1500 and port.mtu == 1500
    port.stop()
    info = nsh.link_info(a)
    assert "UP" not in info["flags"] and info["promiscuity"] == 0
    port.start()                                 # sockets come back after a stop
    assert port.link["admin_up"] is True
    assert tuple(port.link) == pypdk.pmd.LINK_KEYS and port.info()["ifindex"] == port.ifindex
    port.close()
    assert "UP" not in nsh.link_info(a)["flags"]
    assert port.state == "closed"


# ---- rx: what the kernel sends arrives intact -------------------------------------

def test_ping_from_the_kernel_is_received_and_answered(pool, wire):
    a, b, ns = wire
    port = open_port(a).setup(pool)
    port.start()
    proc = nsh.ns_popen(ns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", PORT_IP)
    seen = []
    mac = pypdk.pmd.mac_str(port.mac)
    deadline = time.monotonic() + GUARD
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            burst = port.rx_burst(0, 32)
            for m in burst:
                f = Ether(m.bytes())
                m.free()
                seen.append(f)
                out = None
                if ARP in f and f[ARP].op == 1 and f[ARP].pdst == PORT_IP:
                    out = Ether(dst=f.src, src=mac) / ARP(op=2, hwsrc=mac, psrc=PORT_IP,
                                                          hwdst=f[ARP].hwsrc, pdst=f[ARP].psrc)
                elif ICMP in f and f[ICMP].type == 8:
                    out = (Ether(dst=f.src, src=mac) / IP(src=PORT_IP, dst=f[IP].src) /
                           ICMP(type=0, id=f[ICMP].id, seq=f[ICMP].seq) / f[ICMP].payload)
                if out is not None:
                    assert tx_frames(port, pool, [out]) == 1
            if not burst:
                time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, out + err
    assert "3 received" in out
    requests = [f for f in seen if ICMP in f and f[ICMP].type == 8]
    assert len(requests) == 3
    for f in requests:                           # checksums as the kernel computed them
        fresh = IP(bytes(f[IP]))
        del fresh.chksum, fresh[ICMP].chksum
        fresh = IP(bytes(fresh))
        assert (f[IP].chksum, f[ICMP].chksum) == (fresh.chksum, fresh[ICMP].chksum)
        assert f[IP].dst == PORT_IP and f[IP].src == HOST_IP
    st = port.stats()
    assert st["ipackets"] == len(seen) and st["opackets"] == len(seen)   # every one answered
    assert st["imissed"] == st["ierrors"] == st["oerrors"] == 0


def test_udp_socket_datagrams_arrive_with_valid_checksums(pool, wire):
    """A kernel UDP socket over veth leaves the checksum to offload
    (CHECKSUM_PARTIAL); the port completes it, so frames arrive valid."""
    a, b, ns = wire
    port = open_port(a).setup(pool)
    port.start()
    nsh.add_neigh(b, PORT_IP, pypdk.pmd.mac_str(port.mac), ns)
    payloads = [bytes([i]) * (20 + 97 * i) for i in range(8)]
    nsh.ns_run(ns, sys.executable, "-c",
               "import socket, sys\n"
               "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "for i in range(8):\n"
               "    s.sendto(bytes([i]) * (20 + 97 * i), (sys.argv[1], 7000 + i))\n", PORT_IP)
    got = receive(port, 8)
    frames = [Ether(raw) for _, raw, _, _ in got]
    assert [bytes(f[UDP].payload) for f in frames] == payloads
    for f in frames:
        assert f[IP].src == HOST_IP and f[IP].dst == PORT_IP
        fresh = f.copy()
        del fresh[UDP].chksum
        del fresh[IP].chksum
        fresh = Ether(bytes(fresh))
        assert f[UDP].chksum == fresh[UDP].chksum != 0
        assert f[IP].chksum == fresh[IP].chksum
    assert port.xstats()["rx_q0_csum_fixed"] == 8
    assert port.stats()["ipackets"] == 8


def test_scapy_frames_arrive_byte_for_byte_vlan_and_chained(pool, wire, tmp_path):
    a, b, ns = wire
    small = PktMbufPool(nsh.unique_name("afs"), 256, data_room=512)
    try:
        port = open_port(a).setup(small)
        port.start()
        peer = nsh.link_mac(b, ns)
        frames = [
            Ether(src=peer, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=HOST_IP, pdst=PORT_IP),
            Ether(src=peer, dst=pypdk.pmd.mac_str(port.mac)) / IP(src=HOST_IP, dst=PORT_IP) /
            UDP(sport=1234, dport=4321) / Raw(b"u" * 300),
            Ether(src=peer, dst=pypdk.pmd.mac_str(port.mac)) / IP(src=HOST_IP, dst=PORT_IP) /
            TCP(sport=5555, dport=80, flags="S", seq=1000),
            Ether(src=peer, dst=pypdk.pmd.mac_str(port.mac)) / IPv6(src="fd00::1", dst="fd00::2") /
            UDP(sport=1, dport=2) / Raw(b"six" * 100),
            # the kernel strips the tag into metadata: rx puts it back
            Ether(src=peer, dst=pypdk.pmd.mac_str(port.mac)) / Dot1Q(vlan=42, prio=5) /
            IP(src=HOST_IP, dst=PORT_IP) / UDP(sport=9, dport=9) / Raw(b"v" * 64),
            # longer than the 512-byte data room: a chain of 3 segments
            Ether(src=peer, dst="02:de:ad:be:ef:01") / IP(src=HOST_IP, dst="10.79.0.9") /
            UDP(sport=7, dport=7) / Raw(bytes(range(256)) * 5),
        ]
        ns_sendp(ns, b, frames, tmp_path)
        got = receive(port, len(frames))
        assert [raw for _, raw, _, _ in got] == [bytes(f) for f in frames]
        assert [segs for _, _, segs, _ in got] == [1, 1, 1, 1, 1, 3]
        xs = port.xstats()
        assert xs["rx_q0_vlan_inserted"] == 1 and xs["rx_q0_csum_fixed"] == 0
        st = port.stats()
        assert st["ipackets"] == len(frames)
        assert st["ibytes"] == sum(len(f) for f in frames)
        port.close()
        assert small.in_use_count == 0
    finally:
        pypdk.pmd.close_all()
        small.close()


def test_an_empty_pool_counts_rx_nombuf_and_loses_nothing(pool, wire, tmp_path):
    a, b, ns = wire
    port = open_port(a).setup(pool)
    port.start()
    peer = nsh.link_mac(b, ns)
    frames = [Ether(src=peer, dst=pypdk.pmd.mac_str(port.mac)) / IP(src=HOST_IP, dst=PORT_IP) /
              UDP(sport=100, dport=i) for i in range(10)]
    ns_send_raw(ns, b, frames)
    hog = pool.alloc_bulk(pool.avail_count)      # nothing left to receive into
    try:
        assert port.rx_burst(0, 32) == []
        assert port.stats()["rx_nombuf"] >= 1
    finally:
        for m in hog:
            m.free()
    # The frames waited in the ring; bursts of 3 stop and resume inside a block.
    got = receive(port, 10, burst=3)
    assert [raw for _, raw, _, _ in got] == [bytes(f) for f in frames]
    assert port.stats()["ipackets"] == 10


def test_a_full_ring_shows_kernel_drops_as_imissed(pool, wire, tmp_path):
    a, b, ns = wire
    # Two 4 KiB blocks: a handful of frames fit, the rest the kernel drops.
    port = open_port(a, blocksz=4096, framesz=2048, framecnt=4).setup(pool)
    port.start()
    peer = nsh.link_mac(b, ns)
    n = 100
    frames = [Ether(src=peer, dst=pypdk.pmd.mac_str(port.mac)) / IP(src=HOST_IP, dst=PORT_IP) /
              UDP(sport=100, dport=200) / Raw(i.to_bytes(4, "big") * 200) for i in range(n)]
    ns_sendp(ns, b, frames, tmp_path)            # nobody polls meanwhile
    got = drain(port)
    st = port.stats()
    assert 0 < st["ipackets"] < n
    assert st["ipackets"] == len(got)
    assert st["imissed"] > 0
    assert st["ipackets"] + st["imissed"] == n
    sent = [bytes(f) for f in frames]
    assert all(raw in sent for _, raw in got)    # what came, came whole


# ---- tx: what pypdk sends the kernel sees intact -----------------------------------

def test_sent_frames_are_captured_intact_and_bad_ones_counted(pool, wire, tmp_path):
    a, b, ns = wire
    port = open_port(a).setup(pool)
    port.start()
    mac, peer = pypdk.pmd.mac_str(port.mac), nsh.link_mac(b, ns)

    def udp(n, dport=9):
        return bytes(Ether(src=mac, dst=peer) / IP(src=PORT_IP, dst=HOST_IP) /
                     UDP(sport=4000, dport=dport) / Raw(bytes(i & 0xff for i in range(n))))

    good = [udp(18), udp(1000), udp(1472),                          # 60, 1042, 1514 bytes
            bytes(Ether(src=mac, dst=peer) / Dot1Q(vlan=7) / IP(src=PORT_IP, dst=HOST_IP) /
                  UDP(sport=1, dport=2) / Raw(b"t" * 1468))]         # 1518: tagged, allowed
    too_long = udp(1473)                                             # 1515 untagged: refused
    runt = bytes(10)
    chained = udp(1200, dport=10)
    marker = udp(30, dport=11)
    expect = good + [chained, marker]
    cap = Capture(ns, b, len(expect), mac, tmp_path / "tx.pcap")
    assert tx_frames(port, pool, good[:2] + [too_long] + good[2:] + [runt]) == 6
    assert tx_frames(port, pool, [chained], seg=500) == 1            # 3 segments
    assert tx_frames(port, pool, [marker]) == 1
    assert cap.frames() == expect
    st = port.stats()
    assert st["opackets"] == len(expect) and st["oerrors"] == 2
    assert st["obytes"] == sum(map(len, expect))
    xs = port.xstats()
    assert xs["tx_q0_too_long"] == 1 and xs["tx_q0_too_short"] == 1
    # our own frames do not come back to our rx (PACKET_IGNORE_OUTGOING); the
    # kernel's answers (ARP for us, port unreachable) do
    back = drain(port, quiet=0.3)
    assert [raw for _, raw in back if Ether(raw).src == mac] == []
    assert any(ARP in Ether(raw) for _, raw in back)


def test_kernel_udp_socket_accepts_what_the_port_sends(pool, wire):
    a, b, ns = wire
    port = open_port(a).setup(pool)
    port.start()
    mac, peer = pypdk.pmd.mac_str(port.mac), nsh.link_mac(b, ns)
    listener = nsh.ns_popen(ns, sys.executable, "-u", "-c",
                            "import socket, sys\n"
                            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                            "s.bind((sys.argv[1], 5000)); s.settimeout(15)\n"
                            "print('ready', flush=True)\n"
                            "for _ in range(5):\n"
                            "    d, src = s.recvfrom(4096)\n"
                            "    print(src[0], d.hex(), flush=True)\n", HOST_IP)
    assert listener.stdout.readline().strip() == "ready"
    payloads = [f"datagram {i}".encode() * (i + 1) for i in range(5)]
    frames = [Ether(src=mac, dst=peer) / IP(src=PORT_IP, dst=HOST_IP) /
              UDP(sport=6000 + i, dport=5000) / Raw(p) for i, p in enumerate(payloads)]
    assert tx_frames(port, pool, frames) == 5
    out, err = listener.communicate(timeout=GUARD)
    assert listener.returncode == 0, err
    lines = [ln.split() for ln in out.splitlines()]
    assert [bytes.fromhex(h) for _, h in lines] == payloads
    assert all(src == PORT_IP for src, _ in lines)


# ---- several queues: PACKET_FANOUT ---------------------------------------------------

def test_two_qpairs_split_flows_and_count_each_frame_once(pool, wire, tmp_path):
    a, b, ns = wire
    port = open_port(a, qpairs=2)
    assert port.max_rx_queues == 2 and port.max_tx_queues == 2
    port.setup(pool, 2, 2)
    port.start()
    assert port.info()["fanout_id"] >= 0
    peer = nsh.link_mac(b, ns)
    n = 256
    frames = [Ether(src=peer, dst=pypdk.pmd.mac_str(port.mac)) /
              IP(src=f"10.79.{1 + i % 16}.{1 + i // 16}", dst=PORT_IP) /
              UDP(sport=1024 + i, dport=2000 + 7 * i) / Raw(i.to_bytes(2, "big") * 8)
              for i in range(n)]
    ns_sendp(ns, b, frames, tmp_path)
    got = receive(port, n, queues=(0, 1))
    ids = [int.from_bytes(Ether(raw)[Raw].load[:2], "big") for _, raw, _, _ in got]
    assert sorted(ids) == list(range(n))                     # all there, none twice
    per_q = {q: sum(1 for g in got if g[0] == q) for q in (0, 1)}
    assert per_q[0] > 0 and per_q[1] > 0                     # spread over both
    assert all(mp == port.port_id for _, _, _, mp in got)
    qs = port.queue_stats()
    assert [s["packets"] for s in qs["rx"]] == [per_q[0], per_q[1]]
    # one flow stays on one queue (the kernel's flow hash)
    flows = {}
    for q, raw, _, _ in got:
        f = Ether(raw)
        flows.setdefault((f[IP].src, f[UDP].sport), set()).add(q)
    assert all(len(v) == 1 for v in flows.values())
    assert port.stats()["ipackets"] == n
    # both tx queues send
    mac = pypdk.pmd.mac_str(port.mac)
    cap = Capture(ns, b, 2, mac, tmp_path / "tx2.pcap")
    out = [bytes(Ether(src=mac, dst=peer) / IP(src=PORT_IP, dst=HOST_IP) / UDP(dport=q) /
                 Raw(b"q%d" % q)) for q in (0, 1)]
    assert tx_frames(port, pool, [out[0]], queue=0) == 1
    assert tx_frames(port, pool, [out[1]], queue=1) == 1
    assert sorted(cap.frames()) == sorted(out)
    assert [s["packets"] for s in port.queue_stats()["tx"]] == [1, 1]
