"""net_e1000 at register level, against a stand-in BAR in host memory (no guest, no vfio).

The driver programs the registers; the model (e1000_model.py) reads them back and plays
the device's DMA. These catch bring-up mistakes a real device would only show as silence:
a ring length that masks to 0, an rx ring handed over empty (RDT left at 0), a TDLEN that
does not match the ring, descriptors without buffers.
"""
import pytest

import pypdk.pmd
from pypdk.errors import ResourceError, UsageError
from pypdk.pmd import ethdev

from e1000_model import (FakeBus, RAH0, RAL0, RCTL, RCTL_BAM, RCTL_EN,
                         RCTL_SECRC, RCTL_UPE, RDBAH, RDBAL, RDH, RDLEN, RDT, TCTL, TCTL_EN,
                         TDBAH, TDBAL, TDH, TDLEN, TDT, GPRC, TXD, Wire, _desc_view)

BDF = "0000:00:04.0"
NB_RX, NB_TX = 64, 64


def frame(i, size=60):
    body = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + i.to_bytes(4, "big")
    return body.ljust(size, b"\xab")


@pytest.fixture
def port(eal_no_huge, pool):
    bus = FakeBus()
    p = pypdk.pmd.open_pci(BDF, bus=bus)
    p.setup(pool, nb_rxq=1, nb_txq=1, nb_rx_desc=NB_RX, nb_tx_desc=NB_TX)
    p.start()
    yield p, bus.model, Wire(bus.model)
    p.close()
    assert bus.closed and not bus.bus_master


def test_bring_up_programs_the_rings(port):
    p, r, _ = port
    st = p.ring_state()
    # Receive ring: base, a length the device does not mask to 0, every buffer given.
    assert r.peek(RDBAL) | (r.peek(RDBAH) << 32) == st["rx"]["ring"]
    assert r.peek(RDLEN) == NB_RX * 16 and r.peek(RDLEN) % 128 == 0
    assert r.peek(RDH) == 0 and r.peek(RDT) == NB_RX - 1          # not "no buffers"
    bufs = st["rx"]["buffers"]
    assert all(bufs) and len(set(bufs)) == NB_RX                     # every descriptor its own buffer
    # Transmit ring: length matches the ring the driver fills.
    assert r.peek(TDBAL) | (r.peek(TDBAH) << 32) == st["tx"]["ring"]
    assert r.peek(TDLEN) == NB_TX * 16 == st["tx"]["nb_desc"] * 16
    assert r.peek(TDH) == r.peek(TDT) == 0
    assert r.peek(RCTL) & (RCTL_EN | RCTL_BAM | RCTL_SECRC) == RCTL_EN | RCTL_BAM | RCTL_SECRC
    assert r.peek(TCTL) & TCTL_EN
    # RCTL is written once at start (QEMU blanks rx after each write) besides the
    # reset's clearing write.
    assert [v for v in r.writes_to(RCTL) if v] == [r.peek(RCTL)]
    assert p.mac == r.mac and p.link["up"]


def test_mac_from_the_eeprom_when_the_receive_address_is_not_valid(eal_no_huge):
    bus = FakeBus(mac=b"\x02\x11\x22\x33\x44\x55", eeprom_only=True)
    with pypdk.pmd.open_pci(BDF, bus=bus) as p:
        assert p.mac == b"\x02\x11\x22\x33\x44\x55"
        assert bus.model.peek(RAH0) >> 31 == 1                     # written back, valid
        assert bus.model.peek(RAL0) == 0x33221102


def test_rx_burst_takes_done_descriptors_and_moves_rdt_once(port, pool):
    p, r, wire = port
    for i in range(10):
        assert wire.deliver(frame(i))
    got = p.rx_burst(0, 32)
    assert [bytes(m.data) for m in got] == [frame(i) for i in range(10)]
    assert r.peek(RDT) == 9                       # refilled up to the last one taken
    assert p.xstats()["rx_q0_tail_writes"] == 1
    assert p.stats()["ipackets"] == 10
    for m in got:
        m.free()
    # The ring keeps going round: more frames than descriptors, in bursts.
    seen = 10
    for _ in range(5):
        for i in range(40):
            assert wire.deliver(frame(seen + i))
        got = p.rx_burst(0, 64)
        assert [bytes(m.data)[14:18] for m in got] == [(seen + i).to_bytes(4, "big") for i in range(40)]
        seen += 40
        for m in got:
            m.free()
    assert p.stats()["ipackets"] == seen


def test_rx_stops_when_the_driver_gave_no_buffers(port):
    p, r, wire = port
    delivered = sum(wire.deliver(frame(i)) for i in range(NB_RX + 5))
    assert delivered == NB_RX - 1 and wire.no_buffer == 6           # RDH met RDT
    got = p.rx_burst(0, 64)
    assert len(got) == NB_RX - 1
    for m in got:
        m.free()
    assert wire.deliver(frame(0))                                  # buffers again


def test_bad_and_multi_descriptor_frames_are_counted_and_dropped(port):
    p, r, wire = port
    wire.deliver(frame(1))
    wire.deliver(frame(2), errors=0x01)                            # CRC error
    wire.deliver(frame(3), status=0x1)                             # DD, no EOP: first piece
    wire.deliver(frame(4), status=0x3)                             # ... its end
    wire.deliver(frame(5))
    got = p.rx_burst(0, 32)
    assert [bytes(m.data)[14:18] for m in got] == [(1).to_bytes(4, "big"), (5).to_bytes(4, "big")]
    for m in got:
        m.free()
    st, xs = p.stats(), p.xstats()
    assert st["ierrors"] == 1 and xs["rx_q0_multi_desc"] == 1


def test_rx_nombuf_then_recovery(port, pool):
    p, r, wire = port
    held = []
    while (m := pool.alloc()) is not None:
        held.append(m)
    wire.deliver(frame(7))
    assert p.rx_burst(0, 32) == []
    assert p.stats()["rx_nombuf"] >= 1
    for m in held:
        m.free()
    got = p.rx_burst(0, 32)
    assert [bytes(m.data) for m in got] == [frame(7)]
    got[0].free()


def test_tx_burst_fills_descriptors_and_moves_tdt_once(port, pool):
    p, r, wire = port
    mbufs = []
    for i in range(20):
        m = pool.alloc()
        m.append(frame(i, 60 + i))
        mbufs.append(m)
    assert p.tx_burst(0, mbufs) == 20
    assert r.peek(TDT) == 20 and p.xstats()["tx_q0_tail_writes"] == 1
    assert wire.transmit() == [frame(i, 60 + i) for i in range(20)]
    assert p.stats()["opackets"] == 20
    assert p.stats()["obytes"] == sum(60 + i for i in range(20))


def test_tx_reclaims_completed_descriptors_in_batches(port, pool):
    p, r, wire = port
    start = pool.avail_count
    sent = 0
    for _ in range(20):                            # 20 x 30 frames through a 64-descriptor ring
        mbufs = [pool.alloc() for _ in range(30)]
        for i, m in enumerate(mbufs):
            m.append(frame(sent + i))
        n = p.tx_burst(0, mbufs)
        for m in mbufs[n:]:
            m.free()
        got = wire.transmit()
        assert [f[14:18] for f in got] == [(sent + i).to_bytes(4, "big") for i in range(n)]
        sent += n
    assert sent == 600
    assert p.xstats()["tx_q0_reclaims"] < 40          # batched, not per burst per packet
    p.stop()
    assert pool.avail_count == start                  # stop gave back what was in flight


def test_tx_asks_for_status_on_every_32nd_descriptor_only(port, pool):
    """RS on descriptors 31, 63, ...: one status write-back per 32 frames, and the
    block before it reclaimed when its DD is there."""
    p, r, wire = port
    start = pool.avail_count
    mbufs = []
    for i in range(40):
        m = pool.alloc()
        m.append(frame(i))
        mbufs.append(m)
    assert p.tx_burst(0, mbufs) == 40
    rs = [i for i in range(40) if TXD.unpack(bytes(_desc_view(wire.tx_base(), i)))[3] & (1 << 3)]
    assert rs == [31]
    assert len(wire.transmit()) == 40
    assert pool.avail_count == start - 40
    more = [pool.alloc() for _ in range(30)]     # 23 free: the reclaim runs and frees 0..31
    for m in more:
        m.append(frame(0))
    assert p.tx_burst(0, more) == 30
    assert pool.avail_count == start - 40 - 30 + 32
    assert len(wire.transmit()) == 30


def test_tx_full_ring_takes_what_fits(port, pool):
    p, r, wire = port
    mbufs = [pool.alloc() for _ in range(NB_TX + 10)]
    for m in mbufs:
        m.append(frame(0))
    n = p.tx_burst(0, mbufs[:NB_TX])                 # device never completes
    assert n == NB_TX - 1
    assert p.tx_burst(0, mbufs[n:]) == 0
    for m in mbufs[n:]:
        m.free()
    assert len(wire.transmit()) == n
    m = pool.alloc()
    m.append(frame(1))
    assert p.tx_burst(0, [m]) == 1                   # the completed ones were reclaimed
    assert wire.transmit() == [frame(1)]


def test_ring_sizes_and_pool_checks(eal_no_huge, pool):
    with pypdk.pmd.open_pci(BDF, bus=FakeBus()) as p:
        p.configure(1, 1)
        for bad in (0, 100, 8192):
            with pytest.raises(UsageError, match="power of two"):
                p.rx_queue_setup(0, bad, pool)
            with pytest.raises(UsageError, match="power of two"):
                p.tx_queue_setup(0, bad)
        with pytest.raises(UsageError):
            p.configure(2, 1)                      # one queue pair on an 8254x


def test_unknown_device_and_stuck_reset_leave_nothing(eal_no_huge):
    before = len(ethdev.ports())
    with pytest.raises(UsageError, match="no driver for PCI device 8086:10d3"):
        pypdk.pmd.open_pci(BDF, bus=FakeBus(device=0x10D3))
    bus = FakeBus(stuck_reset=True)
    with pytest.raises(ResourceError, match="did not come out of reset"):
        pypdk.pmd.open_pci(BDF, bus=bus)
    assert bus.closed and len(ethdev.ports()) == before
    with pytest.raises(UsageError, match="not a PCI address"):
        pypdk.pmd.open_pci("00:4.0", bus=FakeBus())


def test_hardware_counters_feed_xstats(port):
    p, r, wire = port
    r.poke(GPRC, 5)
    r.poke(0x4010, 2)                              # MPC
    xs = p.xstats()
    assert xs["good_rx_packets"] == 5 and xs["missed_packets"] == 2
    assert p.stats()["imissed"] == 2
    assert p.xstats()["good_rx_packets"] == 5      # read-to-clear registers accumulate
