"""net_af_xdp against the real kernel: a veth pair, the far end in a network namespace.

What the kernel sends on the far end (a UDP socket, ping, scapy's sendp, a
raw AF_PACKET socket) must arrive in pypdk byte for byte; what pypdk sends
must reach the kernel intact (a raw socket sees the same bytes, a UDP
socket gets the datagram, so the kernel's IP/UDP checks passed). After
every test the pool's in-use count is back where it started and the
interface has no XDP program (`ip link show`); error cases change nothing.

Needs root (CI runs as root); nothing here is skipped. No timing asserts:
waits have deadlines only so that a failure fails instead of hanging.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

import pypdk.pmd
from pypdk.errors import ResourceError, UsageError
from pypdk.mempool.mbuf import PktMbufPool
from pypdk.testing import netns as N
from pypdk.testing.frames import mac_bytes, ns_send_raw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ETH_P_TEST = 0x88B5          # IEEE local experimental ethertype: nobody else sends it
_seq = iter(range(1, 1 << 30))


# ---- helpers -------------------------------------------------------------------

Peer = N.VethPeer       # ns; a: our end; b: the kernel's, in ns, with ip_b; their MACs; queues


def xdp_state(ifname: str) -> dict | None:
    """The interface's XDP program per `ip -d -j link show` (None: none)."""
    info = json.loads(N.run("ip", "-d", "-j", "link", "show", "dev", ifname).stdout)[0]
    return info.get("xdp")


def assert_no_xdp(ifname: str) -> None:
    text = N.run("ip", "link", "show", "dev", ifname).stdout
    assert "prog/xdp" not in text and " xdp" not in text.splitlines()[0], text
    assert xdp_state(ifname) is None


def make_frame(dst: bytes, src: bytes, seq: int, size: int) -> bytes:
    """An Ethernet frame of ETH_P_TEST: a 4-byte sequence number, then a pattern."""
    body = struct.pack("<I", seq) + bytes((seq + i) & 0xff for i in range(size - 18))
    return dst + src + struct.pack("!H", ETH_P_TEST) + body


def collect(port, n: int, queue: int = 0, match=None, deadline: float = 10.0) -> list[bytes]:
    """Poll rx queue until n frames accepted by `match` (default all); their bytes.
    Other frames are freed and ignored."""
    got = []
    end = time.monotonic() + deadline
    while len(got) < n and time.monotonic() < end:
        mbufs = port.rx_burst(queue, 32)
        if not mbufs:
            time.sleep(0.001)
        for m in mbufs:
            data = m.bytes()
            m.free()
            if match is None or match(data):
                got.append(data)
    return got


_CAPTURE = textwrap.dedent("""
    import socket, sys, select, time
    ifname, count, etype = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(etype))
    s.bind((ifname, 0))
    print("ready", flush=True)
    end = time.monotonic() + 20
    n = 0
    while n < count and time.monotonic() < end:
        if not select.select([s], [], [], 0.2)[0]:
            continue
        data, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        print(data.hex(), flush=True)
        n += 1
""")


class Capture:
    """A raw AF_PACKET receiver inside ns, for frames of one ethertype."""

    def __init__(self, ns: str, ifname: str, count: int, etype: int = ETH_P_TEST):
        self.p = N.ns_popen(ns, sys.executable, "-c", _CAPTURE, ifname, str(count), str(etype))
        line = self.p.stdout.readline()
        assert line.strip() == "ready", self.p.stderr.read()

    def frames(self) -> list[bytes]:
        out, err = self.p.communicate(timeout=60)
        assert self.p.returncode == 0, err
        return [bytes.fromhex(x) for x in out.split()]


# ---- fixtures --------------------------------------------------------------------

@pytest.fixture
def make_peer(make_veth_peer):
    """make_peer(queues=1) -> Peer: veth a (here, up, no address) <-> b (in a new
    namespace, 10.x.y.2/24, a permanent neighbour entry for 10.x.y.1 at a's MAC).
    Teardown checks that a has no XDP program left; make_veth_peer deletes everything."""
    made = []

    def make(queues=1):
        made.append(make_veth_peer(queues=queues))
        return made[-1]

    yield make
    for p in made:
        assert_no_xdp(p.a)


@pytest.fixture
def peer(make_peer):
    return make_peer()


pytestmark = pytest.mark.pypdk_pool(eal="eal")      # the `pool` fixture: 4096 mbufs on hugepages


def start_port(peer: Peer, pool, spec_extra: str = "", nb_rxq=1, nb_txq=1, name="net_af_xdp0",
               nb_desc=1024):
    port = pypdk.pmd.open(f"{name},iface={peer.a}{spec_extra}")
    try:
        port.setup(pool, nb_rxq, nb_txq, nb_desc, nb_desc)
        port.start()
    except BaseException:
        port.close()
        raise
    return port


# ---- receive ---------------------------------------------------------------------

def test_start_attaches_our_program_and_close_detaches_it(peer, pool):
    port = pypdk.pmd.open(f"net_af_xdp0,iface={peer.a}")
    assert port.info()["xdp_mode"] is None
    assert pypdk.pmd.mac_str(port.mac) == peer.a_mac
    port.setup(pool, 1, 1)
    assert_no_xdp(peer.a)                 # nothing attached before start
    port.start()
    info = port.info()
    assert info["xdp_mode"] == "native"   # veth has native XDP; mode=auto picks it
    assert info["copy_mode"] is True and info["zero_copy"] is False
    assert info["umem_chunk_size"] == 2304 and info["rx_data_off"] == 128
    state = xdp_state(peer.a)
    assert state["prog"]["id"] == info["xdp_prog_id"]
    assert state["prog"]["name"] == "pypdk_xsk"
    xs = port.xstats()
    assert xs["xdp_native"] == 1 and xs["xdp_generic"] == 0 and xs["xdp_zero_copy"] == 0
    assert pool.in_use_count > 0          # the fill ring holds mbufs
    port.close()
    assert_no_xdp(peer.a)


def test_rx_udp_from_kernel_socket_arrives_intact(peer, pool):
    from scapy.all import Ether, IP, UDP
    port = start_port(peer, pool)
    payloads = [f"pypdk-{i:03d}-".encode() * (i % 7 + 1) for i in range(40)]
    script = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
              f"s.bind(('{peer.ip_b}', 40400))\n"
              "for line in sys.stdin.read().split():\n"
              f"    s.sendto(bytes.fromhex(line), ('{peer.ip_a}', 9999))\n")
    N.ns_run(peer.ns, sys.executable, "-c", script, input="\n".join(p.hex() for p in payloads))
    frames = collect(port, len(payloads), match=lambda d: d[12:14] == b"\x08\x00" and d[23] == 17)
    assert len(frames) == len(payloads)
    for f, want in zip(frames, payloads):
        pkt = Ether(f)
        assert pkt.src == peer.b_mac and pkt.dst == peer.a_mac
        assert pkt[IP].src == peer.ip_b and pkt[IP].dst == peer.ip_a
        assert pkt[UDP].sport == 40400 and pkt[UDP].dport == 9999
        assert bytes(pkt[UDP].payload) == want
        ip = pkt[IP].copy()
        sent_sum = ip.chksum
        del ip.chksum                       # scapy recomputes it from the bytes we got
        assert IP(bytes(ip)).chksum == sent_sum
    st = port.stats()
    assert st["ipackets"] >= len(payloads) and st["imissed"] == 0
    port.close()


def test_rx_ping_and_scapy_frames_byte_for_byte(peer, pool):
    port = start_port(peer, pool)
    # ping: ICMP echo requests with a known pattern
    N.ping(peer.ns, peer.ip_a, count=3, wait=0.2, interval=0.2, args=("-p", "a5c3", "-s", "200"))
    pings = collect(port, 3, match=lambda d: d[12:14] == b"\x08\x00" and d[23] == 1)
    assert len(pings) == 3
    for f in pings:
        assert len(f) == 14 + 20 + 8 + 200
        assert f[42 + 16:] == (b"\xa5\xc3" * 100)[:200 - 16]     # after ping's timestamp
    # scapy's sendp inside the namespace: every size, exact bytes
    dst, src = mac_bytes(peer.a_mac), mac_bytes(peer.b_mac)
    frames = [make_frame(dst, src, i, size) for i, size in enumerate((60, 61, 128, 1000, 1514))]
    script = ("import sys\nfrom scapy.all import Ether, sendp\n"
              "fs=[Ether(bytes.fromhex(h)) for h in sys.stdin.read().split()]\n"
              f"sendp(fs, iface='{peer.b}', verbose=False)\n")
    N.ns_run(peer.ns, sys.executable, "-c", script, input="\n".join(f.hex() for f in frames))
    got = collect(port, len(frames), match=lambda d: d[12:14] == struct.pack("!H", ETH_P_TEST))
    assert got == frames
    port.close()


def test_rx_mbufs_are_the_umem_chunks(peer, pool):
    """Zero copy: a received packet is an mbuf of the port's pool, data at the
    pool's headroom, port and length set; nothing else allocated per packet."""
    port = start_port(peer, pool)
    held_by_kernel = pool.in_use_count
    assert held_by_kernel == port.rx_fill_level(0)
    dst, src = mac_bytes(peer.a_mac), mac_bytes(peer.b_mac)
    frames = [make_frame(dst, src, i, 100) for i in range(20)]
    ns_send_raw(peer.ns, peer.b, frames)
    mbufs = []
    end = time.monotonic() + 10
    while len(mbufs) < 20 and time.monotonic() < end:
        mbufs += [m for m in port.rx_burst(0, 32)]
    assert len(mbufs) == 20
    lo = min(m.addr for m in mbufs)
    for m, f in zip(mbufs, frames):
        assert m.pool_name == pool.name
        assert m.data_off == pool.headroom and m.pkt_len == m.data_len == len(f)
        assert m.port == port.port_id and m.nb_segs == 1
        assert bytes(m.data) == f
        assert (m.addr - lo) % pool.elt_size == 0      # whole elements of the pool
    # the fill ring was topped up: we hold 20 more, the kernel as many as before
    assert pool.in_use_count == held_by_kernel + 20
    for m in mbufs:
        m.free()
    port.close()


# ---- transmit --------------------------------------------------------------------

def test_tx_reaches_the_kernel_intact(peer, pool):
    port = start_port(peer, pool)
    dst, src = mac_bytes(peer.b_mac), mac_bytes(peer.a_mac)
    frames = [make_frame(dst, src, i, size) for i, size in
              enumerate([60, 64, 100, 512, 1000, 1514] * 6)]
    cap = Capture(peer.ns, peer.b, len(frames))
    mbufs = []
    for f in frames:
        m = pool.alloc()
        m.append(f)
        mbufs.append(m)
    sent = 0
    while sent < len(mbufs):
        sent += port.tx_burst(0, mbufs[sent:])
    assert cap.frames() == frames
    st = port.stats()
    assert st["opackets"] == len(frames) and st["obytes"] == sum(map(len, frames))
    assert port.xstats()["tx_copied"] == 0          # sent from where they lay
    port.close()


def test_tx_udp_is_accepted_by_the_kernel_stack(peer, pool):
    """A UDP datagram built here is delivered to a socket in the namespace: the
    kernel checked its IP header and UDP checksum, so every byte arrived."""
    from scapy.all import Ether, IP, UDP
    port = start_port(peer, pool)
    payloads = [f"from-pypdk-{i}".encode() * (i + 1) for i in range(10)]
    recv = N.ns_popen(peer.ns, sys.executable, "-c", textwrap.dedent(f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(('{peer.ip_b}', 5555))
        s.settimeout(20)
        print('ready', flush=True)
        for _ in range({len(payloads)}):
            print(s.recv(4096).hex(), flush=True)
    """))
    assert recv.stdout.readline().strip() == "ready"
    mbufs = []
    for p in payloads:
        f = bytes(Ether(src=peer.a_mac, dst=peer.b_mac) / IP(src=peer.ip_a, dst=peer.ip_b) /
                  UDP(sport=7777, dport=5555) / p)
        m = pool.alloc()
        m.append(f)
        mbufs.append(m)
    assert port.tx_burst(0, mbufs) == len(mbufs)
    out, err = recv.communicate(timeout=60)
    assert recv.returncode == 0, err
    assert [bytes.fromhex(x) for x in out.split()] == payloads
    port.close()


def test_tx_foreign_pool_and_chained_mbufs_are_copied(peer, pool, eal):
    other = PktMbufPool(f"axdpo{next(_seq)}", 256, data_room=512)
    base_other = other.in_use_count
    port = start_port(peer, pool)
    dst, src = mac_bytes(peer.b_mac), mac_bytes(peer.a_mac)
    frames = [make_frame(dst, src, i, 300 + i) for i in range(6)]
    big = make_frame(dst, src, 99, 1400)              # longer than one 512-byte segment
    cap = Capture(peer.ns, peer.b, len(frames) + 1)
    mbufs = []
    for f in frames:
        m = other.alloc()
        m.append(f)
        mbufs.append(m)
    head = other.alloc()
    head.append(big[:500])
    for part in (big[500:1000], big[1000:]):
        seg = other.alloc()
        seg.append(part)
        head.chain(seg)
    assert head.nb_segs == 3
    mbufs.append(head)
    assert port.tx_burst(0, mbufs) == len(mbufs)
    assert cap.frames() == frames + [big]
    assert port.xstats()["tx_copied"] == len(mbufs)
    assert other.in_use_count == base_other         # originals freed at once
    port.close()
    other.close()


def test_rx_to_tx_forward_without_copy(peer, pool):
    """Received mbufs sent straight back (MACs swapped): the zero-copy tx path."""
    port = start_port(peer, pool)
    dst, src = mac_bytes(peer.a_mac), mac_bytes(peer.b_mac)
    frames = [make_frame(dst, src, i, 200) for i in range(16)]
    cap = Capture(peer.ns, peer.b, len(frames))
    ns_send_raw(peer.ns, peer.b, frames)
    mbufs = []
    end = time.monotonic() + 10
    while len(mbufs) < len(frames) and time.monotonic() < end:
        mbufs += port.rx_burst(0, 32)
    assert len(mbufs) == len(frames)
    for m in mbufs:
        d = m.data
        d[0:6], d[6:12] = src, dst
    assert port.tx_burst(0, mbufs) == len(frames)
    want = [src + dst + f[12:] for f in frames]
    assert cap.frames() == want
    assert port.xstats()["tx_copied"] == 0
    port.close()


# ---- queues ----------------------------------------------------------------------

def _send_udp_flows(peer: Peer, flows: int, per_flow: int) -> None:
    """flows x per_flow UDP datagrams from distinct source ports; each payload
    starts with its little-endian u32 sequence number (frame offset 42)."""
    script = textwrap.dedent(f"""
        import socket, struct
        socks = []
        for f in range({flows}):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(('{peer.ip_b}', 20000 + f))
            socks.append(s)
        seq = 0
        for k in range({per_flow}):
            for s in socks:
                s.sendto(struct.pack('<I', seq) + b'x' * 20, ('{peer.ip_a}', 9000))
                seq += 1
    """)
    N.ns_run(peer.ns, sys.executable, "-c", script)


def test_multi_queue_flows_spread_each_packet_once(make_peer, eal, pool):
    """queue_count=2 on a 2-queue veth: queue 0 polled here (main lcore), queue 1
    by a nogil loop on worker lcore 1; every datagram counted exactly once."""
    from pypdk.perf.traffic import RxDrop
    peer = make_peer(queues=2)
    port = start_port(peer, pool, ",queue_count=2", nb_rxq=2, nb_txq=2)
    assert port.info()["queue_count"] == 2
    flows, per_flow = 32, 8
    total = flows * per_flow
    worker = RxDrop([(port, 1)], seq_offset=42, nseq=total)
    worker.launch(eal, 1)
    try:
        _send_udp_flows(peer, flows, per_flow)
        udp = lambda d: d[12:14] == b"\x08\x00" and d[23] == 17 and d[36:38] == b"\x23\x28"
        seen0 = []
        end = time.monotonic() + 10
        while time.monotonic() < end:
            for d in collect(port, 1 << 30, 0, udp, deadline=0.05):
                seen0.append(struct.unpack_from("<I", d, 42)[0])
            if len(seen0) + worker.total >= total:
                break
    finally:
        worker.stop()
    seen1, out_of_range = worker.seen()
    assert out_of_range == 0
    counts = [0] * total
    for s in seen0:
        counts[s] += 1
    for s, c in enumerate(seen1):
        counts[s] += c
    assert counts == [1] * total                   # each once, none lost
    assert seen0 and worker.total > 0              # both queues got flows
    qs = port.queue_stats()["rx"]
    assert qs[0]["packets"] == len(seen0) and qs[1]["packets"] == worker.total
    port.close()


def test_four_queues_each_its_own_socket(make_peer, pool):
    peer = make_peer(queues=4)
    port = start_port(peer, pool, ",queue_count=4", nb_rxq=4, nb_txq=4, nb_desc=256)
    flows, per_flow = 64, 4
    _send_udp_flows(peer, flows, per_flow)
    udp = lambda d: d[12:14] == b"\x08\x00" and d[23] == 17 and d[36:38] == b"\x23\x28"
    per_q = [[] for _ in range(4)]
    end = time.monotonic() + 10
    while sum(map(len, per_q)) < flows * per_flow and time.monotonic() < end:
        for q in range(4):
            per_q[q] += [struct.unpack_from("<I", d, 42)[0]
                         for d in collect(port, 1 << 30, q, udp, deadline=0.01)]
    allseq = sorted(s for q in per_q for s in q)
    assert allseq == list(range(flows * per_flow))
    assert sum(1 for q in per_q if q) >= 2
    # one flow stays on one queue (the sender's flow hash picks it)
    where = {}
    for q, seqs in enumerate(per_q):
        for s in seqs:
            assert where.setdefault(s % flows, q) == q
    # each queue has its own socket: its own kernel statistics
    assert len(port.kernel_stats()) == 4
    port.close()


def test_second_port_on_the_same_queue_is_refused(make_peer, pool):
    peer = make_peer(queues=2)
    p0 = start_port(peer, pool)
    with pytest.raises(UsageError, match=f"queue 0 of {peer.a} is already used by port net_af_xdp0"):
        pypdk.pmd.open(f"net_af_xdp1,iface={peer.a}")
    # another queue of the same interface is fine: the program is shared
    p1 = pypdk.pmd.open(f"net_af_xdp1,iface={peer.a},start_queue=1")
    p1.setup(pool, 1, 1, 256, 256)
    p1.start()
    assert p1.info()["xdp_prog_id"] == p0.info()["xdp_prog_id"]
    p0.close()
    assert xdp_state(peer.a)["prog"]["id"] == p1.info()["xdp_prog_id"]   # still p1's
    p1.close()
    assert_no_xdp(peer.a)


def test_queue_out_of_range(peer, eal):
    with pytest.raises(UsageError, match=r"queues 0\.\.1 asked, .* has 1 rx queue \(0\.\.0\)"):
        pypdk.pmd.open(f"net_af_xdp0,iface={peer.a},queue_count=2")
    with pytest.raises(UsageError, match="has 1 rx queue"):
        pypdk.pmd.open(f"net_af_xdp0,iface={peer.a},start_queue=1")
    with pytest.raises(UsageError, match="queue_count=0"):
        pypdk.pmd.open(f"net_af_xdp0,iface={peer.a},queue_count=0")
    assert pypdk.pmd.ports() == []


def test_rx_queues_must_share_one_pool(make_peer, pool):
    peer = make_peer(queues=2)
    other = PktMbufPool(f"axdpo{next(_seq)}", 512)
    port = pypdk.pmd.open(f"net_af_xdp0,iface={peer.a},queue_count=2")
    port.configure(2, 2)
    port.rx_queue_setup(0, 256, pool)
    with pytest.raises(UsageError, match="same pool"):
        port.rx_queue_setup(1, 256, other)
    port.close()
    other.close()


# ---- errors ----------------------------------------------------------------------

def test_missing_interface(eal):
    with pytest.raises(ResourceError, match="interface 'pdnosuch0' does not exist.*ip link"):
        pypdk.pmd.open("net_af_xdp0,iface=pdnosuch0")
    with pytest.raises(UsageError, match="'iface' is required"):
        pypdk.pmd.open("net_af_xdp0")
    with pytest.raises(UsageError, match="bad value 'fast' for key 'mode'"):
        pypdk.pmd.open("net_af_xdp0,iface=lo,mode=fast")


def test_foreign_program_is_refused_and_left_alone(peer, pool):
    from pypdk.pmd.af_xdp import bpf, prog
    # Someone else's program, attached the old way (netlink), native mode.
    fd = bpf.prog_load(prog.insn(0xb7, dst=0, imm=bpf.XDP_PASS) + prog.insn(0x95), "GPL", "foreign")
    ifindex = int(open(f"/sys/class/net/{peer.a}/ifindex").read())
    try:
        bpf.netlink_set_xdp(ifindex, fd, bpf.XDP_FLAGS_DRV_MODE)
        theirs = xdp_state(peer.a)["prog"]["id"]
        with pytest.raises(ResourceError) as ei:
            pypdk.pmd.open(f"net_af_xdp0,iface={peer.a}")
        msg = str(ei.value)
        assert f"{peer.a} already has XDP program id {theirs}" in msg and "not pypdk's" in msg
        assert f"ip link set dev {peer.a} xdp off" in msg
        assert xdp_state(peer.a)["prog"]["id"] == theirs        # nothing changed
        assert pypdk.pmd.ports() == []
        # the fix the message gives works
        N.run(*f"ip link set dev {peer.a} xdp off".split())
    finally:
        try:
            bpf.netlink_set_xdp(ifindex, -1, bpf.XDP_FLAGS_DRV_MODE)
        except OSError:
            pass
        os.close(fd)
    port = start_port(peer, pool)
    assert port.info()["xdp_mode"] == "native"
    port.close()


def test_another_process_holding_the_interface_is_refused(peer, pool):
    child = subprocess.Popen([sys.executable, "-c", _CHILD, peer.a, "sleep"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "started", child.stderr.read()
        with pytest.raises(ResourceError, match="pypdk's from another process"):
            pypdk.pmd.open(f"net_af_xdp0,iface={peer.a}")
    finally:
        child.kill()
        child.wait()
    # SIGKILL: the kernel dropped the child's bpf_link, the program is gone
    assert_no_xdp(peer.a)


def test_no_permission_is_a_clear_exit_2(peer):
    """Without capabilities (root with an empty bounding set) pypdk-run fails
    with one line and status 2, and attaches nothing."""
    p = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--",
                        sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "--no-huge", "-l", "0-1",
                        "--vdev", f"net_af_xdp0,iface={peer.a}", "--vdev", "net_null0",
                        "--duration", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert "no permission" in p.stderr and "run as root" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_zero_copy_forced_on_veth_fails_cleanly(peer, pool):
    port = pypdk.pmd.open(f"net_af_xdp0,iface={peer.a},zero_copy=1")
    port.setup(pool, 1, 1)
    with pytest.raises(ResourceError, match="no AF_XDP zero-copy support.*zero_copy=auto"):
        port.start()
    assert_no_xdp(peer.a)
    port.close()


def test_busy_poll_budget(peer, pool):
    port = start_port(peer, pool, ",busy_budget=64")
    assert port.info()["busy_budget"] == 64
    dst, src = mac_bytes(peer.a_mac), mac_bytes(peer.b_mac)
    frames = [make_frame(dst, src, i, 64) for i in range(10)]
    ns_send_raw(peer.ns, peer.b, frames)
    assert collect(port, 10, match=lambda d: d[12:14] == struct.pack("!H", ETH_P_TEST)) == frames
    assert port.xstats()["rx_q0_wakeups"] > 0       # recvfrom() drove every poll
    port.close()


def test_link_state_follows_the_interface(peer, pool):
    port = start_port(peer, pool)
    assert port.link["up"] is True
    N.set_link(peer.a, None, "down")
    assert port.link["up"] is False
    N.set_link(peer.a, None, "up")
    port.close()


def test_eal_cleanup_before_close_does_not_crash(peer):
    """The pool's memory freed under a started port (a script that forgot to
    close): close only closes sockets and detaches, it touches no mbuf."""
    import pypdk.eal
    e = pypdk.eal.init(lcores="0-1", no_huge=True)
    try:
        p = PktMbufPool("axdp_gone", 1024)
        port = pypdk.pmd.open(f"net_af_xdp0,iface={peer.a}")
        port.setup(p, 1, 1, 256, 256)
        port.start()
    finally:
        e.close()
    port.close()
    assert_no_xdp(peer.a)


# ---- modes and programs ------------------------------------------------------------

def test_generic_mode(peer, pool):
    port = start_port(peer, pool, ",mode=generic")
    assert port.info()["xdp_mode"] == "generic"
    xs = port.xstats()
    assert xs["xdp_generic"] == 1 and xs["xdp_native"] == 0
    assert "xdpgeneric" in N.run("ip", "link", "show", "dev", peer.a).stdout
    dst, src = mac_bytes(peer.a_mac), mac_bytes(peer.b_mac)
    frames = [make_frame(dst, src, i, 80) for i in range(8)]
    ns_send_raw(peer.ns, peer.b, frames)
    assert collect(port, 8, match=lambda d: d[12:14] == struct.pack("!H", ETH_P_TEST)) == frames
    port.close()


# A minimal BPF ELF object written here, as clang -O2 -target bpf would lay it
# out (no compiler on this machine): the same 6 instructions as the built-in
# program, with the ld_imm64 relocated (R_BPF_64_64) to the map `xsks_map`,
# declared either in BTF-defined `.maps` or in the legacy `maps` section.

def _btf_for_xsks_map(max_entries=64) -> bytes:
    strs = b"\0"
    off = {}
    for s in ("int", "__ARRAY_SIZE_TYPE__", "unsigned int", "__u32", "type", "key", "value",
              "max_entries", "xsks_map", ".maps"):
        off[s] = len(strs)
        strs += s.encode() + b"\0"

    def t(name, kind, vlen, st):
        return struct.pack("<III", off[name] if name else 0, (kind << 24) | vlen, st)
    types = b"".join([
        t("int", 1, 0, 4) + struct.pack("<I", (1 << 24) | 32),                # 1 int
        t("__ARRAY_SIZE_TYPE__", 1, 0, 4) + struct.pack("<I", 32),             # 2
        t(None, 3, 0, 0) + struct.pack("<III", 1, 2, 17),                      # 3 int[17]
        t(None, 2, 0, 3),                                                      # 4 *type
        t(None, 3, 0, 0) + struct.pack("<III", 1, 2, max_entries),             # 5 int[N]
        t(None, 2, 0, 5),                                                      # 6 *max_entries
        t("unsigned int", 1, 0, 4) + struct.pack("<I", 32),                    # 7
        t("__u32", 8, 0, 7),                                                   # 8 typedef
        t(None, 2, 0, 8),                                                      # 9 __u32 *
        t(None, 4, 4, 32) + b"".join(struct.pack("<III", off[m], ty, bit) for m, ty, bit in
                                     (("type", 4, 0), ("key", 9, 64), ("value", 9, 128),
                                      ("max_entries", 6, 192))),               # 10 struct
        t("xsks_map", 14, 0, 10) + struct.pack("<I", 1),                       # 11 var
        t(".maps", 15, 1, 32) + struct.pack("<III", 11, 0, 32),                # 12 datasec
    ])
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs)) + types + strs


def write_bpf_elf(path, maps="btf", prog_section="xdp", data_reloc=False, map_name="xsks_map"):
    from pypdk.pmd.af_xdp import prog
    code = prog.default_program(0)           # ld_imm64 left 0: the relocation fills it
    code = code[:9] + b"\x01" + code[10:]    # dst r1, src_reg 0 as the compiler leaves it
    names = [prog_section, f".rel{prog_section}", "license", ".symtab", ".strtab"]
    if maps == "btf":
        mapsec, mapdata = ".maps", bytes(32)
        names += [".maps", ".BTF"]
    else:
        mapsec, mapdata = "maps", struct.pack("<IIIII", 17, 4, 4, 64, 0)
        names += ["maps"]
    if data_reloc:
        names += [".data"]
    strtab = b"\0"
    soff = {}
    for s in names + [map_name, "xdp_sock_prog", "_license", "counter"]:
        if s not in soff:
            soff[s] = len(strtab)
            strtab += s.encode() + b"\0"
    # section index map
    order = [None, prog_section, f".rel{prog_section}", "license", mapsec] + \
        ([".BTF"] if maps == "btf" else []) + ([".data"] if data_reloc else []) + [".symtab", ".strtab"]
    idx = {n: i for i, n in enumerate(order) if n}
    syms = [bytes(24),
            struct.pack("<IBBHQQ", soff[map_name], 0x11, 0, idx[mapsec], 0, len(mapdata)),
            struct.pack("<IBBHQQ", soff["xdp_sock_prog"], 0x12, 0, idx[prog_section], 0, len(code)),
            struct.pack("<IBBHQQ", soff["_license"], 0x11, 0, idx["license"], 0, 4)]
    target_sym = 1
    if data_reloc:
        syms.append(struct.pack("<IBBHQQ", soff["counter"], 0x11, 0, idx[".data"], 0, 8))
        target_sym = 4
    rel = struct.pack("<QQ", 8, (target_sym << 32) | 1)
    bodies = {prog_section: code, f".rel{prog_section}": rel, "license": b"GPL\0",
              mapsec: mapdata, ".symtab": b"".join(syms), ".strtab": strtab}
    if maps == "btf":
        bodies[".BTF"] = _btf_for_xsks_map()
    if data_reloc:
        bodies[".data"] = bytes(8)
    out = bytearray(64)
    offsets = {}
    for n in order[1:]:
        while len(out) % 8:
            out.append(0)
        offsets[n] = len(out)
        out += bodies[n]
    while len(out) % 8:
        out.append(0)
    shoff = len(out)
    shdrs = [bytes(64)]
    for n in order[1:]:
        ty, fl, link, info, ent = 1, 0, 0, 0, 0
        if n == prog_section:
            fl = 0x6
        elif n.startswith(".rel"):
            ty, link, info, ent = 9, idx[".symtab"], idx[prog_section], 16
        elif n == ".symtab":
            ty, link, info, ent = 2, idx[".strtab"], 1, 24
        elif n == ".strtab":
            ty = 3
        elif n != ".BTF":
            fl = 0x3
        shdrs.append(struct.pack("<IIQQQQIIQQ", soff[n], ty, fl, 0, offsets[n], len(bodies[n]),
                                 link, info, 8, ent))
    out += b"".join(shdrs)
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 1, 247, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(shdrs), idx[".strtab"])
    out[:64] = ehdr
    with open(path, "wb") as f:
        f.write(out)
    return path


@pytest.mark.parametrize("maps", ["btf", "legacy"])
def test_user_program_from_an_elf_object(peer, pool, tmp_path, maps):
    obj = write_bpf_elf(str(tmp_path / f"xsk_{maps}.o"), maps=maps, prog_section="xdp")
    port = start_port(peer, pool, f",xdp_prog={obj}")
    info = port.info()
    assert info["xdp_prog"] == obj
    state = xdp_state(peer.a)
    assert state["prog"]["id"] == info["xdp_prog_id"] and state["prog"]["name"] == "xdp"
    dst, src = mac_bytes(peer.a_mac), mac_bytes(peer.b_mac)
    frames = [make_frame(dst, src, i, 90) for i in range(8)]
    ns_send_raw(peer.ns, peer.b, frames)
    assert collect(port, 8, match=lambda d: d[12:14] == struct.pack("!H", ETH_P_TEST)) == frames
    port.close()


@pytest.mark.parametrize("name", ["xsk_btf.o", "xsk_maps.o"])
def test_user_program_compiled_by_llvm(peer, pool, name):
    """Objects from LLVM's BPF backend (llc 14; sources beside them in
    af_xdp_data/, checked in so the test needs no compiler): DWARF and
    .BTF/.BTF.ext sections, `.maps` with BTF or a legacy `maps` section."""
    obj = os.path.join(os.path.dirname(os.path.abspath(__file__)), "af_xdp_data", name)
    port = start_port(peer, pool, f",xdp_prog={obj}")
    assert xdp_state(peer.a)["prog"]["id"] == port.info()["xdp_prog_id"]
    dst, src = mac_bytes(peer.a_mac), mac_bytes(peer.b_mac)
    frames = [make_frame(dst, src, i, 300) for i in range(8)]
    ns_send_raw(peer.ns, peer.b, frames)
    assert collect(port, 8, match=lambda d: d[12:14] == struct.pack("!H", ETH_P_TEST)) == frames
    port.close()


def test_bad_program_objects_are_refused_at_open(peer, tmp_path, eal):
    notelf = tmp_path / "x.o"
    notelf.write_bytes(b"hello")
    with pytest.raises(UsageError, match="not an ELF file"):
        pypdk.pmd.open(f"net_af_xdp0,iface={peer.a},xdp_prog={notelf}")
    with pytest.raises(UsageError, match="no such file"):
        pypdk.pmd.open(f"net_af_xdp0,iface={peer.a},xdp_prog={tmp_path}/missing.o")
    other = write_bpf_elf(str(tmp_path / "other.o"), maps="legacy", map_name="my_map")
    with pytest.raises(UsageError, match="no map named xsks_map"):
        pypdk.pmd.open(f"net_af_xdp0,iface={peer.a},xdp_prog={other}")
    gdata = write_bpf_elf(str(tmp_path / "gdata.o"), data_reloc=True)
    with pytest.raises(UsageError, match="global data is not supported"):
        pypdk.pmd.open(f"net_af_xdp0,iface={peer.a},xdp_prog={gdata}")
    assert pypdk.pmd.ports() == []
    assert_no_xdp(peer.a)


# ---- statistics ------------------------------------------------------------------

def test_kernel_drops_are_imissed_and_short_pool_is_rx_nombuf(peer, eal):
    """A fill ring that is not polled: the kernel drops what does not fit
    (imissed, from XDP_STATISTICS). Then mbufs the app holds leave the pool
    empty: what could not be refilled is rx_nombuf, and the kernel, short of
    buffers, misses more. Every frame is either received or missed."""
    small = PktMbufPool(f"axdps{next(_seq)}", 200, cache_size=0)
    base = small.in_use_count
    port = start_port(peer, small, nb_desc=64)
    assert port.rx_fill_level(0) == 64
    dst, src = mac_bytes(peer.a_mac), mac_bytes(peer.b_mac)
    sent = 0

    def send(n):
        nonlocal sent
        ns_send_raw(peer.ns, peer.b, [make_frame(dst, src, sent + i, 64) for i in range(n)])
        sent += n

    def settle():
        end = time.monotonic() + 10
        while time.monotonic() < end:
            st = port.stats()
            if st["ipackets"] + st["imissed"] + port.ring_state(0)["rx"][0] - \
                    port.ring_state(0)["rx"][1] >= sent:
                return
            time.sleep(0.01)

    send(100)                                   # 64 fit the fill ring, 36 dropped
    settle()
    assert len(collect(port, 64)) == 64         # (freed at once)
    st = port.stats()
    assert st["ipackets"] == 64 and st["imissed"] == 36 and st["rx_nombuf"] == 0
    assert port.xstats()["q0_kernel_rx_fill_ring_empty_descs"] == 36
    held = []

    def take(n):
        end = time.monotonic() + 10
        want = len(held) + n
        while len(held) < want and time.monotonic() < end:
            held.extend(port.rx_burst(0, 32))
        assert len(held) == want

    send(64); settle(); take(64)                # refill: 64 more out of the pool (72 left)
    send(64); settle(); take(64)                # refill: 64 more (8 left)
    assert port.stats()["rx_nombuf"] == 0
    send(64); settle(); take(64)                # refill: only 8 of 64
    assert port.stats()["rx_nombuf"] == 56
    assert port.rx_fill_level(0) == 8
    send(20); settle(); take(8)                 # 8 buffers for 20 frames
    st = port.stats()
    assert st["imissed"] == 36 + 12
    assert st["ipackets"] + st["imissed"] == sent
    for m in held:
        m.free()
    port.close()
    assert small.in_use_count == base
    small.close()


def test_stop_start_keeps_counters_and_leaves_no_program_while_stopped(peer, pool):
    port = start_port(peer, pool)
    dst, src = mac_bytes(peer.a_mac), mac_bytes(peer.b_mac)
    ns_send_raw(peer.ns, peer.b, [make_frame(dst, src, i, 70) for i in range(5)])
    assert len(collect(port, 5)) == 5
    port.stop()
    assert_no_xdp(peer.a)
    assert pool.in_use_count == 0         # the kernel gave every mbuf back
    port.start()
    ns_send_raw(peer.ns, peer.b, [make_frame(dst, src, i, 70) for i in range(5)])
    assert len(collect(port, 5)) == 5
    assert port.stats()["ipackets"] == 10
    port.close()


# ---- leaving things as found -----------------------------------------------------

def test_exception_in_the_app_detaches(peer, pool):
    port = pypdk.pmd.open(f"net_af_xdp0,iface={peer.a}")
    with pytest.raises(RuntimeError):
        try:
            port.setup(pool, 1, 1)
            port.start()
            assert xdp_state(peer.a) is not None
            raise RuntimeError("the app failed")
        finally:
            port.close()
    assert_no_xdp(peer.a)


_CHILD = textwrap.dedent("""
    import signal, sys, time
    sys.path.insert(0, '.')
    import pypdk.eal, pypdk.pmd
    from pypdk.mempool.mbuf import PktMbufPool
    iface, how = sys.argv[1], sys.argv[2]
    if how == 'handler':
        def stop(sig, frame):
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, stop)
    eal = pypdk.eal.init(lcores='0', no_huge=True)
    pool = PktMbufPool('child', 2048)
    port = pypdk.pmd.open('net_af_xdp0,iface=' + iface)
    try:
        port.setup(pool, 1, 1, 256, 256)
        port.start()
        print('started', flush=True)
        while True:
            for m in port.rx_burst(0, 32):
                m.free()
            time.sleep(0.001)
    finally:
        port.close()
        print('closed in finally', flush=True)
""")


def test_sigterm_with_a_handler_closes_the_port(peer):
    child = subprocess.Popen([sys.executable, "-c", _CHILD, peer.a, "handler"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "started", child.stderr.read()
        assert xdp_state(peer.a)["prog"]["name"] == "pypdk_xsk"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert "closed in finally" in out
    assert_no_xdp(peer.a)


def test_pypdk_run_sigterm_detaches_every_port(make_peer):
    """pypdk-run with l2fwd over two AF_XDP ports; SIGTERM: clean exit, programs gone."""
    p1, p2 = make_peer(), make_peer()
    run = subprocess.Popen([sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "--no-huge", "-l", "0-1",
                            "--vdev", f"net_af_xdp0,iface={p1.a}", "--vdev", f"net_af_xdp1,iface={p2.a}"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and run.poll() is None:
            if xdp_state(p1.a) is not None and xdp_state(p2.a) is not None:
                break
            time.sleep(0.05)
        assert run.poll() is None, run.communicate()
        # forward something through it while it runs: p1's peer -> pypdk -> p2's peer
        frames = [make_frame(mac_bytes(p1.a_mac), mac_bytes(p1.b_mac), i, 120) for i in range(10)]
        cap = Capture(p2.ns, p2.b, len(frames))
        ns_send_raw(p1.ns, p1.b, frames)
        got = cap.frames()
        assert [g[12:] for g in got] == [f[12:] for f in frames]
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    assert_no_xdp(p1.a)
    assert_no_xdp(p2.a)
