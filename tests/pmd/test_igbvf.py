"""net_igbvf at register level, against a stand-in VF window and PF (no guest, no vfio).

The driver talks to the fake PF through the mailbox and programs the queue registers;
the model (igbvf_model.py) reads them back and plays the device's DMA. These catch what
a real VF would only show as silence: a mailbox bit lost to read-to-clear, queues
enabled before the PF allowed them, an RDT left at 0, a descriptor type the device does
not parse, a counter that wraps.
"""
import pytest

import pypdk.pmd
from pypdk.errors import ResourceError, UsageError
from pypdk.pmd import ethdev

from igbvf_model import (CTRL, ENABLE, FakeBus, RDBAH, RDBAL, RDH, RDLEN, RDT, RXDCTL, SRRCTL,
                         SET_LPE, SET_MAC_ADDR, SET_MULTICAST, TDBAL, TDH, TDLEN, TDT, TXDCTL,
                         V2PMAILBOX, VF_RESET, VFGPRC, VFGPTC, RQDPC, Wire, q)

BDF = "0000:00:14.0"
PF_MAC = b"\x02\x00\x00\x00\x00\x10"
NB_RX, NB_TX = 64, 64


def frame(i, size=60):
    body = PF_MAC + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + i.to_bytes(4, "big")
    return body.ljust(size, b"\xab")


def open_vf(pool, nb_q=1, **pf):
    bus = FakeBus(**pf)
    p = pypdk.pmd.open_pci(BDF, bus=bus)
    p.setup(pool, nb_rxq=nb_q, nb_txq=nb_q, nb_rx_desc=NB_RX, nb_tx_desc=NB_TX)
    p.start()
    return p, bus


@pytest.fixture
def port(eal_no_huge, pool):
    p, bus = open_vf(pool)
    yield p, bus.model, Wire(bus.model)
    p.close()
    assert bus.closed and not bus.bus_master


def test_bring_up_talks_to_the_pf_then_programs_the_queues(port):
    p, r, _ = port
    assert p.driver == "net_igbvf"
    # The mailbox conversation, in order; the MAC is the PF's, from VF_RESET's reply.
    assert r.messages() == [VF_RESET, SET_MAC_ADDR, SET_MULTICAST, SET_LPE]
    assert p.mac == PF_MAC
    assert r.pf.lpe == 1500 + 22                      # MTU, header, a VLAN tag, the CRC
    assert p.info()["mac_set_by_pf"] and p.info()["pf"] == "0000:00:04.0"
    assert r.writes_to(CTRL) == [1 << 26]             # one VF reset, before the mailbox
    st = p.ring_state()
    assert r.peek(RDBAL) | (r.peek(RDBAH) << 32) == st["rx"]["ring"]
    assert r.peek(RDLEN) == NB_RX * 16 and r.peek(RDLEN) % 128 == 0
    assert r.peek(RDH) == 0 and r.peek(RDT) == NB_RX - 1
    bufs = st["rx"]["buffers"]
    assert all(bufs) and len(set(bufs)) == NB_RX
    # Advanced one-buffer descriptors, 2 KiB buffers, drop when the ring is full.
    assert r.peek(SRRCTL) == 2 | (1 << 25) | (1 << 31)
    assert r.peek(RXDCTL) & ENABLE and r.peek(TXDCTL) & ENABLE
    assert r.peek(TDBAL) == st["tx"]["ring"] & 0xFFFFFFFF and r.peek(TDLEN) == NB_TX * 16
    assert r.peek(TDH) == r.peek(TDT) == 0
    # RDT is written after the queue is enabled (the device ignores it before).
    w = [o for o, v in r.writes]
    assert w.index(RXDCTL) < len(w) - 1 - w[::-1].index(RDT)
    link = p.link
    assert link["up"] and link["speed_mbps"] == 1000 and link["duplex"] == "full"
    assert not p.promiscuous


def test_the_mailbox_keeps_read_to_clear_bits(eal_no_huge, pool):
    # The fake PF sets PFACK and PFSTS at once: the read that finds PFACK also
    # clears PFSTS, so a driver that does not keep it waits for an answer forever.
    p, bus = open_vf(pool)
    try:
        assert p.xstats()["mbx_acked"] == 3 and p.xstats()["mbx_nacked"] == 1   # SET_MAC_ADDR
        assert p.xstats()["mbx_timeouts"] == 0
    finally:
        p.close()


def test_a_pf_control_message_before_the_answer_is_skipped(eal_no_huge, pool):
    p, bus = open_vf(pool, control_first=True)
    try:
        assert p.mac == PF_MAC
    finally:
        p.close()


def test_a_mac_the_pf_did_not_set_is_taken(eal_no_huge, pool):
    p, bus = open_vf(pool, admin_mac=False)
    try:
        assert not p.info()["mac_set_by_pf"] and p.xstats()["mbx_nacked"] == 0
    finally:
        p.close()


def test_a_pf_that_is_down_is_one_clear_error_and_leaves_nothing(eal_no_huge):
    before = len(ethdev.ports())
    bus = FakeBus(up=False)
    with pytest.raises(ResourceError) as e:
        pypdk.pmd.open_pci(BDF, bus=bus)
    line = e.value.line()
    assert "0000:00:04.0" in line and "does not answer" in line and "ip link set" in line
    assert "\n" not in line
    assert bus.closed and not bus.bus_master and len(ethdev.ports()) == before


def test_queues_are_not_enabled_without_the_pf(eal_no_huge, pool):
    # A VF reset after the PF enabled the VF: the PF has not re-enabled it.
    bus = FakeBus()
    with pypdk.pmd.open_pci(BDF, bus=bus) as p:
        p.setup(pool, 1, 1, NB_RX, NB_TX)
        bus.pf.vf_enabled = False
        with pytest.raises(ResourceError, match="rx queue 0 does not enable|tx queue 0 does not enable"):
            p.start()


def test_rx_burst_takes_done_descriptors_and_moves_rdt_once(port, pool):
    p, r, wire = port
    for i in range(10):
        assert wire.deliver(frame(i))
    got = p.rx_burst(0, 32)
    assert [bytes(m.data) for m in got] == [frame(i) for i in range(10)]
    assert r.peek(RDT) == 9
    assert p.xstats()["rx_q0_tail_writes"] == 1
    assert p.stats()["ipackets"] == 10
    for m in got:
        m.free()
    seen = 10
    for _ in range(5):                                # round the ring several times
        for i in range(40):
            assert wire.deliver(frame(seen + i))
        got = p.rx_burst(0, 64)
        assert [bytes(m.data) for m in got] == [frame(seen + i) for i in range(40)]
        for m in got:
            m.free()
        seen += 40
    assert p.rx_burst(0, 32) == []


def test_a_frame_in_several_buffers_is_one_chain_even_across_bursts(port, pool):
    p, r, wire = port
    big = bytes(range(256)) * 20                      # 5120 bytes: three 2 KiB buffers
    assert wire.deliver(big)
    got = p.rx_burst(0, 2)                            # two of its three descriptors
    assert got == []
    got = p.rx_burst(0, 32)
    assert len(got) == 1
    m = got[0]
    assert m.nb_segs == 3 and m.pkt_len == len(big) and m.bytes() == big
    assert p.xstats()["rx_q0_chained"] == 1 and p.stats()["ibytes"] == len(big)
    m.free()


def test_bad_frames_are_counted_and_dropped(port, pool):
    p, r, wire = port
    start = pool.avail_count
    assert wire.deliver(frame(1), errors=1 << 31)     # RXE
    assert wire.deliver(frame(2))
    got = p.rx_burst(0, 32)
    assert [bytes(m.data) for m in got] == [frame(2)]
    assert p.stats()["ierrors"] == 1 and p.stats()["ipackets"] == 1
    got[0].free()
    assert pool.avail_count == start


def test_rx_nombuf_then_recovery(port, pool):
    p, r, wire = port
    held = []
    while (m := pool.alloc()) is not None:
        held.append(m)
    assert wire.deliver(frame(1))
    assert p.rx_burst(0, 32) == [] and p.stats()["rx_nombuf"] == 1
    for m in held:
        m.free()
    got = p.rx_burst(0, 32)
    assert [bytes(m.data) for m in got] == [frame(1)]
    got[0].free()


def test_tx_uses_advanced_descriptors_and_moves_tdt_once(port, pool):
    p, r, wire = port
    mbufs = []
    for i in range(5):
        m = pool.alloc()
        m.append(frame(i))
        mbufs.append(m)
    assert p.tx_burst(0, mbufs) == 5
    assert r.peek(TDT) == 5 and p.xstats()["tx_q0_tail_writes"] == 1
    assert wire.transmit() == [(frame(i), 60) for i in range(5)]
    assert p.stats()["opackets"] == 5 and p.stats()["obytes"] == 300


def test_tx_of_a_chain_has_paylen_first_and_eop_last(port, pool):
    p, r, wire = port
    head, tail = pool.alloc(), pool.alloc()
    head.append(frame(1)[:30])
    tail.append(frame(1)[30:])
    head.chain(tail)
    assert p.tx_burst(0, [head]) == 1
    assert wire.transmit() == [(frame(1), 60)]
    assert r.peek(TDT) == 2


def test_tx_reclaims_completed_descriptors_in_batches(port, pool):
    p, r, wire = port
    start = pool.avail_count
    for _ in range(6):                                # 180 frames through a 64-slot ring
        mbufs = [pool.alloc() for _ in range(30)]
        for i, m in enumerate(mbufs):
            m.append(frame(i))
        assert p.tx_burst(0, mbufs) == 30
        assert len(wire.transmit()) == 30
    assert p.xstats()["tx_q0_reclaims"] > 0
    p.stop()
    assert pool.avail_count == start


def test_two_queue_pairs_use_their_own_registers(eal_no_huge, pool):
    p, bus = open_vf(pool, nb_q=2)
    r = bus.model
    try:
        for n in (0, 1):
            assert r.peek(q(RXDCTL, n)) & ENABLE and r.peek(q(TXDCTL, n)) & ENABLE
            assert r.peek(q(RDT, n)) == NB_RX - 1
        assert r.peek(q(RDBAL, 0)) != r.peek(q(RDBAL, 1))
        w1 = Wire(r, 1)
        assert w1.deliver(frame(7))
        assert p.rx_burst(0, 32) == []
        got = p.rx_burst(1, 32)
        assert [bytes(m.data) for m in got] == [frame(7)] and got[0].queue == 1
        got[0].free()
        m = pool.alloc()
        m.append(frame(8))
        assert p.tx_burst(1, [m]) == 1
        assert r.peek(q(TDT, 1)) == 1 and r.peek(TDT) == 0
        assert w1.transmit() == [(frame(8), 60)]
        with pytest.raises(UsageError):
            p.stop()
            p.configure(3, 3)                         # two queue pairs on a VF
    finally:
        p.close()


def test_counters_wrap_at_32_bits_and_count_from_the_probe(eal_no_huge, pool):
    bus = FakeBus()
    bus.model.poke(VFGPRC, 0xFFFFFFF0)                # the VF counted before this port
    with pypdk.pmd.open_pci(BDF, bus=bus) as p:
        assert p.xstats()["good_rx_packets"] == 0
        bus.model.poke(VFGPRC, 0x10)                  # 0x20 frames later, wrapped
        bus.model.poke(VFGPTC, 7)
        xs = p.xstats()
        assert xs["good_rx_packets"] == 0x20 and xs["good_tx_packets"] == 7
        bus.model.poke(q(RQDPC, 0), 3)                # ring-full drops, cleared by reading
        p.setup(pool, 1, 1, NB_RX, NB_TX)
        assert p.stats()["imissed"] == 3 and p.stats()["imissed"] == 3


def test_promiscuous_is_refused_by_the_pf_and_mtu_goes_through_set_lpe(port):
    p, r, _ = port
    with pytest.raises(UsageError, match="refuses promiscuous"):
        p.set_promiscuous(True)
    assert not p.promiscuous
    p.set_mtu(9000)
    assert r.pf.lpe == 9022 and p.mtu == 9000
    with pytest.raises(UsageError, match="largest frame"):
        p.set_mtu(9500)
    assert p.mtu == 9000


def test_ring_sizes_and_unknown_devices(eal_no_huge, pool):
    with pypdk.pmd.open_pci(BDF, bus=FakeBus()) as p:
        p.configure(1, 1)
        for bad in (0, 100, 8192):
            with pytest.raises(UsageError, match="power of two"):
                p.rx_queue_setup(0, bad, pool)
            with pytest.raises(UsageError, match="power of two"):
                p.tx_queue_setup(0, bad)
    with pytest.raises(UsageError, match="no driver for PCI device 8086:10d3"):
        pypdk.pmd.open_pci(BDF, bus=FakeBus(device=0x10D3))


def test_close_disables_the_queues(eal_no_huge, pool):
    p, bus = open_vf(pool)
    p.close()
    r = bus.model
    assert not r.peek(RXDCTL) & ENABLE and not r.peek(TXDCTL) & ENABLE
    assert bus.closed and not bus.bus_master
    assert not r.peek(V2PMAILBOX) & 0x4               # the mailbox is not left taken
