# pd_config.h, declared once: the build-time limits.

cdef extern from "pd_config.h":
    enum:
        PD_MAX_LCORE
        PD_MAX_NUMA_NODES
        PD_MAX_ETHPORTS
        PD_MAX_QUEUES
        PD_MAX_BURST
        PD_BURST
        PD_MEMPOOL_CACHE_MAX
        PD_NAME_SIZE
        PD_DEBUG
    unsigned PD_LCORE_ID_ANY
