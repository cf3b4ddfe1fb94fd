"""net_igbvf: a poll-mode driver for the Intel 82576 virtual function behind vfio-pci.

Written from Intel's 82576EB datasheet (DS); igbvf.pxd names each register and
bit with its section. An SR-IOV virtual function (8086:10ca) is a slice of the
NIC: two queue pairs, a 16 KiB register window, a few counters, and a mailbox
to the physical function's driver (the PF, on the kernel's igb), which owns
everything the VF may not touch (the receive filters, RCTL/TCTL, the switch
between the VFs). The NIC's switch gives a VF the frames for its MAC address,
broadcasts and the multicasts it asked for; frames between functions of one
NIC never reach the wire.

Bring-up (slow path, in Python):
  * bus mastering, interrupts masked (polled mode), CTRL.RST (the VF only);
  * the mailbox: VF_RESET, whose reply carries the MAC the PF gave the VF, then
    SET_MAC_ADDR (a NACK is harmless when the PF set the MAC administratively:
    the PF's MAC stays), SET_MULTICAST (none) and SET_LPE (the largest frame);
  * per queue: ring base/length, SRRCTL (advanced one-buffer descriptors,
    DROP_EN so a full ring drops rather than blocks the NIC's other queues),
    RXDCTL/TXDCTL.ENABLE, then the receive tail.
The mailbox's PFSTS, PFACK and RSTD bits clear when read, so every read keeps
them until they are used. RSTD is set only when the PF's driver comes up, not
after a VF reset: the driver does not wait for it. A PF that is down answers
nothing; that is a one-line error naming the PF.

The burst path is the 8254x driver's (e1000.pyx) with advanced descriptors:
rx takes descriptors while DD is set, swaps in fresh mbufs (one bulk
allocation per burst), chains the buffers of a frame longer than one buffer
(jumbo frames after SET_LPE) and moves RDT once per burst; tx fills a
descriptor per segment, RS on every 32nd, and moves TDT once per burst. The
counts are in xstats (rx_qN_tail_writes, tx_qN_tail_writes).

Opened by PCI address: `pypdk-run ... -a 0000:00:14.0`.
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

DRIVER = "net_igbvf"
HELP = "Intel 82576 SR-IOV virtual function (QEMU -device igb's VFs) through vfio-pci"
KEYS = ()
PCI_IDS = {
    (0x8086, 0x10CA): "82576 VF",
}
BAR_SIZE = 0x4000           # BAR0: the VF's 16 KiB register window
NB_QUEUES = 2               # queue pairs of an 82576 VF
RESET_WAIT = 0.05           # seconds after CTRL.RST before talking to the PF
MBX_TIMEOUT = 2.0           # seconds for the PF to read a message, and again to answer
ENABLE_TIMEOUT = 0.5        # seconds for RXDCTL/TXDCTL.ENABLE to read back set
ETH_OVERHEAD = 14 + 4 + 4   # header, one VLAN tag, CRC: the largest frame is MTU + this
MAX_FRAME = 9216            # the largest frame SET_LPE asks for (what Linux's igb PF accepts)

# Mailbox messages (PF-VF Mailbox): word 0 is the type, the PF answers with
# the type and ACK or NACK; CTS once the PF is ready for the VF.
MSG_VF_RESET = 0x01
MSG_SET_MAC_ADDR = 0x02
MSG_SET_MULTICAST = 0x03
MSG_SET_LPE = 0x05
MSG_SET_PROMISC = 0x06
MSG_ACK = 0x80000000
MSG_NACK = 0x40000000
MSG_CTS = 0x20000000
PF_CONTROL_MSG = 0x0100     # a message the PF sends on its own (its reset), not an answer
PROMISC_UNICAST = 0x00010000
PROMISC_MULTICAST = 0x00020000
MSG_NAMES = {MSG_VF_RESET: "VF_RESET", MSG_SET_MAC_ADDR: "SET_MAC_ADDR",
             MSG_SET_MULTICAST: "SET_MULTICAST", MSG_SET_LPE: "SET_LPE",
             MSG_SET_PROMISC: "SET_PROMISC"}

# The VF's counters (32 bits, wrapping, not cleared by reading): (offset, xstat name)
_STATS = (
    (IGBVF_VFGPRC, "good_rx_packets"), (IGBVF_VFGPTC, "good_tx_packets"),
    (IGBVF_VFGORC, "good_rx_octets"), (IGBVF_VFGOTC, "good_tx_octets"),
    (IGBVF_VFMPRC, "multicast_rx_packets"),
    (IGBVF_VFGPRLBC, "loopback_rx_packets"), (IGBVF_VFGPTLBC, "loopback_tx_packets"),
    (IGBVF_VFGORLBC, "loopback_rx_octets"), (IGBVF_VFGOTLBC, "loopback_tx_octets"),
)


# ---- the burst path ----------------------------------------------------------

cdef uint16_t vf_rx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef igbvf_rxq *rxq = <igbvf_rxq *>q
    cdef igbvf_rx_desc *d
    cdef pd_mbuf *fresh[PD_MAX_BURST]
    cdef pd_mbuf *m
    cdef uint16_t i = rxq.next, ready = 0, got = 0, k, length
    cdef uint32_t staterr
    if n > PD_MAX_BURST:
        n = PD_MAX_BURST
    # Descriptors the device has written back (DD), in ring order. A frame in
    # several buffers may end beyond the burst: its head waits in pkt_first.
    while ready < n and (rxq.ring[(i + ready) & rxq.mask].status_error & IGBVF_RXD_STAT_DD):
        ready += 1
    if ready == 0:
        return 0
    pd_fence_acquire()                  # the rest of each descriptor after its DD
    if pd_unlikely(pktmbuf_alloc_bulk(rxq.mp, fresh, ready) != 0):
        rxq.stats.nombuf += ready       # the frames wait in the ring for the next burst
        return 0
    for k in range(ready):
        d = &rxq.ring[i]
        staterr = d.status_error
        length = d.length
        m = rxq.sw_ring[i]
        rxq.sw_ring[i] = fresh[k]
        d.pkt_addr = fresh[k].buf_iova + fresh[k].data_off
        d.status_error = 0              # hdr_addr = 0 in the read format: DD clear
        d.length = 0
        d.vlan = 0
        i = (i + 1) & rxq.mask
        m.data_len = length
        m.port = rxq.port
        m.queue = rxq.queue
        if rxq.pkt_first == NULL:
            m.pkt_len = length
            rxq.pkt_first = m
        else:
            rxq.pkt_first.pkt_len += length
            rxq.pkt_first.nb_segs += 1
            rxq.pkt_last.next = m
        rxq.pkt_last = m
        if not (staterr & IGBVF_RXD_STAT_EOP):
            continue
        m = rxq.pkt_first
        rxq.pkt_first = NULL
        rxq.pkt_last = NULL
        if pd_unlikely((staterr & IGBVF_RXD_ERR_FRAME) or m.pkt_len == 0):
            rxq.stats.errors += 1
            pktmbuf_free(m)
            continue
        if m.nb_segs > 1:
            rxq.chained += 1
        rxq.stats.bytes += m.pkt_len
        pkts[got] = m
        got += 1
    rxq.next = i
    rxq.stats.packets += got
    pd_fence_release()                  # descriptors before the tail that hands them over
    pd_mmio_write32(rxq.bar, rxq.rdt, (i - 1) & rxq.mask)
    rxq.tail_writes += 1
    return got


cdef inline void vf_tx_reclaim(igbvf_txq *txq) noexcept nogil:
    # Blocks of rs_mask+1 descriptors from `clean`, each done when the last
    # one, which has RS, has DD (the device completes in ring order).
    cdef pd_mbuf *done[PD_MAX_BURST]
    cdef uint16_t nd = 0, c = txq.clean, k, block = txq.rs_mask + 1
    while (txq.nb_free + block <= txq.nb_desc - 1
           and (txq.ring[(c + txq.rs_mask) & txq.mask].olinfo_status & IGBVF_TXD_STAT_DD)):
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


cdef uint16_t vf_tx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef igbvf_txq *txq = <igbvf_txq *>q
    cdef igbvf_tx_desc *d
    cdef pd_mbuf *m
    cdef pd_mbuf *seg
    cdef uint16_t sent = 0, t
    cdef uint32_t cmd
    cdef uint64_t nbytes = 0
    if txq.nb_free < IGBVF_TX_FREE_THRESH or txq.nb_free < n:
        vf_tx_reclaim(txq)
    t = txq.tail
    while sent < n:
        m = pkts[sent]
        if pd_unlikely(m.nb_segs > txq.nb_free):
            break
        seg = m
        # PAYLEN (the whole frame) in the first descriptor of a frame.
        txq.ring[t].olinfo_status = m.pkt_len << IGBVF_TXD_PAYLEN_SHIFT
        while seg != NULL:
            d = &txq.ring[t]
            d.buffer_addr = seg.buf_iova + seg.data_off
            cmd = (seg.data_len | IGBVF_TXD_DTYP_DATA | IGBVF_TXD_CMD_DEXT | IGBVF_TXD_CMD_IFCS)
            if (t & txq.rs_mask) == txq.rs_mask:
                cmd |= IGBVF_TXD_CMD_RS
            if seg != m:
                d.olinfo_status = 0
            if seg.next == NULL:
                cmd |= IGBVF_TXD_CMD_EOP
                txq.sw_ring[t] = m          # the whole chain is freed when this one is done
            else:
                txq.sw_ring[t] = NULL
            d.cmd_type_len = cmd
            t = (t + 1) & txq.mask
            txq.nb_free -= 1
            seg = seg.next
        nbytes += m.pkt_len
        sent += 1
    if sent:
        txq.tail = t
        pd_fence_release()
        pd_mmio_write32(txq.bar, txq.tdt, t)
        txq.tail_writes += 1
        txq.stats.packets += sent
        txq.stats.bytes += nbytes
    return sent


# ---- the port ----------------------------------------------------------------

def _check_ring(name, nb_desc):
    if not (IGBVF_MIN_DESC <= nb_desc <= IGBVF_MAX_DESC) or nb_desc & (nb_desc - 1):
        raise UsageError(f"{name}: {nb_desc} descriptors", f"give a power of two from {IGBVF_MIN_DESC} "
                         f"to {IGBVF_MAX_DESC} (the ring length must be a multiple of 128 bytes)")


class MailboxError(ResourceError):
    """The PF did not answer, or refused a message the VF needs."""


cdef class Port(PciPort):
    """An 82576 VF. `bus` is the device: a vfio.Device (the default, opened from
    the port's name) or, in tests, a stand-in with the same face (see PciPort)."""
    max_rx_queues = NB_QUEUES
    max_tx_queues = NB_QUEUES
    DRIVER = DRIVER
    ZONE_PREFIX = "vf"
    cdef object regs
    cdef uint8_t *bar
    cdef readonly str model
    cdef readonly str pf               # the PF's PCI address (from sysfs), or None
    cdef uint32_t sticky              # read-to-clear mailbox bits read but not used yet
    cdef dict hw_last                 # the counters' last 32-bit values
    cdef dict hw_total                # and what they counted since the probe
    cdef uint64_t rqdpc               # ring-full drops (RQDPC, read to clear), summed
    cdef readonly bint mac_admin      # the PF set the MAC (SET_MAC_ADDR was refused)
    cdef readonly dict mbx_counts     # messages sent, ACKed, NACKed, by name

    def __cinit__(self):
        self.drv_rx = vf_rx
        self.drv_tx = vf_tx
        self.bar = NULL
        self.hw_last = {}
        self.hw_total = {}
        self.mbx_counts = {"sent": 0, "acked": 0, "nacked": 0, "timeouts": 0}

    # -- registers (slow path)
    def _rd(self, off):
        return self.regs.read32(off)

    def _wr(self, off, value):
        self.regs.write32(off, value & 0xFFFFFFFF)

    def _dev_probe(self, dict args):
        info = self._open_bus()
        self.model = PCI_IDS.get((info.vendor, info.device))
        if self.model is None:
            raise UsageError(f"{self.name}: device {info.vendor:04x}:{info.device:04x} is not an 82576 VF",
                             "pypdk-devbind --status shows each device's id")
        self.pf = getattr(info, "physfn", None)
        self.regs = self.bus.regs(0, BAR_SIZE)
        if self.regs.addr is None:
            raise ResourceError(f"{self.name}: BAR0 cannot be mapped", "the VF's registers need an MMIO BAR")
        self.bar = <uint8_t *><uintptr_t>self.regs.addr
        self.bus.enable_bus_master()
        self._promisc = False           # a VF sees its own MAC's frames (the PF refuses more)
        self._reset()
        self._mac = self._vf_reset()
        self._set_mac(self._mac)
        self._mbx_call(MSG_SET_MULTICAST, [])          # no multicast hashes
        self._set_lpe(self._mtu)
        self._read_stats()

    # -- the mailbox (PF-VF Mailbox)
    def _mbx_status(self):
        """V2PMAILBOX, with the read-to-clear bits of earlier reads kept."""
        v = self._rd(IGBVF_V2PMAILBOX)
        self.sticky |= v & IGBVF_MBX_R2C
        return v | self.sticky

    def _mbx_take(self, bit):
        """Whether `bit` (PFSTS, PFACK or RSTD) is set; it is used up if so."""
        if self._mbx_status() & bit:
            self.sticky &= ~bit
            return True
        return False

    def _mbx_wait(self, bit, what):
        deadline = time.monotonic() + MBX_TIMEOUT
        while not self._mbx_take(bit):
            if time.monotonic() > deadline:
                self.mbx_counts["timeouts"] += 1
                pf = self.pf or "the PF"
                raise MailboxError(f"{self.name}: the PF ({pf}) does not answer the VF's mailbox ({what})",
                                   f"bring the PF up first: ip link set <PF interface> up "
                                   f"(pypdk-devbind --status shows {pf}'s interface)")
            time.sleep(0.0005)

    def _mbx_lock(self):
        deadline = time.monotonic() + MBX_TIMEOUT
        while True:
            self._wr(IGBVF_V2PMAILBOX, IGBVF_MBX_VFU)
            if self._mbx_status() & IGBVF_MBX_VFU:
                return
            if time.monotonic() > deadline:
                raise MailboxError(f"{self.name}: the VF cannot take its mailbox (the PF holds it)",
                                   "check that the PF's driver (igb) is loaded and up")
            time.sleep(0.0005)

    def _mbx_send(self, words):
        self._mbx_lock()
        # An old ACK or message is not this message's answer: both are dropped.
        self._mbx_take(IGBVF_MBX_PFACK)
        self._mbx_take(IGBVF_MBX_PFSTS)
        for i, w in enumerate(words):
            self._wr(IGBVF_VMBMEM + 4 * i, w)
        self._wr(IGBVF_V2PMAILBOX, IGBVF_MBX_REQ)   # REQ, and VFU released
        self.mbx_counts["sent"] += 1

    def _mbx_receive(self):
        self._mbx_lock()
        words = [self._rd(IGBVF_VMBMEM + 4 * i) for i in range(IGBVF_MBX_WORDS)]
        self._wr(IGBVF_V2PMAILBOX, IGBVF_MBX_ACK)   # read, and VFU released
        return words

    def _mbx_call(self, msg, args):
        """Send a message and wait for the PF's answer; (acked, the answer's words)."""
        name = MSG_NAMES.get(msg & 0xFFFF, hex(msg))
        self._mbx_send([msg] + list(args))
        self._mbx_wait(IGBVF_MBX_PFACK, f"{name} not read")
        for _ in range(4):
            self._mbx_wait(IGBVF_MBX_PFSTS, f"no answer to {name}")
            words = self._mbx_receive()
            # A control message of the PF's own (its reset, bit 8) may come first.
            if (words[0] & 0xFFFF) == (msg & 0xFFFF) or not words[0] & PF_CONTROL_MSG:
                break
        if (words[0] & 0xFFFF) != (msg & 0xFFFF):
            raise MailboxError(f"{self.name}: the PF answered {words[0]:#010x} to {name}",
                               "reset the VF (close and open the port again)")
        acked = bool(words[0] & MSG_ACK)
        self.mbx_counts["acked" if acked else "nacked"] += 1
        return acked, words

    # -- bring-up
    def _reset(self):
        self._wr(IGBVF_EIMC, 0x7)               # three vectors, all masked: polled
        self._wr(IGBVF_CTRL, IGBVF_CTRL_RST)    # the VF only; it clears the queue enables
        time.sleep(RESET_WAIT)
        self._mbx_status()                      # RSTD/RSTI if the PF set them: kept, not waited for
        self._wr(IGBVF_EIMC, 0x7)

    def _vf_reset(self):
        acked, words = self._mbx_call(MSG_VF_RESET, [])
        if not acked:
            raise MailboxError(f"{self.name}: the PF refused VF_RESET",
                               "the PF has not enabled this VF: recreate the VFs (pypdk-devbind --sriov-numvfs)")
        mac = (words[1] | (words[2] << 32)).to_bytes(8, "little")[:6]
        if mac == b"\0" * 6 or mac[0] & 1:
            raise MailboxError(f"{self.name}: the PF gave the VF no MAC address",
                               f"set one from the PF: ip link set <PF interface> vf N mac 02:..")
        return mac

    def _set_mac(self, mac):
        acked, _ = self._mbx_call(MSG_SET_MAC_ADDR, [int.from_bytes(mac[:4], "little"),
                                                      int.from_bytes(mac[4:], "little")])
        # A NACK means the PF set this VF's MAC administratively: it stays.
        self.mac_admin = not acked
        return acked

    def _set_lpe(self, mtu):
        frame = mtu + ETH_OVERHEAD
        acked, _ = self._mbx_call(MSG_SET_LPE, [frame])
        return acked

    def _qreg(self, base, q):
        return base + IGBVF_QUEUE_STRIDE * q

    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        cdef igbvf_rxq *rxq
        cdef uint16_t i
        cdef pd_mbuf *m
        _check_ring(self.name, nb_desc)
        if pool.data_room < 1024:
            raise UsageError(f"{self.name}: the pool's data room ({pool.data_room}) is below 1024 bytes",
                             "give the pool a data room of 2048 (the default)")
        self._dev_queue_release(True, q)
        rxq = <igbvf_rxq *>self.queue_alloc(True, q, sizeof(igbvf_rxq))
        memset(rxq, 0, sizeof(igbvf_rxq))
        z = self._zone(f"rx{q}", nb_desc * (sizeof(igbvf_rx_desc) + sizeof(pd_mbuf *)))
        rxq.ring = <igbvf_rx_desc *><uintptr_t>z.addr
        rxq.sw_ring = <pd_mbuf **><uintptr_t>(z.addr + nb_desc * sizeof(igbvf_rx_desc))
        rxq.bar = self.bar
        rxq.mp = pool.mp
        rxq.nb_desc = nb_desc
        rxq.mask = nb_desc - 1
        rxq.port = self.port_id
        rxq.queue = q
        rxq.rdt = self._qreg(IGBVF_RDT, q)
        if pktmbuf_alloc_bulk(pool.mp, rxq.sw_ring, nb_desc) != 0:
            raise ResourceError(f"{self.name}: the pool has fewer than {nb_desc} free mbufs to fill the rx ring",
                                "make the pool larger than the ring sizes together")
        for i in range(nb_desc):
            m = rxq.sw_ring[i]
            rxq.ring[i].pkt_addr = m.buf_iova + m.data_off
            rxq.ring[i].status_error = 0
            rxq.ring[i].length = 0
            rxq.ring[i].vlan = 0
        rxq.buf_kib = min(pool.data_room, 16384) // 1024

    def _dev_tx_queue_setup(self, q, nb_desc):
        cdef igbvf_txq *txq
        _check_ring(self.name, nb_desc)
        self._dev_queue_release(False, q)
        txq = <igbvf_txq *>self.queue_alloc(False, q, sizeof(igbvf_txq))
        memset(txq, 0, sizeof(igbvf_txq))
        z = self._zone(f"tx{q}", nb_desc * (sizeof(igbvf_tx_desc) + sizeof(pd_mbuf *)))
        txq.ring = <igbvf_tx_desc *><uintptr_t>z.addr
        txq.sw_ring = <pd_mbuf **><uintptr_t>(z.addr + nb_desc * sizeof(igbvf_tx_desc))
        txq.bar = self.bar
        txq.tdt = self._qreg(IGBVF_TDT, q)
        txq.nb_desc = nb_desc
        txq.mask = nb_desc - 1
        txq.nb_free = nb_desc - 1
        txq.rs_mask = min(IGBVF_TX_RS_THRESH, nb_desc // 2) - 1

    def _enable(self, reg, what):
        self._wr(reg, self._rd(reg) | IGBVF_XDCTL_ENABLE)
        deadline = time.monotonic() + ENABLE_TIMEOUT
        while not self._rd(reg) & IGBVF_XDCTL_ENABLE:
            if time.monotonic() > deadline:
                raise ResourceError(f"{self.name}: {what} does not enable",
                                    "the PF has not enabled the VF's queues: check the PF's driver (dmesg)")
            time.sleep(0.001)

    def _dev_start(self):
        cdef igbvf_rxq *rxq
        cdef igbvf_txq *txq
        cdef uint64_t iova
        cdef int q
        for q in range(self.fp.nb_txq):
            txq = <igbvf_txq *>self.fp.txq[q]
            iova = <uintptr_t>txq.ring
            self._wr(self._qreg(IGBVF_TXDCTL, q), 0)
            self._wr(self._qreg(IGBVF_TDBAL, q), iova & 0xFFFFFFFF)
            self._wr(self._qreg(IGBVF_TDBAH, q), iova >> 32)
            self._wr(self._qreg(IGBVF_TDLEN, q), txq.nb_desc * sizeof(igbvf_tx_desc))
            self._wr(self._qreg(IGBVF_TDH, q), 0)
            self._wr(self._qreg(IGBVF_TDT, q), 0)
            txq.tail = txq.clean = 0
            txq.nb_free = txq.nb_desc - 1
            self._enable(self._qreg(IGBVF_TXDCTL, q), f"tx queue {q}")
        for q in range(self.fp.nb_rxq):
            rxq = <igbvf_rxq *>self.fp.rxq[q]
            iova = <uintptr_t>rxq.ring
            self._wr(self._qreg(IGBVF_RXDCTL, q), 0)
            self._wr(self._qreg(IGBVF_RDBAL, q), iova & 0xFFFFFFFF)
            self._wr(self._qreg(IGBVF_RDBAH, q), iova >> 32)
            self._wr(self._qreg(IGBVF_RDLEN, q), rxq.nb_desc * sizeof(igbvf_rx_desc))
            self._wr(self._qreg(IGBVF_RDH, q), 0)
            self._wr(self._qreg(IGBVF_RDT, q), 0)
            # SRRCTL (DS 8.10.2): packet buffer in KiB, advanced one-buffer, drop when full.
            self._wr(self._qreg(IGBVF_SRRCTL, q), rxq.buf_kib | IGBVF_SRRCTL_DESCTYPE_ADV_ONEBUF
                     | IGBVF_SRRCTL_DROP_EN)
            rxq.next = 0
            self._enable(self._qreg(IGBVF_RXDCTL, q), f"rx queue {q}")
            # Every descriptor but one holds a buffer: RDH == RDT means "none".
            self._wr(self._qreg(IGBVF_RDT, q), rxq.nb_desc - 1)

    def _dev_stop(self):
        cdef int q
        cdef igbvf_txq *txq
        cdef igbvf_rxq *rxq
        for q in range(self.fp.nb_rxq):
            self._wr(self._qreg(IGBVF_RXDCTL, q), 0)
            rxq = <igbvf_rxq *>self.fp.rxq[q]
            if rxq != NULL and rxq.pkt_first != NULL:
                pktmbuf_free(rxq.pkt_first)         # half a frame
                rxq.pkt_first = rxq.pkt_last = NULL
        for q in range(self.fp.nb_txq):
            self._wr(self._qreg(IGBVF_TXDCTL, q), 0)
            txq = <igbvf_txq *>self.fp.txq[q]
            if txq != NULL:
                self._tx_drain(txq)

    cdef _tx_drain(self, igbvf_txq *txq):
        cdef uint16_t i
        for i in range(txq.nb_desc):
            if txq.sw_ring[i] != NULL:
                pktmbuf_free(txq.sw_ring[i])
                txq.sw_ring[i] = NULL
        txq.tail = txq.clean = 0
        txq.nb_free = txq.nb_desc - 1

    def _dev_queue_release(self, rx, q):
        cdef igbvf_rxq *rxq
        cdef igbvf_txq *txq
        cdef uint16_t i
        if rx:
            rxq = <igbvf_rxq *>self.fp.rxq[q]
            if rxq != NULL and rxq.sw_ring != NULL:
                if rxq.pkt_first != NULL:
                    pktmbuf_free(rxq.pkt_first)
                    rxq.pkt_first = rxq.pkt_last = NULL
                for i in range(rxq.nb_desc):
                    pktmbuf_free(rxq.sw_ring[i])
                    rxq.sw_ring[i] = NULL
                rxq.sw_ring = NULL
                rxq.ring = NULL
        else:
            txq = <igbvf_txq *>self.fp.txq[q]
            if txq != NULL and txq.sw_ring != NULL:
                self._tx_drain(txq)
                txq.sw_ring = NULL
                txq.ring = NULL
        self._zone_close(f"{'rx' if rx else 'tx'}{q}")

    def _dev_close(self):
        if self.regs is not None and self.bar != NULL:
            try:
                for q in range(NB_QUEUES):
                    self._wr(self._qreg(IGBVF_RXDCTL, q), 0)
                    self._wr(self._qreg(IGBVF_TXDCTL, q), 0)
                self._wr(IGBVF_EIMC, 0x7)
            except Exception:
                pass
        self._bus_quiesce()

    def _release(self):
        if self.regs is not None:
            self.regs.close()
            self.regs = None
        self.bar = NULL

    # -- counters
    def _read_stats(self):
        # 32-bit counters that wrap: each read adds the distance since the last.
        for off, name in _STATS:
            v = self._rd(off)
            last = self.hw_last.get(name)
            if last is not None:
                self.hw_total[name] = self.hw_total.get(name, 0) + ((v - last) & 0xFFFFFFFF)
            else:
                self.hw_total[name] = 0             # counts start at the probe
            self.hw_last[name] = v

    def _dev_xstats(self):
        cdef int q
        if self.regs is not None and self.state != "closed":
            self._read_stats()
        out = dict(self.hw_total)
        out.update({f"mbx_{k}": v for k, v in self.mbx_counts.items()})
        missed = 0
        if self.regs is not None and self.state != "closed":
            for q in range(self.fp.nb_rxq):
                missed += self._rd(self._qreg(IGBVF_RQDPC, q))
        self.rqdpc += missed                        # RQDPC clears when read
        out["rx_ring_full_drops"] = self.rqdpc
        out["imissed"] = self.rqdpc
        return out

    def _dev_queue_xstats(self, rx, q):
        cdef igbvf_rxq *rxq
        cdef igbvf_txq *txq
        if rx:
            rxq = <igbvf_rxq *>self.fp.rxq[q]
            return {"tail_writes": rxq.tail_writes, "chained": rxq.chained} if rxq != NULL else {}
        txq = <igbvf_txq *>self.fp.txq[q]
        return {"tail_writes": txq.tail_writes, "reclaims": txq.reclaims} if txq != NULL else {}

    def _dev_link(self):
        if self.regs is None:
            return {"up": False}
        status = self._rd(IGBVF_STATUS)                  # the PF's link, as the VF sees it
        speed = (10, 100, 1000, 1000)[(status >> 6) & 3]
        up = bool(status & IGBVF_STATUS_LU)
        return {"up": up, "speed_mbps": speed, "operstate": "up" if up else "down",
                "duplex": "full" if status & IGBVF_STATUS_FD else "half"}

    def _dev_info(self):
        return {"pci": self.name, "model": self.model, "pf": self.pf, "mac_set_by_pf": bool(self.mac_admin)}

    def _dev_set_promiscuous(self, on):
        if not on:
            return
        acked, _ = self._mbx_call(MSG_SET_PROMISC, [PROMISC_UNICAST | PROMISC_MULTICAST])
        if not acked:
            raise UsageError(f"{self.name}: the PF refuses promiscuous mode for a VF",
                             "a VF receives the frames for its own MAC; send to that MAC "
                             "(or give the application the PF)")

    def _dev_set_mtu(self, mtu):
        if mtu + ETH_OVERHEAD > MAX_FRAME:
            raise UsageError(f"{self.name}: MTU {mtu} is above the 82576's largest frame",
                             f"use an MTU of at most {MAX_FRAME - ETH_OVERHEAD}")
        if self.regs is not None and not self._set_lpe(mtu):
            raise UsageError(f"{self.name}: the PF refused MTU {mtu} (SET_LPE)",
                             "raise the PF's MTU first: ip link set <PF interface> mtu N")

    # -- for register-level tests
    def ring_state(self, q=0):
        cdef igbvf_rxq *rxq = <igbvf_rxq *>self.fp.rxq[q]
        cdef igbvf_txq *txq = <igbvf_txq *>self.fp.txq[q]
        out = {}
        if rxq != NULL and rxq.ring != NULL:
            out["rx"] = {"ring": <uintptr_t>rxq.ring, "nb_desc": rxq.nb_desc, "next": rxq.next,
                         "buffers": [rxq.ring[i].pkt_addr for i in range(rxq.nb_desc)]}
        if txq != NULL and txq.ring != NULL:
            out["tx"] = {"ring": <uintptr_t>txq.ring, "nb_desc": txq.nb_desc, "tail": txq.tail,
                         "clean": txq.clean, "nb_free": txq.nb_free}
        return out
