"""net_af_xdp: a port on a Linux interface through AF_XDP sockets, zero copy into mbufs.

The kernel's XDP hook hands frames of an interface queue to an AF_XDP socket
(XSK) instead of its network stack; the socket's frames live in a UMEM, a
memory region the application registered. Here the UMEM *is* the mbuf pool:
the pool's memzone (page aligned, file backed) is registered as is, so a
received frame already sits in an mbuf and a transmitted mbuf is sent from
where it lies. No memcpy on either path (the kernel itself copies between
its skb/xdp buffer and the UMEM when the driver has no zero-copy support,
as veth; that is XDP's "copy mode", invisible to us).

Design
------
UMEM. addr = the pool's first mbuf (the memzone start), len = the memzone's
mapped length, unaligned-chunk mode (an mbuf element is 2304 bytes, not a
power of two), headroom 0, chunk size = the bytes from the fill address to
the end of the mbuf's buffer (2304 with default pools; 2048..4096 allowed).
xsk.pxd spells out how a fill-ring address, the frame position and an rx
descriptor relate; in short, with default pools the fill address is the
mbuf element's own offset, the kernel writes the frame 256 bytes
(XDP_PACKET_HEADROOM) further, which is exactly buf_addr + 128 (the mbuf's
usual data_off), and the descriptor gives back that address with 256 in
its top 16 bits. The kernel never writes the first 256 bytes of a chunk
(the mbuf header and headroom) except XDP metadata just before the frame.

Sockets. One per queue pair (queue i is interface queue start_queue + i).
Socket 0 registers the UMEM; the others bind with XDP_SHARED_UMEM and each
has its own fill and completion ring (kernel >= 5.10 allows sharing a UMEM
across queues that way). All rings are mmapped; the producer/consumer
protocol is the kernel's (include/net/xsk_queue.h): we load the kernel's
index with acquire and store ours with release (pd_atomic.h), one each per
burst at most. XDP_USE_NEED_WAKEUP: rx calls recvfrom() only when the fill
ring asks for it (or busy polling is on), tx calls sendto() only when the tx
ring asks for it (copy mode always does: it transmits inside sendto, at most
32 frames a call, so a burst kicks until its frames are gone or the kernel
says busy).

rx_burst: peek up to n descriptors, turn each back into its mbuf (pointer
arithmetic, no lookup), set data_off/data_len/pkt_len/port/queue, release
the slots, then top the fill ring back up with fresh mbufs from the pool
(bulk gets). The fill ring holds at most as many mbufs as the rx ring has
slots: then the rx ring can never be full while the kernel still holds one
of our buffers, and the kernel never parks a buffer in its private free list
where close could not get it back. mbufs the pool could not give count in
`rx_nombuf` (capped by the packets received in that burst); the kernel then
drops frames it has no buffer for (`imissed`).

tx_burst: reap completions (free those mbufs), then put one descriptor per
mbuf on the tx ring. A UMEM-pool mbuf that is a single direct segment goes
as is; an mbuf of another pool, a chain or a clone is copied into a fresh
UMEM mbuf (`tx_copied`) and the original freed; with no mbuf to copy into,
the burst ends there (the caller keeps the rest). Chains are linearised
this way; a frame longer than a chunk is dropped and counted (`oerrors`,
`tx_too_long`). Multi-buffer (XDP_USE_SG) is not used.

XDP program (prog.py; a user's object parsed by elf.py). pypdk's own 6-instruction program redirects each
frame to the XSKMAP entry of its rx queue and lets frames of queues without
a socket pass to the kernel; or `xdp_prog=PATH` loads a user's compiled
object that has an XSKMAP named xsks_map. It is attached with a bpf_link
(native, generic, or auto: native if the driver can), so it is detached at
close, at stop, and by the kernel when the process dies (even SIGKILL). A
program already on the interface that is not ours is refused at open.

Life cycle. open: checks only (interface, queues, permission, foreign
program, the user's ELF). start: sockets, UMEM, rings, fill, program,
XSKMAP entries; anything failing undoes the rest. stop: XSKMAP entries out,
program detached, pending tx drained (bounded wait), kernel statistics
saved, sockets closed, then every mbuf still in a ring (fill, rx, tx,
completion) freed back to the pool, and the rings unmapped. close: stop,
free the queues. An atexit hook closes ports a script forgot.

Keys:
  iface        NAME   interface (required)
  start_queue  N      first interface queue (default 0)
  queue_count  N      queues (default 1); port queue i = interface queue start_queue + i
  mode         native|generic|auto   XDP attach mode (default auto: native if the driver can)
  zero_copy    auto|0|1   AF_XDP zero-copy bind (default auto; veth has none: copy mode)
  busy_budget  N      >0: SO_PREFER_BUSY_POLL with this budget, recvfrom() every rx burst (default 0)
  xdp_prog     PATH   BPF ELF object to attach instead of the built-in program

Caveats: a queue with a socket delivers every frame to pypdk (ARP
included) unless a user program filters; the kernel stack on that queue
goes deaf. The rx pool must be the same for every queue (one UMEM) and its
mbufs at least 2048 bytes of chunk (default pools: 2304). Do not fork()
without exec while a port is started: the child would keep the program
attached. The struct layouts come from the installed <linux/if_xdp.h>,
which may be older than the running kernel: the last u32 of struct
xdp_umem_reg is padding in the 6.1 headers and tx_metadata_len since 6.8
(we write 0, which both read alike); on veth a zero-copy bind is refused
with EOPNOTSUPP (copy mode only). References: kernel
Documentation/networking/af_xdp.rst, include/uapi/linux/if_xdp.h,
include/net/xsk_queue.h.
"""
import atexit
import errno as _errno
import os
import time
import weakref

from libc.stdint cimport uint16_t, int32_t, uint32_t, int64_t, uint64_t, uintptr_t
from libc.string cimport memset
from libc.errno cimport errno, EAGAIN, EBUSY, EINTR, ENOBUFS
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_POPULATE, MAP_FAILED
from posix.unistd cimport close as c_close
from posix.types cimport off_t

from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc, pktmbuf_alloc_bulk, pktmbuf_free,
                                 pktmbuf_free_bulk, pktmbuf_read, mbuf_mtod, PktMbufPool,
                                 PD_MBUF_F_INDIRECT)
from pypdk.mempool.mempool cimport Mempool, pd_mempool
from pd_compiler cimport pd_likely, pd_unlikely
from pypdk.eal.memzone cimport Memzone
from pypdk.pmd.ethdev cimport EthDev, pd_eth_qstats, PD_MAX_QUEUES
from pypdk.net.ether cimport PD_ETHER_HDR_LEN

from pypdk.pmd import netdev
from pypdk.pmd.devargs import Key
from pypdk.pmd.af_xdp import prog as _prog
from pypdk.pmd.af_xdp import elf as _elf
from pypdk.pmd.af_xdp import bpf as _bpf
from pypdk.errors import UsageError, ResourceError, StateError

from pd_atomic cimport pd_load_acquire_u32, pd_load_relaxed_u32, pd_store_release_u32

from pd_compiler cimport pd_prefetchw

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    int c_socket "socket"(int domain, int type, int protocol)
    int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
    int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
    int c_bind "bind"(int fd, const sockaddr *addr, socklen_t len)
    ssize_t sendto(int fd, const void *buf, size_t len, int flags, const sockaddr *to,
                   socklen_t tolen)
    ssize_t recvfrom(int fd, void *buf, size_t len, int flags, sockaddr *src,
                     socklen_t *srclen)
    enum:
        SOCK_RAW
        SOCK_CLOEXEC
        MSG_DONTWAIT
        SOL_SOCKET

DRIVER = "net_af_xdp"
HELP = "AF_XDP sockets on a Linux interface queue, zero copy into mbufs (XDP program built in)"
KEYS = (
    Key("iface", str, None, "interface name", required=True),
    Key("start_queue", int, 0, "first interface queue"),
    Key("queue_count", int, 1, "number of queues (port queue i = interface queue start_queue+i)"),
    Key("mode", str, "auto", "XDP attach mode", choices=("native", "generic", "auto")),
    Key("zero_copy", str, "auto", "AF_XDP zero-copy bind", choices=("auto", "0", "1")),
    Key("busy_budget", int, 0, ">0: socket busy polling with this budget"),
    Key("xdp_prog", str, None, "BPF ELF object with an XSKMAP named xsks_map (default: built in)"),
)

# Socket options for busy polling (asm-generic/socket.h).
cdef enum:
    SO_BUSY_POLL = 46
    SO_PREFER_BUSY_POLL = 69
    SO_BUSY_POLL_BUDGET = 70

cdef enum:
    MBUF_HDR = sizeof(pd_mbuf)
    TX_BATCH = 64            # mbufs freed per pktmbuf_free_bulk / allocated per bulk get
    FILL_IDLE_BATCH = 32     # top up the fill ring on an empty poll only when this short


# ---- hot path ---------------------------------------------------------------------

cdef inline void rx_refill(xsk_rxq *q, uint32_t got) noexcept nogil:
    """Give the kernel fresh mbufs until it holds fill_target of ours again.

    No check of the fill ring's free space is needed: the ring holds at
    most `outstanding` entries, and we never let that pass fill_target,
    which is at most the ring's size.
    """
    cdef uint32_t want = q.fill_target - q.outstanding
    cdef uint32_t k, i, idx, placed = 0
    cdef pd_mbuf *tmp[TX_BATCH]
    cdef uint64_t *slots = <uint64_t *>q.fill.ring
    cdef char *umem = q.umem
    cdef uint64_t delta = q.fill_delta
    if want == 0 or (got == 0 and want < FILL_IDLE_BATCH):
        return
    idx = q.fill.cached_prod
    while want:
        k = want if want < TX_BATCH else TX_BATCH
        while k and pktmbuf_alloc_bulk(q.mp, tmp, k) != 0:
            k >>= 1              # bulk gets are all or nothing: try fewer
        if k == 0:
            break
        for i in range(k):
            slots[(idx + i) & q.fill.mask] = <uint64_t>(<char *>tmp[i] - umem) + delta
        idx += k
        placed += k
        want -= k
    if placed:
        q.fill.cached_prod = idx
        q.outstanding += placed
        # Release: the addresses above are written before the kernel can see
        # them (pairs with the kernel's acquire of the fill producer).
        pd_store_release_u32(q.fill.producer, idx)
    if pd_unlikely(want != 0):
        q.refill_short += want
        if got:
            q.stats.nombuf += want if want < got else got


cdef uint16_t xsk_rx_burst(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef xsk_rxq *rxq = <xsk_rxq *>q
    cdef xdp_desc *descs = <xdp_desc *>rxq.rx.ring
    cdef xdp_desc *d
    cdef pd_mbuf *m
    cdef uint32_t idx = rxq.rx.cached_cons, mask = rxq.rx.mask, avail, i, length
    cdef uint64_t addr, nbytes = 0
    cdef char *base = rxq.umem - rxq.fill_delta
    cdef int32_t bias = rxq.off_bias
    cdef uint16_t port = rxq.port, queue = rxq.queue
    if pd_unlikely(rxq.busy_poll or
                   (pd_load_relaxed_u32(rxq.fill.flags) & XDP_RING_NEED_WAKEUP)):
        recvfrom(rxq.fd, NULL, 0, MSG_DONTWAIT, NULL, NULL)
        rxq.wakeups += 1
    avail = rxq.rx.cached_prod - idx
    if avail < n:
        # Acquire: the descriptors up to the producer are written before we
        # read them (pairs with the kernel's release of the rx producer).
        rxq.rx.cached_prod = pd_load_acquire_u32(rxq.rx.producer)
        avail = rxq.rx.cached_prod - idx
    if avail > n:
        avail = n
    if avail == 0:
        rx_refill(rxq, 0)
        return 0
    for i in range(avail):
        d = &descs[(idx + i) & mask]
        addr = d.addr
        length = d.len
        m = <pd_mbuf *>(base + (addr & XSK_UNALIGNED_BUF_ADDR_MASK))
        m.data_off = <uint16_t>(<int32_t>(addr >> XSK_UNALIGNED_BUF_OFFSET_SHIFT) + bias)
        m.data_len = <uint16_t>length
        m.pkt_len = length
        m.port = port
        m.queue = queue
        nbytes += length
        pkts[i] = m
    rxq.rx.cached_cons = idx + avail
    # Release: we are done reading these descriptors before the kernel may
    # reuse the slots (pairs with the kernel's acquire of the rx consumer).
    pd_store_release_u32(rxq.rx.consumer, idx + avail)
    rxq.outstanding -= avail
    rxq.stats.packets += avail
    rxq.stats.bytes += nbytes
    rx_refill(rxq, avail)
    return <uint16_t>avail


cdef uint32_t xsk_tx_reap(xsk_txq *q) noexcept nogil:
    cdef uint64_t *slots = <uint64_t *>q.cq.ring
    cdef pd_mbuf *tmp[TX_BATCH]
    cdef uint32_t cons = q.cq.cached_cons, prod, n, k, i, total
    cdef char *umem = q.umem
    # Acquire: the addresses up to the producer are written before we read
    # them (pairs with the kernel's release of the completion producer).
    prod = pd_load_acquire_u32(q.cq.producer)
    total = n = prod - cons
    while n:
        k = n if n < TX_BATCH else TX_BATCH
        for i in range(k):
            tmp[i] = <pd_mbuf *>(umem + (slots[(cons + i) & q.cq.mask] & XSK_UNALIGNED_BUF_ADDR_MASK))
        pktmbuf_free_bulk(tmp, k)
        cons += k
        n -= k
    if total:
        q.cq.cached_cons = cons
        # Release: the slots are read before the kernel may write them again.
        pd_store_release_u32(q.cq.consumer, cons)
        q.inflight -= total
    return total


cdef void tx_kick(xsk_txq *q) noexcept nogil:
    """sendto() until the tx ring is empty or the kernel is busy: copy mode
    sends at most 32 frames per call, synchronously."""
    cdef uint32_t pending = q.tx.cached_prod - q.tx.cached_cons
    cdef int tries = (pending >> 5) + 2 if pending < 448 else 16
    cdef int e
    while tries > 0:
        tries -= 1
        q.kicks += 1
        if sendto(q.fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0:
            e = errno
            if e == EAGAIN or e == EBUSY or e == ENOBUFS or e == EINTR:
                # EAGAIN: more pending or the completion ring is full; EBUSY:
                # the driver dropped a frame (its buffer still completes).
                q.kick_busy += 1
                xsk_tx_reap(q)
            else:
                q.kick_errors += 1
                q.last_errno = e
                return
        # Acquire: pairs with the kernel's release of the tx consumer.
        q.tx.cached_cons = pd_load_acquire_u32(q.tx.consumer)
        if q.tx.cached_cons == q.tx.cached_prod:
            return


cdef int tx_linearize(xsk_txq *q, pd_mbuf **mp) noexcept nogil:
    """Copy *mp into a fresh UMEM mbuf and free it. 0: *mp is the copy;
    1: dropped (too long; freed and counted); -1: no mbuf (nothing taken)."""
    cdef pd_mbuf *m = mp[0]
    cdef pd_mbuf *c
    cdef uint32_t length = m.pkt_len
    if pd_unlikely(length > q.max_len or length + q.mp.mbuf_headroom > 0xffff or
                   length > q.mp.mbuf_data_room):
        q.too_long += 1
        q.stats.errors += 1
        pktmbuf_free(m)
        return 1
    c = pktmbuf_alloc(q.mp)
    if c == NULL:
        q.copy_nombuf += 1
        return -1
    pktmbuf_read(m, 0, length, mbuf_mtod(c))
    c.data_len = <uint16_t>length
    c.pkt_len = length
    c.port = m.port
    pktmbuf_free(m)
    q.copied += 1
    mp[0] = c
    return 0


cdef uint16_t xsk_tx_burst(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef xsk_txq *txq = <xsk_txq *>q
    cdef xdp_desc *descs = <xdp_desc *>txq.tx.ring
    cdef xdp_desc *d
    cdef pd_mbuf *m
    cdef uint32_t idx, free_slots, k = 0, taken = 0, length, mask = txq.tx.mask
    cdef uint64_t nbytes = 0
    cdef char *umem = txq.umem
    cdef int rc
    if txq.inflight:
        xsk_tx_reap(txq)
    free_slots = txq.tx.size - (txq.tx.cached_prod - txq.tx.cached_cons)
    if free_slots < n:
        # Acquire: pairs with the kernel's release of the tx consumer; the
        # slots it has passed are free for us to write.
        txq.tx.cached_cons = pd_load_acquire_u32(txq.tx.consumer)
        free_slots = txq.tx.size - (txq.tx.cached_prod - txq.tx.cached_cons)
    idx = txq.tx.cached_prod
    while taken < n and k < free_slots:
        m = pkts[taken]
        if pd_unlikely(m.pool != txq.mp or m.nb_segs != 1 or (m.ol_flags & PD_MBUF_F_INDIRECT)):
            rc = tx_linearize(txq, &m)
            if rc < 0:
                break
            taken += 1
            if rc > 0:
                continue
        else:
            taken += 1
        length = m.data_len
        if pd_unlikely(length > txq.max_len):
            txq.too_long += 1
            txq.stats.errors += 1
            pktmbuf_free(m)
            continue
        d = &descs[(idx + k) & mask]
        d.addr = <uint64_t>(<char *>m - umem) | \
            (<uint64_t>(MBUF_HDR + m.data_off) << XSK_UNALIGNED_BUF_OFFSET_SHIFT)
        d.len = length
        d.options = 0
        nbytes += length
        k += 1
    if k:
        txq.tx.cached_prod = idx + k
        # Release: the descriptors are written before the kernel sees them
        # (pairs with the kernel's acquire of the tx producer).
        pd_store_release_u32(txq.tx.producer, idx + k)
        txq.inflight += k
        txq.stats.packets += k
        txq.stats.bytes += nbytes
    if txq.tx.cached_prod != txq.tx.cached_cons and \
            (pd_load_relaxed_u32(txq.tx.flags) & XDP_RING_NEED_WAKEUP):
        tx_kick(txq)
    return <uint16_t>taken


# ---- slow path: sockets and rings ----------------------------------------------------

cdef object _oserror(str what):
    e = errno
    return OSError(e, f"{what}: {os.strerror(e)}")


cdef int ring_map(xsk_ring *r, int fd, xdp_ring_offset *off, uint32_t size, uint32_t entsize,
                  uint64_t pgoff) except -1:
    cdef size_t length = off.desc + <size_t>size * entsize
    cdef void *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                        <off_t>pgoff)
    if p == MAP_FAILED:
        raise _oserror("mmap of an AF_XDP ring")
    r.map = p
    r.map_len = length
    r.producer = <uint32_t *>(<char *>p + off.producer)
    r.consumer = <uint32_t *>(<char *>p + off.consumer)
    r.flags = <uint32_t *>(<char *>p + off.flags)
    r.ring = <char *>p + off.desc
    r.size = size
    r.mask = size - 1
    r.cached_prod = pd_load_acquire_u32(r.producer)
    r.cached_cons = pd_load_acquire_u32(r.consumer)
    return 0


cdef void ring_unmap(xsk_ring *r) noexcept nogil:
    if r.map != NULL:
        munmap(r.map, r.map_len)
    memset(r, 0, sizeof(xsk_ring))


cdef int sockopt_u32(int fd, int name, uint32_t value, str what) except -1:
    if setsockopt(fd, SOL_XDP, name, &value, sizeof(value)) != 0:
        raise _oserror(what)
    return 0


cdef uint32_t reclaim_addrs(xsk_ring *r, uint32_t start, uint32_t end, bint descs, char *base) noexcept nogil:
    """Free the mbufs of ring entries [start, end) (after the socket is closed)."""
    cdef uint32_t i, n = 0
    cdef uint64_t addr
    cdef pd_mbuf *m
    i = start
    while i != end:
        if descs:
            addr = (<xdp_desc *>r.ring)[i & r.mask].addr
        else:
            addr = (<uint64_t *>r.ring)[i & r.mask]
        m = <pd_mbuf *>(base + (addr & XSK_UNALIGNED_BUF_ADDR_MASK))
        pktmbuf_free(m)
        n += 1
        i += 1
    return n


def _pow2(n, lo, hi):
    v = lo
    while v < n and v < hi:
        v <<= 1
    return v


# (ifindex, interface queue) -> port name, for this process's ports
_claims = {}
_live = weakref.WeakSet()
_atexit_done = False


def _close_all_at_exit():
    for p in list(_live):
        try:
            p.close()
        except Exception:
            pass


cdef class Port(EthDev):
    """An AF_XDP port (see the module docstring)."""

    cdef int ifindex
    cdef str ifname
    cdef int start_queue
    cdef int qcount
    cdef int nsock
    cdef int fds[PD_MAX_QUEUES]  # socket i serves rx and tx queue i
    cdef list rx_sizes
    cdef list tx_sizes
    cdef object att              # prog.Attachment while started
    cdef object pool             # the UMEM pool while started
    cdef Memzone umem_mz         # its memory (to tell whether it still exists at stop)
    cdef bint zc
    cdef uint32_t chunk_size
    cdef uint64_t fill_delta
    cdef uint16_t rx_data_off
    cdef dict kstats_saved       # kernel XDP_STATISTICS of closed sockets, per queue
    cdef dict lost               # mbufs the kernel kept at close (should stay 0)
    cdef object xdp_obj          # parsed xdp_prog (checked at open)
    cdef object _ctl             # the netdev control socket (made on first use)

    DRIVER = DRIVER

    def __cinit__(self):
        cdef int i
        for i in range(PD_MAX_QUEUES):
            self.fds[i] = -1
        self.nsock = 0
        self.drv_rx = xsk_rx_burst
        self.drv_tx = xsk_tx_burst
        self.kstats_saved = {}
        self.lost = {"rx": 0}
        self.rx_sizes = []
        self.tx_sizes = []
        self.qcount = 0

    cdef inline xsk_rxq *rxq(self, int q):
        return <xsk_rxq *>self.fp.rxq[q]

    cdef inline xsk_txq *txq(self, int q):
        return <xsk_txq *>self.fp.txq[q]

    @property
    def max_rx_queues(self):
        return self.qcount or 1

    @property
    def max_tx_queues(self):
        return self.qcount or 1

    def _dev_probe(self, dict args):
        name = self.name
        iface = args["iface"]
        if not iface or len(iface) > 15 or "/" in iface:
            raise UsageError(f"{name}: iface={iface!r} is not an interface name",
                             "give the name `ip link` shows (at most 15 characters)")
        self.ifindex = netdev.ifindex(iface)
        if self.ifindex == 0:
            raise ResourceError(f"{name}: interface {iface!r} does not exist",
                                "create it or check the name with `ip link`")
        self.ifname = iface
        sq, qc = args["start_queue"], args["queue_count"]
        if qc < 1 or qc > PD_MAX_QUEUES:
            raise UsageError(f"{name}: queue_count={qc} is out of range",
                             f"use queue_count=1..{PD_MAX_QUEUES}")
        if sq < 0:
            raise UsageError(f"{name}: start_queue={sq} is negative", "use start_queue >= 0")
        nq = netdev.queue_count(iface)
        if nq is not None and sq + qc > nq:
            raise UsageError(f"{name}: queues {sq}..{sq + qc - 1} asked, {iface} has {nq} rx "
                             f"queue{'s' if nq != 1 else ''} (0..{nq - 1})",
                             f"use start_queue + queue_count <= {nq}, or give {iface} more queues "
                             f"(ethtool -L {iface} combined N; veth: ip link add ... "
                             f"numrxqueues N numtxqueues N)")
        if args["busy_budget"] < 0 or args["busy_budget"] > 65535:
            raise UsageError(f"{name}: busy_budget={args['busy_budget']} is out of range",
                             "use 0 (off) .. 65535")
        for q in range(sq, sq + qc):
            other = _claims.get((self.ifindex, q))
            if other is not None:
                raise UsageError(f"{name}: queue {q} of {iface} is already used by port {other}",
                                 f"give each port its own queues (start_queue=, queue_count=) "
                                 f"or close {other} first")
        self.start_queue = sq
        # Permission and kernel support, before anything is changed.
        cdef int fd = c_socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0)
        if fd < 0:
            e = errno
            if e in (_errno.EPERM, _errno.EACCES):
                raise ResourceError(f"{name}: no permission to open AF_XDP sockets",
                                    "run as root (needs CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF)")
            raise ResourceError(f"{name}: cannot open an AF_XDP socket ({os.strerror(e)})",
                                "use a kernel built with CONFIG_XDP_SOCKETS")
        c_close(fd)
        if args["xdp_prog"]:
            self.xdp_obj = _elf.parse_elf(args["xdp_prog"])
        ours = _prog.attachments().get(self.ifindex)
        try:
            state = _bpf.xdp_query(self.ifindex)
        except OSError as e:
            raise ResourceError(f"{name}: cannot query {iface}'s XDP state ({e})",
                                "run as root") from None
        if state["prog_id"] and (ours is None or ours.prog_id != state["prog_id"]):
            raise _prog.foreign_program_error(iface, state)
        addr = netdev.sysfs(iface, "address", "")
        try:
            self._mac = bytes(int(x, 16) for x in addr.split(":"))
        except ValueError:
            pass
        if len(self._mac) != 6:
            self._mac = bytes(6)
        self._mtu = int(netdev.sysfs(iface, "mtu", "1500"))
        self.socket_id = netdev.numa_node(iface)
        self.qcount = qc
        for q in range(sq, sq + qc):
            _claims[(self.ifindex, q)] = name
        _live.add(self)
        global _atexit_done
        if not _atexit_done:
            atexit.register(_close_all_at_exit)
            _atexit_done = True

    # ---- queues --------------------------------------------------------------------
    def _dev_configure(self, nb_rxq, nb_txq):
        self.rx_sizes = [0] * nb_rxq
        self.tx_sizes = [0] * nb_txq

    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        for i, p in enumerate(self.rx_pools):
            if p is not None and i != q and p is not pool:
                raise UsageError(f"{self.name}: rx queue {q} gets pool {pool.name!r}, queue {i} "
                                 f"has {p.name!r}", "an af_xdp port registers one pool as its "
                                 "UMEM: give every rx queue the same pool")
        self._layout(pool)
        if not 1 <= nb_desc <= 16384:
            raise UsageError(f"{self.name}: {nb_desc} rx descriptors", "use 1..16384 (rounded up to a power of two, at least 64)")
        self.queue_alloc(True, q, sizeof(xsk_rxq))
        self.rxq(q).fd = -1
        self.rx_sizes[q] = _pow2(nb_desc, 64, 16384)

    def _dev_tx_queue_setup(self, q, nb_desc):
        if not 1 <= nb_desc <= 16384:
            raise UsageError(f"{self.name}: {nb_desc} tx descriptors", "use 1..16384 (rounded up to a power of two, at least 64)")
        self.queue_alloc(False, q, sizeof(xsk_txq))
        self.txq(q).fd = -1
        self.tx_sizes[q] = _pow2(nb_desc, 64, 16384)

    def _layout(self, PktMbufPool pool):
        """Where a received frame lands in an mbuf of `pool` (see xsk.pxd)."""
        cdef pd_mempool *mp = <pd_mempool *><uintptr_t>pool.addr
        cdef uint32_t hr = mp.mbuf_headroom, buf_len = hr + mp.mbuf_data_room
        cdef uint32_t data_off = hr if hr > XSK_PACKET_HEADROOM - MBUF_HDR else XSK_PACKET_HEADROOM - MBUF_HDR
        cdef uint64_t delta = MBUF_HDR + data_off - XSK_PACKET_HEADROOM
        cdef int64_t chunk = <int64_t>MBUF_HDR + buf_len - <int64_t>delta
        if chunk > 4096:
            chunk = 4096
        if chunk < 2048 or data_off > buf_len:
            raise UsageError(f"{self.name}: pool {pool.name!r} has mbufs of {buf_len} buffer bytes "
                             f"(headroom {hr}), too small for an AF_XDP chunk of at least 2048 bytes",
                             "use a pool with data_room >= 2048 (the default)")
        self.rx_data_off = data_off
        self.fill_delta = delta
        self.chunk_size = <uint32_t>chunk

    # ---- start / stop ----------------------------------------------------------------
    def _dev_start(self):
        pool = self.rx_pools[0]
        if any(p is not pool for p in self.rx_pools):
            raise UsageError(f"{self.name}: rx queues have different pools",
                             "give every rx queue the same pool (one UMEM)")
        self._layout(pool)
        self.nsock = max(self.fp.nb_rxq, self.fp.nb_txq)
        self.pool = pool
        self.umem_mz = <Memzone>(<Mempool>pool).memzone
        try:
            for i in range(self.nsock):
                self._open_socket(i)
            self._fill_all()
            self.att = _prog.attach(self.ifname, self.ifindex, self.devargs["mode"],
                                    self.devargs["xdp_prog"], self.xdp_obj,
                                    max(64, self.start_queue + self.qcount,
                                        netdev.queue_count(self.ifname) or 0))
            for i in range(self.fp.nb_rxq):
                try:
                    self.att.set_socket(self.start_queue + i, self.fds[i])
                except _bpf.BpfError as e:
                    raise ResourceError(f"{self.name}: cannot put queue {self.start_queue + i}'s "
                                        f"socket in the XSKMAP ({e})",
                                        "with xdp_prog=, make xsks_map's max_entries larger "
                                        "than the highest queue") from None
        except BaseException:
            self._teardown()
            raise

    def _open_socket(self, int i):
        cdef int fd, rc, tries
        cdef xdp_umem_reg reg
        cdef xdp_mmap_offsets off
        cdef socklen_t optlen
        cdef sockaddr_xdp sa
        cdef xdp_options opts
        cdef uint32_t v
        cdef PktMbufPool pool = self.pool
        cdef Memzone mz = <Memzone>(<Mempool>pool).memzone
        cdef pd_mempool *mp = <pd_mempool *><uintptr_t>pool.addr
        cdef bint has_rx = i < self.fp.nb_rxq, has_tx = i < self.fp.nb_txq
        cdef uint32_t rx_size = self.rx_sizes[i] if has_rx else 0
        cdef uint32_t tx_size = self.tx_sizes[i] if has_tx else 0
        cdef uint32_t fill_size = rx_size if has_rx else 64
        cdef uint32_t cq_size = tx_size * 2 if has_tx else 64
        cdef int qid = self.start_queue + i
        cdef xsk_rxq *rxq
        cdef xsk_txq *txq
        name, iface = self.name, self.ifname
        fd = c_socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0)
        if fd < 0:
            e = errno
            if e in (_errno.EPERM, _errno.EACCES):
                raise ResourceError(f"{name}: no permission to open AF_XDP sockets",
                                    "run as root (needs CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF)")
            raise ResourceError(f"{name}: cannot open an AF_XDP socket ({os.strerror(e)})",
                                "use a kernel built with CONFIG_XDP_SOCKETS")
        self.fds[i] = fd
        if i == 0:
            memset(&reg, 0, sizeof(reg))
            reg.addr = <uint64_t><uintptr_t>mp.base
            reg.len = <uint64_t>mz.mz.map_len - <uint64_t>(mp.base - <char *>mz.mz.addr)
            reg.chunk_size = self.chunk_size
            reg.headroom = 0
            reg.flags = XDP_UMEM_UNALIGNED_CHUNK_FLAG
            if setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)) != 0:
                e = errno
                if e in (_errno.ENOMEM, _errno.EPERM, _errno.EAGAIN):
                    raise ResourceError(f"{name}: cannot register pool {pool.name!r} "
                                        f"({reg.len >> 20} MiB) as AF_XDP UMEM ({os.strerror(e)})",
                                        "run as root or raise the locked-memory limit (ulimit -l)")
                raise ResourceError(f"{name}: the kernel refused pool {pool.name!r} as UMEM "
                                    f"(chunk {reg.chunk_size}, {reg.len} bytes: {os.strerror(e)})",
                                    "use a pool with the default headroom and data room")
        try:
            sockopt_u32(fd, XDP_UMEM_FILL_RING, fill_size, "XDP_UMEM_FILL_RING")
            sockopt_u32(fd, XDP_UMEM_COMPLETION_RING, cq_size, "XDP_UMEM_COMPLETION_RING")
            if has_rx:
                sockopt_u32(fd, XDP_RX_RING, rx_size, "XDP_RX_RING")
            if has_tx:
                sockopt_u32(fd, XDP_TX_RING, tx_size, "XDP_TX_RING")
            optlen = sizeof(off)
            memset(&off, 0, sizeof(off))
            if getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) != 0:
                raise _oserror("XDP_MMAP_OFFSETS")
        except OSError as e:
            raise ResourceError(f"{name}: cannot set up AF_XDP rings ({e})",
                                "check the kernel log (dmesg)") from None
        if has_rx:
            rxq = self.rxq(i)
            ring_map(&rxq.rx, fd, &off.rx, rx_size, sizeof(xdp_desc), XDP_PGOFF_RX_RING)
            ring_map(&rxq.fill, fd, &off.fr, fill_size, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING)
            rxq.fd = fd
            rxq.umem = mp.base
            rxq.mp = mp
            rxq.fill_delta = self.fill_delta
            rxq.off_bias = <int32_t>self.fill_delta - <int32_t>MBUF_HDR
            rxq.fill_target = fill_size
            rxq.outstanding = 0
            rxq.port = self.port_id
            rxq.queue = i
            rxq.busy_poll = self.devargs["busy_budget"] > 0
        if has_tx:
            txq = self.txq(i)
            ring_map(&txq.tx, fd, &off.tx, tx_size, sizeof(xdp_desc), XDP_PGOFF_TX_RING)
            ring_map(&txq.cq, fd, &off.cr, cq_size, sizeof(uint64_t), XDP_UMEM_PGOFF_COMPLETION_RING)
            txq.fd = fd
            txq.umem = mp.base
            txq.mp = mp
            txq.max_len = self.chunk_size
            txq.inflight = 0
        else:
            # A socket needs both UMEM rings mapped or not at all; an rx-only
            # socket never uses its completion ring, so it need not be mapped.
            pass
        if self.devargs["busy_budget"] > 0:
            for opt, val in ((SO_PREFER_BUSY_POLL, 1), (SO_BUSY_POLL, 20),
                             (SO_BUSY_POLL_BUDGET, self.devargs["busy_budget"])):
                v = val
                if setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)) != 0:
                    e = errno
                    raise ResourceError(f"{name}: busy polling refused ({os.strerror(e)})",
                                        "run as root, or use busy_budget=0")
        memset(&sa, 0, sizeof(sa))
        sa.sxdp_family = AF_XDP
        sa.sxdp_ifindex = self.ifindex
        sa.sxdp_queue_id = qid
        if i == 0:
            zc = self.devargs["zero_copy"]
            sa.sxdp_flags = XDP_USE_NEED_WAKEUP | (XDP_ZEROCOPY if zc == "1" else
                                                   XDP_COPY if zc == "0" else 0)
        else:
            # A shared-UMEM socket inherits copy/zero-copy and need-wakeup
            # from the UMEM's owner; giving any of them is EINVAL.
            sa.sxdp_flags = XDP_SHARED_UMEM
            sa.sxdp_shared_umem_fd = self.fds[0]
        # The kernel frees a queue a previous socket used by deferred work
        # (~10 ms after its close): retry EBUSY for a while.
        tries = 0
        while True:
            rc = c_bind(fd, <sockaddr *>&sa, sizeof(sa))
            if rc == 0:
                break
            e = errno
            if e == _errno.EBUSY and tries < 40:
                tries += 1
                time.sleep(0.005)
                continue
            if e == _errno.EBUSY:
                raise ResourceError(f"{name}: queue {qid} of {iface} is in use by another "
                                    "AF_XDP socket", "stop the other user (another process?) "
                                    "or pick other queues (start_queue=)")
            if e == _errno.EOPNOTSUPP and self.devargs["zero_copy"] == "1":
                raise ResourceError(f"{name}: {iface}'s driver has no AF_XDP zero-copy support",
                                    "use zero_copy=auto or zero_copy=0 (copy mode)")
            if e == _errno.EINVAL:
                nq = netdev.queue_count(iface)
                raise UsageError(f"{name}: the kernel refused queue {qid} of {iface} "
                                 f"({os.strerror(e)}; it has {nq} rx queues)",
                                 "use queues below the interface's queue count")
            if e == _errno.ENODEV:
                raise ResourceError(f"{name}: interface {iface} went away", "check `ip link`")
            raise ResourceError(f"{name}: cannot bind an AF_XDP socket to {iface} queue {qid} "
                                f"({os.strerror(e)})", "check `ip link` and dmesg")
        if i == 0:
            optlen = sizeof(opts)
            opts.flags = 0
            if getsockopt(fd, SOL_XDP, XDP_OPTIONS, &opts, &optlen) == 0:
                self.zc = (opts.flags & XDP_OPTIONS_ZEROCOPY) != 0

    def _fill_all(self):
        cdef int i
        cdef xsk_rxq *rxq
        cdef PktMbufPool pool = self.pool
        cdef uint32_t budget, avail = pool.avail_count, target
        # Stock every fill ring, but leave half the pool for the app and tx.
        budget = avail // 2 // max(self.fp.nb_rxq, 1)
        for i in range(self.fp.nb_rxq):
            rxq = self.rxq(i)
            target = rxq.fill.size if rxq.fill.size < budget else budget
            if target < 1:
                raise ResourceError(f"{self.name}: pool {pool.name!r} has {avail} free mbufs, "
                                    f"too few for {self.fp.nb_rxq} rx queues",
                                    "make a bigger pool (at least 2 x queues x rx descriptors)")
            rxq.fill_target = target
            with nogil:
                rx_refill(rxq, 1)
            if rxq.outstanding != target:
                raise ResourceError(f"{self.name}: pool {pool.name!r} ran out filling rx queue {i}",
                                    "make a bigger pool")
            rxq.stats.nombuf = 0

    def _dev_stop(self):
        self._teardown()

    def _teardown(self):
        """Undo start, in an order that loses no mbuf (see the module docstring)."""
        cdef int i
        cdef xsk_rxq *rxq
        cdef xsk_txq *txq
        cdef uint32_t got
        errors = []
        if self.att is not None:
            for i in range(self.fp.nb_rxq):
                try:
                    self.att.clear_socket(self.start_queue + i)
                except OSError:
                    pass
            try:
                _prog.release(self.att)
            except OSError as e:
                errors.append(e)
            self.att = None
        # Let pending frames go; bounded, and not at all once a kick fails
        # for good (interface down): those descriptors are reclaimed below.
        deadline = time.monotonic() + 0.5
        for i in range(self.nsock):
            txq = self.txq(i) if i < self.fp.nb_txq else NULL
            if txq == NULL or txq.fd < 0:
                continue
            errs = txq.kick_errors
            while txq.inflight and time.monotonic() < deadline and txq.kick_errors == errs:
                with nogil:
                    if txq.tx.cached_prod != pd_load_acquire_u32(txq.tx.consumer):
                        tx_kick(txq)
                    xsk_tx_reap(txq)
                if txq.inflight:
                    time.sleep(0.001)
        # If the pool's memory is already gone (the EAL closed before the
        # port was closed), there is no mbuf to give back: only close.
        give_back = self.umem_mz is not None and not self.umem_mz.freed
        for i in range(self.nsock):
            if self.fds[i] >= 0:
                self._save_kstats(i)
        # Close the sockets: the kernel unbinds them (synchronize_net) and is
        # done with every ring; then collect what the rings still hold.
        for i in range(self.nsock - 1, -1, -1):
            if self.fds[i] >= 0:
                c_close(self.fds[i])
                self.fds[i] = -1
        for i in range(self.nsock):
            rxq = self.rxq(i) if i < self.fp.nb_rxq else NULL
            if rxq != NULL and rxq.rx.map != NULL and give_back:
                got = reclaim_addrs(&rxq.rx, rxq.rx.cached_cons, pd_load_acquire_u32(rxq.rx.producer),
                                    True, rxq.umem - rxq.fill_delta)
                got += reclaim_addrs(&rxq.fill, pd_load_acquire_u32(rxq.fill.consumer),
                                     rxq.fill.cached_prod, False, rxq.umem - rxq.fill_delta)
                if got != rxq.outstanding:
                    self.lost["rx"] += <int>rxq.outstanding - <int>got
                rxq.outstanding = 0
            if rxq != NULL:
                ring_unmap(&rxq.rx)
                ring_unmap(&rxq.fill)
                rxq.fd = -1
            txq = self.txq(i) if i < self.fp.nb_txq else NULL
            if txq != NULL and txq.tx.map != NULL and give_back:
                xsk_tx_reap(txq)
                got = reclaim_addrs(&txq.tx, pd_load_acquire_u32(txq.tx.consumer),
                                    txq.tx.cached_prod, True, txq.umem)
                txq.inflight -= got
                if txq.inflight:
                    self.lost["tx"] = self.lost.get("tx", 0) + txq.inflight
                txq.inflight = 0
            if txq != NULL:
                ring_unmap(&txq.tx)
                ring_unmap(&txq.cq)
                txq.fd = -1
        self.nsock = 0
        self.pool = None
        self.umem_mz = None
        if errors:
            raise ResourceError(f"{self.name}: detaching the XDP program from {self.ifname} "
                                f"failed ({errors[0]})", f"check `ip link show dev {self.ifname}`")

    def _kstats(self, int i):
        cdef xdp_statistics st
        cdef socklen_t optlen = sizeof(st)
        memset(&st, 0, sizeof(st))
        if self.fds[i] < 0 or getsockopt(self.fds[i], SOL_XDP, XDP_STATISTICS, &st, &optlen) != 0:
            return None
        return {"rx_dropped": st.rx_dropped, "rx_invalid_descs": st.rx_invalid_descs,
                "tx_invalid_descs": st.tx_invalid_descs, "rx_ring_full": st.rx_ring_full,
                "rx_fill_ring_empty_descs": st.rx_fill_ring_empty_descs,
                "tx_ring_empty_descs": st.tx_ring_empty_descs}

    def _save_kstats(self, int i):
        st = self._kstats(i)
        if st:
            saved = self.kstats_saved.setdefault(i, dict.fromkeys(st, 0))
            for k, v in st.items():
                saved[k] += v

    def _dev_close(self):
        cdef int i
        self._teardown()
        if self.qcount:
            for q in range(self.start_queue, self.start_queue + self.qcount):
                if _claims.get((self.ifindex, q)) == self.name:
                    del _claims[(self.ifindex, q)]
        _live.discard(self)
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None

    # ---- information -----------------------------------------------------------------
    def kernel_stats(self):
        """Per queue, the kernel's XDP_STATISTICS (summed over start/stop cycles)."""
        out = []
        for i in range(max(self.fp.nb_rxq, self.fp.nb_txq)):
            tot = dict(self.kstats_saved.get(i, {}))
            live = self._kstats(i) if i < self.nsock else None
            for k, v in (live or {}).items():
                tot[k] = tot.get(k, 0) + v
            out.append(tot)
        return out

    def _dev_xstats(self):
        cdef int i
        cdef xsk_rxq *rxq
        cdef xsk_txq *txq
        d = {}
        imissed = 0
        for i, ks in enumerate(self.kernel_stats()):
            for k, v in ks.items():
                d[f"q{i}_kernel_{k}"] = v
            imissed += ks.get("rx_dropped", 0) + ks.get("rx_ring_full", 0)
        tot = dict.fromkeys(("tx_copied", "tx_copy_nombuf", "tx_too_long", "tx_kicks",
                             "tx_kick_busy", "tx_kick_errors"), 0)
        for i in range(self.fp.nb_txq):
            txq = self.txq(i)
            if txq != NULL:
                tot["tx_copied"] += txq.copied
                tot["tx_copy_nombuf"] += txq.copy_nombuf
                tot["tx_too_long"] += txq.too_long
                tot["tx_kicks"] += txq.kicks
                tot["tx_kick_busy"] += txq.kick_busy
                tot["tx_kick_errors"] += txq.kick_errors
        d.update(tot)
        d["imissed"] = imissed
        d["xdp_native"] = int(self.att is not None and self.att.mode == "native")
        d["xdp_generic"] = int(self.att is not None and self.att.mode == "generic")
        d["xdp_zero_copy"] = int(bool(self.zc)) if self.att is not None else 0
        d["xdp_prog_id"] = self.att.prog_id if self.att is not None else 0
        d["rx_lost_in_kernel"] = self.lost.get("rx", 0)
        d["tx_lost_in_kernel"] = self.lost.get("tx", 0)
        return d

    def _dev_queue_xstats(self, rx, q):
        cdef xsk_rxq *rxq
        cdef xsk_txq *txq
        if rx:
            rxq = self.rxq(q)
            return {"wakeups": rxq.wakeups, "refill_short": rxq.refill_short}
        txq = self.txq(q)
        return {"copied": txq.copied, "kicks": txq.kicks, "last_errno": txq.last_errno}

    def _dev_info(self):
        att = self.att
        return {
            "iface": self.ifname, "ifindex": self.ifindex, "start_queue": self.start_queue,
            "queue_count": self.qcount,
            "xdp_mode": att.mode if att is not None else None,
            "xdp_mode_asked": self.devargs["mode"],
            "xdp_prog": self.devargs["xdp_prog"] or "built-in",
            "xdp_prog_id": att.prog_id if att is not None else None,
            "zero_copy": bool(self.zc) if att is not None else None,
            "copy_mode": (not self.zc) if att is not None else None,
            "busy_budget": self.devargs["busy_budget"],
            "umem_chunk_size": self.chunk_size, "umem_fill_delta": self.fill_delta,
            "rx_data_off": self.rx_data_off,
            "max_rx_frame": self.chunk_size - XSK_PACKET_HEADROOM if self.chunk_size else None,
        }

    def _dev_link(self):
        if self._ctl is None:
            self._ctl = netdev.control_socket()
        return netdev.link(self._ctl, self.ifname)

    def _dev_set_mtu(self, mtu):
        if self.chunk_size and mtu + PD_ETHER_HDR_LEN > self.chunk_size - XSK_PACKET_HEADROOM:
            raise UsageError(f"{self.name}: MTU {mtu} does not fit an AF_XDP frame of "
                             f"{self.chunk_size - XSK_PACKET_HEADROOM} bytes",
                             f"use MTU <= {self.chunk_size - XSK_PACKET_HEADROOM - PD_ETHER_HDR_LEN}")

    def rx_fill_level(self, int q):
        """mbufs of rx queue q the kernel holds (fill ring + not yet received)."""
        self._check_queue(q, self.fp.nb_rxq, "rx")
        return self.rxq(q).outstanding if self.rxq(q) != NULL else 0

    def ring_state(self, int q):
        """The shared indexes of queue q's rings (debugging; racy while polled):
        {'rx': (producer, consumer), 'fill': ..., 'tx': ..., 'cq': ...}."""
        cdef xsk_rxq *rxq = self.rxq(q) if 0 <= q < self.fp.nb_rxq else NULL
        cdef xsk_txq *txq = self.txq(q) if 0 <= q < self.fp.nb_txq else NULL
        d = {}
        if rxq != NULL and rxq.rx.map != NULL:
            d["rx"] = (rxq.rx.producer[0], rxq.rx.consumer[0])
            d["fill"] = (rxq.fill.producer[0], rxq.fill.consumer[0])
            d["outstanding"] = rxq.outstanding
            d["fill_target"] = rxq.fill_target
        if txq != NULL and txq.tx.map != NULL:
            d["tx"] = (txq.tx.producer[0], txq.tx.consumer[0])
            d["cq"] = (txq.cq.producer[0], txq.cq.consumer[0])
            d["inflight"] = txq.inflight
        return d
