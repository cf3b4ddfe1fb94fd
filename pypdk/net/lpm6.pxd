# IPv6 longest-prefix match: a 2^24-entry first stride over the first 24
# address bits, then chains of 256-entry tbl8 groups, one per following
# byte (up to 13, for a /128). Tables, rules and the reader/writer rules:
# lpm_tbl8.pxd.
#
# Addresses: 16 bytes in network order (ip6.dst_addr). Next hops: 0 to
# 2^22-1. Entry format (pd_lpm.h): VALID | EXT | depth (8 bits) | next hop.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

from pd_compiler cimport pd_likely, pd_unlikely, pd_prefetch0
from pd_atomic cimport pd_load_relaxed_u32, pd_load_acquire_u32, pd_store_relaxed_u32, pd_store_release_u32
from pd_lpm cimport (PD_LPM_VALID, PD_LPM_EXT, PD_LPM_MISS, PD_LPM_GROUP_ENTRIES, PD_LPM_TBL24_ENTRIES,
                     PD_LPM6_DEPTH_SHIFT, PD_LPM6_NH_MASK, PD_LPM6_MAX_DEPTH)
from pypdk.net.lpm_tbl8 cimport pd_lpm_groups

cdef struct pd_lpm6_rule:
    uint8_t ip[16]
    uint32_t nh
    uint8_t depth
    uint8_t used

cdef struct pd_lpm6:
    uint32_t *tbl24
    uint32_t *tbl8
    uint32_t default_entry
    uint32_t max_rules
    uint32_t nrules
    uint32_t rules_mask
    pd_lpm6_rule *rules
    uint32_t depth_rules[129]
    pd_lpm_groups groups


# ---- control (lpm6.pyx): one writer at a time --------------------------------
# Results: 0, or -EINVAL (depth/next hop out of range), -ENOSPC (max_rules
# reached), -ENOBUFS (no free tbl8 group: see reclaim), -ENOENT (no such rule).

# NULL with errno set (EINVAL, ENOMEM).
cdef pd_lpm6 *lpm6_create(uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil
cdef void lpm6_free(pd_lpm6 *lpm) noexcept nogil
cdef int lpm6_add(pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth, uint32_t nh) noexcept nogil
cdef int lpm6_delete(pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth) noexcept nogil
cdef void lpm6_delete_all(pd_lpm6 *lpm) noexcept nogil
cdef int lpm6_rule_find(const pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth, uint32_t *nh) noexcept nogil
cdef uint32_t lpm6_reclaim(pd_lpm6 *lpm) noexcept nogil
# As lpm4_add_grow and lpm4_rebuild.
cdef int lpm6_add_grow(pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth, uint32_t nh,
                       pd_lpm6 **grown) noexcept nogil
cdef pd_lpm6 *lpm6_rebuild(const pd_lpm6 *old, uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil


# ---- lookups (inline, nogil, any number of readers) --------------------------

# 0 and the next hop in *nh, or -1. ip: 16 bytes, network order.
cdef inline int lpm6_lookup(const pd_lpm6 *lpm, const uint8_t *ip, uint32_t *nh) noexcept nogil:
    cdef uint32_t e = pd_load_acquire_u32(
        &lpm.tbl24[(<uint32_t>ip[0] << 16) | (<uint32_t>ip[1] << 8) | ip[2]])
    cdef uint32_t k = 3
    # Each level's acquire pairs with the release that published its group.
    # Groups on byte 15 hold no EXT entries, so k stays below 16.
    while e & PD_LPM_EXT:
        e = pd_load_acquire_u32(&lpm.tbl8[((e & PD_LPM6_NH_MASK) << 8) | ip[k]])
        k += 1
    if pd_unlikely(not (e & PD_LPM_VALID)):
        e = pd_load_relaxed_u32(&lpm.default_entry)
        if not (e & PD_LPM_VALID):
            return -1
    nh[0] = e & PD_LPM6_NH_MASK
    return 0

# n addresses of 16 bytes each, back to back at ips; as lpm4_lookup_bulk.
cdef inline void lpm6_lookup_bulk(const pd_lpm6 *lpm, const uint8_t *ips, uint32_t *nhs,
                                  uint32_t n, uint32_t miss) noexcept nogil:
    cdef uint32_t e[8]
    cdef uint32_t i = 0, j, k, cnt, dflt
    cdef const uint8_t *ip
    dflt = pd_load_relaxed_u32(&lpm.default_entry)
    dflt = (dflt & PD_LPM6_NH_MASK) if dflt & PD_LPM_VALID else miss
    while i < n:
        cnt = n - i if n - i < 8 else 8
        for j in range(cnt):
            ip = ips + 16 * (i + j)
            e[j] = pd_load_acquire_u32(&lpm.tbl24[(<uint32_t>ip[0] << 16) | (<uint32_t>ip[1] << 8) | ip[2]])
        for j in range(cnt):
            if e[j] & PD_LPM_EXT:
                ip = ips + 16 * (i + j)
                pd_prefetch0(&lpm.tbl8[((e[j] & PD_LPM6_NH_MASK) << 8) | ip[3]])
        for j in range(cnt):
            ip = ips + 16 * (i + j)
            k = 3
            while e[j] & PD_LPM_EXT:
                e[j] = pd_load_acquire_u32(&lpm.tbl8[((e[j] & PD_LPM6_NH_MASK) << 8) | ip[k]])
                k += 1
            nhs[i + j] = (e[j] & PD_LPM6_NH_MASK) if e[j] & PD_LPM_VALID else dflt
        i += cnt
