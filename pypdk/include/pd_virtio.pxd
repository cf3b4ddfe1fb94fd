# pd_virtio.h, declared once: virtio 1.x ring and virtio-net layouts.
# Cimport as `from pd_virtio cimport pd_vring_desc, ...`.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "pd_virtio.h" nogil:
    struct pd_vring_desc:
        uint64_t addr
        uint32_t len
        uint16_t flags
        uint16_t next
    struct pd_vring_used_elem:
        uint32_t id
        uint32_t len
    struct pd_virtio_net_hdr:
        uint8_t flags
        uint8_t gso_type
        uint16_t hdr_len
        uint16_t gso_size
        uint16_t csum_start
        uint16_t csum_offset
        uint16_t num_buffers
    size_t pd_vring_avail_size(unsigned size)
    size_t pd_vring_used_size(unsigned size)
    enum:
        PD_VRING_DESC_F_NEXT
        PD_VRING_DESC_F_WRITE
        PD_VRING_DESC_F_INDIRECT
        PD_VRING_AVAIL_F_NO_INTERRUPT
        PD_VRING_AVAIL_RING_OFF
        PD_VRING_USED_F_NO_NOTIFY
        PD_VRING_USED_RING_OFF
        PD_VRING_MAX_SIZE
        PD_VIRTIO_STATUS_ACKNOWLEDGE
        PD_VIRTIO_STATUS_DRIVER
        PD_VIRTIO_STATUS_DRIVER_OK
        PD_VIRTIO_STATUS_FEATURES_OK
        PD_VIRTIO_STATUS_NEEDS_RESET
        PD_VIRTIO_STATUS_FAILED
        PD_VIRTIO_NET_F_CSUM
        PD_VIRTIO_NET_F_GUEST_CSUM
        PD_VIRTIO_NET_F_MTU
        PD_VIRTIO_NET_F_MAC
        PD_VIRTIO_NET_F_MRG_RXBUF
        PD_VIRTIO_NET_F_STATUS
        PD_VIRTIO_NET_F_CTRL_VQ
        PD_VIRTIO_NET_F_MQ
        PD_VIRTIO_F_INDIRECT_DESC
        PD_VIRTIO_F_EVENT_IDX
        PD_VIRTIO_F_VERSION_1
        PD_VIRTIO_F_ACCESS_PLATFORM
        PD_VIRTIO_F_RING_PACKED
        PD_VIRTIO_NET_HDR_F_NEEDS_CSUM
        PD_VIRTIO_NET_HDR_GSO_NONE
        PD_VIRTIO_NET_S_LINK_UP
