# The split virtqueue as the backend (device side) walks it, nogil.
#
# Layout (virtio 1.x, 2.7): a descriptor table of `size` 16-byte entries
# {addr u64 (guest-physical), len u32, flags u16, next u16}; the avail ring
# {flags u16, idx u16, ring[size] u16, used_event u16} the driver writes; the
# used ring {flags u16, idx u16, ring[size] {id u32, len u32}, avail_event
# u16} we write. Everything in guest memory is the guest's to change at any
# time: each field is read once into a local (vq_read16/32/64, volatile
# loads the compiler can neither repeat nor tear), and nothing is trusted
# that was read before.
#
# One vhost_vq per vring; it is also the port queue (it starts with the
# pd_eth_qstats ethdev sums). Port rx queue q is vring 2q+1 (the guest's
# transmitq), port tx queue q is vring 2q (the guest's receiveq).
#
# The control thread and the polling lcore share a vq through `lock`: the
# lcore takes it with one try per burst (a burst it cannot take returns 0),
# the control thread spins for it (a burst is microseconds) before it
# changes ring addresses, the memory table or readiness. So the datapath
# never sees a half-changed ring, and memory is unmapped only while no burst
# runs.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_qstats
from pypdk.pmd.vhost.mem cimport vhost_mem

cdef extern from *:
    """
    #include <stdint.h>
    /* One load or store of guest memory, never repeated or split by the compiler. */
    static inline uint16_t vq_read16(const uint8_t *p) { return *(const volatile uint16_t *)p; }
    static inline uint32_t vq_read32(const uint8_t *p) { return *(const volatile uint32_t *)p; }
    static inline uint64_t vq_read64(const uint8_t *p) { return *(const volatile uint64_t *)p; }
    static inline void vq_write16(uint8_t *p, uint16_t v) { *(volatile uint16_t *)p = v; }
    static inline void vq_write32(uint8_t *p, uint32_t v) { *(volatile uint32_t *)p = v; }

    #define VQ_DESC_F_NEXT      1   /* virtio 2.7.5 */
    #define VQ_DESC_F_WRITE     2
    #define VQ_DESC_F_INDIRECT  4
    #define VQ_AVAIL_F_NO_INTERRUPT 1   /* 2.7.7 */
    #define VQ_USED_F_NO_NOTIFY 1       /* 2.7.8 */
    #define VQ_MAX_SIZE 32768           /* 2.7: Queue Size, a power of two up to 32768 */
    #define VQ_MAX_FRAME 65536          /* largest frame taken from a guest (no GSO offered) */
    #define VQ_NET_HDR_F_NEEDS_CSUM 1   /* 5.1.6 */
    #define VQ_NET_HDR_MAX 12
    """
cdef extern from * nogil:
    uint16_t vq_read16(const uint8_t *p)
    uint32_t vq_read32(const uint8_t *p)
    uint64_t vq_read64(const uint8_t *p)
    void vq_write16(uint8_t *p, uint16_t v)
    void vq_write32(uint8_t *p, uint32_t v)
    enum:
        VQ_DESC_F_NEXT
        VQ_DESC_F_WRITE
        VQ_DESC_F_INDIRECT
        VQ_AVAIL_F_NO_INTERRUPT
        VQ_USED_F_NO_NOTIFY
        VQ_MAX_SIZE
        VQ_MAX_FRAME
        VQ_NET_HDR_F_NEEDS_CSUM
        VQ_NET_HDR_MAX

# Ring faults: the guest broke the ring; the port stops (names in FAULT_NAMES).
cdef enum:
    VQ_FAULT_NONE = 0
    VQ_FAULT_AVAIL_IDX          # avail.idx moved by more than the ring size
    VQ_FAULT_DESC_INDEX         # a head or `next` >= the table size
    VQ_FAULT_CHAIN_TOO_LONG     # more descriptors than the table has: a loop
    VQ_FAULT_DESC_ADDR          # a buffer not wholly inside the memory table
    VQ_FAULT_DESC_DIR           # a device-writable buffer to read, or a read-only one to fill
    VQ_FAULT_INDIRECT_LEN       # an indirect table of 0, a non-multiple of 16 or > size entries
    VQ_FAULT_INDIRECT_NESTED    # an indirect descriptor inside an indirect table
    VQ_FAULT_INDIRECT_PLACE     # an indirect descriptor that is not a chain's only one
    VQ_FAULT_INDIRECT_ADDR      # an indirect table not inside one region
    VQ_FAULT_INDIRECT_OFF       # an indirect descriptor without INDIRECT_DESC negotiated
    VQ_FAULT_MAX

# Packet drops: one bad packet, counted, its buffers given back (names in DROP_NAMES).
cdef enum:
    VQ_DROP_HDR_SHORT = 0       # a chain shorter than the virtio-net header
    VQ_DROP_CSUM                # NEEDS_CSUM without VIRTIO_NET_F_CSUM (not offered)
    VQ_DROP_GSO                 # a GSO type without a TSO/UFO feature (not offered)
    VQ_DROP_TOO_LONG            # a frame longer than VQ_MAX_FRAME
    VQ_DROP_RUNT                # a frame shorter than an Ethernet header
    VQ_DROP_NO_FIT              # a packet larger than the guest's buffer (no MRG_RXBUF)
    VQ_DROP_MAX

ctypedef struct vhost_dev:
    vhost_mem *mem              # current memory table, NULL when none (changed under every vq lock)
    int failed                  # a vq_fault, set by the lcore that found it
    int notify_fd               # eventfd the lcore writes on a fault (wakes the control thread)

ctypedef struct vhost_vq:
    pd_eth_qstats stats         # first: ethdev sums these
    uint32_t lock               # 0 free, 1 held (see above)
    uint32_t ready              # the datapath may run: started, enabled, translated, mapped
    vhost_dev *dev
    uint8_t *desc               # our addresses of the three parts (checked: inside one region)
    uint8_t *avail
    uint8_t *used
    pd_mempool *mp              # guest transmitq: the port rx queue's pool
    uint32_t size
    uint32_t mask
    uint32_t hdr_len            # 12 (VERSION_1 or MRG_RXBUF) or 10
    uint16_t last_avail         # next avail slot to take
    uint16_t last_used          # used.idx as last published
    int callfd                  # -1: no interrupts wanted
    int mrg_rxbuf
    int event_idx
    int indirect
    uint16_t port
    uint16_t queue
    int fault                   # the vq_fault that stopped this ring (0: none)
    uint64_t calls              # call eventfd writes
    uint64_t calls_suppressed   # bursts that wanted none (NO_INTERRUPT or used_event)
    uint64_t guest_full         # tx: packets the guest had no buffers for
    uint64_t drops[VQ_DROP_MAX]

ctypedef struct vq_chain:
    uint8_t *table              # descriptors being walked: the ring's table or an indirect one
    uint32_t tsize
    uint32_t hops               # descriptors read from `table`
    uint32_t idx                # the next one to read
    int more                    # the last one read had NEXT
    int in_indirect
    uint64_t gpa                # what is left of the current descriptor's buffer
    uint64_t left

cdef int vq_chain_start(vhost_vq *vq, vq_chain *c, uint32_t head) noexcept nogil
cdef int vq_chain_chunk(vhost_vq *vq, vq_chain *c, int want_write, uint8_t **p,
                        uint64_t *n) noexcept nogil

cdef uint16_t vhost_rx_burst(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil
cdef uint16_t vhost_tx_burst(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil

cdef void vq_lock(vhost_vq *vq) noexcept nogil
cdef void vq_unlock(vhost_vq *vq) noexcept nogil
