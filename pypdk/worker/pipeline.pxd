# Pipeline: stages on different lcores joined by single-producer /
# single-consumer rings (the C-level contract).
#
#   rx stage:      rx queues -> ring
#   worker stage:  ring -> hook -> ring          (zero or more, in a chain)
#   tx stage:      ring -> tx queue chosen by m.port through the route table
#
# A full ring is back-pressure: the stage drops what did not fit (frees it)
# and counts it in ring_full, so a slow stage never stalls the one before.
# Each stage is the lcore skeleton's loop (lcore_loop.pxd) with its own
# round. The hook contract is lcore_loop.pxd's: the hook sees a hop whose ports are
# PD_PORT_NONE (in a pipeline the packet's port is in m.port; a hook that
# routes sets m.port to the key of the route the tx stage should use).

from libc.stdint cimport uint16_t, uint32_t, uint64_t
from pypdk.ring.ring cimport pd_ring
from pypdk.pmd.ethdev cimport pd_eth_fp
from pypdk.worker.lcore_loop cimport (pd_lcore, pd_hop, burst_hook_t, LcoreWorker,
                                      PD_LCORE_MAX_HOPS, PD_MAX_ETHPORTS)

cdef enum:
    PD_STAGE_RX = 0
    PD_STAGE_WORK = 1
    PD_STAGE_TX = 2

ctypedef struct pd_route:
    pd_eth_fp *fp
    uint16_t valid
    uint16_t port
    uint16_t queue
    uint64_t tx             # packets the tx queue took
    uint64_t tx_dropped     # ... refused (freed)

ctypedef struct pd_stage:
    pd_lcore lc             # the loop state (quit, idle policy, counters)
    uint16_t kind           # PD_STAGE_*
    uint16_t burst
    uint16_t nb_hops        # rx stage: rx queues polled (hops[i].rx_*)
    pd_ring *in_ring        # worker and tx stages
    pd_ring *out_ring       # rx and worker stages
    burst_hook_t hook       # worker stage (NULL: pass through)
    void *hook_ctx
    pd_hop hop              # worker stage: what the hook is shown
    pd_hop hops[PD_LCORE_MAX_HOPS]
    pd_route routes[PD_MAX_ETHPORTS]   # tx stage, indexed by m.port
    uint16_t tx_count[PD_MAX_ETHPORTS] # tx stage: packets bucketed per key (0 between rounds)

cdef int stage_main(void *arg) noexcept nogil

cdef class Stage(LcoreWorker):
    cdef pd_stage *s
    cdef readonly str name
    cdef readonly str kind
    cdef object keep        # rings and the hook owner
    cdef bint closed        # its pipeline was closed: the rings are gone
