# IPv4 longest-prefix match, DIR-24-8: a 2^24-entry tbl24 indexed by the
# first 24 address bits and one level of 256-entry tbl8 groups for routes
# /25 to /32. Tables, rules and the reader/writer rules: lpm_tbl8.pxd.
#
# Addresses: host-order uint32 (pd_ntohl(ip.dst_addr)). Next hops: 0 to
# 2^24-1. Entry format (pd_lpm.h): VALID | EXT | depth (6 bits) | next hop.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

from pd_compiler cimport pd_likely, pd_unlikely, pd_prefetch0
from pd_atomic cimport pd_load_relaxed_u32, pd_load_acquire_u32, pd_store_relaxed_u32, pd_store_release_u32
from pd_lpm cimport (PD_LPM_VALID, PD_LPM_EXT, PD_LPM_MISS, PD_LPM_GROUP_ENTRIES, PD_LPM_TBL24_ENTRIES,
                     PD_LPM4_DEPTH_SHIFT, PD_LPM4_NH_MASK, PD_LPM4_MAX_DEPTH)
from pypdk.net.lpm_tbl8 cimport pd_lpm_groups

cdef struct pd_lpm4_rule:
    uint32_t ip                 # masked to depth
    uint32_t nh
    uint8_t depth
    uint8_t used

cdef struct pd_lpm4:
    # read by lookups
    uint32_t *tbl24
    uint32_t *tbl8
    uint32_t default_entry      # the /0 route (VALID | nh) or 0
    # control thread only
    uint32_t max_rules
    uint32_t nrules
    uint32_t rules_mask
    pd_lpm4_rule *rules
    uint32_t depth_rules[33]    # rules per depth: skip empty depths
    pd_lpm_groups groups


# ---- control (lpm4.pyx): one writer at a time --------------------------------
# Results: 0, or -EINVAL (depth/next hop out of range), -ENOSPC (max_rules
# reached), -ENOBUFS (no free tbl8 group: see reclaim), -ENOENT (no such rule).

# NULL with errno set (EINVAL, ENOMEM).
cdef pd_lpm4 *lpm4_create(uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil
cdef void lpm4_free(pd_lpm4 *lpm) noexcept nogil
# Add a route, or change the next hop of an existing one.
cdef int lpm4_add(pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t nh) noexcept nogil
cdef int lpm4_delete(pd_lpm4 *lpm, uint32_t ip, uint8_t depth) noexcept nogil
cdef void lpm4_delete_all(pd_lpm4 *lpm) noexcept nogil
# The rule's next hop in *nh: 0, or -ENOENT.
cdef int lpm4_rule_find(const pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t *nh) noexcept nogil
# Recycle the pending groups (the Concurrency part of lpm_tbl8.pxd); returns how many.
cdef uint32_t lpm4_reclaim(pd_lpm4 *lpm) noexcept nogil
# Add a route; when the rule set or the groups are full, add it to a bigger
# copy instead (lpm_grow_add): 0 with *grown NULL (added to lpm) or the new
# table (lpm untouched: publish *grown, free lpm after its readers are done),
# or an error as lpm4_add's (-ENOMEM: no bigger table could be made).
cdef int lpm4_add_grow(pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t nh,
                       pd_lpm4 **grown) noexcept nogil
# A new table of max_rules rules and at least number_tbl8s groups holding
# old's rules (old may be NULL); NULL when out of memory.
cdef pd_lpm4 *lpm4_rebuild(const pd_lpm4 *old, uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil


# ---- lookups (inline, nogil, any number of readers) --------------------------

# 0 and the next hop in *nh, or -1 when no route holds ip (host order).
cdef inline int lpm4_lookup(const pd_lpm4 *lpm, uint32_t ip, uint32_t *nh) noexcept nogil:
    # acquire: pairs with the release store that published a group (or entry)
    cdef uint32_t e = pd_load_acquire_u32(&lpm.tbl24[ip >> 8])
    if pd_unlikely(e & PD_LPM_EXT):
        e = pd_load_acquire_u32(&lpm.tbl8[((e & PD_LPM4_NH_MASK) << 8) | (ip & 0xff)])
    if pd_unlikely(not (e & PD_LPM_VALID)):
        e = pd_load_relaxed_u32(&lpm.default_entry)
        if not (e & PD_LPM_VALID):
            return -1
    nh[0] = e & PD_LPM4_NH_MASK
    return 0

# Look up n addresses: nhs[i] is the next hop, or `miss` when no route holds
# ips[i]. Eight at a time: the eight tbl24 loads are issued back to back
# (independent, so the CPU overlaps their cache misses), the next eight's
# tbl24 entries are prefetched, then the eight resolve (their tbl8 loads
# again independent of each other). Worth it where each packet does other
# work between lookups; a bare loop of single lookups overlaps as well.
cdef inline void lpm4_lookup_bulk(const pd_lpm4 *lpm, const uint32_t *ips, uint32_t *nhs,
                                  uint32_t n, uint32_t miss) noexcept nogil:
    cdef uint32_t e[8]
    cdef uint32_t i = 0, j, dflt
    cdef const uint32_t *tbl24 = lpm.tbl24
    cdef const uint32_t *tbl8 = lpm.tbl8
    dflt = pd_load_relaxed_u32(&lpm.default_entry)
    dflt = (dflt & PD_LPM4_NH_MASK) if dflt & PD_LPM_VALID else miss
    while i + 8 <= n:
        for j in range(8):
            e[j] = pd_load_acquire_u32(&tbl24[ips[i + j] >> 8])
        if i + 16 <= n:
            for j in range(8, 16):
                pd_prefetch0(&tbl24[ips[i + j] >> 8])
        for j in range(8):
            if pd_unlikely(e[j] & PD_LPM_EXT):
                e[j] = pd_load_acquire_u32(&tbl8[((e[j] & PD_LPM4_NH_MASK) << 8) | (ips[i + j] & 0xff)])
            nhs[i + j] = (e[j] & PD_LPM4_NH_MASK) if e[j] & PD_LPM_VALID else dflt
        i += 8
    while i < n:
        e[0] = pd_load_acquire_u32(&tbl24[ips[i] >> 8])
        if pd_unlikely(e[0] & PD_LPM_EXT):
            e[0] = pd_load_acquire_u32(&tbl8[((e[0] & PD_LPM4_NH_MASK) << 8) | (ips[i] & 0xff)])
        nhs[i] = (e[0] & PD_LPM4_NH_MASK) if e[0] & PD_LPM_VALID else dflt
        i += 1
