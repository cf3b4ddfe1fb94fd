/* pd_mbuf.h: the packet buffer's layout (operations: mempool/mbuf.pxd).
 *
 * One mbuf is this 128-byte header, then `buf_len` bytes of buffer:
 * headroom (data_off, 128 by default) and data room. Fields rx and tx touch
 * for every packet are in the first cache line; chaining, the pool and app
 * metadata in the second. Offsets are pinned so drivers, the kernel (AF_XDP
 * UMEM chunks) and apps can rely on them. */
#ifndef PD_MBUF_H
#define PD_MBUF_H

#include <stddef.h>
#include <stdint.h>
#include "pd_compiler.h"

struct pd_mempool;

#define PD_MBUF_DEFAULT_HEADROOM  128
#define PD_MBUF_DEFAULT_DATAROOM  2048

/* ol_flags bits */
#define PD_MBUF_F_RX_VLAN          (1ULL << 0)   /* vlan_tci holds a stripped tag */
#define PD_MBUF_F_RX_RSS_HASH      (1ULL << 1)   /* rss_hash is valid */
#define PD_MBUF_F_RX_IP_CKSUM_BAD  (1ULL << 4)
#define PD_MBUF_F_RX_L4_CKSUM_BAD  (1ULL << 5)
#define PD_MBUF_F_TX_VLAN          (1ULL << 40)  /* insert vlan_tci on tx */
#define PD_MBUF_F_TX_IP_CKSUM      (1ULL << 41)
#define PD_MBUF_F_TX_L4_CKSUM      (1ULL << 42)
#define PD_MBUF_F_INDIRECT         (1ULL << 62)  /* buffer belongs to another mbuf */

struct pd_mbuf {
    /* cache line 0: rx/tx */
    void *buf_addr;            /* start of the buffer (headroom begins here) */
    uint64_t buf_iova;         /* DMA address of buf_addr */
    uint16_t data_off;         /* packet data starts at buf_addr + data_off */
    uint16_t refcnt;           /* atomic when shared (clone) */
    uint16_t nb_segs;          /* segments in the chain (head only) */
    uint16_t port;             /* input port, 0xffff when none */
    uint64_t ol_flags;
    uint32_t packet_type;
    uint32_t pkt_len;          /* whole chain (head only) */
    uint16_t data_len;         /* this segment */
    uint16_t vlan_tci;
    uint32_t rss_hash;
    uint16_t buf_len;          /* headroom + data room */
    uint16_t queue;            /* rx queue it arrived on */
    uint8_t l2_len;
    uint8_t l3_len;
    uint8_t l4_len;
    uint8_t flags;
    uint64_t udata64;          /* app scratch for the current burst */
    /* cache line 1 */
    struct pd_mbuf *next;      /* next segment, NULL on the last */
    struct pd_mempool *pool;   /* where it returns when freed */
    uint64_t timestamp;
    uint16_t vlan_tci_outer;
    uint16_t pad16;
    uint32_t hash2;
    uint64_t dynfield[4];      /* per-packet app metadata */
};

static_assert(sizeof(struct pd_mbuf) == 128, "an mbuf header is two cache lines");
static_assert(offsetof(struct pd_mbuf, data_off) == 16, "layout");
static_assert(offsetof(struct pd_mbuf, pkt_len) == 36, "layout");
static_assert(offsetof(struct pd_mbuf, udata64) == 56, "layout");
static_assert(offsetof(struct pd_mbuf, next) == 64, "second cache line");

#define pd_mbuf_mtod(m) ((char *)(m)->buf_addr + (m)->data_off)

#endif
