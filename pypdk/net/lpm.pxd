# Longest-prefix match for IPv4 (DIR-24-8) and IPv6 (24-bit first stride,
# then 8-bit strides), built for one control thread and many nogil readers.
#
# Tables (entry formats: pd_lpm.h)
#   tbl24: 2^24 entries indexed by the first 24 address bits (64 MiB of
#          address space, mapped lazily: a table holding few routes touches
#          few pages). An entry is a route (VALID, depth, next hop), nothing,
#          or EXT: the index of a 256-entry group for the next 8 bits.
#   tbl8:  `number_tbl8s` groups of 256 entries. IPv4 needs one level of
#          groups (routes /25 to /32); IPv6 chains up to 13 (bytes 3 to 15).
#   The /0 route is one word outside the tables (`default_entry`), read when
#   an entry is not VALID. So a default route writes no table entry, and
#   a VRF's table with a default and a few routes stays small.
#   Each entry holds the route of the longest prefix that covers its whole
#   address range and is no longer than the entry's level; longer prefixes
#   live in groups below it.
#
# Rules: every (prefix, depth) -> next hop is also kept in a rule set (an
# open-addressing hash table, control thread only), so a delete can put back
# the covering route: the longest remaining rule that holds the prefix.
#
# Concurrency (single writer, any number of nogil readers, no locks)
#   - Every entry is one 32-bit word, written with a release store and read
#     with an acquire load: a reader sees either the old or the new entry.
#   - A new group is filled completely (with what its parent entry meant)
#     before the parent entry is switched to EXT (release store, paired with
#     the reader's acquire load of the parent). Publishing it changes no
#     lookup result; the route's own entries are written after.
#   - A group that is no longer needed (a delete left it uniform) is unlinked
#     (parent entry rewritten) and put on a *pending* list, not reused: a
#     reader may still be inside it. `*_reclaim()` moves pending groups to the
#     free list; call it only when every reader has passed a quiescent point
#     after the deletes (e.g. each forwarding lcore finished the burst it was
#     in and bumped its per-lcore counter). Until then the groups stay
#     allocated and an add that needs a group can fail with -ENOSPC.
#   - A lookup concurrent with an add or delete returns the next hop before
#     or after the change (each entry it reads is consistent); a route change
#     that spans many entries (short prefixes) becomes visible entry by entry.
#   The writer side (add/delete/reclaim) must be serialised by the caller
#   (the Python classes rely on the GIL for that).
#
# Addresses: IPv4 as a host-order uint32 (pd_ntohl(ip.dst_addr)), IPv6 as
# 16 bytes in network order (ip6.dst_addr). Next hops: 0 to 2^24-1 (IPv4),
# 0 to 2^22-1 (IPv6).

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "pd_compiler.h":
    bint pd_likely(bint) nogil
    bint pd_unlikely(bint) nogil
    void pd_prefetch0(const void *p) nogil

cdef extern from "pd_atomic.h":
    uint32_t pd_load_relaxed_u32(const uint32_t *p) nogil
    uint32_t pd_load_acquire_u32(const uint32_t *p) nogil
    void pd_store_relaxed_u32(uint32_t *p, uint32_t v) nogil
    void pd_store_release_u32(uint32_t *p, uint32_t v) nogil

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


# The tbl8 group allocator: a stack of free group ids and the pending list.
cdef struct pd_lpm_groups:
    uint32_t number             # groups in tbl8
    uint32_t nfree
    uint32_t npending
    uint32_t *free_ids
    uint32_t *pending_ids

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


# ---- control (lpm.pyx): one writer at a time --------------------------------
# Results: 0, or -EINVAL (depth/next hop out of range), -ENOSPC (max_rules
# reached, or no free tbl8 group: see reclaim), -ENOENT (no such rule).

# NULL with errno set (EINVAL, ENOMEM).
cdef pd_lpm4 *lpm4_create(uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil
cdef void lpm4_free(pd_lpm4 *lpm) noexcept nogil
# Add a route, or change the next hop of an existing one.
cdef int lpm4_add(pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t nh) noexcept nogil
cdef int lpm4_delete(pd_lpm4 *lpm, uint32_t ip, uint8_t depth) noexcept nogil
cdef void lpm4_delete_all(pd_lpm4 *lpm) noexcept nogil
# The rule's next hop in *nh: 0, or -ENOENT.
cdef int lpm4_rule_find(const pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t *nh) noexcept nogil
# Recycle the pending groups (see the concurrency notes); returns how many.
cdef uint32_t lpm4_reclaim(pd_lpm4 *lpm) noexcept nogil

cdef pd_lpm6 *lpm6_create(uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil
cdef void lpm6_free(pd_lpm6 *lpm) noexcept nogil
cdef int lpm6_add(pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth, uint32_t nh) noexcept nogil
cdef int lpm6_delete(pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth) noexcept nogil
cdef void lpm6_delete_all(pd_lpm6 *lpm) noexcept nogil
cdef int lpm6_rule_find(const pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth, uint32_t *nh) noexcept nogil
cdef uint32_t lpm6_reclaim(pd_lpm6 *lpm) noexcept nogil


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
