# net_virtio: a virtio-net (1.x, modern PCI) driver's queue. Sections are those
# of the OASIS virtio 1.x specification; layouts in pypdk/include/pd_virtio.h.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_qstats
from pd_virtio cimport pd_vring_desc

cdef enum:
    # 4.1.4.3 the common configuration structure's fields
    VPCI_DFSELECT = 0x00
    VPCI_DF = 0x04
    VPCI_GFSELECT = 0x08
    VPCI_GF = 0x0C
    VPCI_MSIX = 0x10
    VPCI_NUM_QUEUES = 0x12
    VPCI_STATUS = 0x14
    VPCI_CFG_GENERATION = 0x15
    VPCI_Q_SELECT = 0x16
    VPCI_Q_SIZE = 0x18
    VPCI_Q_MSIX = 0x1A
    VPCI_Q_ENABLE = 0x1C
    VPCI_Q_NOFF = 0x1E
    VPCI_Q_DESCLO = 0x20
    VPCI_Q_DESCHI = 0x24
    VPCI_Q_AVAILLO = 0x28
    VPCI_Q_AVAILHI = 0x2C
    VPCI_Q_USEDLO = 0x30
    VPCI_Q_USEDHI = 0x34
    VPCI_NO_VECTOR = 0xFFFF
    # 4.1.4 vendor capability cfg_type
    VPCI_CAP_COMMON = 1
    VPCI_CAP_NOTIFY = 2
    VPCI_CAP_ISR = 3
    VPCI_CAP_DEVICE = 4
    # 5.1.4 virtio-net device configuration
    VNET_CFG_MAC = 0
    VNET_CFG_STATUS = 6
    VNET_CFG_MAX_PAIRS = 8
    VNET_CFG_MTU = 10
    VNET_HDR_SIZE = 12          # 5.1.6: VERSION_1, num_buffers always there
    VNET_TX_RECLAIM_BELOW = 32  # tx reclaims used descriptors when fewer than 32 + 2n are free


ctypedef struct vnet_q:
    pd_eth_qstats stats
    pd_vring_desc *desc         # the queue's three parts, in EAL memory (IOVA = VA)
    uint8_t *avail
    uint8_t *used
    pd_mbuf **sw_ring           # by descriptor id: rx its buffer, tx the packet whose chain starts there
    uint16_t *refill            # rx: descriptor ids waiting for a buffer
    uint8_t *hdrs               # tx: a virtio-net header slot per descriptor (non-pushable packets)
    uint8_t *notify             # where the queue's index is written to notify the device
    pd_mempool *mp
    uint16_t size
    uint16_t mask
    uint16_t avail_idx          # the next avail.idx we publish
    uint16_t used_idx           # the used entries we have consumed
    uint16_t free_head          # tx: free descriptors linked through desc.next
    uint16_t nb_free
    uint16_t nb_refill          # rx: ids in `refill`
    uint16_t vq_index
    uint16_t port
    uint16_t queue
    uint16_t headroom           # rx: the pool's headroom (the header goes just before it)
    uint32_t buf_len            # rx: bytes each buffer offers the device (header + data room)
    uint64_t notifies           # doorbell writes (one per burst at most)
    uint64_t bad_used           # used entries naming a descriptor we did not give (device fault)
    uint64_t chained            # rx: frames over several buffers (MRG_RXBUF)
