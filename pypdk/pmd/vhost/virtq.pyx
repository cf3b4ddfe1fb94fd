"""The split-virtqueue datapath of net_vhost: guest tx into mbufs, mbufs into guest rx.

Model. The guest's driver posts descriptor chains in the avail ring; we take
them in order from `last_avail`, copy, and hand each head back in the used
ring. Port rx_burst (`vhost_rx_burst`) drains the guest's transmitq: each
chain is a 12-byte (10 without VERSION_1 or MRG_RXBUF) virtio-net header
and a frame, copied into an mbuf chain from the queue's pool. Port tx_burst
(`vhost_tx_burst`) fills the guest's receiveq: the header (flags 0, GSO none,
num_buffers) and the frame, across as many heads as the frame needs with
MRG_RXBUF, into one chain without. The used ring is published once per
burst, and the guest is interrupted (call eventfd) at most once per burst,
when it has not asked us not to (VRING_AVAIL_F_NO_INTERRUPT, or used_event
with EVENT_IDX).

The guest is not trusted (the CVEs of DPDK's vhost library are the list of
what goes wrong). Every descriptor field is read once into a local; every
buffer is translated and bounds-checked against the memory table one
contiguous chunk at a time (`mem_gpa_to_hva`), so a buffer may span two
regions; a walk reads at most `size` descriptors of a table, so loops and
over-long chains end; `next`, heads and indirect tables are checked before
use; avail.idx may not run more than `size` ahead. A broken ring is a
fault: the ring stops, `dev.failed` is set and the control thread is woken,
which stops the whole port (port.pyx). A bad packet (no room for the
header, offload flags we did not offer, too long, a runt) is a counted drop
and its head goes back to the guest.

Kicks: the port polls, so it asks the guest not to notify it: the used
ring's VRING_USED_F_NO_NOTIFY is set when a ring starts, and with EVENT_IDX
avail_event is left where it is (the guest kicks once per 65536 buffers at
most). The kick eventfd is kept for the protocol and never read.

Offloads: neither CSUM nor any GSO feature is offered (a Linux guest would
then send TCP with unfinished checksums), so a header that asks for one is
dropped and counted; headers we write have flags 0 and GSO none.

Memory ordering (virtio 2.7.13, the driver's side mirrors each):
- avail.idx is loaded, then an acquire fence: the ring entries and
  descriptors read after it pair with the driver's write barrier before its
  avail.idx store.
- used elements and the bytes written into guest buffers, then a release
  fence, then used.idx: pairs with the driver's read barrier after it loads
  used.idx.
- used.idx store, then a full fence, then the load of avail.flags /
  used_event: the driver stores its flags, fences, then loads used.idx, so
  one of us sees the other's store and no interrupt is lost.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset
from posix.unistd cimport write

from pd_atomic cimport (pd_fence_acquire, pd_fence_release, pd_fence_seq_cst, pd_cas_weak_u32,
                        pd_load_relaxed_u32, pd_store_release_u32, pd_store_relaxed_int)
from pd_compiler cimport pd_likely, pd_unlikely, pd_pause
from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc, pktmbuf_free, pktmbuf_free_bulk,
                                 mbuf_mtod)
from pypdk.pmd.vhost.mem cimport vhost_mem, mem_gpa_to_hva, MemTable

FAULT_NAMES = ("none", "avail_idx", "desc_index", "chain_too_long", "desc_addr", "desc_dir",
               "indirect_len", "indirect_nested", "indirect_place", "indirect_addr",
               "indirect_off")
DROP_NAMES = ("hdr_short", "csum", "gso", "too_long", "runt", "no_fit")

cdef enum:
    _OK = 0
    _DROPPED = 1
    _NOMBUF = 2
    _NOROOM = 3

cdef uint64_t _ONE = 1


# ---- the lock between the control thread and the polling lcore -------------

cdef inline bint vq_trylock(vhost_vq *vq) noexcept nogil:
    cdef uint32_t expected = 0
    if pd_load_relaxed_u32(&vq.lock) != 0:
        return False
    if pd_cas_weak_u32(&vq.lock, &expected, 1):
        pd_fence_acquire()      # ring state read after this pairs with vq_unlock's release
        return True
    return False


cdef void vq_lock(vhost_vq *vq) noexcept nogil:
    cdef uint32_t expected
    while True:
        expected = 0
        if pd_cas_weak_u32(&vq.lock, &expected, 1):
            pd_fence_acquire()  # pairs with vq_unlock's release: the last burst's writes are seen
            return
        pd_pause()


cdef void vq_unlock(vhost_vq *vq) noexcept nogil:
    pd_store_release_u32(&vq.lock, 0)   # everything written under the lock before it


cdef inline void vq_set_fault(vhost_vq *vq, int fault) noexcept nogil:
    vq.fault = fault
    vq.ready = 0
    pd_store_relaxed_int(&vq.dev.failed, fault)
    if vq.dev.notify_fd >= 0:
        write(vq.dev.notify_fd, &_ONE, 8)


# ---- descriptor chains ------------------------------------------------------

cdef int vq_chain_start(vhost_vq *vq, vq_chain *c, uint32_t head) noexcept nogil:
    if pd_unlikely(head >= vq.size):
        return VQ_FAULT_DESC_INDEX
    c.table = vq.desc
    c.tsize = vq.size
    c.hops = 0
    c.idx = head
    c.more = 1
    c.in_indirect = 0
    c.left = 0
    c.gpa = 0
    return 0


cdef int vq_chain_chunk(vhost_vq *vq, vq_chain *c, int want_write, uint8_t **p,
                        uint64_t *n) noexcept nogil:
    """The next contiguous piece of the chain's buffers: 1 (in *p, *n), 0 at the
    end of the chain, or -fault."""
    cdef uint8_t *d
    cdef uint8_t *t
    cdef uint64_t addr, chunk
    cdef uint32_t length, fn
    cdef uint16_t flags
    while c.left == 0:
        if not c.more:
            return 0
        if pd_unlikely(c.idx >= c.tsize):
            return -VQ_FAULT_DESC_INDEX
        if pd_unlikely(c.hops >= c.tsize):
            return -VQ_FAULT_CHAIN_TOO_LONG
        d = c.table + 16 * <size_t>c.idx
        addr = vq_read64(d)             # each field once: the guest may rewrite them meanwhile
        length = vq_read32(d + 8)
        fn = vq_read32(d + 12)          # flags (low half) and next (high half) in one load
        flags = <uint16_t>(fn & 0xffff)
        c.hops += 1
        if pd_unlikely(flags & VQ_DESC_F_INDIRECT):
            if c.in_indirect:
                return -VQ_FAULT_INDIRECT_NESTED
            if not vq.indirect:
                return -VQ_FAULT_INDIRECT_OFF
            if (flags & VQ_DESC_F_NEXT) or c.hops != 1:
                return -VQ_FAULT_INDIRECT_PLACE
            if length == 0 or (length & 15) != 0 or (length >> 4) > vq.size:
                return -VQ_FAULT_INDIRECT_LEN
            t = mem_gpa_to_hva(vq.dev.mem, addr, length, &chunk)
            if t == NULL or chunk != length:
                return -VQ_FAULT_INDIRECT_ADDR
            c.table = t
            c.tsize = length >> 4
            c.idx = 0
            c.hops = 0
            c.in_indirect = 1
            c.more = 1
            continue
        if pd_unlikely(((flags & VQ_DESC_F_WRITE) != 0) != (want_write != 0)):
            return -VQ_FAULT_DESC_DIR
        c.gpa = addr
        c.left = length             # len 0: nothing to translate, on to the next one
        c.more = flags & VQ_DESC_F_NEXT
        c.idx = fn >> 16
    p[0] = mem_gpa_to_hva(vq.dev.mem, c.gpa, c.left, &chunk)
    if pd_unlikely(p[0] == NULL):
        return -VQ_FAULT_DESC_ADDR
    n[0] = chunk
    c.gpa += chunk                  # stays <= the region's end: no overflow (mem.pyx)
    c.left -= chunk
    return 1


# ---- used ring and interrupts -------------------------------------------------

cdef inline void vq_used_elem(vhost_vq *vq, uint16_t k, uint32_t head, uint32_t length) noexcept nogil:
    cdef uint8_t *e = vq.used + 4 + 8 * <size_t>((<uint16_t>(vq.last_used + k)) & vq.mask)
    vq_write32(e, head)
    vq_write32(e + 4, length)


cdef inline void vq_publish(vhost_vq *vq, uint16_t count) noexcept nogil:
    cdef uint16_t old = vq.last_used
    cdef uint16_t new = <uint16_t>(old + count)
    cdef uint16_t ev
    cdef bint want
    pd_fence_release()          # used elements and buffer bytes before used.idx (the driver's rmb pairs)
    vq_write16(vq.used + 2, new)
    vq.last_used = new
    if vq.callfd < 0:
        return
    pd_fence_seq_cst()          # used.idx store before the flags/used_event load (see the module doc)
    if vq.event_idx:
        ev = vq_read16(vq.avail + 4 + 2 * <size_t>vq.size)
        want = <uint16_t>(new - ev - 1) < <uint16_t>(new - old)
    else:
        want = (vq_read16(vq.avail) & VQ_AVAIL_F_NO_INTERRUPT) == 0
    if want:
        write(vq.callfd, &_ONE, 8)
        vq.calls += 1
    else:
        vq.calls_suppressed += 1


cdef inline int vq_begin(vhost_vq *vq, uint16_t *navail) noexcept nogil:
    """Take the lock and read avail.idx: 0 and the number of new heads, or -1 (no burst)."""
    cdef uint16_t idx, cnt
    if pd_load_relaxed_u32(&vq.ready) == 0:
        return -1               # a ring not in use costs one load a poll (checked again under the lock)
    if not vq_trylock(vq):
        return -1
    if pd_unlikely(not vq.ready or vq.dev.failed != 0):
        vq_unlock(vq)
        return -1
    idx = vq_read16(vq.avail + 2)
    pd_fence_acquire()          # ring entries and descriptors after avail.idx (the driver's wmb pairs)
    cnt = <uint16_t>(idx - vq.last_avail)
    if pd_unlikely(cnt > vq.size):
        vq_set_fault(vq, VQ_FAULT_AVAIL_IDX)
        vq_unlock(vq)
        return -1
    navail[0] = cnt
    return 0


# ---- guest transmitq -> port rx ------------------------------------------------

cdef inline int guest_tx_one(vhost_vq *vq, uint32_t head, pd_mbuf **out) noexcept nogil:
    """One chain into an mbuf chain: _OK (*out), _DROPPED, _NOMBUF or -fault."""
    cdef vq_chain c
    cdef uint8_t hdr[VQ_NET_HDR_MAX]
    cdef uint8_t *p
    cdef uint64_t n = 0, take
    cdef uint32_t got = 0, total = 0, room
    cdef int r
    cdef pd_mbuf *m
    cdef pd_mbuf *seg
    cdef pd_mbuf *nxt
    cdef char *dst
    r = vq_chain_start(vq, &c, head)
    if r:
        return -r
    while got < vq.hdr_len:         # the header may be split over any number of descriptors
        r = vq_chain_chunk(vq, &c, 0, &p, &n)
        if pd_unlikely(r <= 0):
            if r == 0:
                vq.drops[VQ_DROP_HDR_SHORT] += 1
                return _DROPPED
            return r
        take = vq.hdr_len - got
        if take > n:
            take = n
        memcpy(hdr + got, p, take)
        got += <uint32_t>take
        p += take
        n -= take
    if pd_unlikely(hdr[0] & VQ_NET_HDR_F_NEEDS_CSUM):
        vq.drops[VQ_DROP_CSUM] += 1
        return _DROPPED
    if pd_unlikely(hdr[1] != 0):
        vq.drops[VQ_DROP_GSO] += 1
        return _DROPPED
    m = pktmbuf_alloc(vq.mp)
    if pd_unlikely(m == NULL):
        return _NOMBUF
    seg = m
    dst = mbuf_mtod(seg)
    room = seg.buf_len - seg.data_off
    while True:
        while n > 0:
            if room == 0:
                nxt = pktmbuf_alloc(vq.mp)
                if pd_unlikely(nxt == NULL):
                    pktmbuf_free(m)
                    return _NOMBUF
                seg.next = nxt
                seg = nxt
                m.nb_segs += 1
                dst = mbuf_mtod(seg)
                room = seg.buf_len - seg.data_off
            take = n if n < room else room
            if pd_unlikely(total + take > VQ_MAX_FRAME):
                pktmbuf_free(m)
                vq.drops[VQ_DROP_TOO_LONG] += 1
                return _DROPPED
            memcpy(dst, p, take)
            dst += take
            p += take
            n -= take
            room -= <uint32_t>take
            seg.data_len += <uint16_t>take
            total += <uint32_t>take
        r = vq_chain_chunk(vq, &c, 0, &p, &n)
        if r == 0:
            break
        if pd_unlikely(r < 0):
            pktmbuf_free(m)
            return r
    if pd_unlikely(total < 14):
        pktmbuf_free(m)
        vq.drops[VQ_DROP_RUNT] += 1
        return _DROPPED
    m.pkt_len = total
    m.port = vq.port
    m.queue = vq.queue
    out[0] = m
    return _OK


cdef uint16_t vhost_rx_burst(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef vhost_vq *vq = <vhost_vq *>q
    cdef uint16_t navail = 0, k, nb = 0, used = 0
    cdef uint32_t head
    cdef uint64_t nbytes = 0
    cdef int r
    cdef pd_mbuf *m = NULL
    if vq_begin(vq, &navail) != 0:
        return 0
    if navail > n:
        navail = n
    for k in range(navail):
        head = vq_read16(vq.avail + 4 + 2 * <size_t>((<uint16_t>(vq.last_avail)) & vq.mask))
        r = guest_tx_one(vq, head, &m)
        if pd_unlikely(r == _NOMBUF):
            vq.stats.nombuf += 1    # the chain stays in the ring for the next burst
            break
        if pd_unlikely(r < 0):
            vq_set_fault(vq, -r)
            break
        vq_used_elem(vq, used, head, 0)
        used += 1
        vq.last_avail += 1
        if r == _OK:
            pkts[nb] = m
            nb += 1
            nbytes += m.pkt_len
        else:
            vq.stats.errors += 1    # a dropped bad packet (its reason in drops[])
    if used:
        vq_publish(vq, used)
    vq.stats.packets += nb
    vq.stats.bytes += nbytes
    vq_unlock(vq)
    return nb


# ---- port tx -> guest receiveq ------------------------------------------------

cdef inline int guest_rx_one(vhost_vq *vq, pd_mbuf *m, uint16_t *navail,
                             uint16_t *used) noexcept nogil:
    """One packet into the guest's buffers: _OK, _DROPPED, _NOROOM or -fault.
    Advances last_avail and *used by the heads it filled (not yet published)."""
    cdef vq_chain c
    cdef uint8_t hdr[VQ_NET_HDR_MAX]
    cdef uint8_t *nbp0 = NULL
    cdef uint8_t *nbp1 = NULL
    cdef uint8_t *p
    cdef uint64_t n = 0, take
    cdef uint32_t hoff = 0, head, head_len
    cdef uint32_t soff = 0              # offset in the current source segment
    cdef uint16_t heads = 0
    cdef int r
    cdef pd_mbuf *seg = m
    cdef uint32_t left = vq.hdr_len + m.pkt_len
    memset(hdr, 0, sizeof(hdr))         # flags 0, GSO none; num_buffers filled in at the end
    while left > 0:
        if heads >= navail[0]:
            return _NOROOM              # nothing published: the heads stay the guest's
        head = vq_read16(vq.avail + 4 + 2 * <size_t>((<uint16_t>(vq.last_avail + heads)) & vq.mask))
        r = vq_chain_start(vq, &c, head)
        if r:
            return -r
        head_len = 0
        while left > 0:
            r = vq_chain_chunk(vq, &c, 1, &p, &n)
            if r == 0:
                break
            if pd_unlikely(r < 0):
                return r
            while n > 0 and left > 0:
                if hoff < vq.hdr_len:
                    take = vq.hdr_len - hoff
                    if take > n:
                        take = n
                    memcpy(p, hdr + hoff, take)
                    if hoff <= 10 < hoff + take:
                        nbp0 = p + (10 - hoff)
                    if hoff <= 11 < hoff + take:
                        nbp1 = p + (11 - hoff)
                    hoff += <uint32_t>take
                else:
                    while seg != NULL and soff >= seg.data_len:
                        seg = seg.next
                        soff = 0
                    if pd_unlikely(seg == NULL):    # pkt_len larger than the segments hold
                        left = 0
                        break
                    take = seg.data_len - soff
                    if take > n:
                        take = n
                    memcpy(p, mbuf_mtod(seg) + soff, take)
                    soff += <uint32_t>take
                p += take
                n -= take
                left -= <uint32_t>take
                head_len += <uint32_t>take
        if left > 0 and not vq.mrg_rxbuf:
            vq.drops[VQ_DROP_NO_FIT] += 1   # the head stays the guest's
            return _DROPPED
        vq_used_elem(vq, used[0] + heads, head, head_len)
        heads += 1
    if nbp0 != NULL:                    # num_buffers, little-endian, wherever it landed
        nbp0[0] = <uint8_t>(heads & 0xff)
    if nbp1 != NULL:
        nbp1[0] = <uint8_t>(heads >> 8)
    vq.last_avail += heads
    navail[0] -= heads
    used[0] += heads
    return _OK


cdef uint16_t vhost_tx_burst(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef vhost_vq *vq = <vhost_vq *>q
    cdef uint16_t navail = 0, i = 0, used = 0, sent = 0
    cdef uint64_t nbytes = 0
    cdef int r
    if vq_begin(vq, &navail) != 0:
        return 0
    while i < n:
        r = guest_rx_one(vq, pkts[i], &navail, &used)
        if r == _NOROOM:
            vq.guest_full += n - i
            break
        if pd_unlikely(r < 0):
            vq_set_fault(vq, -r)
            break
        if r == _OK:
            sent += 1
            nbytes += pkts[i].pkt_len
        else:
            vq.stats.errors += 1    # too big for the guest's buffer: dropped (drops[NO_FIT])
        i += 1
    if used:
        vq_publish(vq, used)
    vq.stats.packets += sent
    vq.stats.bytes += nbytes
    vq_unlock(vq)
    pktmbuf_free_bulk(pkts, i)          # copied (or dropped and counted): ours to free
    return i


# ---- slow-path helpers (tests, the property test) -------------------------------

def walk_chain(MemTable mem not None, uintptr_t table, uint32_t size, uint32_t head,
               bint want_write=False, bint indirect=True):
    """Walk one descriptor chain as the datapath does; (chunks, fault name or None).

    `table` is our address of a descriptor table of `size` entries inside
    `mem`. Each chunk is (our address, length). For tests: the chain walker is
    the part of the datapath a guest controls most.
    """
    cdef vhost_dev dev
    cdef vhost_vq vq
    cdef vq_chain c
    cdef uint8_t *p = NULL
    cdef uint64_t n = 0
    cdef int r
    memset(&dev, 0, sizeof(dev))
    memset(&vq, 0, sizeof(vq))
    dev.mem = mem.m
    dev.notify_fd = -1
    vq.dev = &dev
    vq.desc = <uint8_t *>table
    vq.size = size
    vq.indirect = indirect
    chunks = []
    r = vq_chain_start(&vq, &c, head)
    if r:
        return chunks, FAULT_NAMES[r]
    while True:
        with nogil:
            r = vq_chain_chunk(&vq, &c, want_write, &p, &n)
        if r == 0:
            return chunks, None
        if r < 0:
            return chunks, FAULT_NAMES[-r]
        chunks.append((<uintptr_t>p, n))
