"""The packet mbuf pool and the Python view of an mbuf.

The per-packet operations are inline in mbuf.pxd; this module holds the few
that are too big to inline (bulk free grouping by pool, clone, detach,
reading across segments), the pool constructor that lays mbufs out in EAL
memory, and `Mbuf`, a zero-copy Python handle for the slow path.

An mbuf element in the pool is the 128-byte `pd_mbuf` header, then the
buffer: `headroom` bytes (128 by default: room to prepend tunnel headers
without a copy), then `data_room` bytes (2048 by default). With the
defaults an element is 2304 bytes: a valid AF_XDP unaligned UMEM chunk.

A Python `Mbuf` does not own the packet: like a DPDK `rte_mbuf *` it is
freed explicitly (`free()`) or handed to something that frees it (a tx
burst, a ring consumer). Its `data` memoryview points into the buffer and
must not be used after the mbuf is freed.
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyBUF_WRITABLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from pypdk.mempool.mempool cimport (Mempool, mempool_put_bulk, mempool_default_cache,
                                    check_debug, PD_MEMPOOL_F_DEBUG, PD_MEMPOOL_F_PKT)
from pypdk.errors import UsageError, ResourceError, StateError


cdef void mbuf_detach(pd_mbuf *m) noexcept nogil:
    # The direct mbuf sits right before the buffer it owns (no private area).
    cdef pd_mbuf *direct = <pd_mbuf *>(<char *>m.buf_addr - sizeof(pd_mbuf))
    m.buf_addr = <char *>m + sizeof(pd_mbuf)
    m.buf_iova = m.pool.base_iova + <uint64_t>(<char *>m.buf_addr - m.pool.base)
    m.buf_len = m.pool.mbuf_headroom + m.pool.mbuf_data_room
    m.data_off = m.pool.mbuf_headroom if m.pool.mbuf_headroom < m.buf_len else m.buf_len
    m.data_len = 0
    m.ol_flags &= ~PD_MBUF_F_INDIRECT
    # Drop the reference the clone held on the direct mbuf's buffer.
    direct = mbuf_prefree_seg(direct)
    if direct != NULL:
        mempool_put_bulk(direct.pool, <void **>&direct, 1)


cdef void pktmbuf_free_bulk(pd_mbuf **mbufs, uint32_t n) noexcept nogil:
    # Consecutive segments of one pool go back in one put (one cache access).
    cdef pd_mbuf *pending[64]
    cdef uint32_t npend = 0, i
    cdef pd_mempool *pool = NULL
    cdef pd_mbuf *m
    cdef pd_mbuf *nxt
    for i in range(n):
        m = mbufs[i]
        while m != NULL:
            nxt = m.next
            m = mbuf_prefree_seg(m)
            if m != NULL:
                if npend == 64 or (npend and m.pool != pool):
                    mempool_put_bulk(pool, <void **>pending, npend)
                    npend = 0
                pool = m.pool
                pending[npend] = m
                npend += 1
            m = nxt
    if npend:
        mempool_put_bulk(pool, <void **>pending, npend)


cdef pd_mbuf *pktmbuf_clone(pd_mbuf *m, pd_mempool *mp) noexcept nogil:
    cdef pd_mbuf *head = NULL
    cdef pd_mbuf *prev = NULL
    cdef pd_mbuf *seg = m
    cdef pd_mbuf *mi
    cdef pd_mbuf *direct
    while seg != NULL:
        mi = pktmbuf_alloc(mp)
        if mi == NULL:
            pktmbuf_free(head)
            return NULL
        # A clone of a clone refers to the original buffer's owner.
        if seg.ol_flags & PD_MBUF_F_INDIRECT:
            direct = <pd_mbuf *>(<char *>seg.buf_addr - sizeof(pd_mbuf))
        else:
            direct = seg
        mbuf_refcnt_update(direct, 1)
        mi.buf_addr = seg.buf_addr
        mi.buf_iova = seg.buf_iova
        mi.buf_len = seg.buf_len
        mi.data_off = seg.data_off
        mi.data_len = seg.data_len
        mi.ol_flags = seg.ol_flags | PD_MBUF_F_INDIRECT
        mi.port = seg.port
        mi.queue = seg.queue
        mi.packet_type = seg.packet_type
        mi.vlan_tci = seg.vlan_tci
        mi.rss_hash = seg.rss_hash
        mi.l2_len = seg.l2_len
        mi.l3_len = seg.l3_len
        mi.l4_len = seg.l4_len
        if head == NULL:
            head = mi
            mi.pkt_len = m.pkt_len
            mi.nb_segs = m.nb_segs
        else:
            prev.next = mi
        prev = mi
        seg = seg.next
    return head


cdef int pktmbuf_read(pd_mbuf *m, uint32_t off, uint32_t length, char *dst) noexcept nogil:
    cdef uint32_t chunk
    if <uint64_t>off + length > m.pkt_len:
        return -1
    while m != NULL and off >= m.data_len:
        off -= m.data_len
        m = m.next
    while length and m != NULL:
        chunk = m.data_len - off
        if chunk > length:
            chunk = length
        memcpy(dst, mbuf_mtod(m) + off, chunk)
        dst += chunk
        length -= chunk
        off = 0
        m = m.next
    return 0


cdef class PktMbufPool(Mempool):
    """A pool of packet mbufs (DPDK's rte_pktmbuf_pool_create).

    Args:
        name: pool name (at most 31 bytes).
        n: number of mbufs.
        cache_size: mbufs each lcore keeps privately (0 to 512, at most
            n / 1.5). Default: 256, or n * 2 // 3 for a pool of fewer than
            384 mbufs (0 below 3).
        data_room: bytes of packet data after the headroom (default 2048).
        socket_id: NUMA node for the memory (-1: any).
        headroom: bytes before the data of a fresh mbuf (default 128).
        debug: catch double free and wrong-pool frees (see Mempool).

    Raises UsageError for a cache_size out of range (as Mempool does).
    """

    def __init__(self, str name, n, cache_size=None, data_room=PD_MBUF_DEFAULT_DATAROOM,
                 socket_id=-1, *, headroom=PD_MBUF_DEFAULT_HEADROOM, debug=False):
        cdef uint32_t i, buf_len
        cdef pd_mbuf *m
        if headroom < 0 or data_room < 0 or headroom + data_room > 0xffff:
            raise UsageError(f"mbuf pool {name!r}: headroom {headroom} + data_room {data_room} "
                             "is above 65535 bytes", "use a smaller data_room")
        if cache_size is None:
            cache_size = 256 if n * 2 // 3 >= 256 else (0 if n < 3 else n * 2 // 3)
        buf_len = headroom + data_room
        self._create(name, n, sizeof(pd_mbuf) + buf_len, cache_size, socket_id,
                     PD_MEMPOOL_F_PKT | (PD_MEMPOOL_F_DEBUG if debug else 0))
        self.mp.mbuf_headroom = headroom
        self.mp.mbuf_data_room = data_room
        for i in range(self.mp.size):
            m = <pd_mbuf *>(self.mp.base + <size_t>i * self.mp.elt_size)
            memset(m, 0, sizeof(pd_mbuf))
            m.buf_addr = <char *>m + sizeof(pd_mbuf)
            m.buf_iova = self.mp.base_iova + <uint64_t>(<char *>m.buf_addr - self.mp.base)
            m.buf_len = buf_len
            m.data_off = headroom
            m.refcnt = 1
            m.nb_segs = 1
            m.port = 0xffff
            m.pool = self.mp

    @property
    def data_room(self):
        self._check()
        return self.mp.mbuf_data_room

    @property
    def headroom(self):
        self._check()
        return self.mp.mbuf_headroom

    def alloc(self):
        """One fresh mbuf, or None when the pool is empty."""
        self._check()
        cdef pd_mbuf *m
        with nogil:
            m = pktmbuf_alloc(self.mp)
        return Mbuf.wrap(m) if m != NULL else None

    def alloc_bulk(self, n):
        """n fresh mbufs (all or nothing). Raises ResourceError when short."""
        self._check()
        cdef uint32_t k = n, i
        cdef pd_mbuf *tbl[256]
        out = []
        while k:
            i = k if k < 256 else 256
            if pktmbuf_alloc_bulk(self.mp, tbl, i) != 0:
                free_mbufs(out)
                raise ResourceError(f"mbuf pool {self.name!r}: cannot allocate {n} mbufs "
                                    f"({mempool_avail_count_py(self)} free)",
                                    "free mbufs or make a bigger pool")
            out.extend([Mbuf.wrap(tbl[j]) for j in range(i)])
            k -= i
        return out

    def __repr__(self):
        if self.mp == NULL:
            return f"PktMbufPool({self.name!r}, closed)"
        return (f"PktMbufPool({self.name!r}, n={self.mp.size}, data_room={self.mp.mbuf_data_room}, "
                f"headroom={self.mp.mbuf_headroom}, in_use={self.in_use_count})")


def mempool_avail_count_py(Mempool mp):
    return mp.avail_count


def free_mbufs(mbufs):
    """Free a list of Mbuf (each whole chain)."""
    for m in mbufs:
        m.free()


cdef class Mbuf:
    """A handle on one packet (the head of its segment chain).

    `data` is a writable zero-copy memoryview of the first segment's packet
    bytes; `bytes()` copies the whole chain out.
    """

    def __cinit__(self):
        self.m = NULL

    @staticmethod
    cdef Mbuf wrap(pd_mbuf *m):
        cdef Mbuf o = Mbuf.__new__(Mbuf)
        o.m = m
        return o

    @staticmethod
    def from_addr(uintptr_t addr):
        """The mbuf at this address (e.g. an object dequeued from a Ring)."""
        if addr == 0:
            raise UsageError("mbuf address 0", "pass the address of an mbuf")
        return Mbuf.wrap(<pd_mbuf *>addr)

    cdef pd_mbuf *_p(self) except NULL:
        if self.m == NULL:
            raise StateError("this mbuf was freed or handed off", "do not use an mbuf after free()")
        return self.m

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        cdef pd_mbuf *m = self._p()
        buffer.buf = mbuf_mtod(m)
        buffer.obj = self
        buffer.len = m.data_len
        buffer.readonly = 0
        buffer.itemsize = 1
        buffer.format = "B"
        buffer.ndim = 1
        buffer.shape = &buffer.len
        buffer.strides = &buffer.itemsize
        buffer.suboffsets = NULL
        buffer.internal = NULL

    def __releasebuffer__(self, Py_buffer *buffer):
        pass

    @property
    def addr(self):
        return <uintptr_t>self._p()

    @property
    def data(self):
        """Zero-copy writable view of the first segment's data."""
        return memoryview(self)

    def numpy(self):
        """The first segment's data as a numpy uint8 array (zero-copy)."""
        import numpy as np
        return np.frombuffer(self, dtype=np.uint8)

    def bytes(self):
        """The whole packet (all segments) as bytes (a copy)."""
        cdef pd_mbuf *m = self._p()
        out = PyBytes_FromStringAndSize(NULL, m.pkt_len)
        pktmbuf_read(m, 0, m.pkt_len, PyBytes_AS_STRING(out))
        return out

    def __len__(self):
        return self._p().pkt_len

    @property
    def pkt_len(self):
        return self._p().pkt_len

    @property
    def data_len(self):
        return self._p().data_len

    @property
    def data_off(self):
        return self._p().data_off

    @property
    def buf_len(self):
        return self._p().buf_len

    @property
    def nb_segs(self):
        return self._p().nb_segs

    @property
    def refcnt(self):
        return self._p().refcnt

    @property
    def headroom(self):
        return mbuf_headroom(self._p())

    @property
    def tailroom(self):
        return mbuf_tailroom(mbuf_lastseg(self._p()))

    @property
    def next(self):
        cdef pd_mbuf *m = self._p()
        return Mbuf.wrap(m.next) if m.next != NULL else None

    @property
    def pool_name(self):
        return self._p().pool.name.decode()

    @property
    def is_indirect(self):
        return bool(self._p().ol_flags & PD_MBUF_F_INDIRECT)

    # Plain metadata fields, read and written as in DPDK.
    @property
    def port(self):
        return self._p().port
    @port.setter
    def port(self, uint16_t v):
        self._p().port = v

    @property
    def ol_flags(self):
        return self._p().ol_flags
    @ol_flags.setter
    def ol_flags(self, uint64_t v):
        self._p().ol_flags = v

    @property
    def packet_type(self):
        return self._p().packet_type
    @packet_type.setter
    def packet_type(self, uint32_t v):
        self._p().packet_type = v

    @property
    def rss_hash(self):
        return self._p().rss_hash
    @rss_hash.setter
    def rss_hash(self, uint32_t v):
        self._p().rss_hash = v

    @property
    def queue(self):
        """The rx queue the packet arrived on."""
        return self._p().queue

    @property
    def timestamp(self):
        """Receive time in ns where the driver sets it (pcap: the file's time)."""
        return self._p().timestamp
    @timestamp.setter
    def timestamp(self, uint64_t v):
        self._p().timestamp = v

    @property
    def vlan_tci(self):
        return self._p().vlan_tci
    @vlan_tci.setter
    def vlan_tci(self, uint16_t v):
        self._p().vlan_tci = v

    def append(self, data):
        """Copy `data` to the end of the packet (last segment)."""
        cdef pd_mbuf *m = self._p()
        cdef const unsigned char[:] src = data
        cdef char *dst
        if src.shape[0] > 0xffff or (dst := mbuf_append(m, <uint16_t>src.shape[0])) == NULL:
            raise ResourceError(f"mbuf append of {src.shape[0]} bytes: only "
                                f"{mbuf_tailroom(mbuf_lastseg(m))} bytes of tailroom",
                                "chain another segment or use a bigger data_room")
        if src.shape[0]:
            memcpy(dst, &src[0], src.shape[0])

    def prepend(self, data):
        """Copy `data` in front of the packet (into the headroom)."""
        cdef pd_mbuf *m = self._p()
        cdef const unsigned char[:] src = data
        cdef char *dst
        if src.shape[0] > 0xffff or (dst := mbuf_prepend(m, <uint16_t>src.shape[0])) == NULL:
            raise ResourceError(f"mbuf prepend of {src.shape[0]} bytes: only "
                                f"{m.data_off} bytes of headroom",
                                "use a pool with more headroom")
        if src.shape[0]:
            memcpy(dst, &src[0], src.shape[0])

    def adj(self, uint16_t length):
        """Remove `length` bytes from the front."""
        cdef pd_mbuf *m = self._p()
        if mbuf_adj(m, length) == NULL:
            raise UsageError(f"mbuf adj of {length} bytes: the first segment has {m.data_len}",
                             "remove at most data_len bytes")

    def trim(self, uint16_t length):
        """Remove `length` bytes from the end."""
        cdef pd_mbuf *m = self._p()
        if mbuf_trim(m, length) != 0:
            raise UsageError(f"mbuf trim of {length} bytes: the last segment has "
                             f"{mbuf_lastseg(m).data_len}", "remove at most that many bytes")

    def chain(self, Mbuf tail not None):
        """Append `tail` (and its segments) to this packet; `tail` is consumed."""
        cdef pd_mbuf *m = self._p()
        if mbuf_chain(m, tail._p()) != 0:
            raise UsageError("mbuf chain: more than 65535 segments", "chain fewer segments")
        tail.m = NULL

    def clone(self, PktMbufPool pool=None):
        """A new mbuf sharing this packet's buffers (refcnt + 1), from `pool` or the same pool."""
        cdef pd_mbuf *m = self._p()
        cdef pd_mbuf *c
        c = pktmbuf_clone(m, m.pool if pool is None else pool.mp)
        if c == NULL:
            raise ResourceError("mbuf clone: the pool is empty", "free mbufs or make a bigger pool")
        return Mbuf.wrap(c)

    def refcnt_update(self, int v):
        """Add v to the reference count; returns the new count."""
        return mbuf_refcnt_update(self._p(), v)

    def free(self):
        """Give the packet (every segment) back to its pool."""
        cdef pd_mbuf *m = self._p()
        cdef pd_mempool *mp = m.pool
        cdef uint64_t df = mp.dbg_double_free, wp = mp.dbg_wrong_pool
        self.m = NULL
        with nogil:
            pktmbuf_free(m)
        check_debug(mp, df, wp)

    def __repr__(self):
        if self.m == NULL:
            return "Mbuf(freed)"
        return (f"Mbuf(pkt_len={self.m.pkt_len}, data_len={self.m.data_len}, "
                f"nb_segs={self.m.nb_segs}, refcnt={self.m.refcnt}, port={self.m.port})")
