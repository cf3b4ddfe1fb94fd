# pd_config.h, declared once: the build-time limits.
# Cimport as `from pd_config cimport ...`: "include" is a Cython keyword, so
# pypdk.include cannot be spelled in a cimport; this directory is on the
# Cython include path instead (setup.py).

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
