# pd_mempool.h, declared once: the pool header and its per-lcore caches.
# The operations are in pypdk/mempool/mempool.pxd.
# Cimport as `from pd_mempool cimport ...`: "include" is a Cython keyword, so
# pypdk.include cannot be spelled in a cimport; this directory is on the
# Cython include path instead (setup.py).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from pd_ring cimport pd_ring

cdef extern from "pd_mempool.h":
    enum:
        PD_MEMPOOL_F_DEBUG
        PD_MEMPOOL_F_PKT
    struct pd_mempool_cache:
        uint32_t size
        uint32_t flushthresh
        uint32_t len
        void *objs[1]
    struct pd_mempool:
        char name[32]
        pd_ring *ring
        char *base
        uint64_t base_iova
        uint32_t size
        uint32_t elt_size
        uint32_t cache_size
        uint32_t flags
        int32_t socket_id
        uint16_t mbuf_headroom
        uint16_t mbuf_data_room
        uint8_t *dbg_state
        uint64_t dbg_double_free
        uint64_t dbg_wrong_pool
        pd_mempool_cache *caches
