"""net_e1000: a poll-mode driver for the Intel 8254x family behind vfio-pci.

Written from Intel's 8254x Software Developer's Manual (SDM); each register and
bit names its section in e1000.pxd. The device is the 82540EM that QEMU
emulates as `-device e1000` (8086:100e) and its close relatives. One receive
and one transmit queue of legacy descriptors (SDM 3.2.3, 3.3.3) in EAL memory,
which the device reaches by DMA at IOVA = VA through the IOMMU.

The burst path:
  rx  looks at descriptors from `next` while their DD bit is set, swaps each
      full buffer for a fresh mbuf (allocated in bulk for the whole burst),
      and hands the device the refilled descriptors with ONE write of RDT per
      burst (RDT = the last refilled one: the device owns RDH..RDT-1).
  tx  fills a descriptor per segment (EOP on a packet's last) and moves TDT
      ONCE per burst. RS, which makes the device write the descriptor's status
      back (a DMA write), is set on every 32nd descriptor only (fixed ring
      positions, as DPDK's tx_rs_thresh): its DD says the 32 descriptors up to
      it are done, since the device works in ring order. They are reclaimed in
      blocks of 32 when fewer than 32 descriptors are free.
Each register write is a VM exit under a hypervisor (and QEMU transmits
synchronously inside the TDT write), so the driver writes as few as it can:
the counts are in xstats (rx_q0_tail_writes, tx_q0_tail_writes).

QEMU's model, which the bring-up respects: receive needs link up, RCTL.EN
and bus mastering; every RCTL write blanks reception for about a second (so
RCTL is written once at start, and again only to change promiscuous mode);
RDH == RDT means "no buffers". The received length includes the 4-byte CRC
unless RCTL.SECRC strips it (it does here).

Opened by PCI address: `pypdk-run ... -a 0000:00:04.0`, or
`pypdk.pmd.open_pci("0000:00:04.0")`.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memset

from pd_atomic cimport pd_fence_release, pd_fence_acquire
from pd_compiler cimport pd_likely, pd_unlikely
from pd_config cimport PD_MAX_BURST
from pd_mmio cimport pd_mmio_write32

from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free, pktmbuf_free_bulk,
                                 PktMbufPool)
from pypdk.pmd.ethdev cimport pd_eth_qstats
from pypdk.pmd.pci_port cimport PciPort

import time

from pypdk.errors import ResourceError, UsageError

DRIVER = "net_e1000"
HELP = "Intel 8254x (82540EM, QEMU -device e1000) through vfio-pci"
KEYS = ()
# vendor, device -> model; the 8254x parts that share the legacy descriptor
# layout and the registers used here (SDM 1.1 lists the family).
PCI_IDS = {
    (0x8086, 0x100E): "82540EM",
    (0x8086, 0x100F): "82545EM",
    (0x8086, 0x1015): "82540EM-LOM",
    (0x8086, 0x1016): "82540EP-LOM",
    (0x8086, 0x1017): "82540EP",
    (0x8086, 0x101E): "82540EP-LP",
    (0x8086, 0x1026): "82545GM",
}
BAR_SIZE = 0x20000          # BAR0: 128 KiB of registers (SDM 13.1)
RESET_TIMEOUT = 0.1         # seconds for CTRL.RST to clear (SDM 13.4.1: about 1 us)
LINK_TIMEOUT = 2.0          # seconds for STATUS.LU after CTRL.SLU (14.5)

# Statistics registers (SDM 13.7), clear on read: (offset, xstat name, high half)
_STATS = (
    (0x4000, "crc_errors", None), (0x4004, "align_errors", None), (0x400C, "rx_errors", None),
    (0x4010, "missed_packets", None), (0x40A0, "rx_no_buffers", None),
    (0x40A4, "rx_undersize", None), (0x40AC, "rx_oversize", None),
    (0x4074, "good_rx_packets", None), (0x4080, "good_tx_packets", None),
    (0x4088, "good_rx_octets", 0x408C), (0x4090, "good_tx_octets", 0x4094),
    (0x4078, "broadcast_rx_packets", None), (0x407C, "multicast_rx_packets", None),
    (0x40F0, "multicast_tx_packets", None), (0x40F4, "broadcast_tx_packets", None),
    (0x40D0, "total_rx_packets", None), (0x40D4, "total_tx_packets", None),
)


# ---- the burst path ----------------------------------------------------------

cdef uint16_t em_rx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef e1000_rxq *rxq = <e1000_rxq *>q
    cdef e1000_rx_desc *d
    cdef pd_mbuf *fresh[PD_MAX_BURST]
    cdef pd_mbuf *m
    cdef uint16_t i = rxq.next, ready = 0, got = 0, k, length
    cdef uint8_t status, errors
    if n > PD_MAX_BURST:
        n = PD_MAX_BURST
    # How many descriptors the device has written back (DD), in order.
    while ready < n and (rxq.ring[(i + ready) & rxq.mask].status & E1000_RXD_STAT_DD):
        ready += 1
    if ready == 0:
        return 0
    # The rest of each descriptor is read after its DD bit (pairs with the
    # device's write of the descriptor before DD).
    pd_fence_acquire()
    if pd_unlikely(pktmbuf_alloc_bulk(rxq.mp, fresh, ready) != 0):
        rxq.stats.nombuf += ready       # the frames wait in the ring for the next burst
        return 0
    for k in range(ready):
        d = &rxq.ring[i]
        status = d.status
        errors = d.errors
        length = d.length
        m = rxq.sw_ring[i]
        rxq.sw_ring[i] = fresh[k]
        d.buffer_addr = fresh[k].buf_iova + fresh[k].data_off
        d.status = 0
        i = (i + 1) & rxq.mask
        if pd_unlikely(rxq.discard or not (status & E1000_RXD_STAT_EOP) or errors != 0
                       or length == 0 or length > rxq.buf_size):
            # A bad frame, or a piece of one longer than a buffer: dropped up
            # to and including its last descriptor.
            if not (status & E1000_RXD_STAT_EOP):
                if not rxq.discard:
                    rxq.multi_desc += 1
                rxq.discard = 1
            else:
                if not rxq.discard:
                    rxq.stats.errors += 1
                rxq.discard = 0
            pktmbuf_free(m)
            continue
        m.data_len = length
        m.pkt_len = length
        m.port = rxq.port
        m.queue = rxq.queue
        rxq.stats.bytes += length
        pkts[got] = m
        got += 1
    rxq.next = i
    rxq.stats.packets += got
    # Descriptors first, then the tail that hands them to the device.
    pd_fence_release()
    pd_mmio_write32(rxq.bar, E1000_RDT, (i - 1) & rxq.mask)
    rxq.tail_writes += 1
    return got


cdef inline void em_tx_reclaim(e1000_txq *txq) noexcept nogil:
    # Blocks of rs_mask+1 descriptors from `clean` (always at a block's start),
    # each done when its last descriptor, the one with RS, has DD.
    cdef pd_mbuf *done[PD_MAX_BURST]
    cdef uint16_t nd = 0, c = txq.clean, k, block = txq.rs_mask + 1
    while (txq.nb_free + block <= txq.nb_desc - 1
           and (txq.ring[(c + txq.rs_mask) & txq.mask].status & E1000_TXD_STAT_DD)):
        for k in range(block):
            if txq.sw_ring[c] != NULL:
                done[nd] = txq.sw_ring[c]
                txq.sw_ring[c] = NULL
                nd += 1
                if nd == PD_MAX_BURST:
                    pktmbuf_free_bulk(done, nd)
                    nd = 0
            c = (c + 1) & txq.mask
        txq.nb_free += block
    if nd:
        pktmbuf_free_bulk(done, nd)
    txq.clean = c
    txq.reclaims += 1


cdef uint16_t em_tx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef e1000_txq *txq = <e1000_txq *>q
    cdef e1000_tx_desc *d
    cdef pd_mbuf *m
    cdef pd_mbuf *seg
    cdef uint16_t sent = 0, t
    cdef uint64_t nbytes = 0
    if txq.nb_free < E1000_TX_FREE_THRESH or txq.nb_free < n:
        em_tx_reclaim(txq)
    t = txq.tail
    while sent < n:
        m = pkts[sent]
        if pd_unlikely(m.nb_segs > txq.nb_free):
            break
        seg = m
        while seg != NULL:
            d = &txq.ring[t]
            d.buffer_addr = seg.buf_iova + seg.data_off
            d.length = seg.data_len
            d.cso = 0
            d.css = 0
            d.special = 0
            d.status = 0
            d.cmd = E1000_TXD_CMD_IFCS | (E1000_TXD_CMD_RS if (t & txq.rs_mask) == txq.rs_mask else 0)
            if seg.next == NULL:
                d.cmd |= E1000_TXD_CMD_EOP
                txq.sw_ring[t] = m          # the whole chain is freed when this one is done
            else:
                txq.sw_ring[t] = NULL
            t = (t + 1) & txq.mask
            txq.nb_free -= 1
            seg = seg.next
        nbytes += m.pkt_len
        sent += 1
    if sent:
        txq.tail = t
        pd_fence_release()              # descriptors before the tail the device reads them by
        pd_mmio_write32(txq.bar, E1000_TDT, t)
        txq.tail_writes += 1
        txq.stats.packets += sent
        txq.stats.bytes += nbytes
    return sent


# ---- the port ----------------------------------------------------------------

def _check_ring(name, nb_desc):
    if not (E1000_MIN_DESC <= nb_desc <= E1000_MAX_DESC) or nb_desc & (nb_desc - 1):
        raise UsageError(f"{name}: {nb_desc} descriptors", f"give a power of two from {E1000_MIN_DESC} "
                         f"to {E1000_MAX_DESC} (the ring length must be a multiple of 128 bytes)")


cdef class Port(PciPort):
    """An 8254x port. `bus` is the device to drive: a vfio.Device (the default,
    opened from the port's name, a PCI address) or, in tests, a fake with the
    same face (regs(0), enable_bus_master(), reset(), info, close())."""
    max_rx_queues = 1
    max_tx_queues = 1
    DRIVER = DRIVER
    ZONE_PREFIX = "em"
    cdef object regs
    cdef uint8_t *bar
    cdef dict hw_stats
    cdef readonly str model
    cdef uint32_t rctl

    def __cinit__(self):
        self.drv_rx = em_rx
        self.drv_tx = em_tx
        self.bar = NULL
        self.hw_stats = {}

    # -- registers (slow path)
    def _rd(self, off):
        return self.regs.read32(off)

    def _wr(self, off, value):
        self.regs.write32(off, value & 0xFFFFFFFF)

    def _dev_probe(self, dict args):
        info = self._open_bus()
        self.model = PCI_IDS.get((info.vendor, info.device))
        if self.model is None:
            raise UsageError(f"{self.name}: device {info.vendor:04x}:{info.device:04x} is not an 8254x "
                             "this driver knows", "pypdk-devbind --status shows each device's id")
        self.regs = self.bus.regs(0, BAR_SIZE)
        if self.regs.addr is None:
            raise ResourceError(f"{self.name}: BAR0 cannot be mapped", "the 8254x registers need an MMIO BAR")
        self.bar = <uint8_t *><uintptr_t>self.regs.addr
        self.bus.enable_bus_master()
        self._reset()
        self._link_up()
        self._mac = self._read_mac()
        for i in range(128):                    # 13.4.55: no multicast hashes
            self._wr(E1000_MTA + 4 * i, 0)
        self._read_stats()                      # counters start at 0 for this port

    def _reset(self):
        # 14.3 / 13.4.1: mask interrupts, reset the MAC, mask again (reset
        # unmasks), clear pending causes. Polled mode: interrupts stay off.
        self._wr(E1000_IMC, 0xFFFFFFFF)
        self._wr(E1000_RCTL, 0)
        self._wr(E1000_TCTL, 0)
        self._wr(E1000_CTRL, self._rd(E1000_CTRL) | E1000_CTRL_RST)
        deadline = time.monotonic() + RESET_TIMEOUT
        while self._rd(E1000_CTRL) & E1000_CTRL_RST:
            if time.monotonic() > deadline:
                raise ResourceError(f"{self.name}: the device did not come out of reset (CTRL.RST stays set)",
                                    "check that the device is an 8254x and not in use elsewhere")
            time.sleep(0.001)
        self._wr(E1000_IMC, 0xFFFFFFFF)
        self._rd(E1000_ICR)

    def _link_up(self):
        # 14.5: copper link with auto speed detection: SLU | ASDE, no link reset.
        ctrl = self._rd(E1000_CTRL)
        ctrl |= E1000_CTRL_SLU | E1000_CTRL_ASDE
        ctrl &= ~(E1000_CTRL_LRST | E1000_CTRL_PHY_RST | E1000_CTRL_ILOS | E1000_CTRL_VME)
        self._wr(E1000_CTRL, ctrl)
        deadline = time.monotonic() + LINK_TIMEOUT
        while not self._rd(E1000_STATUS) & E1000_STATUS_LU and time.monotonic() < deadline:
            time.sleep(0.01)
        # No link yet is not an error (a cable may come later): link() says so.

    def _read_mac(self):
        # 13.4.56: the receive address loaded from the EEPROM at reset; if
        # entry 0 is not valid, read EEPROM words 0-2 (13.4.4) and set it.
        ral, rah = self._rd(E1000_RAL0), self._rd(E1000_RAH0)
        if rah & (1 << 31):
            return (ral | ((rah & 0xFFFF) << 32)).to_bytes(6, "little")
        words = [self._eeprom_read(w) for w in range(3)]
        mac = b"".join(w.to_bytes(2, "little") for w in words)
        self._wr(E1000_RAL0, int.from_bytes(mac[:4], "little"))
        self._wr(E1000_RAH0, int.from_bytes(mac[4:], "little") | (1 << 31))
        return mac

    def _eeprom_read(self, word):
        self._wr(E1000_EERD, (word << 8) | 1)
        deadline = time.monotonic() + 0.1
        while True:
            v = self._rd(E1000_EERD)
            if v & (1 << 4):
                return v >> 16
            if time.monotonic() > deadline:
                raise ResourceError(f"{self.name}: EEPROM read of word {word} timed out",
                                    "the device has no valid MAC address")
            time.sleep(0.0005)

    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        cdef e1000_rxq *rxq
        cdef uint16_t i
        cdef pd_mbuf *m
        _check_ring(self.name, nb_desc)
        room = pool.data_room
        buf = next((b for b in (2048, 1024, 512, 256) if b <= room), None)
        if buf is None or room > 0xFFFF:
            raise UsageError(f"{self.name}: the pool's data room ({room}) is below 256 bytes",
                             "give the pool a data room of 2048 (the default)")
        self._dev_queue_release(True, q)
        rxq = <e1000_rxq *>self.queue_alloc(True, q, sizeof(e1000_rxq))
        memset(rxq, 0, sizeof(e1000_rxq))
        z = self._zone(f"rx{q}", nb_desc * (sizeof(e1000_rx_desc) + sizeof(pd_mbuf *)))
        rxq.ring = <e1000_rx_desc *><uintptr_t>z.addr
        rxq.sw_ring = <pd_mbuf **><uintptr_t>(z.addr + nb_desc * sizeof(e1000_rx_desc))
        rxq.bar = self.bar
        rxq.mp = pool.mp
        rxq.nb_desc = nb_desc
        rxq.mask = nb_desc - 1
        rxq.port = self.port_id
        rxq.queue = q
        rxq.buf_size = buf
        if pktmbuf_alloc_bulk(pool.mp, rxq.sw_ring, nb_desc) != 0:
            raise ResourceError(f"{self.name}: the pool has fewer than {nb_desc} free mbufs to fill the rx ring",
                                "make the pool larger than the ring sizes together")
        for i in range(nb_desc):
            m = rxq.sw_ring[i]
            rxq.ring[i].buffer_addr = m.buf_iova + m.data_off
            rxq.ring[i].status = 0

    def _dev_tx_queue_setup(self, q, nb_desc):
        cdef e1000_txq *txq
        _check_ring(self.name, nb_desc)
        self._dev_queue_release(False, q)
        txq = <e1000_txq *>self.queue_alloc(False, q, sizeof(e1000_txq))
        memset(txq, 0, sizeof(e1000_txq))
        z = self._zone(f"tx{q}", nb_desc * (sizeof(e1000_tx_desc) + sizeof(pd_mbuf *)))
        txq.ring = <e1000_tx_desc *><uintptr_t>z.addr
        txq.sw_ring = <pd_mbuf **><uintptr_t>(z.addr + nb_desc * sizeof(e1000_tx_desc))
        txq.bar = self.bar
        txq.nb_desc = nb_desc
        txq.mask = nb_desc - 1
        txq.nb_free = nb_desc - 1            # one slot stays empty: TDH == TDT means "idle"
        txq.rs_mask = min(E1000_TX_RS_THRESH, nb_desc // 2) - 1

    def _dev_start(self):
        cdef e1000_rxq *rxq = <e1000_rxq *>self.fp.rxq[0]
        cdef e1000_txq *txq = <e1000_txq *>self.fp.txq[0]
        cdef uint64_t rx_iova = <uintptr_t>rxq.ring
        cdef uint64_t tx_iova = <uintptr_t>txq.ring
        # 14.4 receive initialisation: ring base/length, head 0, tail N-1
        # (every descriptor but one holds a buffer), no delay timer.
        self._wr(E1000_RDBAL, rx_iova & 0xFFFFFFFF)
        self._wr(E1000_RDBAH, rx_iova >> 32)
        self._wr(E1000_RDLEN, rxq.nb_desc * sizeof(e1000_rx_desc))
        self._wr(E1000_RDH, 0)
        self._wr(E1000_RDT, rxq.nb_desc - 1)
        self._wr(E1000_RDTR, 0)
        rxq.next = 0
        # 14.5 transmit initialisation.
        self._wr(E1000_TDBAL, tx_iova & 0xFFFFFFFF)
        self._wr(E1000_TDBAH, tx_iova >> 32)
        self._wr(E1000_TDLEN, txq.nb_desc * sizeof(e1000_tx_desc))
        self._wr(E1000_TDH, 0)
        self._wr(E1000_TDT, 0)
        self._wr(E1000_TIDV, 0)
        txq.tail = txq.clean = 0
        txq.nb_free = txq.nb_desc - 1
        self._wr(E1000_TIPG, E1000_TIPG_COPPER)
        self._wr(E1000_TCTL, E1000_TCTL_EN | E1000_TCTL_PSP | (0x10 << E1000_TCTL_CT_SHIFT)
                 | (0x40 << E1000_TCTL_COLD_SHIFT))
        self.rctl = self._rctl_value(self._promisc)
        self._wr(E1000_RCTL, self.rctl)

    cdef uint32_t _rctl_value(self, bint promisc):
        cdef e1000_rxq *rxq = <e1000_rxq *>self.fp.rxq[0]
        cdef uint32_t bsize = {2048: E1000_RCTL_BSIZE_2048, 1024: E1000_RCTL_BSIZE_1024,
                               512: E1000_RCTL_BSIZE_512, 256: E1000_RCTL_BSIZE_256}[rxq.buf_size]
        cdef uint32_t v = E1000_RCTL_EN | E1000_RCTL_BAM | E1000_RCTL_SECRC | bsize
        if promisc:
            v |= E1000_RCTL_UPE | E1000_RCTL_MPE
        return v

    def _dev_stop(self):
        cdef e1000_txq *txq
        self._wr(E1000_RCTL, 0)
        self._wr(E1000_TCTL, 0)
        txq = <e1000_txq *>self.fp.txq[0]
        if txq != NULL:
            self._tx_drain(txq)

    cdef _tx_drain(self, e1000_txq *txq):
        cdef uint16_t i
        for i in range(txq.nb_desc):
            if txq.sw_ring[i] != NULL:
                pktmbuf_free(txq.sw_ring[i])
                txq.sw_ring[i] = NULL
        txq.tail = txq.clean = 0
        txq.nb_free = txq.nb_desc - 1

    def _dev_queue_release(self, rx, q):
        cdef e1000_rxq *rxq
        cdef e1000_txq *txq
        cdef uint16_t i
        if rx:
            rxq = <e1000_rxq *>self.fp.rxq[q]
            if rxq != NULL and rxq.sw_ring != NULL:
                for i in range(rxq.nb_desc):
                    pktmbuf_free(rxq.sw_ring[i])
                    rxq.sw_ring[i] = NULL
                rxq.sw_ring = NULL
                rxq.ring = NULL
        else:
            txq = <e1000_txq *>self.fp.txq[q]
            if txq != NULL and txq.sw_ring != NULL:
                self._tx_drain(txq)
                txq.sw_ring = NULL
                txq.ring = NULL
        self._zone_close(f"{'rx' if rx else 'tx'}{q}")

    def _dev_close(self):
        if self.regs is not None and self.bar != NULL:
            try:
                self._wr(E1000_RCTL, 0)
                self._wr(E1000_TCTL, 0)
                self._wr(E1000_IMC, 0xFFFFFFFF)
            except Exception:
                pass
        self._bus_quiesce()

    def _release(self):
        if self.regs is not None:
            self.regs.close()
            self.regs = None
        self.bar = NULL

    def _read_stats(self):
        for off, name, high in _STATS:
            v = self._rd(off)
            if high is not None:
                v |= self._rd(high) << 32
            self.hw_stats[name] = self.hw_stats.get(name, 0) + v

    def _dev_xstats(self):
        if self.regs is not None and self.state != "closed":
            self._read_stats()
        out = dict(self.hw_stats)
        out["imissed"] = out.get("missed_packets", 0) + out.get("rx_no_buffers", 0)
        return out

    def _dev_queue_xstats(self, rx, q):
        cdef e1000_rxq *rxq
        cdef e1000_txq *txq
        if rx:
            rxq = <e1000_rxq *>self.fp.rxq[q]
            return {"tail_writes": rxq.tail_writes, "multi_desc": rxq.multi_desc} if rxq != NULL else {}
        txq = <e1000_txq *>self.fp.txq[q]
        return {"tail_writes": txq.tail_writes, "reclaims": txq.reclaims} if txq != NULL else {}

    def _dev_link(self):
        if self.regs is None:
            return {"up": False}
        status = self._rd(E1000_STATUS)
        speed = (10, 100, 1000, 1000)[(status >> 6) & 3]        # 13.4.2 SPEED
        up = bool(status & E1000_STATUS_LU)
        return {"up": up, "speed_mbps": speed, "operstate": "up" if up else "down",
                "duplex": "full" if status & E1000_STATUS_FD else "half"}

    def _dev_info(self):
        return {"pci": self.name, "model": self.model}

    def _dev_set_promiscuous(self, on):
        if self.state == "started":
            # QEMU blanks rx for about a second after each RCTL write.
            self.rctl = self._rctl_value(on)
            self._wr(E1000_RCTL, self.rctl)

    def _dev_set_mtu(self, mtu):
        if mtu > 1500:
            raise UsageError(f"{self.name}: MTU {mtu} needs jumbo frames, which this driver does not set up",
                             "use an MTU of at most 1500")

    # -- for register-level tests
    def ring_state(self):
        """What the driver believes of its rings (tests compare it with the registers)."""
        cdef e1000_rxq *rxq = <e1000_rxq *>self.fp.rxq[0]
        cdef e1000_txq *txq = <e1000_txq *>self.fp.txq[0]
        out = {}
        if rxq != NULL and rxq.ring != NULL:
            out["rx"] = {"ring": <uintptr_t>rxq.ring, "nb_desc": rxq.nb_desc, "next": rxq.next,
                         "buffers": [rxq.ring[i].buffer_addr for i in range(rxq.nb_desc)],
                         "mbufs": [<uintptr_t>rxq.sw_ring[i] for i in range(rxq.nb_desc)]}
        if txq != NULL and txq.ring != NULL:
            out["tx"] = {"ring": <uintptr_t>txq.ring, "nb_desc": txq.nb_desc, "tail": txq.tail,
                         "clean": txq.clean, "nb_free": txq.nb_free}
        return out
