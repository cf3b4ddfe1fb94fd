"""net_vhost against a hostile frontend and guest (the cases DPDK's vhost CVEs
taught): each bad message or ring stops only that port, with its reason
counted in xstats; nothing crashes, nothing leaks (mbufs, fds), the port
takes a good frontend afterwards, and another port polled by the same loop
keeps forwarding."""
import os
import struct
import threading
import time

import pytest

import pypdk.pmd
from pypdk.mempool import PktMbufPool
from pypdk.pmd.vhost import protocol as P
from pypdk.testing.vhost_frontend import (Frontend, GuestMemory, VirtioNet, Virtq, frame, MB,
                                      GOOD_FEATURES, DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT)


def wait_until(cond, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def assert_stopped(port, fe, reason):
    """The port dropped the frontend for `reason` and is down; then it serves a good guest."""
    assert fe.closed_by_peer(), "the backend kept a violating frontend"
    assert wait_until(lambda: port.xstats()["stop_" + reason] == 1), port.info()["last_stop"]
    others = {k: v for k, v in port.xstats().items() if k.startswith("stop_") and k != "stop_" + reason}
    assert not any(others.values()), others
    assert port.link["up"] is False
    assert port.info()["last_stop"].startswith(reason)
    # The port is not dead: a frontend that starts over gets a working device.
    mem = GuestMemory()
    g = VirtioNet(Frontend.connect(port.iface), mem)
    try:
        g.send(frame(64, 42))
        got = []
        end = time.monotonic() + 2
        while not got and time.monotonic() < end:
            got = port.rx_burst(0, 32)
        assert [m.bytes() for m in got] == [frame(64, 42)]
        for m in got:
            m.free()
    finally:
        g.fe.close()
        g.close()
        mem.close()
    assert wait_until(lambda: not port.info()["connected"])


def started(fe, mem, features=GOOD_FEATURES):
    fe.handshake(features)
    fe.set_mem_table(mem)


# ---- messages ----------------------------------------------------------------

def mem_table_cases():
    R = lambda gpa, size, uva=None, off=0: (gpa, size, 0x7f0000000000 + gpa if uva is None else uva, off)
    return [
        ("two regions, one fd", [R(0x100000, MB), R(0x300000, MB)], 1, "fd_count"),
        ("no region", [], 0, "region_count"),
        ("nine regions", [R(0x100000 * (i + 1), 4096) for i in range(9)], 0, "region_count"),
        ("nine fds", [R(0x100000 * (i + 1), 4096) for i in range(9)], 9, "fd_count"),
        ("overlap", [R(0x100000, MB), R(0x180000, MB)], 2, "region_overlap"),
        ("size 0", [R(0x100000, 0)], 1, "region_size"),
        ("offset + size overflows", [R(0x100000, MB, off=(1 << 64) - 4096)], 1, "region_overflow"),
        ("gpa + size overflows", [R((1 << 64) - 4096, MB, uva=0x7f0000000000)], 1, "region_overflow"),
        ("file shorter than offset + size", [R(0x100000, 64 * MB)], 1, "region_fd"),
    ]


@pytest.mark.parametrize("what, regions, nfds, reason", mem_table_cases(),
                         ids=[c[0] for c in mem_table_cases()])
def test_bad_memory_tables_stop_the_port(vhost, frontend, what, regions, nfds, reason):
    port = vhost()
    fds_before = open_fds()
    fe, mem = frontend(port.iface)
    fe.handshake()
    fds = [os.memfd_create("bad") for _ in range(nfds)]
    for fd in fds:
        os.ftruncate(fd, 2 * MB)
    try:
        fe.send(P.SET_MEM_TABLE, P.pack_mem_table(regions), fds)
        assert_stopped(port, fe, reason)
    finally:
        for fd in fds:
            os.close(fd)
    fe.close()
    mem.close()
    assert wait_until(lambda: open_fds() <= fds_before | open_fds() and
                      len(open_fds()) <= len(fds_before)), "the port kept fds the frontend sent"


@pytest.mark.parametrize("size", [0, 3, 65536])
def test_ring_sizes_that_are_not_a_power_of_two_up_to_32768_stop_the_port(vhost, frontend, size):
    port = vhost()
    fe, mem = frontend(port.iface)
    started(fe, mem)
    fe.send(P.SET_VRING_NUM, P.VRING_STATE.pack(0, size))
    assert_stopped(port, fe, "ring_size")


@pytest.mark.parametrize("req, payload", [
    (P.SET_VRING_NUM, P.VRING_STATE.pack(2, 256)),          # queues=1: vrings 0 and 1
    (P.SET_VRING_ADDR, P.VRING_ADDR.pack(255, 0, 0, 0, 0, 0)),
    (P.GET_VRING_BASE, P.VRING_STATE.pack(7, 0)),
    (P.SET_VRING_CALL, P.U64.pack(2 | P.VRING_NOFD_MASK)),
])
def test_a_vring_index_out_of_range_stops_the_port(vhost, frontend, req, payload):
    port = vhost()
    fe, mem = frontend(port.iface)
    started(fe, mem)
    fe.send(req, payload)
    assert_stopped(port, fe, "ring_index")


@pytest.mark.parametrize("part", ["desc", "avail", "used_partly"])
def test_ring_addresses_outside_the_memory_stop_the_port(vhost, frontend, part):
    port = vhost()
    fe, mem = frontend(port.iface)
    started(fe, mem)
    fe.request(P.SET_VRING_NUM, P.VRING_STATE.pack(0, 256))
    vq = Virtq(mem, 0, 256)
    desc, used, avail = mem.uva(vq.desc), mem.uva(vq.used), mem.uva(vq.avail)
    last = mem.regions[-1]
    if part == "desc":
        desc = 0x1000
    elif part == "avail":
        avail = last.uva + last.size + 0x10000
    else:
        used = last.uva + last.size - 16           # starts inside, ends outside
    fe.send(P.SET_VRING_ADDR, P.VRING_ADDR.pack(0, 0, desc, used, avail, 0))
    assert_stopped(port, fe, "ring_addr")
    vq.close()


@pytest.mark.parametrize("case", ["kick before the memory table", "memory table before SET_OWNER",
                                  "reconfigure a running ring"])
def test_messages_out_of_order_stop_the_port(vhost, frontend, guest, case):
    port = vhost()
    if case == "reconfigure a running ring":
        g = guest(port.iface)
        fe = g.fe
        fe.send(P.SET_VRING_NUM, P.VRING_STATE.pack(1, 128))
    else:
        fe, mem = frontend(port.iface)
        if case == "memory table before SET_OWNER":
            fe.send(P.SET_MEM_TABLE, P.pack_mem_table(mem.table()), mem.fds())
        else:
            fe.handshake()
            fe.request(P.SET_VRING_NUM, P.VRING_STATE.pack(0, 256))
            kick = os.eventfd(0)
            fe.send(P.SET_VRING_KICK, P.U64.pack(0), [kick])
            os.close(kick)
    assert_stopped(port, fe, "out_of_order")


@pytest.mark.parametrize("case, reason", [
    ("oversized payload", "payload_size"),
    ("short SET_FEATURES", "payload_size"),
    ("long vring address", "payload_size"),
    ("fds on GET_FEATURES", "fd_count"),
    ("two fds on a kick", "fd_count"),
    ("no fd on a kick without NOFD", "fd_count"),
    ("features never offered", "features"),
    ("protocol features never offered", "features"),
    ("unknown request", "unknown_request"),
    ("dirty log base", "not_negotiated"),
    ("version 2", "header"),
    ("a reply sent as a request", "header"),
])
def test_malformed_messages_stop_the_port(vhost, frontend, case, reason):
    port = vhost()
    fe, mem = frontend(port.iface)
    fds = []
    if case == "oversized payload":
        fe.send(P.SET_FEATURES, b"\0" * 8, size=1 << 20)
    elif case == "short SET_FEATURES":
        fe.send(P.SET_FEATURES, b"\0" * 4)
    elif case == "long vring address":
        fe.handshake()
        fe.send(P.SET_VRING_ADDR, b"\0" * 48)
    elif case == "fds on GET_FEATURES":
        fds = [os.eventfd(0)]
        fe.send(P.GET_FEATURES, b"", fds)
    elif case == "two fds on a kick":
        fe.handshake()
        fds = [os.eventfd(0), os.eventfd(0)]
        fe.send(P.SET_VRING_KICK, P.U64.pack(0), fds)
    elif case == "no fd on a kick without NOFD":
        fe.handshake()
        fe.send(P.SET_VRING_KICK, P.U64.pack(0))
    elif case == "features never offered":
        fe.send(P.SET_FEATURES, P.U64.pack(P.bit(P.VIRTIO_NET_F_CSUM)))
    elif case == "protocol features never offered":
        fe.send(P.SET_PROTOCOL_FEATURES, P.U64.pack(P.bit(P.PROTOCOL_F_CONFIG)))
    elif case == "unknown request":
        fe.send(99, P.U64.pack(0))
    elif case == "dirty log base":
        fe.send(P.SET_LOG_BASE, P.U64.pack(0) * 2)
    elif case == "version 2":
        fe.send(P.GET_FEATURES, flags=2)
    else:
        fe.send(P.GET_FEATURES, flags=P.VERSION | P.FLAG_REPLY)
    for fd in fds:
        os.close(fd)
    assert_stopped(port, fe, reason)


@pytest.mark.parametrize("cut", [5, P.HDR_SIZE + 3])
def test_a_peer_that_closes_mid_message_only_disconnects(vhost, frontend, cut):
    port = vhost()
    fe, mem = frontend(port.iface)
    fe.handshake()
    msg = P.pack_msg(P.SET_VRING_ADDR, P.VRING_ADDR.pack(0, 0, 0, 0, 0, 0))
    fe.send_raw(msg[:cut])
    time.sleep(0.05)
    assert port.info()["connected"]                 # a partial message just waits
    fe.close()
    assert wait_until(lambda: port.xstats()["closed_mid_message"] == 1)
    assert not port.info()["connected"] and port.link["up"] is False
    assert not any(v for k, v in port.xstats().items() if k.startswith("stop_"))


def test_a_truncated_payload_is_not_taken_for_the_next_message(vhost, frontend):
    """The header promises 40 bytes, 8 come, then a whole GET_FEATURES: the
    backend reads it as the rest of the payload and refuses the result."""
    port = vhost()
    fe, mem = frontend(port.iface)
    fe.handshake()
    fe.send_raw(P.HDR.pack(P.SET_VRING_ADDR, P.VERSION, 40) + b"\0" * 8)
    fe.send_raw(P.pack_msg(P.GET_FEATURES) + b"\xff" * 20)   # 32 bytes: the payload is complete
    assert_stopped(port, fe, "ring_addr")           # desc 0x100000001: the next header, misaligned


# ---- rings -------------------------------------------------------------------

def good_guest(port, guest, **kw):
    g = guest(port.iface, **kw)
    assert wait_until(lambda: port.link["up"])
    return g


def poll(port, n=4, q=0):
    got = []
    for _ in range(n):
        got += port.rx_burst(q, 32)
    for m in got:
        m.free()
    return got


def hdr_buf(g, payload=b"", hdr=None):
    data = (g.header() if hdr is None else hdr) + payload
    gpa = g.mem.alloc(len(data) + 16)
    g.mem.write(gpa, data)
    return gpa, len(data)


RING_CASES = ["self loop", "two-cycle", "next past the table", "head past the table",
              "all entries then back", "buffer past the last region", "buffer below memory",
              "buffer partly inside", "device-writable buffer to send", "avail idx jump",
              "indirect len 0", "indirect len 17", "indirect too many", "indirect nested",
              "indirect with next", "indirect outside memory", "indirect not negotiated"]
REASONS = {"self loop": "chain_too_long", "two-cycle": "chain_too_long",
           "next past the table": "desc_index", "head past the table": "desc_index",
           "all entries then back": "chain_too_long", "buffer past the last region": "desc_addr",
           "buffer below memory": "desc_addr", "buffer partly inside": "desc_addr",
           "device-writable buffer to send": "desc_dir", "avail idx jump": "avail_idx",
           "indirect len 0": "indirect_len", "indirect len 17": "indirect_len",
           "indirect too many": "indirect_len", "indirect nested": "indirect_nested",
           "indirect with next": "indirect_place", "indirect outside memory": "indirect_addr",
           "indirect not negotiated": "indirect_off"}


@pytest.mark.parametrize("case", RING_CASES)
def test_broken_transmit_rings_stop_only_that_port(vhost, guest, pool, case):
    bad = vhost(0)
    other = vhost(1)
    feats = GOOD_FEATURES | (0 if case == "indirect not negotiated" else P.bit(P.VIRTIO_RING_F_INDIRECT_DESC))
    g = good_guest(bad, guest, size=16, features=feats)
    ok = good_guest(other, guest)
    vq, mem = g.txq(), g.mem
    gpa, n = hdr_buf(g, frame(64))
    last = mem.regions[-1]
    if case == "self loop":
        vq.set_desc(0, gpa, n, DESC_F_NEXT, 0)
    elif case == "two-cycle":
        vq.set_desc(0, gpa, 4, DESC_F_NEXT, 1)
        vq.set_desc(1, gpa + 4, 4, DESC_F_NEXT, 0)
    elif case == "next past the table":
        vq.set_desc(0, gpa, n, DESC_F_NEXT, 16)
    elif case == "all entries then back":
        for i in range(16):
            vq.set_desc(i, gpa, 2, DESC_F_NEXT, (i + 1) % 16)
    elif case == "buffer past the last region":
        vq.set_desc(0, last.gpa + last.size + 4096, n)
    elif case == "buffer below memory":
        vq.set_desc(0, 0x1000, n)
    elif case == "buffer partly inside":
        vq.set_desc(0, last.gpa + last.size - 8, 100)
    elif case == "device-writable buffer to send":
        vq.set_desc(0, gpa, n, DESC_F_WRITE)
    elif case.startswith("indirect"):
        table = mem.alloc(16 * 64, 16)
        entries = [struct.pack("<QIHH", gpa, n, 0, 0)]
        length = 16
        flags = DESC_F_INDIRECT
        if case == "indirect len 0":
            length = 0
        elif case == "indirect len 17":
            length = 17
        elif case == "indirect too many":
            length = 16 * 17                       # more entries than the ring has
        elif case == "indirect nested":
            entries = [struct.pack("<QIHH", table, 16, DESC_F_INDIRECT, 0)]
        elif case == "indirect with next":
            flags |= DESC_F_NEXT
        elif case == "indirect outside memory":
            table = last.gpa + last.size - 8
        if case != "indirect outside memory":
            mem.write(table, b"".join(entries))
        vq.set_desc(0, table, length, flags, 1)
        vq.set_desc(1, gpa, n)
    if case == "head past the table":
        vq.mem.write(vq.avail + 4, struct.pack("<H", 16))
        vq.set_avail_idx(1)
    elif case == "avail idx jump":
        vq.set_avail_idx(17)
    else:
        vq.post(0)
    # One loop polls both ports, as one lcore would.
    ok.send(frame(64, 1))
    got_bad = poll(bad)
    got_ok = poll(other)
    assert got_bad == [] and len(got_ok) == 1
    ok.send(frame(64, 2))
    assert len(poll(other)) == 1 and poll(bad) == []
    assert wait_until(lambda: bad.xstats()["stop_" + REASONS[case]] == 1), bad.info()["last_stop"]
    assert other.link["up"] and not any(v for k, v in other.xstats().items() if k.startswith("stop_"))
    assert_stopped(bad, g.fe, REASONS[case])


@pytest.mark.parametrize("case", ["read-only buffer to fill", "buffer outside memory"])
def test_broken_receive_rings_stop_the_port_and_the_mbufs_stay_the_callers(vhost, guest, pool, case):
    port = vhost()
    g = good_guest(port, guest)
    vq, mem = g.rxq(), g.mem
    if case == "read-only buffer to fill":
        vq.set_desc(0, mem.alloc(2048), 2048, 0)
    else:
        vq.set_desc(0, 0x10, 2048, DESC_F_WRITE)
    vq.post(0)
    m = pool.alloc()
    m.append(frame(64))
    assert port.tx_burst(0, [m]) == 0
    m.free()
    assert_stopped(port, g.fe, "desc_dir" if case.startswith("read-only") else "desc_addr")


def test_a_good_indirect_table_and_a_zero_length_descriptor_with_a_bad_address_work(vhost, guest):
    port = vhost()
    g = good_guest(port, guest, features=GOOD_FEATURES | P.bit(P.VIRTIO_RING_F_INDIRECT_DESC))
    vq, mem = g.txq(), g.mem
    f = frame(300, 4)
    gpa, n = hdr_buf(g, f)
    table = mem.alloc(48, 16)
    mem.write(table, struct.pack("<QIHH", gpa, 10, DESC_F_NEXT, 1)
              + struct.pack("<QIHH", 0xdead_0000_0000, 0, DESC_F_NEXT, 2)   # len 0: never touched
              + struct.pack("<QIHH", gpa + 10, n - 10, 0, 0))
    vq.set_desc(0, table, 48, DESC_F_INDIRECT)
    vq.post(0)
    got = []
    for _ in range(4):
        got += port.rx_burst(0, 32)
    assert [m.bytes() for m in got] == [f]
    got[0].free()
    assert not any(v for k, v in port.xstats().items() if k.startswith("stop_"))


@pytest.mark.parametrize("case, drop", [
    ("chain shorter than the header", "hdr_short"),
    ("csum_start past the end", "csum"),
    ("gso fields past the end", "gso"),
    ("runt", "runt"),
])
def test_bad_packets_are_counted_drops_and_the_ring_goes_on(vhost, guest, case, drop):
    port = vhost()
    g = good_guest(port, guest)
    if case == "chain shorter than the header":
        g.send(b"", hdr=b"\0" * 8)
    elif case == "csum_start past the end":
        g.send(frame(64), hdr=g.header(flags=P.NET_HDR_F_NEEDS_CSUM, csum_start=60000, csum_offset=16))
    elif case == "gso fields past the end":
        g.send(frame(64), hdr=g.header(gso=P.NET_HDR_GSO_TCPV4, hdr_len=9000, gso_size=1448))
    else:
        g.send(frame(64)[:10])
    g.send(frame(64, 8))
    got = []
    for _ in range(4):
        got += port.rx_burst(0, 32)
    assert [m.bytes() for m in got] == [frame(64, 8)]
    got[0].free()
    assert port.xstats()[f"rx_q0_drop_{drop}"] == 1
    assert port.stats()["ierrors"] == 1 and port.stats()["ipackets"] == 1
    assert len(g.tx_reclaim()) == 2                 # the dropped chain came back too
    assert port.link["up"]


@pytest.mark.parametrize("flip_addr", [False, True], ids=["len", "len and addr"])
def test_toctou_descriptors_rewritten_while_the_backend_parses(vhost, guest, pool, flip_addr):
    """A thread rewrites descriptors' len (and addr) while the port polls:
    every frame delivered is consistent (pkt_len = its bytes, the bytes a
    prefix of the buffer); an address flipped outside memory stops the port
    with desc_addr; nothing crashes or leaks."""
    port = vhost()
    g = good_guest(port, guest, size=256)
    vq, mem = g.txq(), g.mem
    data = g.header() + frame(4000, 3)
    gpa = mem.alloc(len(data))
    mem.write(gpa, data)
    stop = threading.Event()
    bad_addr = mem.regions[-1].gpa + mem.regions[-1].size - 50     # ends past memory at any len used

    def flipper():
        k = 0
        while not stop.is_set():
            i = k % 256
            addr = bad_addr if flip_addr and k % 64 == 63 else gpa
            vq.set_desc(i, addr, 100 if k & 1 else len(data))
            k += 1

    for i in range(256):
        vq.set_desc(i, gpa, len(data))
    t = threading.Thread(target=flipper)
    t.start()
    seen = 0
    try:
        end = time.monotonic() + 1.0
        while time.monotonic() < end and port.info()["connected"]:
            while (vq.avail_idx - vq.used_idx()) & 0xffff < 200:
                vq.post(vq.avail_idx % 256)
            for m in port.rx_burst(0, 32):
                b = m.bytes()
                assert len(b) == m.pkt_len and b == data[12:12 + len(b)]
                assert len(b) in (100 - 12, len(data) - 12)
                seen += 1
                m.free()
    finally:
        stop.set()
        t.join()
    if flip_addr:
        assert wait_until(lambda: port.xstats()["stop_desc_addr"] == 1)
        assert_stopped(port, g.fe, "desc_addr")
    else:
        assert seen > 100 and port.info()["connected"]


# ---- resources -----------------------------------------------------------------

def test_a_guest_that_never_returns_rx_buffers_costs_no_mbufs(vhost, guest, pool):
    port = vhost()
    g = good_guest(port, guest)
    g.give_rx(4)
    for _ in range(3):
        ms = []
        for i in range(8):
            m = pool.alloc()
            m.append(frame(64, i))
            ms.append(m)
        sent = port.tx_burst(0, ms)
        for m in ms[sent:]:
            m.free()
    assert port.stats()["opackets"] == 4
    assert port.xstats()["tx_q0_guest_full"] == 4 + 8 + 8
    assert len(g.recv()) == 4
    assert port.link["up"]


def test_mbuf_pool_exhaustion_counts_rx_nombuf_then_recovers(vhost, guest, eal_no_huge):
    small = PktMbufPool("vhost_small", 40, cache_size=0)
    try:
        port = vhost(setup=False)
        port.setup(small, nb_rx_desc=256, nb_tx_desc=256)
        port.start()
        g = good_guest(port, guest)
        sent = [frame(100, i) for i in range(64)]
        for f in sent:
            g.send(f)
        held = []
        for _ in range(4):
            held += port.rx_burst(0, 32)
        assert len(held) == 40 and port.stats()["rx_nombuf"] >= 1
        got = [m.bytes() for m in held]
        for m in held:
            m.free()
        for _ in range(4):
            more = port.rx_burst(0, 32)
            got += [m.bytes() for m in more]
            for m in more:
                m.free()
        assert got == sent                            # nothing lost, nothing reordered
        port.close()
        assert small.in_use_count == 0
    finally:
        pypdk.pmd.close_all()
        small.close()


def test_a_guest_memory_file_cannot_be_shrunk_under_the_backend(vhost, guest):
    """Touching a page past the end of a file faults the process (SIGBUS), so
    the backend seals a sealable memfd against shrinking when it maps it."""
    port = vhost()
    g = good_guest(port, guest)
    for r in g.mem.regions:
        with pytest.raises(PermissionError):
            os.ftruncate(r.fd, 0)
    g.send(frame(64))
    assert len(poll(port)) == 1
