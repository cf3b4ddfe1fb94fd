/* pd_ring.h: the layout of a pd_ring (the logic lives in ring/ring.pxd).
 *
 * Producer and consumer head/tail pairs sit on cache lines of their own so a
 * producer lcore and a consumer lcore do not bounce one line between them;
 * the slots follow the header. Counters are free-running uint32: the slot is
 * `counter & mask` and `prod.tail - cons.tail` (mod 2^32) is the count. */
#ifndef PD_RING_H
#define PD_RING_H

#include <stddef.h>
#include <stdint.h>
#include "pd_compiler.h"
#include "pd_config.h"

#define PD_RING_F_SP_ENQ   0x1u   /* single producer */
#define PD_RING_F_SC_DEQ   0x2u   /* single consumer */
#define PD_RING_F_EXACT_SZ 0x4u   /* capacity is what was asked, slots rounded up */

struct pd_ring_headtail {
    uint32_t head;      /* next slot a producer (consumer) will claim */
    uint32_t tail;      /* slots before this are published to the other side */
    uint32_t single;    /* 1: one thread only, no CAS, no tail wait */
};

struct pd_ring {
    char name[PD_NAME_SIZE];
    uint32_t flags;
    uint32_t size;       /* number of slots, a power of two */
    uint32_t mask;       /* size - 1 */
    uint32_t capacity;   /* at most this many objects in the ring */
    void *mem;           /* what to free (the ring may be over-aligned) */
    char pad0[PD_CACHE_LINE - PD_NAME_SIZE - 4 * 4 - sizeof(void *)];
    struct pd_ring_headtail prod pd_cache_aligned;
    char pad1[PD_CACHE_LINE - sizeof(struct pd_ring_headtail)];
    struct pd_ring_headtail cons pd_cache_aligned;
    char pad2[PD_CACHE_LINE - sizeof(struct pd_ring_headtail)];
    void *slots[] pd_cache_aligned;
};

static_assert(offsetof(struct pd_ring, prod) == 64, "prod on its own line");
static_assert(offsetof(struct pd_ring, cons) == 128, "cons on its own line");
static_assert(offsetof(struct pd_ring, slots) == 192, "slots after the header");

#endif
