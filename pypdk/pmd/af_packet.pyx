"""net_af_packet: a port on any Linux network interface, through packet sockets.

The interface (a veth end, a physical NIC, a bridge port) stays the
kernel's; we read every frame it receives and transmit frames on it through
AF_PACKET sockets whose rings are memory-mapped, so a burst costs no system
call on rx and one on tx. Slower than AF_XDP (every frame is copied once
each way and goes through the kernel's packet taps), but it works on every
interface and needs only CAP_NET_RAW.

Design
------
One queue pair = one rx socket + one tx socket, both bound to the interface.
Sockets and rings exist only while the port is started: `start` makes them,
`stop` closes them, so a stopped port receives nothing and holds no kernel
memory (frames that arrive meanwhile are not queued for us).

rx: a TPACKET_V3 ring (Documentation/networking/packet_mmap.rst, "TPACKET_V3").
The ring is `framecnt * framesz` bytes cut into blocks of `blocksz` bytes;
the kernel fills a block with as many frames as fit (each a tpacket3_hdr,
then the frame at tp_mac; tp_next_offset leads to the next) and hands the
whole block over by setting TP_STATUS_USER in its block_status. A block
that is not full is handed over when its retire timer (1 ms) fires, which
bounds the latency at low rates. rx_burst walks the blocks in ring order,
remembering where it stopped inside a block between bursts, and gives a
block back (block_status = TP_STATUS_KERNEL, a release store paired with
our acquire load of TP_USER) once every frame in it is copied. Frames are
copied into mbufs taken from the pool in one bulk get per block chunk; a
frame longer than the pool's data room is chained over several segments.
With the pool empty `rx_nombuf` counts one, the burst ends and the frame
stays in the ring for the next burst. The kernel's drops (ring full:
PACKET_STATISTICS tp_drops) are read when stats are read and appear as
`imissed`.

What rx fixes on the way: the kernel strips a VLAN tag into metadata
(TP_STATUS_VLAN_VALID); we put it back into the frame, so the app sees the
frame as it was on the wire. A frame whose L4 checksum was left for offload
(TP_STATUS_CSUMNOTREADY: a local sender on a veth peer, CHECKSUM_PARTIAL)
gets its TCP or UDP checksum computed in software (`rx_csum_fixed`), so it
arrives valid. A frame the kernel cut short (longer than a block can hold)
is dropped and counted in `ierrors` (`rx_truncated`). The kernel's flow
hash of each frame is in `mbuf.rss_hash` (TP_FT_REQ_FILL_RXHASH) and its
receive time in `mbuf.timestamp` (ns since the epoch).

Several queues: the rx sockets form one PACKET_FANOUT group (mode `hash` by
default: the kernel's flow hash picks the socket, with DEFRAG so the
fragments of one datagram stay together), so each flow arrives on one queue
and each frame on exactly one. The group id comes from the kernel
(PACKET_FANOUT_FLAG_UNIQUEID), so two ports or processes never share a group
by accident. rx sockets set PACKET_IGNORE_OUTGOING: what any socket
(including our own tx) sends on the interface is not received back.

tx: a TPACKET_V2 ring of `framecnt` frames of `framesz` bytes on a socket of
protocol 0 (it receives nothing). tx_burst copies each mbuf (every segment)
to the data area of the next free frame (tp_status TP_STATUS_AVAILABLE, an
acquire load that pairs with the kernel's release), sets tp_len and then
TP_STATUS_SEND_REQUEST (a release store, so the kernel sees the bytes), frees
the mbufs and kicks the kernel with one non-blocking send() per burst. The
burst ends at the first frame the kernel still owns (ring full: the caller
keeps the rest). A frame the interface cannot carry (longer than MTU + 14,
or + 18 with an 802.1Q tag, or than the frame's data area; shorter than an
Ethernet header) is counted in `oerrors` (`tx_too_long`/`tx_too_short`) and
freed. PACKET_QDISC_BYPASS (`qdisc_bypass=1`, the default) hands frames
straight to the driver, skipping the qdisc (and tc, and taps on the sending
side); a driver queue that is full then drops (the device's tx_dropped).
`stop` kicks once more with a blocking send() so queued frames leave first.

Promiscuous mode (on by default, as for every pypdk port) is a
PACKET_MR_PROMISC membership on rx socket 0: the kernel counts it and takes
it back when the socket closes. `start` brings the interface up if it was
down and `stop` puts it back; the MAC and MTU are the interface's.

Keys:
  iface         NAME  the interface (required; must exist in this netns)
  qpairs        N     rx/tx queue pairs, 1..16 (default 1)
  blocksz       BYTES rx block and ring block size: a power of two, a multiple
                      of the page size (default 4096). Bounds the largest
                      frame rx takes whole (about blocksz - 128).
  framesz       BYTES frame slot size, a multiple of 16, >= 128, <= blocksz
                      (default 2048). Bounds the largest frame tx sends
                      (framesz - 32).
  framecnt      N     frames per ring, a multiple of blocksz/framesz
                      (default 512): each ring is framecnt * framesz bytes
  qdisc_bypass  0/1   1: tx skips the qdisc (default 1)
  fanout_mode   MODE  how frames are spread over several rx queues: hash,
                      lb, cpu, rnd, qm (default hash)

Caveats: frames are copied (one memcpy each way). The tx side only sees
`oerrors` for frames we refuse; a frame the kernel or the driver drops after
the kick is counted by the interface (`ip -s link`), not by us. A peer that
sends with TSO/GSO on (a TCP socket across a veth) can hand over one frame
of up to 64 KiB: it is received whole if blocksz allows, cut and counted
otherwise. Timestamps are the kernel's software receive time.
"""
import errno as _errno
import os

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from libc.errno cimport errno, EAGAIN, EINTR, ENOBUFS
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.unistd cimport close as c_close

from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free_bulk, mbuf_mtod,
                                 PktMbufPool)
from pypdk.mempool.mempool cimport pd_mempool
from pd_compiler cimport pd_likely, pd_unlikely
from pypdk.pmd.ethdev cimport EthDev, pd_eth_qstats, PD_MAX_QUEUES
from pypdk.net.cksum cimport ipv4_l4_cksum, ipv6_l4_cksum
from pypdk.net.ether cimport (PD_ETHER_TYPE_IPV4, PD_ETHER_TYPE_IPV6, PD_ETHER_TYPE_VLAN, PD_ETHER_TYPE_QINQ,
                              PD_ETHER_HDR_LEN, PD_VLAN_HDR_LEN)
from pypdk.net.ipv4 cimport pd_ipv4_hdr, PD_IPV4_HDR_LEN
from pypdk.net.ipv6 cimport pd_ipv6_hdr, PD_IPV6_HDR_LEN

from pypdk.pmd import netdev
from pypdk.pmd.devargs import Key, parse_bool, parse_size
from pypdk.errors import UsageError, ResourceError

DRIVER = "net_af_packet"
HELP = "any Linux interface through memory-mapped AF_PACKET sockets (TPACKET_V3 rx)"
FANOUT_MODES = ("hash", "lb", "cpu", "rnd", "qm")
KEYS = (
    Key("iface", str, None, "the interface to attach to (must exist)", required=True),
    Key("qpairs", int, 1, "rx/tx queue pairs, 1..16 (several: PACKET_FANOUT)"),
    Key("blocksz", parse_size, 4096, "ring block size: power of two, multiple of the page size"),
    Key("framesz", parse_size, 2048, "frame slot size: multiple of 16, 128..blocksz"),
    Key("framecnt", int, 512, "frames per ring (multiple of blocksz/framesz)"),
    Key("qdisc_bypass", parse_bool, True, "1: tx skips the qdisc (PACKET_QDISC_BYPASS)"),
    Key("fanout_mode", str, "hash", "how frames spread over rx queues", choices=FANOUT_MODES),
)

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    int c_socket "socket"(int domain, int type, int protocol)
    int c_bind "bind"(int fd, const sockaddr *addr, socklen_t len)
    int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
    int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
    ssize_t c_send "send"(int fd, const void *buf, size_t n, int flags)
    enum:
        AF_PACKET
        SOCK_RAW
        SOCK_CLOEXEC
        SOCK_NONBLOCK
        MSG_DONTWAIT

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t)

cdef extern from "<net/if.h>" nogil:
    enum:
        IFNAMSIZ

cdef extern from "<linux/if_ether.h>":
    enum:
        ETH_P_ALL

cdef extern from "<linux/if_packet.h>" nogil:
    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]
    struct packet_mreq:
        int mr_ifindex
        unsigned short mr_type
        unsigned short mr_alen
        unsigned char mr_address[8]
    struct tpacket_req:
        unsigned int tp_block_size
        unsigned int tp_block_nr
        unsigned int tp_frame_size
        unsigned int tp_frame_nr
    struct tpacket_req3:
        unsigned int tp_block_size
        unsigned int tp_block_nr
        unsigned int tp_frame_size
        unsigned int tp_frame_nr
        unsigned int tp_retire_blk_tov
        unsigned int tp_sizeof_priv
        unsigned int tp_feature_req_word
    struct tpacket_stats_v3:
        unsigned int tp_packets
        unsigned int tp_drops
        unsigned int tp_freeze_q_cnt
    struct tpacket2_hdr:
        uint32_t tp_status
        uint32_t tp_len
        uint32_t tp_snaplen
        uint16_t tp_mac
        uint16_t tp_net
    struct tpacket_hdr_variant1:
        uint32_t tp_rxhash
        uint32_t tp_vlan_tci
        uint16_t tp_vlan_tpid
    struct tpacket3_hdr:
        uint32_t tp_next_offset
        uint32_t tp_sec
        uint32_t tp_nsec
        uint32_t tp_snaplen
        uint32_t tp_len
        uint32_t tp_status
        uint16_t tp_mac
        uint16_t tp_net
        tpacket_hdr_variant1 hv1      # an anonymous union member in the header
    struct tpacket_hdr_v1:
        uint32_t block_status
        uint32_t num_pkts
        uint32_t offset_to_first_pkt
        uint32_t blk_len
    union tpacket_bd_header_u:
        tpacket_hdr_v1 bh1
    struct tpacket_block_desc:
        uint32_t version
        uint32_t offset_to_priv
        tpacket_bd_header_u hdr
    enum:
        SOL_PACKET
        PACKET_ADD_MEMBERSHIP
        PACKET_DROP_MEMBERSHIP
        PACKET_MR_PROMISC
        PACKET_RX_RING
        PACKET_TX_RING
        PACKET_STATISTICS
        PACKET_VERSION
        PACKET_LOSS
        PACKET_FANOUT
        PACKET_QDISC_BYPASS
        PACKET_IGNORE_OUTGOING
        PACKET_FANOUT_HASH
        PACKET_FANOUT_LB
        PACKET_FANOUT_CPU
        PACKET_FANOUT_RND
        PACKET_FANOUT_QM
        PACKET_FANOUT_FLAG_DEFRAG
        PACKET_FANOUT_FLAG_UNIQUEID
        TPACKET_V2
        TPACKET_V3
        TP_STATUS_KERNEL
        TP_STATUS_USER
        TP_STATUS_CSUMNOTREADY
        TP_STATUS_VLAN_VALID
        TP_STATUS_VLAN_TPID_VALID
        TP_STATUS_AVAILABLE
        TP_STATUS_SEND_REQUEST
        TP_STATUS_SENDING
        TP_STATUS_WRONG_FORMAT
        TPACKET_ALIGNMENT

cdef extern from "<linux/if_packet.h>":
    # Not in every libc's copy of the header: the feature word bit (kernel
    # net/packet/af_packet.c, "TP_FT_REQ_FILL_RXHASH").
    """
    #ifndef TP_FT_REQ_FILL_RXHASH
    #define TP_FT_REQ_FILL_RXHASH 0x1
    #endif
    /* net_af_packet sizes */
    #define AFP_MAX_SEGS    64   /* segments one rx frame may use (stack array) */
    #define AFP_TX_DATA_OFF 32   /* TPACKET_ALIGN(sizeof(struct tpacket2_hdr)): where tx
                                    data starts without PACKET_TX_HAS_OFF */
    #define AFP_RETIRE_MS   1    /* rx block retire timer */
    """
    enum:
        TP_FT_REQ_FILL_RXHASH
        AFP_MAX_SEGS
        AFP_TX_DATA_OFF
        AFP_RETIRE_MS

from pd_atomic cimport pd_load_acquire_u32, pd_store_release_u32

from pd_mbuf cimport PD_MBUF_F_RX_RSS_HASH

_FANOUT = {"hash": PACKET_FANOUT_HASH, "lb": PACKET_FANOUT_LB, "cpu": PACKET_FANOUT_CPU,
           "rnd": PACKET_FANOUT_RND, "qm": PACKET_FANOUT_QM}


ctypedef struct afp_rxq:
    pd_eth_qstats stats
    pd_mempool *mp
    char *ring              # the mmap'ed V3 ring (NULL while stopped)
    tpacket3_hdr *next      # next frame in the current block (valid while left > 0)
    uint32_t left           # frames not yet taken from the current block (0: none held)
    uint32_t block          # current block index
    uint32_t block_nr
    uint32_t block_size
    uint32_t room           # data room of one mbuf segment
    uint16_t port
    uint16_t queue
    int fd
    int vlan_insert         # put a stripped VLAN tag back into the frame
    uint64_t truncated      # frames the kernel cut (also in errors)
    uint64_t too_many_segs  # frames needing > AFP_MAX_SEGS segments (also in errors)
    uint64_t csum_fixed     # CHECKSUM_PARTIAL frames we completed
    uint64_t vlan_inserted
    uint64_t blocks         # blocks released back to the kernel
    uint64_t freeze_q       # kernel: times the ring was full (tp_freeze_q_cnt)

ctypedef struct afp_txq:
    pd_eth_qstats stats
    char *ring              # the mmap'ed V2 ring (NULL while stopped)
    uint32_t head           # next frame to fill
    uint32_t frame_nr
    uint32_t frame_size
    uint32_t frames_per_block
    uint32_t block_size
    uint32_t max_len        # longest untagged frame the interface takes
    int fd
    int kick_pending        # the last kick could not queue everything: kick again
    int last_errno
    uint64_t too_long       # (also in errors)
    uint64_t too_short      # (also in errors)
    uint64_t ring_full      # bursts cut short by a full ring
    uint64_t kicks
    uint64_t kick_errors


# ---- checksums (rx fix-up of CHECKSUM_PARTIAL frames) ---------------------------

cdef int csum_complete(uint8_t *f, uint32_t len) noexcept nogil:
    """Compute the TCP/UDP checksum of an Ethernet frame in place; 1 if done.

    For frames the sender left to checksum offload: the field holds only a
    partial sum, so it is recomputed from scratch (pseudo-header + segment).
    Anything that is not plain IPv4/IPv6 + TCP/UDP is left alone.
    """
    cdef uint32_t off = PD_ETHER_HDR_LEN, l4, l4len, ihl, tot, coff
    cdef uint16_t et = (<uint16_t>f[12] << 8) | f[13]
    cdef bint v4
    cdef uint8_t proto
    cdef uint16_t c
    while et == PD_ETHER_TYPE_VLAN or et == PD_ETHER_TYPE_QINQ:
        if off + PD_VLAN_HDR_LEN > len:
            return 0
        et = (<uint16_t>f[off + 2] << 8) | f[off + 3]
        off += PD_VLAN_HDR_LEN
    if et == PD_ETHER_TYPE_IPV4:
        if off + PD_IPV4_HDR_LEN > len:
            return 0
        ihl = (f[off] & 0xf) * 4
        tot = (<uint32_t>f[off + 2] << 8) | f[off + 3]
        if ihl < PD_IPV4_HDR_LEN or tot < ihl or off + tot > len or (f[off + 6] & 0x3f) or f[off + 7]:
            return 0                    # bad header or a fragment
        proto = f[off + 9]
        l4 = off + ihl
        l4len = tot - ihl
        v4 = True
    elif et == PD_ETHER_TYPE_IPV6:
        if off + PD_IPV6_HDR_LEN > len:
            return 0
        proto = f[off + 6]
        l4 = off + PD_IPV6_HDR_LEN
        l4len = (<uint32_t>f[off + 4] << 8) | f[off + 5]
        if l4 + l4len > len:
            return 0
        v4 = False
    else:
        return 0
    if proto == 17:
        coff = 6
        if l4len < 8:
            return 0
    elif proto == 6:
        coff = 16
        if l4len < 20:
            return 0
    else:
        return 0
    # pypdk.net.cksum ignores the field's partial sum and maps a UDP 0 to 0xffff.
    if v4:
        c = ipv4_l4_cksum(<const pd_ipv4_hdr *>(f + off), f + l4, l4len, proto)
    else:
        c = ipv6_l4_cksum(<const pd_ipv6_hdr *>(f + off), f + l4, l4len, proto)
    memcpy(f + l4 + coff, &c, 2)        # as stored: network byte order already
    return 1


# ---- rx ------------------------------------------------------------------------

cdef inline tpacket_block_desc *rx_block(afp_rxq *q, uint32_t b) noexcept nogil:
    return <tpacket_block_desc *>(q.ring + <size_t>b * q.block_size)

cdef inline void rx_release_block(afp_rxq *q) noexcept nogil:
    # Release: the kernel may overwrite the block once it reads KERNEL, so
    # every copy out of it happens before (pairs with the kernel's acquire).
    pd_store_release_u32(&rx_block(q, q.block).hdr.bh1.block_status, TP_STATUS_KERNEL)
    q.left = 0
    q.block += 1
    if q.block == q.block_nr:
        q.block = 0
    q.blocks += 1

cdef int rx_copy_chain(afp_rxq *q, pd_mbuf *m, const char *src, uint32_t len,
                       const char *tag) noexcept nogil:
    """Copy a frame too long for one segment into m plus fresh segments.

    `tag` (4 bytes, or NULL) goes in after the two MAC addresses.
    0 done, -1 pool empty (nothing changed), 1 too many segments.
    """
    cdef pd_mbuf *segs[AFP_MAX_SEGS]
    cdef uint32_t total = len + (PD_VLAN_HDR_LEN if tag != NULL else 0)
    cdef uint32_t nseg = (total + q.room - 1) // q.room
    cdef uint32_t s, piece, take, room
    cdef const char *srcs[3]
    cdef uint32_t lens[3]
    cdef uint32_t npieces, p = 0
    cdef char *dst
    cdef pd_mbuf *cur
    if nseg > AFP_MAX_SEGS:
        return 1
    if pktmbuf_alloc_bulk(q.mp, segs + 1, nseg - 1) != 0:
        return -1
    segs[0] = m
    if tag != NULL:
        srcs[0] = src
        lens[0] = 12
        srcs[1] = tag
        lens[1] = PD_VLAN_HDR_LEN
        srcs[2] = src + 12
        lens[2] = len - 12
        npieces = 3
    else:
        srcs[0] = src
        lens[0] = len
        npieces = 1
    for s in range(nseg):
        cur = segs[s]
        dst = mbuf_mtod(cur)
        room = q.room
        cur.data_len = 0
        while room and p < npieces:
            take = lens[p] if lens[p] < room else room
            memcpy(dst, srcs[p], take)
            dst += take
            room -= take
            cur.data_len += <uint16_t>take
            srcs[p] += take
            lens[p] -= take
            if lens[p] == 0:
                p += 1
        if s > 0:
            segs[s - 1].next = cur
    m.nb_segs = <uint16_t>nseg
    m.pkt_len = total
    return 0

cdef uint16_t afp_rx(void *qp, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef afp_rxq *q = <afp_rxq *>qp
    cdef tpacket_block_desc *bd
    cdef tpacket3_hdr *h
    cdef uint16_t nb = 0, take, o, end
    cdef uint32_t len, st, tci, total
    cdef uint64_t nbytes = 0
    cdef char *src
    cdef char *dst
    cdef char tag[4]
    cdef pd_mbuf *m
    cdef int rc
    while nb < n:
        if q.left == 0:
            bd = rx_block(q, q.block)
            # Acquire: pairs with the kernel's release of the block to us.
            if (pd_load_acquire_u32(&bd.hdr.bh1.block_status) & TP_STATUS_USER) == 0:
                break
            q.left = bd.hdr.bh1.num_pkts
            q.next = <tpacket3_hdr *>(<char *>bd + bd.hdr.bh1.offset_to_first_pkt)
            if pd_unlikely(q.left == 0):
                rx_release_block(q)
                continue
        take = <uint16_t>(n - nb) if <uint32_t>(n - nb) < q.left else <uint16_t>q.left
        # The chunk's mbufs go straight into pkts[nb:nb+take]; a dropped
        # frame leaves its mbuf for the next one, leftovers are freed below.
        if pd_unlikely(pktmbuf_alloc_bulk(q.mp, pkts + nb, take) != 0):
            q.stats.nombuf += 1
            break
        o = nb
        end = nb + take
        rc = 0
        while take:
            h = q.next
            m = pkts[o]
            len = h.tp_snaplen
            st = h.tp_status
            src = <char *>h + h.tp_mac
            if pd_unlikely(len < h.tp_len or len < PD_ETHER_HDR_LEN):
                q.truncated += 1
                q.stats.errors += 1
            else:
                if pd_unlikely(st & TP_STATUS_CSUMNOTREADY):
                    q.csum_fixed += csum_complete(<uint8_t *>src, len)
                if pd_likely(not (st & TP_STATUS_VLAN_VALID) or not q.vlan_insert):
                    total = len
                    if pd_likely(len <= q.room):
                        memcpy(mbuf_mtod(m), src, len)
                        m.data_len = <uint16_t>len
                        m.pkt_len = len
                    else:
                        rc = rx_copy_chain(q, m, src, len, NULL)
                else:
                    tci = h.hv1.tp_vlan_tci
                    tag[0] = <char>((h.hv1.tp_vlan_tpid >> 8) if st & TP_STATUS_VLAN_TPID_VALID
                                    else 0x81)
                    tag[1] = <char>((h.hv1.tp_vlan_tpid & 0xff) if st & TP_STATUS_VLAN_TPID_VALID
                                    else 0x00)
                    tag[2] = <char>((tci >> 8) & 0xff)
                    tag[3] = <char>(tci & 0xff)
                    total = len + PD_VLAN_HDR_LEN
                    if pd_likely(total <= q.room):
                        dst = mbuf_mtod(m)
                        memcpy(dst, src, 12)
                        memcpy(dst + 12, tag, PD_VLAN_HDR_LEN)
                        memcpy(dst + 16, src + 12, len - 12)
                        m.data_len = <uint16_t>total
                        m.pkt_len = total
                    else:
                        rc = rx_copy_chain(q, m, src, len, tag)
                    if rc == 0:
                        q.vlan_inserted += 1
                if pd_unlikely(rc < 0):
                    q.stats.nombuf += 1     # the frame stays in the ring
                    break
                if pd_unlikely(rc > 0):
                    q.too_many_segs += 1
                    q.stats.errors += 1
                    rc = 0
                else:
                    m.port = q.port
                    m.queue = q.queue
                    m.timestamp = <uint64_t>h.tp_sec * 1000000000ULL + h.tp_nsec
                    m.rss_hash = h.hv1.tp_rxhash
                    m.ol_flags = PD_MBUF_F_RX_RSS_HASH
                    nbytes += total
                    o += 1
            take -= 1
            q.left -= 1
            q.next = <tpacket3_hdr *>(<char *>h + h.tp_next_offset)
        if o < end:
            pktmbuf_free_bulk(pkts + o, end - o)
        q.stats.packets += o - nb
        nb = o
        if q.left == 0:
            rx_release_block(q)
        if rc < 0:
            break
    q.stats.bytes += nbytes
    return nb


# ---- tx ------------------------------------------------------------------------

cdef inline tpacket2_hdr *tx_frame(afp_txq *q, uint32_t i) noexcept nogil:
    return <tpacket2_hdr *>(q.ring + <size_t>(i // q.frames_per_block) * q.block_size
                            + <size_t>(i % q.frames_per_block) * q.frame_size)

cdef inline void tx_kick(afp_txq *q, int flags) noexcept nogil:
    q.kicks += 1
    if c_send(q.fd, NULL, 0, flags) < 0:
        if errno == EAGAIN or errno == ENOBUFS or errno == EINTR:
            q.kick_pending = 1          # frames left in SEND_REQUEST: next burst kicks
            return
        q.kick_errors += 1
        q.last_errno = errno
    q.kick_pending = 0

cdef uint16_t afp_tx(void *qp, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef afp_txq *q = <afp_txq *>qp
    cdef tpacket2_hdr *h
    cdef uint16_t i
    cdef uint32_t len, st, queued = 0, take
    cdef uint64_t nbytes = 0
    cdef pd_mbuf *seg
    cdef char *dst
    cdef const uint8_t *d
    for i in range(n):
        seg = pkts[i]
        len = seg.pkt_len
        if pd_unlikely(len > q.max_len):
            # 802.1Q adds 4 bytes to what the MTU allows (the kernel's rule).
            d = <const uint8_t *>mbuf_mtod(seg)
            if (len > q.max_len + PD_VLAN_HDR_LEN or len > q.frame_size - AFP_TX_DATA_OFF
                    or seg.data_len < 14 or d[12] != 0x81 or d[13] != 0x00):
                q.too_long += 1
                q.stats.errors += 1
                continue
        elif pd_unlikely(len < PD_ETHER_HDR_LEN):
            q.too_short += 1
            q.stats.errors += 1
            continue
        h = tx_frame(q, q.head)
        # Acquire: pairs with the kernel's release when it is done with the frame.
        st = pd_load_acquire_u32(&h.tp_status)
        if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING):
            q.ring_full += 1
            n = i                       # ring full: the caller keeps pkts[i:]
            break
        dst = <char *>h + AFP_TX_DATA_OFF
        while seg != NULL:
            take = seg.data_len
            memcpy(dst, mbuf_mtod(seg), take)
            dst += take
            seg = seg.next
        h.tp_len = len
        # Release: the frame's bytes and length are visible before the request.
        pd_store_release_u32(&h.tp_status, TP_STATUS_SEND_REQUEST)
        q.head += 1
        if q.head == q.frame_nr:
            q.head = 0
        queued += 1
        nbytes += len
    pktmbuf_free_bulk(pkts, n)
    if queued or q.kick_pending:
        tx_kick(q, MSG_DONTWAIT)
    q.stats.packets += queued
    q.stats.bytes += nbytes
    return n


# ---- control path --------------------------------------------------------------

def _oserror(what, int err):
    return f"{what} ({os.strerror(err)})"


cdef int _sockopt_int(int fd, int name, int value) noexcept:
    return setsockopt(fd, SOL_PACKET, name, &value, sizeof(int))


cdef class Port(EthDev):
    DRIVER = DRIVER

    cdef readonly str iface
    cdef readonly int ifindex
    cdef readonly int fanout_id
    cdef int nq
    cdef int was_up
    cdef int brought_up
    cdef int promisc_on     # the PACKET_MR_PROMISC membership is held
    cdef uint32_t rx_ring_bytes
    cdef uint32_t tx_ring_bytes
    cdef object _ctl        # the netdev control socket

    def __cinit__(self):
        self.fanout_id = -1
        self.drv_rx = afp_rx
        self.drv_tx = afp_tx

    cdef inline afp_rxq *rxq(self, int q):
        return <afp_rxq *>self.fp.rxq[q]

    cdef inline afp_txq *txq(self, int q):
        return <afp_txq *>self.fp.txq[q]

    @property
    def max_rx_queues(self):
        return self.nq

    @property
    def max_tx_queues(self):
        return self.nq

    def _dev_probe(self, dict args):
        name = self.name
        iface = args["iface"]
        if not iface or len(iface.encode()) >= IFNAMSIZ or "/" in iface:
            raise UsageError(f"{name}: iface={iface!r} is not an interface name",
                             f"give 1..{IFNAMSIZ - 1} characters, e.g. iface=eth0")
        if not 1 <= args["qpairs"] <= 16:
            raise UsageError(f"{name}: qpairs={args['qpairs']} is out of range", "use qpairs=1..16")
        page = os.sysconf("SC_PAGE_SIZE")
        bs, fs, fc = args["blocksz"], args["framesz"], args["framecnt"]
        if bs < page or bs & (bs - 1) or bs > (1 << 30):
            raise UsageError(f"{name}: blocksz={bs} is not a power of two >= the page size "
                             f"({page})", f"use blocksz={page}, {page * 4}, 65536 ...")
        if fs < 128 or fs % TPACKET_ALIGNMENT or fs > bs:
            raise UsageError(f"{name}: framesz={fs} must be a multiple of {TPACKET_ALIGNMENT} "
                             f"between 128 and blocksz ({bs})", "use framesz=2048")
        fpb = bs // fs
        if fc < fpb or fc % fpb:
            raise UsageError(f"{name}: framecnt={fc} is not a multiple of the {fpb} frames "
                             f"a {bs}-byte block holds",
                             f"use framecnt={max(fpb, fc // fpb * fpb)}")
        if fc // fpb * bs > (1 << 31):
            raise UsageError(f"{name}: a ring of {fc // fpb * bs >> 20} MiB is too big",
                             "use a smaller framecnt")
        self.iface = iface
        self.nq = args["qpairs"]
        self.rx_ring_bytes = fc // fpb * bs
        self.tx_ring_bytes = fc // fpb * bs
        # Permission first: without CAP_NET_RAW nothing else matters.
        cdef int fd = c_socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)
        if fd < 0:
            err = errno
            if err in (_errno.EPERM, _errno.EACCES):
                raise ResourceError(f"{name}: no permission to open a packet socket "
                                    "(needs CAP_NET_RAW)",
                                    "run as root, or: setcap cap_net_raw,cap_net_admin+ep "
                                    "$(readlink -f $(which python3))")
            if err == _errno.EAFNOSUPPORT:
                raise ResourceError(f"{name}: the kernel has no AF_PACKET support",
                                    "load it: modprobe af_packet")
            raise ResourceError(_oserror(f"{name}: cannot open a packet socket", err),
                                "check the kernel and limits (ulimit -n)")
        c_close(fd)
        self.ifindex = netdev.ifindex(iface)
        if self.ifindex == 0:
            raise ResourceError(f"{name}: iface={iface}: no such interface in this network "
                                "namespace",
                                "create it (e.g. ip link add veth0 type veth peer name veth1) "
                                "or pick one from 'ip -br link'")
        self._ctl = netdev.control_socket()
        hatype, mac = netdev.hwaddr(self._ctl, iface)
        if hatype not in (netdev.ARPHRD_ETHER, netdev.ARPHRD_LOOPBACK):   # Ethernet framing
            raise UsageError(f"{name}: iface={iface} is not an Ethernet interface "
                             f"(hardware type {hatype})",
                             "use an Ethernet-like interface (veth, tap, NIC, bridge)")
        self._mac = mac
        self._mtu = netdev.get_mtu(self._ctl, iface)
        self.was_up = netdev.is_up(self._ctl, iface)
        self.socket_id = netdev.numa_node(iface)

    # -- queues ----------------------------------------------------------------------
    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        cdef afp_rxq *rxq
        if pool.data_room < 64:
            raise UsageError(f"{self.name}: pool {pool.name!r} has a data room of "
                             f"{pool.data_room} bytes", "use a pool with data_room >= 64")
        if self.rxq(q) == NULL:
            rxq = <afp_rxq *>self.queue_alloc(True, q, sizeof(afp_rxq))
            rxq.fd = -1
        rxq = self.rxq(q)
        rxq.mp = pool.mp
        rxq.room = pool.data_room
        rxq.port = self.port_id
        rxq.queue = q
        rxq.vlan_insert = 1

    def _dev_tx_queue_setup(self, q, nb_desc):
        cdef afp_txq *txq
        if self.txq(q) == NULL:
            txq = <afp_txq *>self.queue_alloc(False, q, sizeof(afp_txq))
            txq.fd = -1

    # -- sockets and rings (start/stop) ------------------------------------------------
    cdef int _packet_socket(self, int proto) except -1:
        cdef int fd = c_socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(proto))
        if fd < 0:
            raise ResourceError(_oserror(f"{self.name}: cannot open a packet socket", errno),
                                "run as root (CAP_NET_RAW) and check ulimit -n")
        return fd

    cdef int _bind(self, int fd, int proto) except -1:
        cdef sockaddr_ll sll
        memset(&sll, 0, sizeof(sll))
        sll.sll_family = AF_PACKET
        sll.sll_protocol = htons(proto)
        sll.sll_ifindex = self.ifindex
        if c_bind(fd, <sockaddr *>&sll, sizeof(sll)) != 0:
            err = errno
            if err == _errno.ENODEV:
                raise ResourceError(f"{self.name}: iface={self.iface} went away",
                                    "recreate the interface and restart the port")
            raise ResourceError(_oserror(f"{self.name}: bind to {self.iface} failed", err),
                                "check the interface")
        return 0

    cdef char *_map(self, int fd, size_t size) except NULL:
        cdef void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            raise ResourceError(_oserror(f"{self.name}: cannot map a {size >> 10} KiB ring",
                                         errno), "use a smaller framecnt or blocksz")
        return <char *>p

    def _ring_error(self, what, int err):
        if err == _errno.ENOMEM:
            return ResourceError(f"{self.name}: the kernel cannot allocate a {what} ring of "
                                 f"{self.rx_ring_bytes >> 10} KiB (ENOMEM)",
                                 "use a smaller framecnt, or blocksz")
        return UsageError(_oserror(f"{self.name}: the kernel refused the {what} ring geometry "
                                   f"blocksz={self.devargs['blocksz']} framesz="
                                   f"{self.devargs['framesz']} framecnt={self.devargs['framecnt']}",
                                   err), "use the defaults (4096, 2048, 512) or powers of two")

    cdef _open_rx(self, afp_rxq *rxq):
        cdef tpacket_req3 req
        cdef int fd
        bs, fs, fc = self.devargs["blocksz"], self.devargs["framesz"], self.devargs["framecnt"]
        # Protocol 0: nothing is queued for this socket until bind() below,
        # after the ring exists.
        fd = self._packet_socket(0)
        rxq.fd = fd
        if _sockopt_int(fd, PACKET_VERSION, TPACKET_V3) != 0:
            raise ResourceError(_oserror(f"{self.name}: TPACKET_V3 is not supported", errno),
                                "use a kernel >= 3.2")
        if _sockopt_int(fd, PACKET_IGNORE_OUTGOING, 1) != 0:
            raise ResourceError(_oserror(f"{self.name}: PACKET_IGNORE_OUTGOING is not "
                                         "supported", errno), "use a kernel >= 4.20")
        memset(&req, 0, sizeof(req))
        req.tp_block_size = bs
        req.tp_block_nr = fc // (bs // fs)
        req.tp_frame_size = fs
        req.tp_frame_nr = fc
        req.tp_retire_blk_tov = AFP_RETIRE_MS
        req.tp_feature_req_word = TP_FT_REQ_FILL_RXHASH
        if setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0:
            raise self._ring_error("rx", errno)
        rxq.ring = self._map(fd, <size_t>req.tp_block_nr * bs)
        rxq.block_size = bs
        rxq.block_nr = req.tp_block_nr
        rxq.block = 0
        rxq.left = 0
        self._bind(fd, ETH_P_ALL)

    cdef _open_tx(self, afp_txq *txq):
        cdef tpacket_req req
        cdef int fd
        bs, fs, fc = self.devargs["blocksz"], self.devargs["framesz"], self.devargs["framecnt"]
        fd = self._packet_socket(0)     # protocol 0: a tx-only socket receives nothing
        txq.fd = fd
        if _sockopt_int(fd, PACKET_VERSION, TPACKET_V2) != 0:
            raise ResourceError(_oserror(f"{self.name}: TPACKET_V2 is not supported", errno),
                                "use a kernel >= 2.6.31")
        # A frame the kernel still finds malformed is skipped, not a stall.
        _sockopt_int(fd, PACKET_LOSS, 1)
        if self.devargs["qdisc_bypass"] and _sockopt_int(fd, PACKET_QDISC_BYPASS, 1) != 0:
            raise ResourceError(_oserror(f"{self.name}: PACKET_QDISC_BYPASS is not supported",
                                         errno), "use qdisc_bypass=0 or a kernel >= 3.14")
        memset(&req, 0, sizeof(req))
        req.tp_block_size = bs
        req.tp_block_nr = fc // (bs // fs)
        req.tp_frame_size = fs
        req.tp_frame_nr = fc
        if setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)) != 0:
            raise self._ring_error("tx", errno)
        txq.ring = self._map(fd, <size_t>req.tp_block_nr * bs)
        txq.block_size = bs
        txq.frame_size = fs
        txq.frames_per_block = bs // fs
        txq.frame_nr = fc
        txq.head = 0
        txq.kick_pending = 0
        self._bind(fd, 0)
        self._set_tx_limit(txq, self._mtu)

    cdef _set_tx_limit(self, afp_txq *txq, int mtu):
        cdef uint32_t cap = self.devargs["framesz"] - AFP_TX_DATA_OFF
        cdef uint32_t lim = <uint32_t>mtu + PD_ETHER_HDR_LEN
        txq.max_len = lim if lim < cap else cap

    cdef _join_fanout(self, int nb):
        cdef uint32_t arg, got
        cdef socklen_t sl = sizeof(got)
        cdef int q
        mode = _FANOUT[self.devargs["fanout_mode"]]
        flags = PACKET_FANOUT_FLAG_DEFRAG if mode == PACKET_FANOUT_HASH else 0
        # The first socket asks the kernel for an unused group id; the others
        # join that id with the same mode and flags.
        arg = ((mode | flags | PACKET_FANOUT_FLAG_UNIQUEID) << 16)
        if setsockopt(self.rxq(0).fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof(arg)) != 0:
            raise ResourceError(_oserror(f"{self.name}: PACKET_FANOUT failed", errno),
                                "use qpairs=1, or a kernel >= 4.4")
        if getsockopt(self.rxq(0).fd, SOL_PACKET, PACKET_FANOUT, &got, &sl) != 0:
            raise ResourceError(_oserror(f"{self.name}: reading the fanout group failed", errno),
                                "use qpairs=1")
        self.fanout_id = got & 0xffff
        arg = ((mode | flags) << 16) | <uint32_t>self.fanout_id
        for q in range(1, nb):
            if setsockopt(self.rxq(q).fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof(arg)) != 0:
                raise ResourceError(_oserror(f"{self.name}: joining fanout group "
                                             f"{self.fanout_id} failed", errno), "use qpairs=1")

    cdef int _promisc_membership(self, bint on) except -1:
        cdef packet_mreq mr
        if self.rxq(0) == NULL or self.rxq(0).fd < 0 or bool(self.promisc_on) == bool(on):
            return 0
        memset(&mr, 0, sizeof(mr))
        mr.mr_ifindex = self.ifindex
        mr.mr_type = PACKET_MR_PROMISC
        if setsockopt(self.rxq(0).fd, SOL_PACKET,
                      PACKET_ADD_MEMBERSHIP if on else PACKET_DROP_MEMBERSHIP,
                      &mr, sizeof(mr)) != 0:
            raise ResourceError(_oserror(f"{self.name}: promiscuous mode on {self.iface} "
                                         "failed", errno), "run as root (CAP_NET_RAW)")
        self.promisc_on = on
        return 0

    def _dev_start(self):
        cdef int q
        nb_rx, nb_tx = self.fp.nb_rxq, self.fp.nb_txq
        try:
            if not self.was_up:
                netdev.set_up(self._ctl, self.iface, True)
                self.brought_up = 1
            self._mtu = netdev.get_mtu(self._ctl, self.iface)
            for q in range(nb_tx):
                self._open_tx(self.txq(q))
            for q in range(nb_rx):
                self._open_rx(self.rxq(q))
            if nb_rx > 1:
                self._join_fanout(nb_rx)
            if self._promisc:
                self._promisc_membership(True)
        except BaseException:
            self._teardown()
            raise

    cdef _drain_tx(self, afp_txq *txq):
        # A blocking kick waits until every queued frame is handed to the driver.
        if txq.ring != NULL and txq.fd >= 0:
            with nogil:
                tx_kick(txq, 0)

    def _teardown(self):
        cdef int q
        cdef afp_rxq *rxq
        cdef afp_txq *txq
        self._refresh_kernel_stats()
        for q in range(PD_MAX_QUEUES):
            rxq = self.rxq(q)
            if rxq != NULL:
                if rxq.ring != NULL:
                    munmap(rxq.ring, <size_t>rxq.block_nr * rxq.block_size)
                    rxq.ring = NULL
                if rxq.fd >= 0:
                    c_close(rxq.fd)
                    rxq.fd = -1
                rxq.left = 0
            txq = self.txq(q)
            if txq != NULL:
                if txq.ring != NULL:
                    munmap(txq.ring, <size_t>txq.frame_nr // txq.frames_per_block * txq.block_size)
                    txq.ring = NULL
                if txq.fd >= 0:
                    c_close(txq.fd)
                    txq.fd = -1
        self.promisc_on = 0
        self.fanout_id = -1
        if self.brought_up:
            self.brought_up = 0
            try:
                netdev.set_up(self._ctl, self.iface, False)
            except OSError:
                pass            # the interface went away: nothing to restore

    def _dev_stop(self):
        cdef int q
        for q in range(PD_MAX_QUEUES):
            if self.txq(q) != NULL:
                self._drain_tx(self.txq(q))
        self._teardown()

    def _dev_close(self):
        self._teardown()            # idempotent: only what is still open
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None

    # -- counters --------------------------------------------------------------------
    def _refresh_kernel_stats(self):
        """Fold the kernel's rx drop counters (read-and-reset) into imissed."""
        cdef tpacket_stats_v3 st
        cdef socklen_t sl
        cdef int q
        cdef afp_rxq *rxq
        for q in range(PD_MAX_QUEUES):
            rxq = self.rxq(q)
            if rxq != NULL and rxq.fd >= 0:
                sl = sizeof(st)
                if getsockopt(rxq.fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0:
                    # `missed` is written here only (main lcore), never by rx.
                    rxq.stats.missed += st.tp_drops
                    rxq.freeze_q += st.tp_freeze_q_cnt

    def _dev_stats_update(self):
        self._refresh_kernel_stats()

    def _dev_queue_xstats(self, rx, q):
        cdef afp_rxq *rxq
        cdef afp_txq *txq
        if rx:
            rxq = self.rxq(q)
            return {"truncated": rxq.truncated, "too_many_segs": rxq.too_many_segs,
                    "csum_fixed": rxq.csum_fixed, "vlan_inserted": rxq.vlan_inserted,
                    "blocks": rxq.blocks, "freeze_q": rxq.freeze_q}
        txq = self.txq(q)
        return {"too_long": txq.too_long, "too_short": txq.too_short,
                "ring_full": txq.ring_full, "kicks": txq.kicks,
                "kick_errors": txq.kick_errors, "errno": txq.last_errno}

    # -- MTU, promiscuous, link, info ----------------------------------------------
    def _dev_set_mtu(self, mtu):
        cdef int q
        try:
            netdev.set_mtu(self._ctl, self.iface, mtu)
        except OSError as e:
            raise UsageError(f"{self.name}: the kernel refused MTU {mtu} on {self.iface} "
                             f"({e.strerror})", "check the interface's MTU range "
                             "(ip -d link show)") from None
        for q in range(PD_MAX_QUEUES):
            if self.txq(q) != NULL and self.txq(q).ring != NULL:
                self._set_tx_limit(self.txq(q), mtu)

    def _dev_set_promiscuous(self, on):
        if self.state == "started":
            self._promisc_membership(on)

    def _dev_link(self):
        if self._ctl is None:
            return {"up": False, "speed_mbps": 0, "duplex": "unknown", "operstate": "closed",
                    "admin_up": False}
        d = netdev.link(self._ctl, self.iface)
        if netdev.sysfs(self.iface, "duplex") is None:
            d["duplex"] = "unknown"
        return d

    def _dev_info(self):
        bs = self.devargs["blocksz"]
        return {"iface": self.iface, "ifindex": self.ifindex, "qpairs": self.nq,
                "blocksz": bs, "framesz": self.devargs["framesz"],
                "framecnt": self.devargs["framecnt"],
                "rx_ring_bytes": self.rx_ring_bytes, "tx_ring_bytes": self.tx_ring_bytes,
                "rx_max_frame": bs - 128,
                "tx_max_frame": self.devargs["framesz"] - AFP_TX_DATA_OFF,
                "qdisc_bypass": bool(self.devargs["qdisc_bypass"]),
                "fanout_mode": self.devargs["fanout_mode"], "fanout_id": self.fanout_id,
                "promisc_held": bool(self.promisc_on)}
