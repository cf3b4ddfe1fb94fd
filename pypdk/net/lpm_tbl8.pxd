# Longest-prefix match: what the IPv4 (lpm4, DIR-24-8) and IPv6 (lpm6,
# 24-bit first stride, then 8-bit strides) tables share. Both are built for
# one control thread and many nogil readers.
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
#     allocated and an add that needs a group can fail with -ENOBUFS.
#   - A lookup concurrent with an add or delete returns the next hop before
#     or after the change (each entry it reads is consistent); a route change
#     that spans many entries (short prefixes) becomes visible entry by entry.
#   - A table that is full (rules or groups) grows by rebuilding
#     (lpm_grow_add): a bigger table is filled from the old one's rules and
#     handed to the caller, who publishes it (one pointer store) and frees
#     the old one once no reader can be in it.
#   The writer side (add/delete/reclaim/grow) must be serialised by the
#   caller (the Python classes rely on the GIL for that).
#
# This file: the tbl8 group allocator, the tables' memory, the
# grow-by-rebuild over either family, and the argument and error helpers of
# the Python classes. The families: lpm4.pxd, lpm6.pxd.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

from pd_atomic cimport pd_store_relaxed_u32, pd_store_release_u32
from pd_lpm cimport (PD_LPM_VALID, PD_LPM_EXT, PD_LPM_MISS, PD_LPM_GROUP_ENTRIES, PD_LPM_TBL24_ENTRIES,
                     PD_LPM4_DEPTH_SHIFT, PD_LPM4_NH_MASK, PD_LPM4_MAX_DEPTH,
                     PD_LPM6_DEPTH_SHIFT, PD_LPM6_NH_MASK, PD_LPM6_MAX_DEPTH)

cdef enum:
    # The largest rule or group count a grow asks for (lpm*_create refuses more).
    PD_LPM_GROW_MAX = 1 << 30


# The tbl8 group allocator: a stack of free group ids and the pending list.
cdef struct pd_lpm_groups:
    uint32_t number             # groups in tbl8
    uint32_t nfree
    uint32_t npending
    uint32_t *free_ids
    uint32_t *pending_ids


# ---- tables and groups (control thread) -------------------------------------------

# Map tbl24 and `number_tbl8s` groups, and fill the free list: 0, or -1 when
# out of memory (lpm_tables_fini then releases whatever was made).
cdef int lpm_tables_init(uint32_t **tbl24, uint32_t **tbl8, pd_lpm_groups *g,
                         uint32_t number_tbl8s) noexcept nogil
cdef void lpm_tables_fini(uint32_t *tbl24, uint32_t *tbl8, pd_lpm_groups *g) noexcept nogil
# Before an add's first store into tbl24[first .. first + count): back the
# range (a sparse table on hugepages gets its pages here). 0, or -ENOMEM
# with nothing changed.
cdef int lpm_tbl24_back(uint32_t *tbl24, uint32_t first, uint32_t count) noexcept nogil
# Pending groups become free; returns how many.
cdef uint32_t lpm_groups_reclaim(pd_lpm_groups *g) noexcept nogil

cdef inline uint32_t lpm_pow2_at_least(uint64_t x) noexcept nogil:
    cdef uint64_t p = 16
    while p < x:
        p <<= 1
    return <uint32_t>p

cdef inline uint32_t lpm_group_alloc(pd_lpm_groups *g) noexcept nogil:
    g.nfree -= 1                      # callers checked nfree first
    return g.free_ids[g.nfree]

# A group unlinked from the tables waits here for lpm_groups_reclaim.
cdef inline void lpm_group_defer(pd_lpm_groups *g, uint32_t id) noexcept nogil:
    g.pending_ids[g.npending] = id
    g.npending += 1

# Fill a fresh group with what its parent entry meant, then publish it in the
# parent: release, paired with the readers' acquire load of the parent, so a
# reader that sees EXT sees the filled group. Returns the group's id.
cdef inline uint32_t lpm_group_publish(uint32_t *tbl8, pd_lpm_groups *groups, uint32_t *parent) noexcept nogil:
    cdef uint32_t g = lpm_group_alloc(groups)
    cdef uint32_t inherited = parent[0]
    cdef uint32_t j
    cdef uint32_t *grp = &tbl8[<size_t>g << 8]
    for j in range(PD_LPM_GROUP_ENTRIES):
        pd_store_relaxed_u32(&grp[j], inherited)
    pd_store_release_u32(parent, PD_LPM_VALID | PD_LPM_EXT | g)
    return g


# ---- grow by rebuilding (control thread), for either family ------------------------

# What the rebuild needs of a family (lpm4.pyx and lpm6.pyx each fill one).
# ip: a uint32_t (IPv4, host order) or 16 bytes (IPv6), by address.
cdef struct pd_lpm_family:
    void *(*create)(uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil
    void (*free)(void *lpm) noexcept nogil
    int (*add)(void *lpm, const void *ip, uint8_t depth, uint32_t nh) noexcept nogil
    # Add every rule of src to dst: 0, or the first failing add's result.
    int (*refill)(void *dst, const void *src) noexcept nogil

# A new table of max_rules rules and at least number_tbl8s groups holding
# old's rules (old may be NULL; groups grow x4 until old's routes fit);
# NULL when out of memory.
cdef void *lpm_rebuild(const pd_lpm_family *f, const void *old, uint32_t max_rules,
                       uint32_t number_tbl8s) noexcept nogil

# After an add to lpm returned rc: while rc says the rule set (-ENOSPC) or
# the groups (-ENOBUFS) are full, rebuild with twice the rules or four times
# the groups (a rebuild with more rules may still lack the group this route
# needs, or the other way round) and add there. 0 with *grown the new table
# holding the route (lpm untouched: the caller publishes *grown and frees
# lpm after its readers are done); rc unchanged when it was neither (0: the
# route went into lpm, *grown NULL); -ENOMEM when no table big enough could
# be made.
cdef int lpm_grow_add(const pd_lpm_family *f, void *lpm, uint32_t max_rules, uint32_t number_tbl8s,
                      int rc, const void *ip, uint8_t depth, uint32_t nh, void **grown) noexcept nogil


# ---- the Python classes' helpers ---------------------------------------------------

# A control call's negative errno as the exception a Python caller gets.
cdef int lpm_raise(int rc, str what, uint32_t max_nh) except -1
# ints and numpy integers as int; anything else unchanged.
cdef object lpm_as_int(object a)
# A prefix length checked against 0..maxd.
cdef uint8_t lpm_depth(object depth, int maxd) except? 255
