"""net_virtio: a poll-mode driver for virtio-net devices (virtio 1.x, modern PCI) behind vfio-pci.

Written from the OASIS virtio 1.x specification (sections in the comments). The
device (QEMU's `-device virtio-net-pci,disable-legacy=on,iommu_platform=on`, 1af4:1041)
is found through its vendor capabilities (4.1.4), each checked to lie inside its BAR;
brought up by the status dance of 3.1.1 with 64-bit feature negotiation (VERSION_1
required; ACCESS_PLATFORM accepted, since the device reaches memory through the IOMMU at
IOVA = VA; MAC, STATUS, MRG_RXBUF; MQ with CTRL_VQ to choose the number of queue pairs);
and driven through split virtqueues (2.7) in EAL memory.

The burst path:
  rx  takes used entries (load-acquire of used.idx), each a buffer the device filled
      with the 12-byte virtio-net header and the frame (a frame over several buffers
      with MRG_RXBUF is chained); the buffers go back as fresh mbufs, avail.idx is
      published once per burst, and the device is notified only if it asked to be
      (used.flags without NO_NOTIFY), once per burst.
  tx  reclaims what the device used when fewer than 32 (plus two per packet of the
      burst) descriptors are free, then gives one descriptor per packet when the
      header fits in the mbuf's headroom (the header is written just before the
      data), else a header descriptor and one per segment; one avail.idx store and
      at most one notification per burst.
Interrupts are off: the driver polls and sets VRING_AVAIL_F_NO_INTERRUPT.

Port rx queue q is virtqueue 2q, tx queue q is 2q+1; the control queue follows the
device's last pair.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memset

from pd_atomic cimport (pd_fence_seq_cst, pd_load_acquire_u32, pd_store_release_u32)
from pd_compiler cimport pd_likely, pd_unlikely
from pd_config cimport PD_MAX_BURST
from pd_mmio cimport pd_mmio_write16
from pd_virtio cimport (pd_vring_desc, pd_vring_used_elem, pd_vring_avail_size, pd_vring_used_size,
                        PD_VRING_DESC_F_NEXT, PD_VRING_DESC_F_WRITE, PD_VRING_AVAIL_F_NO_INTERRUPT,
                        PD_VRING_USED_F_NO_NOTIFY, PD_VRING_MAX_SIZE,
                        PD_VIRTIO_STATUS_ACKNOWLEDGE, PD_VIRTIO_STATUS_DRIVER,
                        PD_VIRTIO_STATUS_DRIVER_OK, PD_VIRTIO_STATUS_FEATURES_OK,
                        PD_VIRTIO_STATUS_FAILED, PD_VIRTIO_STATUS_NEEDS_RESET,
                        PD_VIRTIO_NET_F_MAC, PD_VIRTIO_NET_F_MRG_RXBUF,
                        PD_VIRTIO_NET_F_STATUS, PD_VIRTIO_NET_F_CTRL_VQ, PD_VIRTIO_NET_F_MQ,
                        PD_VIRTIO_NET_F_MTU, PD_VIRTIO_F_VERSION_1, PD_VIRTIO_F_ACCESS_PLATFORM,
                        PD_VIRTIO_NET_S_LINK_UP)

from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free, mbuf_refcnt_read,
                                 PktMbufPool)
from pypdk.pmd.pci_port cimport PciPort

import time

from pypdk.errors import ResourceError, UsageError

DRIVER = "net_virtio"
HELP = "virtio-net 1.x (modern PCI, QEMU -device virtio-net-pci) through vfio-pci"
KEYS = ()
PCI_IDS = {(0x1AF4, 0x1041): "virtio-net (modern)"}
VIRTIO_PCI_CAP_VNDR = 0x09
RESET_TIMEOUT = 1.0
CTRL_TIMEOUT = 2.0
# 5.1.6.5 control virtqueue
CTRL_MQ, CTRL_MQ_VQ_PAIRS_SET = 4, 0
CTRL_OK = 0
# Feature bits as Python ints (the masks are 64-bit): name -> bit.
F_VERSION_1 = <int>PD_VIRTIO_F_VERSION_1
F_ACCESS_PLATFORM = <int>PD_VIRTIO_F_ACCESS_PLATFORM
F_MAC = <int>PD_VIRTIO_NET_F_MAC
F_STATUS = <int>PD_VIRTIO_NET_F_STATUS
F_MRG_RXBUF = <int>PD_VIRTIO_NET_F_MRG_RXBUF
F_CTRL_VQ = <int>PD_VIRTIO_NET_F_CTRL_VQ
F_MQ = <int>PD_VIRTIO_NET_F_MQ
F_MTU = <int>PD_VIRTIO_NET_F_MTU
FEATURE_NAMES = {F_VERSION_1: "VERSION_1", F_ACCESS_PLATFORM: "ACCESS_PLATFORM", F_MAC: "MAC",
                 F_STATUS: "STATUS", F_MRG_RXBUF: "MRG_RXBUF", F_CTRL_VQ: "CTRL_VQ", F_MQ: "MQ",
                 F_MTU: "MTU"}
WANTED_FEATURES = sum(1 << bit for bit in FEATURE_NAMES)


# ---- ring helpers ------------------------------------------------------------

cdef inline uint16_t *avail_ring(vnet_q *q) noexcept nogil:
    return <uint16_t *>(q.avail + 4)

cdef inline uint16_t *avail_flags(vnet_q *q) noexcept nogil:
    return <uint16_t *>q.avail

cdef inline pd_vring_used_elem *used_ring(vnet_q *q) noexcept nogil:
    return <pd_vring_used_elem *>(q.used + 4)

cdef inline uint16_t used_idx_acquire(vnet_q *q) noexcept nogil:
    # flags and idx are one aligned 32-bit word; idx is its upper half. Pairs
    # with the device's release of used.idx after it wrote the used entries.
    return <uint16_t>(pd_load_acquire_u32(<uint32_t *>q.used) >> 16)

cdef inline uint16_t used_flags(vnet_q *q) noexcept nogil:
    return <uint16_t>(pd_load_acquire_u32(<uint32_t *>q.used) & 0xFFFF)

cdef inline void publish_and_notify(vnet_q *q) noexcept nogil:
    # 2.7.13: the ring entries, then idx (release: the device reads idx, then
    # the entries); then a full barrier before reading the device's
    # NO_NOTIFY flag (2.7.13.3: it must not be read before idx is visible).
    cdef uint32_t word = (<uint32_t>q.avail_idx << 16) | PD_VRING_AVAIL_F_NO_INTERRUPT
    pd_store_release_u32(<uint32_t *>q.avail, word)
    pd_fence_seq_cst()
    if not (used_flags(q) & PD_VRING_USED_F_NO_NOTIFY):
        pd_mmio_write16(q.notify, 0, q.vq_index)
        q.notifies += 1


# ---- the burst path ----------------------------------------------------------

cdef inline void rx_refill(vnet_q *q) noexcept nogil:
    cdef pd_mbuf *fresh[PD_MAX_BURST]
    cdef uint16_t k, id, n
    cdef pd_mbuf *m
    while q.nb_refill:
        n = q.nb_refill if q.nb_refill < PD_MAX_BURST else PD_MAX_BURST
        if pd_unlikely(pktmbuf_alloc_bulk(q.mp, fresh, n) != 0):
            return                                   # tried again at the next burst
        for k in range(n):
            q.nb_refill -= 1
            id = q.refill[q.nb_refill]
            m = fresh[k]
            q.sw_ring[id] = m
            # The header lands just before the data room: the frame starts at data_off.
            q.desc[id].addr = m.buf_iova + q.headroom - VNET_HDR_SIZE
            q.desc[id].len = q.buf_len
            q.desc[id].flags = PD_VRING_DESC_F_WRITE
            avail_ring(q)[q.avail_idx & q.mask] = id
            q.avail_idx += 1


cdef uint16_t vnet_rx(void *qp, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef vnet_q *q = <vnet_q *>qp
    cdef uint16_t used, got = 0, nbuf, id
    cdef uint32_t length
    cdef pd_vring_used_elem *e
    cdef pd_mbuf *m
    cdef pd_mbuf *last
    cdef pd_mbuf *seg
    cdef bint bad
    used = used_idx_acquire(q)
    while got < n and q.used_idx != used:
        e = &used_ring(q)[q.used_idx & q.mask]
        id = <uint16_t>e.id
        length = e.len
        q.used_idx += 1
        if pd_unlikely(e.id >= q.size or q.sw_ring[id] == NULL):
            q.bad_used += 1
            continue
        m = q.sw_ring[id]
        q.sw_ring[id] = NULL
        q.refill[q.nb_refill] = id
        q.nb_refill += 1
        if pd_unlikely(length < VNET_HDR_SIZE + 14 or length > q.buf_len):
            q.stats.errors += 1
            pktmbuf_free(m)
            continue
        nbuf = (<uint16_t *>(<uint8_t *>m.buf_addr + q.headroom - 2))[0]     # num_buffers
        m.data_off = q.headroom
        m.data_len = <uint16_t>(length - VNET_HDR_SIZE)
        m.pkt_len = m.data_len
        m.port = q.port
        m.queue = q.queue
        bad = False
        last = m
        while pd_unlikely(nbuf > 1):
            # MRG_RXBUF (5.1.6.4): the frame goes on in the next used buffers,
            # which carry no header.
            nbuf -= 1
            if q.used_idx == used:
                used = used_idx_acquire(q)
                if q.used_idx == used:
                    bad = True                       # the device published half a frame
                    break
            e = &used_ring(q)[q.used_idx & q.mask]
            id = <uint16_t>e.id
            length = e.len
            q.used_idx += 1
            if pd_unlikely(e.id >= q.size or q.sw_ring[id] == NULL or length > q.buf_len):
                q.bad_used += 1
                bad = True
                break
            seg = q.sw_ring[id]
            q.sw_ring[id] = NULL
            q.refill[q.nb_refill] = id
            q.nb_refill += 1
            seg.data_off = q.headroom - VNET_HDR_SIZE
            seg.data_len = <uint16_t>length
            last.next = seg
            last = seg
            m.nb_segs += 1
            m.pkt_len += length
        if pd_unlikely(bad):
            q.stats.errors += 1
            pktmbuf_free(m)
            continue
        if m.nb_segs > 1:
            q.chained += 1
        q.stats.bytes += m.pkt_len
        pkts[got] = m
        got += 1
    q.stats.packets += got
    if q.nb_refill:
        rx_refill(q)
        publish_and_notify(q)
    return got


cdef inline void tx_reclaim(vnet_q *q) noexcept nogil:
    cdef uint16_t used = used_idx_acquire(q), id, last, hops
    cdef pd_vring_used_elem *e
    while q.used_idx != used:
        e = &used_ring(q)[q.used_idx & q.mask]
        q.used_idx += 1
        id = <uint16_t>e.id
        if pd_unlikely(e.id >= q.size or q.sw_ring[id] == NULL):
            q.bad_used += 1
            continue
        pktmbuf_free(q.sw_ring[id])
        q.sw_ring[id] = NULL
        # Give the chain's descriptors back to the free list.
        last = id
        hops = 1
        while (q.desc[last].flags & PD_VRING_DESC_F_NEXT) and hops < q.size:
            last = q.desc[last].next & q.mask
            hops += 1
        q.desc[last].next = q.free_head
        q.desc[last].flags = 0
        q.free_head = id
        q.nb_free += hops


cdef uint16_t vnet_tx(void *qp, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef vnet_q *q = <vnet_q *>qp
    cdef uint16_t sent = 0, head, id, need
    cdef pd_mbuf *m
    cdef pd_mbuf *seg
    cdef uint8_t *hdr
    cdef bint push
    cdef uint64_t nbytes = 0
    # The used ring is read (a cache line the device writes from another cpu)
    # only when the free descriptors run low, as DPDK's tx_free_thresh.
    if q.nb_free < VNET_TX_RECLAIM_BELOW + 2 * n:
        tx_reclaim(q)
    while sent < n:
        m = pkts[sent]
        push = (m.nb_segs == 1 and m.data_off >= VNET_HDR_SIZE and mbuf_refcnt_read(m) == 1)
        need = m.nb_segs + (0 if push else 1)
        if pd_unlikely(need > q.nb_free):
            break
        head = q.free_head
        id = head
        if push:
            # 5.1.6.2 with VERSION_1 (any layout): header and frame in one buffer.
            hdr = <uint8_t *>m.buf_addr + m.data_off - VNET_HDR_SIZE
            memset(hdr, 0, VNET_HDR_SIZE)
            q.desc[id].addr = m.buf_iova + m.data_off - VNET_HDR_SIZE
            q.desc[id].len = m.data_len + VNET_HDR_SIZE
            q.desc[id].flags = 0
            q.free_head = q.desc[id].next
        else:
            hdr = q.hdrs + <size_t>id * VNET_HDR_SIZE
            memset(hdr, 0, VNET_HDR_SIZE)
            q.desc[id].addr = <uintptr_t>hdr
            q.desc[id].len = VNET_HDR_SIZE
            q.desc[id].flags = PD_VRING_DESC_F_NEXT
            seg = m
            while seg != NULL:
                id = q.desc[id].next & q.mask
                q.desc[id].addr = seg.buf_iova + seg.data_off
                q.desc[id].len = seg.data_len
                q.desc[id].flags = PD_VRING_DESC_F_NEXT if seg.next != NULL else 0
                seg = seg.next
            q.free_head = q.desc[id].next
        q.nb_free -= need
        q.sw_ring[head] = m
        avail_ring(q)[q.avail_idx & q.mask] = head
        q.avail_idx += 1
        nbytes += m.pkt_len
        sent += 1
    if sent:
        publish_and_notify(q)
        q.stats.packets += sent
        q.stats.bytes += nbytes
    return sent


# ---- the port ----------------------------------------------------------------

cdef class Port(PciPort):
    """A virtio-net device. `bus` is the device: a vfio.Device (opened from the
    port's name, a PCI address) or, in tests, a stand-in with the same face."""
    DRIVER = DRIVER
    ZONE_PREFIX = "vn"
    cdef dict bars              # BAR index -> register window
    cdef dict caps              # cfg_type -> (window, offset, length)
    cdef object common
    cdef uint32_t common_off
    cdef object devcfg
    cdef uint32_t devcfg_off
    cdef object notify_win
    cdef uint32_t notify_off
    cdef uint32_t notify_mult
    cdef readonly object features       # negotiated
    cdef readonly int max_pairs
    cdef object ctrl                    # the control queue (a _CtrlQueue) while started
    cdef int nb_pairs_set

    def __cinit__(self):
        self.drv_rx = vnet_rx
        self.drv_tx = vnet_tx
        self.bars = {}
        self.caps = {}

    @property
    def max_rx_queues(self):
        return self.max_pairs

    @property
    def max_tx_queues(self):
        return self.max_pairs

    # -- common configuration access (4.1.4.3)
    def _c8(self, off, value=None):
        if value is None:
            return self.common.read8(self.common_off + off)
        self.common.write8(self.common_off + off, value)

    def _c16(self, off, value=None):
        if value is None:
            return self.common.read16(self.common_off + off)
        self.common.write16(self.common_off + off, value)

    def _c32(self, off, value=None):
        if value is None:
            return self.common.read32(self.common_off + off)
        self.common.write32(self.common_off + off, value & 0xFFFFFFFF)

    def _c64(self, lo, value):
        self._c32(lo, value & 0xFFFFFFFF)
        self._c32(lo + 4, value >> 32)

    def _status(self, add=None):
        if add is None:
            return self._c8(VPCI_STATUS)
        self._c8(VPCI_STATUS, self._c8(VPCI_STATUS) | add)

    def _find_caps(self):
        """4.1.4: walk the vendor capabilities; each structure must lie inside its BAR."""
        for cap_id, off in self.bus.capabilities():
            if cap_id != VIRTIO_PCI_CAP_VNDR:
                continue
            cfg_type = self.bus.config_read(off + 3, 1)
            bar = self.bus.config_read(off + 4, 1)
            offset = self.bus.config_read(off + 8, 4)
            length = self.bus.config_read(off + 12, 4)
            if cfg_type in self.caps or cfg_type not in (VPCI_CAP_COMMON, VPCI_CAP_NOTIFY,
                                                         VPCI_CAP_ISR, VPCI_CAP_DEVICE):
                continue                        # the first of each kind is the one to use
            if bar > 5:
                continue
            if bar not in self.bars:
                self.bars[bar] = self.bus.regs(bar)
            win = self.bars[bar]
            if offset + length > win.size or length == 0:
                raise ResourceError(f"{self.name}: virtio capability {cfg_type} at BAR{bar}+{offset:#x} "
                                    f"({length} bytes) runs past the BAR's {win.size} bytes",
                                    "the device is broken or not a virtio 1.x device")
            mult = self.bus.config_read(off + 16, 4) if cfg_type == VPCI_CAP_NOTIFY else 0
            self.caps[cfg_type] = (win, offset, length, mult)
        for need, what in ((VPCI_CAP_COMMON, "common"), (VPCI_CAP_NOTIFY, "notify"),
                           (VPCI_CAP_DEVICE, "device")):
            if need not in self.caps:
                raise ResourceError(f"{self.name}: no virtio {what} configuration capability",
                                    "use a modern (1.x) virtio-net device: QEMU -device "
                                    "virtio-net-pci,disable-legacy=on,iommu_platform=on")
        self.common, self.common_off, length, _ = self.caps[VPCI_CAP_COMMON]
        if length < 0x38:
            raise ResourceError(f"{self.name}: the common configuration is {length} bytes (needs 56)",
                                "the device is not a virtio 1.x device")
        self.devcfg, self.devcfg_off, _, _ = self.caps[VPCI_CAP_DEVICE]
        self.notify_win, self.notify_off, _, self.notify_mult = self.caps[VPCI_CAP_NOTIFY]
        if self.common.addr is None or self.notify_win.addr is None:
            raise ResourceError(f"{self.name}: the virtio BARs cannot be mapped", "use an MMIO BAR")

    def _reset(self):
        self._c8(VPCI_STATUS, 0)
        deadline = time.monotonic() + RESET_TIMEOUT
        while self._c8(VPCI_STATUS) != 0:
            if time.monotonic() > deadline:
                raise ResourceError(f"{self.name}: the device did not reset (status stays "
                                    f"{self._c8(VPCI_STATUS):#x})", "check dmesg in the guest")
            time.sleep(0.001)

    def _negotiate(self):
        """3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK read back."""
        self._reset()
        self._status(PD_VIRTIO_STATUS_ACKNOWLEDGE)
        self._status(PD_VIRTIO_STATUS_DRIVER)
        self._c32(VPCI_DFSELECT, 0)
        offered = self._c32(VPCI_DF)
        self._c32(VPCI_DFSELECT, 1)
        offered |= self._c32(VPCI_DF) << 32
        if not offered >> F_VERSION_1 & 1:
            raise ResourceError(f"{self.name}: the device does not offer VIRTIO_F_VERSION_1",
                                "use a modern virtio-net device (disable-legacy=on)")
        want = offered & WANTED_FEATURES
        if not want >> F_CTRL_VQ & 1:
            want &= ~(1 << F_MQ)
        self._c32(VPCI_GFSELECT, 0)
        self._c32(VPCI_GF, want & 0xFFFFFFFF)
        self._c32(VPCI_GFSELECT, 1)
        self._c32(VPCI_GF, want >> 32)
        self._status(PD_VIRTIO_STATUS_FEATURES_OK)
        if not self._c8(VPCI_STATUS) & PD_VIRTIO_STATUS_FEATURES_OK:
            self._status(PD_VIRTIO_STATUS_FAILED)
            raise ResourceError(f"{self.name}: the device refused the features "
                                f"{', '.join(n for b, n in FEATURE_NAMES.items() if want >> b & 1)}",
                                "see the device's documentation")
        self.features = want

    def _has(self, bit):
        return bool(self.features >> int(bit) & 1)

    def _dev_probe(self, dict args):
        info = self._open_bus()
        if (info.vendor, info.device) not in PCI_IDS:
            raise UsageError(f"{self.name}: device {info.vendor:04x}:{info.device:04x} is not a modern "
                             "virtio-net device", "give a 1af4:1041 device (pypdk-devbind --status)")
        self.bus.enable_bus_master()
        self._find_caps()
        self._negotiate()
        dc, do = self.devcfg, self.devcfg_off
        if self._has(F_MAC):
            self._mac = bytes(dc.read8(do + VNET_CFG_MAC + i) for i in range(6))
        self.max_pairs = dc.read16(do + VNET_CFG_MAX_PAIRS) if self._has(F_MQ) else 1
        if self.max_pairs < 1 or self.max_pairs > 0x8000:
            raise ResourceError(f"{self.name}: the device reports {self.max_pairs} queue pairs",
                                "the device is broken")
        if self._has(F_MTU):
            self._mtu = dc.read16(do + VNET_CFG_MTU)

    # -- queues
    def _queue_size(self, vq, nb_desc):
        self._c16(VPCI_Q_SELECT, vq)
        dev_max = self._c16(VPCI_Q_SIZE)
        if dev_max == 0:
            raise ResourceError(f"{self.name}: virtqueue {vq} does not exist", "use fewer queues")
        size = min(nb_desc, dev_max, PD_VRING_MAX_SIZE)
        if size < 2 or size & (size - 1):
            raise UsageError(f"{self.name}: {nb_desc} descriptors", "give a power of two (the device allows "
                             f"up to {dev_max})")
        return size

    cdef vnet_q *_queue_mem(self, bint rx, uint16_t q, uint16_t size, str what) except NULL:
        cdef vnet_q *vq
        cdef size_t desc_len = 16 * <size_t>size
        cdef size_t avail_off = desc_len
        cdef size_t used_off = (avail_off + pd_vring_avail_size(size) + 63) & ~(<size_t>63)
        cdef size_t sw_off = (used_off + pd_vring_used_size(size) + 63) & ~(<size_t>63)
        cdef size_t extra_off = sw_off + 8 * <size_t>size
        cdef size_t total = extra_off + (2 if rx else VNET_HDR_SIZE) * <size_t>size
        z = self._zone(f"{what}{q}", total)
        vq = <vnet_q *>self.queue_alloc(rx, q, sizeof(vnet_q))
        memset(vq, 0, sizeof(vnet_q))
        base = z.addr
        vq.desc = <pd_vring_desc *><uintptr_t>base
        vq.avail = <uint8_t *><uintptr_t>(base + avail_off)
        vq.used = <uint8_t *><uintptr_t>(base + used_off)
        vq.sw_ring = <pd_mbuf **><uintptr_t>(base + sw_off)
        if rx:
            vq.refill = <uint16_t *><uintptr_t>(base + extra_off)
        else:
            vq.hdrs = <uint8_t *><uintptr_t>(base + extra_off)
        vq.size = size
        vq.mask = size - 1
        vq.port = self.port_id
        vq.queue = q
        vq.vq_index = 2 * q + (0 if rx else 1)
        return vq

    def _dev_configure(self, nb_rxq, nb_txq):
        if nb_rxq != nb_txq:
            raise UsageError(f"{self.name}: {nb_rxq} rx and {nb_txq} tx queues",
                             "virtio-net queues come in pairs: give as many of each")

    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        cdef vnet_q *vq
        cdef uint16_t i
        self._dev_queue_release(True, q)
        size = self._queue_size(2 * q, nb_desc)
        vq = self._queue_mem(True, q, size, "rx")
        vq.mp = pool.mp
        vq.headroom = pool.mp.mbuf_headroom
        if vq.headroom < VNET_HDR_SIZE:
            raise UsageError(f"{self.name}: the pool's headroom ({vq.headroom}) is below the "
                             f"{VNET_HDR_SIZE}-byte virtio-net header", "use the default headroom (128)")
        vq.buf_len = VNET_HDR_SIZE + pool.data_room
        for i in range(size):
            vq.refill[i] = size - 1 - i
        vq.nb_refill = size

    def _dev_tx_queue_setup(self, q, nb_desc):
        cdef vnet_q *vq
        cdef uint16_t i
        self._dev_queue_release(False, q)
        size = self._queue_size(2 * q + 1, nb_desc)
        vq = self._queue_mem(False, q, size, "tx")
        for i in range(size):
            vq.desc[i].next = (i + 1) & vq.mask
        vq.free_head = 0
        vq.nb_free = size

    cdef _program(self, vnet_q *vq):
        # 4.1.5.1.3: select, size, no MSI-X vector, the three addresses, enable.
        self._c16(VPCI_Q_SELECT, vq.vq_index)
        self._c16(VPCI_Q_SIZE, vq.size)
        self._c16(VPCI_Q_MSIX, VPCI_NO_VECTOR)
        self._c64(VPCI_Q_DESCLO, <uintptr_t>vq.desc)
        self._c64(VPCI_Q_AVAILLO, <uintptr_t>vq.avail)
        self._c64(VPCI_Q_USEDLO, <uintptr_t>vq.used)
        noff = self._c16(VPCI_Q_NOFF)
        where = self.notify_off + noff * self.notify_mult
        if where + 2 > self.notify_win.size:
            raise ResourceError(f"{self.name}: queue {vq.vq_index}'s notify address is outside its BAR",
                                "the device is broken")
        vq.notify = <uint8_t *><uintptr_t>(self.notify_win.addr + where)
        (<uint16_t *>vq.avail)[0] = PD_VRING_AVAIL_F_NO_INTERRUPT
        self._c16(VPCI_Q_ENABLE, 1)

    def _dev_start(self):
        cdef vnet_q *vq
        cdef uint16_t i, q
        # Again from reset (a stop resets the device), then every queue, then DRIVER_OK.
        self._negotiate()
        for q in range(self.fp.nb_rxq):
            vq = <vnet_q *>self.fp.rxq[q]
            # Every buffer back in the ring: descriptors that held one are refilled.
            for i in range(vq.size):
                if vq.sw_ring[i] != NULL:
                    pktmbuf_free(vq.sw_ring[i])
                    vq.sw_ring[i] = NULL
                vq.refill[i] = vq.size - 1 - i
            vq.nb_refill = vq.size
            vq.avail_idx = vq.used_idx = 0
            memset(vq.used, 0, pd_vring_used_size(vq.size))
            rx_refill(vq)
            if vq.nb_refill:
                raise ResourceError(f"{self.name}: the pool has too few mbufs to fill rx queue {q}",
                                    "make the pool larger than the rings together")
            self._program(vq)
            (<uint16_t *>vq.avail)[1] = vq.avail_idx
        for q in range(self.fp.nb_txq):
            vq = <vnet_q *>self.fp.txq[q]
            self._tx_drain(vq)
            memset(vq.used, 0, pd_vring_used_size(vq.size))
            self._program(vq)
        if self._has(F_CTRL_VQ):
            self.ctrl = _CtrlQueue(self, 2 * self.max_pairs)
        self._status(PD_VIRTIO_STATUS_DRIVER_OK)
        if self._c8(VPCI_STATUS) & (PD_VIRTIO_STATUS_NEEDS_RESET | PD_VIRTIO_STATUS_FAILED):
            raise ResourceError(f"{self.name}: the device failed at DRIVER_OK (status "
                                f"{self._c8(VPCI_STATUS):#x})", "check the guest's dmesg")
        if self._has(F_MQ):
            self.ctrl.command(CTRL_MQ, CTRL_MQ_VQ_PAIRS_SET, self.fp.nb_rxq.to_bytes(2, "little"))
        for q in range(self.fp.nb_rxq):
            # 2.7.13: make the filled rx ring known.
            vq = <vnet_q *>self.fp.rxq[q]
            pd_mmio_write16(vq.notify, 0, vq.vq_index)

    cdef _tx_drain(self, vnet_q *vq):
        cdef uint16_t i
        for i in range(vq.size):
            if vq.sw_ring[i] != NULL:
                pktmbuf_free(vq.sw_ring[i])
                vq.sw_ring[i] = NULL
            vq.desc[i].next = (i + 1) & vq.mask
            vq.desc[i].flags = 0
        vq.free_head = 0
        vq.nb_free = vq.size
        vq.avail_idx = vq.used_idx = 0
        (<uint16_t *>vq.avail)[1] = 0

    def _dev_stop(self):
        # 2.1.2 / 4.1.4.3.2: a reset stops every queue and the device's DMA.
        self._reset()
        if self.ctrl is not None:
            self.ctrl.release()
            self.ctrl = None

    def _dev_queue_release(self, rx, q):
        cdef vnet_q *vq
        cdef uint16_t i
        vq = <vnet_q *>(self.fp.rxq[q] if rx else self.fp.txq[q])
        if vq != NULL and vq.sw_ring != NULL:
            for i in range(vq.size):
                if vq.sw_ring[i] != NULL:
                    pktmbuf_free(vq.sw_ring[i])
                    vq.sw_ring[i] = NULL
            vq.sw_ring = NULL
        self._zone_close(f"{'rx' if rx else 'tx'}{q}")

    def _dev_close(self):
        if self.common is not None:
            try:
                self._reset()
            except Exception:
                pass
        self._bus_quiesce()

    def _release(self):
        if self.ctrl is not None:
            self.ctrl.release()
            self.ctrl = None
        for win in self.bars.values():
            win.close()
        self.bars = {}
        self.caps = {}
        self.common = self.devcfg = self.notify_win = None

    def _dev_queue_xstats(self, rx, q):
        cdef vnet_q *vq = <vnet_q *>(self.fp.rxq[q] if rx else self.fp.txq[q])
        if vq == NULL:
            return {}
        out = {"notifies": vq.notifies, "bad_used": vq.bad_used}
        if rx:
            out["chained"] = vq.chained
        return out

    def _dev_link(self):
        up = True
        if self.devcfg is not None and self._has(F_STATUS):
            up = bool(self.devcfg.read16(self.devcfg_off + VNET_CFG_STATUS) & PD_VIRTIO_NET_S_LINK_UP)
        up = bool(up and self.state == "started")
        return {"up": up, "speed_mbps": 10000, "duplex": "full", "operstate": "up" if up else "down"}

    def _dev_info(self):
        return {"pci": self.name, "features": sorted(n for b, n in FEATURE_NAMES.items() if self._has(b)),
                "max_queue_pairs": self.max_pairs}

    def _dev_set_promiscuous(self, on):
        if not on:
            raise UsageError(f"{self.name}: turning promiscuous mode off needs the control queue's RX "
                             "class, which this driver does not use", "leave it on")

    def _dev_set_mtu(self, mtu):
        if mtu > self._mtu and self._has(F_MTU):
            raise UsageError(f"{self.name}: MTU {mtu} is above the device's {self._mtu}",
                             f"use at most {self._mtu}")


cdef class _CtrlQueue:
    """The control virtqueue (5.1.6.5), used from the main lcore only: one command
    at a time, each a chain {class, command} + data + an ack byte, polled to completion."""
    cdef Port port
    cdef object zone
    cdef vnet_q q

    def __init__(self, Port port, uint16_t index):
        cdef uint16_t size
        cdef size_t used_off
        self.port = port
        size = port._queue_size(index, 64)
        used_off = (16 * <size_t>size + pd_vring_avail_size(size) + 63) & ~(<size_t>63)
        from pypdk import eal
        self.zone = eal.current().memzone_reserve(port._zone_name("ctrl"), used_off
                                                  + pd_vring_used_size(size) + 64 + 4096,
                                                  socket_id=port.socket_id)
        memset(&self.q, 0, sizeof(vnet_q))
        base = self.zone.addr
        self.q.desc = <pd_vring_desc *><uintptr_t>base
        self.q.avail = <uint8_t *><uintptr_t>(base + 16 * size)
        self.q.used = <uint8_t *><uintptr_t>(base + used_off)
        self.q.hdrs = <uint8_t *><uintptr_t>(base + self.zone.len - 4096)   # the command buffer
        self.q.size = size
        self.q.mask = size - 1
        self.q.vq_index = index
        port._program(&self.q)

    def command(self, int cls, int cmd, bytes data):
        cdef vnet_q *q = &self.q
        cdef uint8_t *buf = q.hdrs
        cdef uint64_t iova = <uintptr_t>buf
        cdef size_t n = len(data)
        cdef size_t i
        buf[0] = cls
        buf[1] = cmd
        for i in range(n):
            buf[2 + i] = data[i]
        buf[64] = 0xFF
        q.desc[0].addr = iova
        q.desc[0].len = 2
        q.desc[0].flags = PD_VRING_DESC_F_NEXT
        q.desc[0].next = 1
        q.desc[1].addr = iova + 2
        q.desc[1].len = <uint32_t>n
        q.desc[1].flags = PD_VRING_DESC_F_NEXT
        q.desc[1].next = 2
        q.desc[2].addr = iova + 64
        q.desc[2].len = 1
        q.desc[2].flags = PD_VRING_DESC_F_WRITE
        avail_ring(q)[q.avail_idx & q.mask] = 0
        q.avail_idx += 1
        want = q.avail_idx
        pd_store_release_u32(<uint32_t *>q.avail, (<uint32_t>q.avail_idx << 16) | PD_VRING_AVAIL_F_NO_INTERRUPT)
        pd_fence_seq_cst()
        pd_mmio_write16(q.notify, 0, q.vq_index)
        deadline = time.monotonic() + CTRL_TIMEOUT
        while used_idx_acquire(q) != want:
            if time.monotonic() > deadline:
                raise ResourceError(f"{self.port.name}: the control queue did not answer command "
                                    f"{cls}.{cmd}", "check the device")
            time.sleep(0.0005)
        q.used_idx = want
        if buf[64] != CTRL_OK:
            raise ResourceError(f"{self.port.name}: the device refused control command {cls}.{cmd} "
                                f"(ack {buf[64]})", "ask for fewer queue pairs")

    def release(self):
        if self.zone is not None:
            self.zone.close()
            self.zone = None
