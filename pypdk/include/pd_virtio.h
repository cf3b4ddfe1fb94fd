/* pd_virtio.h: virtio 1.x layouts shared by the device side (net_vhost) and the
 * driver side (net_virtio). Section numbers are those of the OASIS "Virtual I/O
 * Device (VIRTIO) Version 1.x" specification. Everything is little-endian; the
 * targets pypdk builds for are too. */
#ifndef PD_VIRTIO_H
#define PD_VIRTIO_H

#include <stddef.h>
#include <stdint.h>

/* 2.7.5 the descriptor table */
struct pd_vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
#define PD_VRING_DESC_F_NEXT      1
#define PD_VRING_DESC_F_WRITE     2
#define PD_VRING_DESC_F_INDIRECT  4

/* 2.7.6 the available ring: flags, idx, ring[size], used_event */
#define PD_VRING_AVAIL_F_NO_INTERRUPT 1
#define PD_VRING_AVAIL_RING_OFF 4
static inline size_t pd_vring_avail_size(unsigned size) { return 4 + 2 * (size_t)size + 2; }

/* 2.7.8 the used ring: flags, idx, ring[size] of {id, len}, avail_event */
struct pd_vring_used_elem {
    uint32_t id;
    uint32_t len;
};
#define PD_VRING_USED_F_NO_NOTIFY 1
#define PD_VRING_USED_RING_OFF 4
static inline size_t pd_vring_used_size(unsigned size) { return 4 + 8 * (size_t)size + 2; }

#define PD_VRING_MAX_SIZE 32768   /* 2.7: Queue Size, a power of two up to 32768 */

/* 2.1 device status */
#define PD_VIRTIO_STATUS_ACKNOWLEDGE 1
#define PD_VIRTIO_STATUS_DRIVER      2
#define PD_VIRTIO_STATUS_DRIVER_OK   4
#define PD_VIRTIO_STATUS_FEATURES_OK 8
#define PD_VIRTIO_STATUS_NEEDS_RESET 64
#define PD_VIRTIO_STATUS_FAILED      128

/* 5.1.3 virtio-net feature bits, 6 reserved ones */
#define PD_VIRTIO_NET_F_CSUM        0
#define PD_VIRTIO_NET_F_GUEST_CSUM  1
#define PD_VIRTIO_NET_F_MTU         3
#define PD_VIRTIO_NET_F_MAC         5
#define PD_VIRTIO_NET_F_MRG_RXBUF   15
#define PD_VIRTIO_NET_F_STATUS      16
#define PD_VIRTIO_NET_F_CTRL_VQ     17
#define PD_VIRTIO_NET_F_MQ          22
#define PD_VIRTIO_F_INDIRECT_DESC   28
#define PD_VIRTIO_F_EVENT_IDX       29
#define PD_VIRTIO_F_VERSION_1       32
#define PD_VIRTIO_F_ACCESS_PLATFORM 33
#define PD_VIRTIO_F_RING_PACKED     34

/* 5.1.6 the virtio-net header (VERSION_1: always with num_buffers) */
struct pd_virtio_net_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers;
};
#define PD_VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define PD_VIRTIO_NET_HDR_GSO_NONE     0
#define PD_VIRTIO_NET_S_LINK_UP        1

_Static_assert(sizeof(struct pd_vring_desc) == 16, "2.7.5");
_Static_assert(sizeof(struct pd_vring_used_elem) == 8, "2.7.8");
_Static_assert(sizeof(struct pd_virtio_net_hdr) == 12, "5.1.6");

#endif
