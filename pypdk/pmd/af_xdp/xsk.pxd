# net_af_xdp: AF_XDP sockets over the mbuf pool's own memory (C-level contract).
#
# Kernel structs come from the system's <linux/if_xdp.h> (6.1 UAPI here; the
# running kernel may be newer: every struct we hand it is zeroed first, so
# fields it added, such as xdp_umem_reg.tx_metadata_len, read as 0).
#
# One socket per queue pair. Each ring (rx, tx, fill, completion) is the
# kernel's shared memory: two free-running u32 indexes and a power-of-two
# array. We keep cached copies of both indexes so a burst touches the shared
# index cache lines at most once each (DPDK/libxdp do the same).

from libc.stdint cimport uint16_t, int32_t, uint32_t, uint64_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_qstats

cdef extern from "<sys/socket.h>":
    enum:
        AF_XDP
        SOL_XDP

cdef extern from "<linux/if_xdp.h>":
    enum:
        XDP_SHARED_UMEM
        XDP_COPY
        XDP_ZEROCOPY
        XDP_USE_NEED_WAKEUP
        XDP_UMEM_UNALIGNED_CHUNK_FLAG
        XDP_RING_NEED_WAKEUP
        XDP_MMAP_OFFSETS
        XDP_RX_RING
        XDP_TX_RING
        XDP_UMEM_REG
        XDP_UMEM_FILL_RING
        XDP_UMEM_COMPLETION_RING
        XDP_STATISTICS
        XDP_OPTIONS
        XDP_OPTIONS_ZEROCOPY
        XSK_UNALIGNED_BUF_OFFSET_SHIFT
    uint64_t XSK_UNALIGNED_BUF_ADDR_MASK
    uint64_t XDP_PGOFF_RX_RING
    uint64_t XDP_PGOFF_TX_RING
    uint64_t XDP_UMEM_PGOFF_FILL_RING
    uint64_t XDP_UMEM_PGOFF_COMPLETION_RING

    struct sockaddr_xdp:
        uint16_t sxdp_family
        uint16_t sxdp_flags
        uint32_t sxdp_ifindex
        uint32_t sxdp_queue_id
        uint32_t sxdp_shared_umem_fd
    struct xdp_ring_offset:
        uint64_t producer
        uint64_t consumer
        uint64_t desc
        uint64_t flags
    struct xdp_mmap_offsets:
        xdp_ring_offset rx
        xdp_ring_offset tx
        xdp_ring_offset fr
        xdp_ring_offset cr
    struct xdp_umem_reg:
        uint64_t addr
        uint64_t len
        uint32_t chunk_size
        uint32_t headroom
        uint32_t flags
    struct xdp_statistics:
        uint64_t rx_dropped
        uint64_t rx_invalid_descs
        uint64_t tx_invalid_descs
        uint64_t rx_ring_full
        uint64_t rx_fill_ring_empty_descs
        uint64_t tx_ring_empty_descs
    struct xdp_options:
        uint32_t flags
    struct xdp_desc:
        uint64_t addr
        uint32_t len
        uint32_t options

# XDP_PACKET_HEADROOM (include/uapi/linux/bpf.h): the kernel writes a frame
# this far after the start of the buffer it takes from the fill ring (plus
# the UMEM headroom, which we leave at 0).
cdef enum:
    XSK_PACKET_HEADROOM = 256

ctypedef struct xsk_ring:
    uint32_t cached_prod     # our view of the producer (exact when we produce)
    uint32_t cached_cons     # our view of the consumer (exact when we consume)
    uint32_t mask            # size - 1
    uint32_t size
    uint32_t *producer       # shared with the kernel
    uint32_t *consumer
    uint32_t *flags          # XDP_RING_NEED_WAKEUP
    void *ring               # xdp_desc[size] (rx, tx) or u64[size] (fill, completion)
    void *map                # the mmap, and its length
    size_t map_len

# An rx queue: the socket's rx ring and its own fill ring.
#
# UMEM addresses (offsets from `umem`, the pool's first mbuf): the kernel
# writes a frame at fill address + XSK_PACKET_HEADROOM, and its rx
# descriptor comes back as fill address | (XSK_PACKET_HEADROOM << 48)
# (unaligned-chunk mode packs the data offset in the top 16 bits). We hand
# the kernel, for an mbuf at UMEM offset o, the address o + fill_delta with
# fill_delta = sizeof(pd_mbuf) + rx_data_off - XSK_PACKET_HEADROOM, so the
# frame lands at buf_addr + rx_data_off: with the default 128-byte headroom
# fill_delta is 0 and the chunk is the whole 2304-byte mbuf element. The
# mbuf comes back from a descriptor without a lookup:
#     m = umem + (addr & mask48) - fill_delta
#     m.data_off = (addr >> 48) + off_bias      (off_bias = fill_delta - sizeof(pd_mbuf))
ctypedef struct xsk_rxq:
    pd_eth_qstats stats      # first, as ethdev requires
    xsk_ring rx
    xsk_ring fill
    char *umem
    pd_mempool *mp
    uint64_t fill_delta
    int32_t off_bias
    uint32_t fill_target     # mbufs we keep handed to the kernel (<= rx and fill ring size)
    uint32_t outstanding     # handed to the kernel (fill) and not yet received
    uint16_t port
    uint16_t queue
    int fd                   # -1 while stopped
    int busy_poll            # busy_budget > 0: recvfrom() every burst drives the NAPI poll
    uint64_t wakeups         # recvfrom() kicks
    uint64_t refill_short    # mbufs the pool could not give for the fill ring

# A tx queue: the socket's tx ring and its own completion ring.
#
# An mbuf of the UMEM pool is sent from where it lies: descriptor
#     addr = (m - umem) | ((sizeof(pd_mbuf) + data_off) << 48)
# and its completion carries the same address back, so m = umem + (addr & mask48)
# without a lookup; it is then freed to its pool. Anything else (another
# pool's mbuf, a chain, a clone) is first copied into a fresh UMEM mbuf.
ctypedef struct xsk_txq:
    pd_eth_qstats stats      # first, as ethdev requires
    xsk_ring tx
    xsk_ring cq
    char *umem
    pd_mempool *mp
    uint32_t max_len         # longest frame one descriptor may carry (the chunk size)
    uint32_t inflight        # posted on the tx ring, completion not yet reaped
    int fd                   # -1 while stopped
    int last_errno           # of the last kick that failed for another reason than "busy"
    uint64_t copied          # mbufs copied into the UMEM pool (foreign pool, chain, clone)
    uint64_t copy_nombuf     # bursts cut short: no UMEM mbuf to copy a foreign one into
    uint64_t too_long        # dropped: longer than max_len
    uint64_t kicks           # sendto() calls
    uint64_t kick_busy       # ... that said EAGAIN/EBUSY/ENOBUFS (kernel busy: retried)
    uint64_t kick_errors     # ... that failed otherwise (ENETDOWN, ENXIO...)

cdef uint16_t xsk_rx_burst(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil
cdef uint16_t xsk_tx_burst(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil
# Free the mbufs the kernel is done sending; returns how many.
cdef uint32_t xsk_tx_reap(xsk_txq *q) noexcept nogil
