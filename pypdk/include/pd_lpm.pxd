# pd_lpm.h, declared once: the LPM entry encoding and table sizes.
# The tables are in pypdk/net/lpm_tbl8.pxd, lpm4.pxd and lpm6.pxd.
# Cimport as `from pd_lpm cimport ...`: "include" is a Cython keyword, so
# pypdk.include cannot be spelled in a cimport; this directory is on the
# Cython include path instead (setup.py).

from libc.stdint cimport uint32_t

cdef extern from "pd_lpm.h":
    uint32_t PD_LPM_VALID
    uint32_t PD_LPM_EXT
    uint32_t PD_LPM_MISS
    uint32_t PD_LPM_GROUP_ENTRIES
    uint32_t PD_LPM_TBL24_ENTRIES
    enum:
        PD_LPM4_DEPTH_SHIFT
        PD_LPM4_NH_MASK
        PD_LPM4_MAX_DEPTH
        PD_LPM6_DEPTH_SHIFT
        PD_LPM6_NH_MASK
        PD_LPM6_MAX_DEPTH
