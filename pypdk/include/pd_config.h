/* pd_config.h: build-time limits (DPDK's RTE_MAX_* in spirit). */
#ifndef PD_CONFIG_H
#define PD_CONFIG_H

#define PD_MAX_LCORE        128   /* lcore ids 0..127 */
#define PD_MAX_NUMA_NODES   8
#define PD_MAX_ETHPORTS     32
#define PD_MAX_QUEUES       16    /* per direction, per port */
#define PD_MAX_BURST        64    /* largest burst a hot loop keeps on its stack */
#define PD_BURST            32    /* the usual burst */
#define PD_MEMPOOL_CACHE_MAX 512  /* per-lcore cache size limit */
#define PD_NAME_SIZE        32
#define PD_LCORE_ID_ANY     0xFFFFFFFFu  /* a thread that is not an EAL lcore */

#ifdef PYPDK_DEBUG
#define PD_DEBUG 1
#else
#define PD_DEBUG 0
#endif

#endif
