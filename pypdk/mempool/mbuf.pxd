# The packet buffer (mbuf) and its operations (the C-level contract).
#
# Invariants kept by every function here (DPDK's): an mbuf in its pool has
# refcnt 1, nb_segs 1 and next NULL, so allocation only resets the packet
# fields. Free walks the chain and returns each segment whose refcnt drops
# to zero to its own pool. An indirect mbuf (a clone) points at another
# mbuf's buffer and holds a reference on it; freeing the clone drops that
# reference.

from libc.stdint cimport uint8_t, uint16_t, int16_t, uint32_t, uint64_t
from pypdk.mempool.mempool cimport (Mempool, pd_mempool, pd_mempool_cache, mempool_get_bulk_cache,
                                    mempool_put_bulk_cache, mempool_default_cache)
from pd_compiler cimport pd_likely, pd_unlikely
from pd_atomic cimport pd_add_fetch_u16
from pd_mbuf cimport (PD_MBUF_F_RX_VLAN, PD_MBUF_F_RX_RSS_HASH, PD_MBUF_F_RX_IP_CKSUM_BAD,
                      PD_MBUF_F_RX_L4_CKSUM_BAD, PD_MBUF_F_TX_VLAN, PD_MBUF_F_TX_IP_CKSUM,
                      PD_MBUF_F_TX_L4_CKSUM, PD_MBUF_F_INDIRECT, pd_mbuf, pd_mbuf_mtod,
                      PD_MBUF_DEFAULT_HEADROOM, PD_MBUF_DEFAULT_DATAROOM)

ctypedef pd_mbuf *pd_mbuf_p

cdef inline uint16_t pktmbuf_headroom(pd_mempool *mp) noexcept nogil:
    return mp.mbuf_headroom


cdef inline char *mbuf_mtod(pd_mbuf *m) noexcept nogil:
    return <char *>m.buf_addr + m.data_off

cdef inline char *mbuf_mtod_offset(pd_mbuf *m, uint32_t off) noexcept nogil:
    return <char *>m.buf_addr + m.data_off + off

cdef inline void mbuf_reset(pd_mbuf *m, uint16_t headroom) noexcept nogil:
    # refcnt, nb_segs and next are already right (pool invariant).
    m.data_off = headroom if headroom < m.buf_len else m.buf_len
    m.data_len = 0
    m.pkt_len = 0
    m.ol_flags = 0
    m.packet_type = 0
    m.vlan_tci = 0
    m.rss_hash = 0
    m.port = 0xffff
    m.queue = 0
    m.l2_len = 0
    m.l3_len = 0
    m.l4_len = 0
    m.flags = 0
    m.udata64 = 0

cdef inline pd_mbuf *pktmbuf_alloc(pd_mempool *mp) noexcept nogil:
    cdef pd_mbuf *m
    if mempool_get_bulk_cache(mp, <void **>&m, 1, mempool_default_cache(mp)) != 0:
        return NULL
    mbuf_reset(m, pktmbuf_headroom(mp))
    return m

cdef inline int pktmbuf_alloc_bulk_cache(pd_mempool *mp, pd_mbuf **mbufs, uint32_t n,
                                         pd_mempool_cache *c) noexcept nogil:
    """n fresh mbufs or none (-1); `c` is the caller's lcore cache (or NULL)."""
    cdef uint32_t i
    cdef uint16_t headroom
    if mempool_get_bulk_cache(mp, <void **>mbufs, n, c) != 0:
        return -1
    headroom = pktmbuf_headroom(mp)
    for i in range(n):
        mbuf_reset(mbufs[i], headroom)
    return 0

cdef inline int pktmbuf_alloc_bulk(pd_mempool *mp, pd_mbuf **mbufs, uint32_t n) noexcept nogil:
    return pktmbuf_alloc_bulk_cache(mp, mbufs, n, mempool_default_cache(mp))

cdef inline uint16_t mbuf_refcnt_read(pd_mbuf *m) noexcept nogil:
    return m.refcnt

cdef inline uint16_t mbuf_refcnt_update(pd_mbuf *m, int16_t v) noexcept nogil:
    # A sole owner needs no atomic: nobody else holds it to see the change.
    if m.refcnt == 1:
        m.refcnt = <uint16_t>(m.refcnt + v)
        return m.refcnt
    return pd_add_fetch_u16(&m.refcnt, v)

cdef void mbuf_detach(pd_mbuf *m) noexcept nogil

cdef inline pd_mbuf *mbuf_prefree_seg(pd_mbuf *m) noexcept nogil:
    """Drop one reference; the segment if it must go back to its pool, else NULL."""
    if pd_likely(m.refcnt == 1):
        pass
    elif pd_add_fetch_u16(&m.refcnt, -1) != 0:
        return NULL
    else:
        m.refcnt = 1
    if pd_unlikely(m.ol_flags & PD_MBUF_F_INDIRECT):
        mbuf_detach(m)
    if m.next != NULL:
        m.next = NULL
        m.nb_segs = 1
    return m

cdef inline void mbuf_free_seg(pd_mbuf *m) noexcept nogil:
    m = mbuf_prefree_seg(m)
    if m != NULL:
        mempool_put_bulk_cache(m.pool, <void **>&m, 1, mempool_default_cache(m.pool))

cdef inline void pktmbuf_free(pd_mbuf *m) noexcept nogil:
    """Free a whole chain (NULL is fine)."""
    cdef pd_mbuf *nxt
    while m != NULL:
        nxt = m.next
        mbuf_free_seg(m)
        m = nxt

cdef void pktmbuf_free_bulk(pd_mbuf **mbufs, uint32_t n) noexcept nogil

cdef inline uint32_t mbuf_headroom(pd_mbuf *m) noexcept nogil:
    return m.data_off

cdef inline uint32_t mbuf_tailroom(pd_mbuf *m) noexcept nogil:
    return m.buf_len - m.data_off - m.data_len

cdef inline pd_mbuf *mbuf_lastseg(pd_mbuf *m) noexcept nogil:
    while m.next != NULL:
        m = m.next
    return m

cdef inline char *mbuf_prepend(pd_mbuf *m, uint16_t length) noexcept nogil:
    """Grow the packet at the front; pointer to the new start, NULL if no headroom."""
    if pd_unlikely(length > m.data_off):
        return NULL
    m.data_off -= length
    m.data_len += length
    m.pkt_len += length
    return <char *>m.buf_addr + m.data_off

cdef inline char *mbuf_append(pd_mbuf *m, uint16_t length) noexcept nogil:
    """Grow the packet at the end (last segment); pointer to the new bytes, NULL if no room."""
    cdef pd_mbuf *last = mbuf_lastseg(m)
    cdef char *tail
    if pd_unlikely(length > mbuf_tailroom(last)):
        return NULL
    tail = <char *>last.buf_addr + last.data_off + last.data_len
    last.data_len += length
    m.pkt_len += length
    return tail

cdef inline char *mbuf_adj(pd_mbuf *m, uint16_t length) noexcept nogil:
    """Remove bytes from the front of the first segment; new start, NULL if too many."""
    if pd_unlikely(length > m.data_len):
        return NULL
    m.data_off += length
    m.data_len -= length
    m.pkt_len -= length
    return <char *>m.buf_addr + m.data_off

cdef inline int mbuf_trim(pd_mbuf *m, uint16_t length) noexcept nogil:
    """Remove bytes from the end of the last segment; -1 if it is shorter."""
    cdef pd_mbuf *last = mbuf_lastseg(m)
    if pd_unlikely(length > last.data_len):
        return -1
    last.data_len -= length
    m.pkt_len -= length
    return 0

cdef inline int mbuf_chain(pd_mbuf *head, pd_mbuf *tail) noexcept nogil:
    """Append the chain `tail` to `head`; -1 if the segment count would overflow."""
    if <uint32_t>head.nb_segs + tail.nb_segs > 0xffff:
        return -1
    mbuf_lastseg(head).next = tail
    head.nb_segs += tail.nb_segs
    head.pkt_len += tail.pkt_len
    tail.pkt_len = tail.data_len
    tail.nb_segs = 1
    return 0

# A new mbuf from `mp` that shares m's buffer(s) (refcnt +1 on each); NULL if
# `mp` is empty.
cdef pd_mbuf *pktmbuf_clone(pd_mbuf *m, pd_mempool *mp) noexcept nogil

# Copy `length` bytes of the packet from offset `off` into dst (across
# segments); -1 if the packet is shorter.
cdef int pktmbuf_read(pd_mbuf *m, uint32_t off, uint32_t length, char *dst) noexcept nogil


cdef class PktMbufPool(Mempool):
    pass

cdef class Mbuf:
    cdef pd_mbuf *m
    cdef pd_mbuf *_p(self) except NULL
    @staticmethod
    cdef Mbuf wrap(pd_mbuf *m)
