"""net_vhost with a well-behaved guest: negotiation, link, frames both ways
byte-exact (chains, mergeable buffers, buffers across regions, a split
header), interrupts, multi-queue, client mode with reconnect."""
import os
import socket
import struct
import time

import pytest

import pypdk.pmd
from pypdk.errors import ResourceError, UsageError
from pypdk.pmd.vhost import protocol as P
from pypdk.testing.vhost_frontend import (Frontend, GuestMemory, VirtioNet, Virtq, frame, MB,
                                      GOOD_FEATURES)


def wait_until(cond, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def rx_all(port, q=0, want=1, timeout=2.0):
    got, end = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        got += port.rx_burst(q, 32)
    return got


def mbufs(pool, frames, seg=2048):
    """Frames as mbufs, chained in `seg`-byte segments."""
    out = []
    for f in frames:
        m = pool.alloc()
        m.append(f[:seg])
        for off in range(seg, len(f), seg):
            t = pool.alloc()
            t.append(f[off:off + seg])
            m.chain(t)
        out.append(m)
    return out


def test_negotiation_offers_no_offloads_and_the_link_follows_the_rings(vhost, frontend):
    port = vhost(queues=2)
    assert port.link["up"] is False and port.info()["connected"] is False
    fe, mem = frontend(port.iface)
    offered = fe.get_u64(P.GET_FEATURES)
    for b in (P.VIRTIO_F_VERSION_1, P.VIRTIO_NET_F_MRG_RXBUF, P.VIRTIO_NET_F_MQ,
              P.VHOST_USER_F_PROTOCOL_FEATURES):
        assert offered & P.bit(b)
    for b in (P.VIRTIO_NET_F_CSUM, P.VIRTIO_NET_F_GUEST_CSUM, P.VIRTIO_NET_F_HOST_TSO4,
              P.VIRTIO_NET_F_GUEST_TSO4, P.VHOST_F_LOG_ALL):
        assert not offered & P.bit(b)
    pf = fe.get_u64(P.GET_PROTOCOL_FEATURES)
    assert pf & P.bit(P.PROTOCOL_F_MQ) and pf & P.bit(P.PROTOCOL_F_REPLY_ACK)
    assert fe.get_u64(P.GET_QUEUE_NUM) == 2
    fe.close()
    assert wait_until(lambda: not port.info()["connected"])
    g = VirtioNet(Frontend.connect(port.iface), mem, queues=2)
    assert wait_until(lambda: port.link["up"])
    # Disabling a ring of pair 0 takes the link down; enabling it brings it back.
    g.fe.vring_state(P.SET_VRING_ENABLE, 1, 0)
    assert port.link["up"] is False
    g.fe.vring_state(P.SET_VRING_ENABLE, 1, 1)
    assert port.link["up"] is True
    g.fe.close()
    assert wait_until(lambda: not port.link["up"] and not port.info()["connected"])
    assert port.xstats()["disconnects"] == 2 and port.xstats()["connections"] == 2
    g.close()


def test_guest_frames_reach_the_port_byte_exact_in_mbuf_chains(vhost, guest, pool):
    port = vhost()
    g = guest(port.iface)
    sizes = [60, 64, 1514, 2100, 9000, 65000]     # data room 2048: the larger ones are chains
    sent = [frame(n, seed=i) for i, n in enumerate(sizes)]
    for f in sent:
        g.send(f)
    got = rx_all(port, want=len(sent))
    assert [m.bytes() for m in got] == sent
    assert [m.nb_segs for m in got] == [1, 1, 1, 2, 5, 32]
    assert all(m.port == port.port_id for m in got)
    assert len(g.tx_reclaim()) == len(sent)         # every head came back
    st = port.stats()
    assert st["ipackets"] == len(sent) and st["ibytes"] == sum(sizes)
    for m in got:
        m.free()


def test_port_frames_reach_the_guest_with_mergeable_buffers(vhost, guest, pool):
    port = vhost()
    g = guest(port.iface)
    g.give_rx(16, size=1024)
    frames = [frame(60), frame(1000), frame(1500, 3), frame(3000, 7)]
    assert port.tx_burst(0, mbufs(pool, frames)) == 4
    got = g.recv()
    assert [body for _, body in got] == frames
    nbufs = [struct.unpack_from("<HBBHHHHH", b"\0\0" + h)[-1] for h, _ in got]
    assert nbufs == [1, 1, 2, 3]                     # 1012 bytes per buffer after the header
    assert all(h[:10] == bytes(10) for h, _ in got)  # flags 0, GSO none
    assert port.stats()["opackets"] == 4


def test_without_mergeable_buffers_a_frame_too_big_for_the_buffer_is_dropped(vhost, guest, pool):
    port = vhost()
    g = guest(port.iface, features=P.bit(P.VIRTIO_F_VERSION_1) | P.bit(P.VHOST_USER_F_PROTOCOL_FEATURES))
    assert port.vring_state(0)["hdr_len"] == 12
    g.give_rx(2, size=1600)
    assert port.tx_burst(0, mbufs(pool, [frame(1500), frame(1700)])) == 2
    got = g.recv()
    assert [b for _, b in got] == [frame(1500)]
    assert port.xstats()["tx_q0_drop_no_fit"] == 1 and port.stats()["oerrors"] == 1


def test_legacy_header_is_ten_bytes(vhost, guest, pool):
    port = vhost()
    g = guest(port.iface, features=P.bit(P.VHOST_USER_F_PROTOCOL_FEATURES))
    assert g.hdr_len == 10 and port.vring_state(1)["hdr_len"] == 10
    g.send(frame(100))
    got = rx_all(port)
    assert [m.bytes() for m in got] == [frame(100)]
    got[0].free()


def test_a_buffer_crossing_two_regions_works_both_ways(vhost, guest, pool):
    port = vhost()
    mem = GuestMemory(sizes=(1 * MB, 1 * MB))
    g = guest(port.iface, mem=mem)
    boundary = mem.regions[1].gpa
    f = frame(1400, 5)
    data = g.header() + f
    start = boundary - 700                            # half in each region
    mem.write(start, data)
    vq = g.txq()
    vq.post(vq.chain([(start, len(data))]))
    got = rx_all(port)
    assert [m.bytes() for m in got] == [f]
    got[0].free()
    g.give_rx(1, size=2048, gpa=boundary - 1000)
    assert port.tx_burst(0, mbufs(pool, [f])) == 1
    assert [b for _, b in g.recv()] == [f]


def test_a_header_split_over_three_descriptors_is_parsed(vhost, guest):
    port = vhost()
    g = guest(port.iface)
    f = frame(200, 9)
    g.send(f, split=(5, 4, 3, 50))                    # 12 header bytes in three, then the frame in two
    got = rx_all(port)
    assert [m.bytes() for m in got] == [f]
    got[0].free()


def test_interrupts_once_per_burst_unless_suppressed(vhost, guest, pool):
    port = vhost()
    g = guest(port.iface)
    rxq, txq = g.rxq(), g.txq()
    for i in range(8):
        g.send(frame(64, i))
    got = rx_all(port, want=8)
    assert len(got) == 8 and txq.calls() == 1         # one burst, one interrupt
    for m in got:
        m.free()
    txq.set_avail_flags(1)                            # VRING_AVAIL_F_NO_INTERRUPT
    g.send(frame(64))
    got = rx_all(port)
    got[0].free()
    assert txq.calls() == 0
    g.give_rx(4)
    assert port.tx_burst(0, mbufs(pool, [frame(64)] * 4)) == 4
    assert rxq.calls() == 1
    xs = port.xstats()
    assert xs["rx_q0_calls"] == 1 and xs["rx_q0_calls_suppressed"] == 1 and xs["tx_q0_calls"] == 1


def test_event_idx_interrupts_only_past_used_event(vhost, guest, pool):
    port = vhost()
    g = guest(port.iface, features=GOOD_FEATURES | P.bit(P.VIRTIO_RING_F_EVENT_IDX))
    rxq = g.rxq()
    g.give_rx(8)
    rxq.set_used_event(3)                             # interrupt when used.idx passes 3
    assert port.tx_burst(0, mbufs(pool, [frame(64)] * 2)) == 2   # used 0 -> 2
    assert rxq.calls() == 0
    assert port.tx_burst(0, mbufs(pool, [frame(64)] * 2)) == 2   # 2 -> 4 crosses 3
    assert rxq.calls() == 1
    assert len(g.recv()) == 4


def test_multi_queue_pairs_are_separate_port_queues(vhost, guest, pool):
    port = vhost(queues=2)
    g = guest(port.iface, queues=2)
    g.send(frame(64, 1), q=0)
    g.send(frame(64, 2), q=1)
    g.send(frame(64, 3), q=1)
    q0, q1 = rx_all(port, 0), rx_all(port, 1, want=2)
    assert [m.bytes() for m in q0] == [frame(64, 1)] and [m.queue for m in q1] == [1, 1]
    assert [m.bytes() for m in q1] == [frame(64, 2), frame(64, 3)]
    for m in q0 + q1:
        m.free()
    g.give_rx(2, q=1)
    assert port.tx_burst(1, mbufs(pool, [frame(80)])) == 1
    left = mbufs(pool, [frame(80)])
    assert port.tx_burst(0, left) == 0                # the guest gave queue 0 nothing
    left[0].free()
    assert [b for _, b in g.recv(1)] == [frame(80)]
    xs = port.xstats()
    assert xs["rx_q0_packets"] == 1 and xs["rx_q1_packets"] == 2 and xs["tx_q1_packets"] == 1


def test_vhost_to_ring_to_vhost_forwards_byte_exact(vhost, guest, pool):
    a, b = vhost(0), vhost(1)
    ring = pypdk.pmd.open("net_ring0,loopback=1").setup(pool)
    ring.start()
    ga, gb = guest(a.iface), guest(b.iface)
    gb.give_rx(64)
    sent = [frame(64 + 37 * i, i) for i in range(40)]
    for f in sent:
        ga.send(f)
    moved = 0
    end = time.monotonic() + 3
    while moved < len(sent) and time.monotonic() < end:
        pk = a.rx_burst(0, 32)
        assert ring.tx_burst(0, pk) == len(pk)
        back = ring.rx_burst(0, 32)
        assert b.tx_burst(0, back) == len(back)
        moved += len(back)
    assert [body for _, body in gb.recv()] == sent
    assert a.stats()["ipackets"] == b.stats()["opackets"] == len(sent)


def test_get_vring_base_stops_the_ring_and_a_restart_continues(vhost, guest):
    port = vhost()
    g = guest(port.iface)
    for i in range(3):
        g.send(frame(64, i))
    for m in rx_all(port, want=3):
        m.free()
    assert g.fe.get_vring_base(1) == (1, 3)
    assert port.vring_state(1)["ready"] is False and port.link["up"] is False
    g.send(frame(64, 9))
    assert port.rx_burst(0, 32) == []                 # stopped: nothing is taken
    g.fe.vring_state(P.SET_VRING_BASE, 1, 3)
    g.fe.set_u64(P.SET_VRING_KICK, 1, [g.txq().kick])
    got = rx_all(port)
    assert [m.bytes() for m in got] == [frame(64, 9)]
    got[0].free()


def test_server_refuses_a_second_frontend_and_accepts_after_the_first_leaves(vhost, guest):
    port = vhost()
    g = guest(port.iface)
    extra = Frontend.connect(port.iface)
    assert extra.closed_by_peer()
    assert port.xstats()["refused_connections"] == 1
    assert port.link["up"]
    g.fe.close()
    assert wait_until(lambda: not port.info()["connected"])
    g2 = guest(port.iface)
    g2.send(frame(64))
    got = rx_all(port)
    assert len(got) == 1
    got[0].free()


def test_client_mode_connects_and_reconnects(vhost, sock_dir, pool):
    path = str(sock_dir / "qemu.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(5)
    import pypdk.pmd.vhost.port as vport
    old = vport.RECONNECT_INTERVAL
    vport.RECONNECT_INTERVAL = 0.1
    try:
        port = pypdk.pmd.open("net_vhost0", iface=path, client="1", reconnect="1")
        port.setup(pool, nb_rx_desc=256, nb_tx_desc=256)
        port.start()
        for round in range(2):
            conn, _ = srv.accept()
            mem = GuestMemory()
            g = VirtioNet(Frontend(conn), mem)
            assert wait_until(lambda: port.link["up"])
            g.send(frame(64, round))
            got = rx_all(port)
            assert [m.bytes() for m in got] == [frame(64, round)]
            got[0].free()
            conn.close()                              # QEMU goes away; the port retries
            assert wait_until(lambda: not port.link["up"])
            g.close()
            mem.close()
        assert port.xstats()["connections"] >= 2
    finally:
        vport.RECONNECT_INTERVAL = old
        srv.close()


def test_client_mode_without_a_server_is_a_resource_error(eal_no_huge, sock_dir):
    with pytest.raises(ResourceError, match="cannot connect"):
        pypdk.pmd.open("net_vhost0", iface=str(sock_dir / "none.sock"), client="1")
    assert pypdk.pmd.ports() == []


def test_bad_keys_name_the_problem(eal_no_huge, sock_dir):
    with pytest.raises(UsageError, match="iface"):
        pypdk.pmd.open("net_vhost0")
    with pytest.raises(UsageError, match="queues=17"):
        pypdk.pmd.open("net_vhost0", iface=str(sock_dir / "a.sock"), queues="17")
    with pytest.raises(UsageError, match="reconnect=1 is for client mode"):
        pypdk.pmd.open("net_vhost0", iface=str(sock_dir / "a.sock"), reconnect="1")
    assert pypdk.pmd.ports() == [] and not os.path.exists(sock_dir / "a.sock")


def test_close_removes_the_socket_and_a_stale_one_is_replaced(vhost, sock_dir):
    path = sock_dir / "vhost0.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()                                         # a stale socket file: nobody listens
    port = vhost()
    assert path.exists()
    port.close()
    assert not path.exists()


def test_a_new_kick_fd_for_a_running_ring_keeps_its_place(vhost, guest):
    port = vhost()
    g = guest(port.iface)
    for i in range(3):
        g.send(frame(64, i))
    for m in rx_all(port, want=3):
        m.free()
    kick = os.eventfd(0)
    g.fe.set_u64(P.SET_VRING_KICK, 1, [kick])
    os.close(kick)
    g.send(frame(64, 7))
    got = rx_all(port)
    assert [m.bytes() for m in got] == [frame(64, 7)] and port.vring_state(1)["last_avail"] == 4
    got[0].free()


def test_qemu_message_order_enables_rings_before_the_features(vhost, pool):
    """QEMU's order: protocol features, SET_OWNER, call fds and SET_VRING_ENABLE
    for pair 0 right away, and only when the guest driver starts SET_FEATURES,
    the memory table and each ring's num, base, addresses and kick."""
    port = vhost()
    mem = GuestMemory()
    fe = Frontend.connect(port.iface)
    try:
        offered = fe.get_u64(P.GET_FEATURES)
        fe.get_u64(P.GET_PROTOCOL_FEATURES)
        fe.set_u64(P.SET_PROTOCOL_FEATURES, P.bit(P.PROTOCOL_F_MQ) | P.bit(P.PROTOCOL_F_REPLY_ACK))
        fe.ack = True
        assert fe.get_u64(P.GET_QUEUE_NUM) == 1
        assert fe.request(P.SET_OWNER) == 0
        vqs = [Virtq(mem, i, 256) for i in range(2)]
        for vq in vqs:
            assert fe.set_u64(P.SET_VRING_CALL, vq.idx, [vq.call]) == 0
        for vq in vqs:
            assert fe.vring_state(P.SET_VRING_ENABLE, vq.idx, 1) == 0
        assert port.link["up"] is False                 # enabled, not started
        assert fe.set_u64(P.SET_FEATURES, GOOD_FEATURES & offered) == 0
        assert fe.set_mem_table(mem) == 0
        for vq in vqs:
            fe.vring_state(P.SET_VRING_NUM, vq.idx, 256)
            fe.vring_state(P.SET_VRING_BASE, vq.idx, 0)
            fe.set_vring_addr(vq.idx, mem.uva(vq.desc), mem.uva(vq.used), mem.uva(vq.avail))
            assert fe.set_u64(P.SET_VRING_KICK, vq.idx, [vq.kick]) == 0
        assert port.link["up"] is True
        data = bytes(12) + frame(100)
        gpa = mem.alloc(len(data))
        mem.write(gpa, data)
        vqs[1].post(vqs[1].chain([(gpa, len(data))]))
        got = rx_all(port)
        assert [m.bytes() for m in got] == [frame(100)]
        got[0].free()
        for vq in vqs:
            vq.close()
    finally:
        fe.close()
        mem.close()
