# pd_ring.h, declared once: the ring header (producer and consumer on their
# own cache lines) and its flags. The operations are in pypdk/ring/ring.pxd.
# Cimport as `from pd_ring cimport ...`: "include" is a Cython keyword, so
# pypdk.include cannot be spelled in a cimport; this directory is on the
# Cython include path instead (setup.py).

from libc.stdint cimport uint32_t

cdef extern from "pd_ring.h":
    enum:
        PD_RING_F_SP_ENQ
        PD_RING_F_SC_DEQ
        PD_RING_F_EXACT_SZ
    struct pd_ring_headtail:
        uint32_t head
        uint32_t tail
        uint32_t single
    struct pd_ring:
        char name[32]
        uint32_t flags
        uint32_t size
        uint32_t mask
        uint32_t capacity
        void *mem
        pd_ring_headtail prod
        pd_ring_headtail cons
        void *slots[1]
