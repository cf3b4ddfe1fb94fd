/* pd_mempool.h: the layout of a pd_mempool and its per-lcore caches.
 * The logic is in mempool/mempool.pxd (inline get/put) and mempool.pyx. */
#ifndef PD_MEMPOOL_H
#define PD_MEMPOOL_H

#include <stddef.h>
#include <stdint.h>
#include "pd_compiler.h"
#include "pd_config.h"
#include "pd_ring.h"

#define PD_MEMPOOL_F_DEBUG 0x1u   /* check every put: double free, wrong pool */
#define PD_MEMPOOL_F_PKT   0x2u   /* objects are pd_mbufs */

/* Each lcore's cache is touched by that lcore only: no atomics. objs is a
 * LIFO stack, so the object freed last (warm in cache) is handed out next.
 * It may hold up to 1.5 x size before it flushes back to the ring. */
struct pd_mempool_cache {
    uint32_t size;
    uint32_t flushthresh;
    uint32_t len;
    uint32_t pad;
    void *objs[PD_MEMPOOL_CACHE_MAX * 3];  /* len < 1.5 x size, plus a put of up to 1.5 x size */
} pd_cache_aligned;

struct pd_mempool {
    char name[PD_NAME_SIZE];
    struct pd_ring *ring;      /* the common store, MP/MC */
    char *base;                /* first object */
    uint64_t base_iova;
    uint32_t size;             /* number of objects */
    uint32_t elt_size;         /* bytes from one object to the next */
    uint32_t cache_size;       /* 0: no per-lcore cache */
    uint32_t flags;
    int32_t socket_id;
    uint16_t mbuf_headroom;    /* PD_MEMPOOL_F_PKT: data_off of a fresh mbuf */
    uint16_t mbuf_data_room;   /* PD_MEMPOOL_F_PKT: buf_len - headroom */
    /* Debug mode (PD_MEMPOOL_F_DEBUG) only: */
    uint8_t *dbg_state;        /* per object: 1 = handed out, 0 = in the pool */
    uint64_t dbg_double_free;  /* puts of an object already in the pool */
    uint64_t dbg_wrong_pool;   /* puts of an address that is not one of ours */
    struct pd_mempool_cache *caches;  /* PD_MAX_LCORE of them, calloc'ed */
};

#endif
