"""Longest-prefix match tables: the control side (add, delete, reclaim) and
the Python classes LPM4 and LPM6. Lookups are inline in lpm.pxd.

Design, entry formats and the reader/writer rules are in lpm.pxd's header;
the short of it: one 32-bit word per entry, release stores, groups published
only once filled, freed groups recycled only by reclaim().

Costs (control thread): adding or deleting a route of depth d <= 24 writes
2^(24-d) tbl24 entries (a /8: 65536) plus the groups under them; a longer
route touches one group per 8 bits beyond 24. Memory: the 64 MiB tbl24 is
mapped lazily, a group is 1 KiB, a rule 12 (IPv4) or 24 (IPv6) bytes with
the rule set sized at twice max_rules.
"""
import ipaddress
import operator

import numpy as np

from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset, memcpy, memcmp
from libc.errno cimport errno, EINVAL, ENOMEM, ENOSPC, ENOENT, ENOBUFS

from pypdk.net.hash cimport hash_mix64, hash_bytes

from pypdk.errors import UsageError, ResourceError

cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int madvise(void *addr, size_t length, int advice)
    void *MAP_FAILED
    enum:
        PROT_READ
        PROT_WRITE
        MAP_PRIVATE
        MAP_ANONYMOUS
        MAP_NORESERVE
        MADV_HUGEPAGE

MISS = PD_LPM_MISS
MAX_NH4 = PD_LPM4_NH_MASK
MAX_NH6 = PD_LPM6_NH_MASK


# ---- memory -------------------------------------------------------------------

cdef uint32_t *_table_map(size_t entries) noexcept nogil:
    """Zeroed, lazily backed (untouched pages cost nothing), THP where possible."""
    cdef size_t n = entries * sizeof(uint32_t)
    cdef void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if p == MAP_FAILED:
        return NULL
    madvise(p, n, MADV_HUGEPAGE)       # fewer TLB misses on random lookups; advisory
    return <uint32_t *>p


cdef void _table_unmap(uint32_t *t, size_t entries) noexcept nogil:
    if t != NULL:
        munmap(t, entries * sizeof(uint32_t))


cdef inline uint32_t _pow2_at_least(uint64_t x) noexcept nogil:
    cdef uint64_t p = 16
    while p < x:
        p <<= 1
    return <uint32_t>p


# ---- the tbl8 group allocator ---------------------------------------------------

cdef int _groups_init(pd_lpm_groups *g, uint32_t number) noexcept nogil:
    cdef uint32_t i
    g.number = number
    g.free_ids = <uint32_t *>calloc(number if number else 1, sizeof(uint32_t))
    g.pending_ids = <uint32_t *>calloc(number if number else 1, sizeof(uint32_t))
    if g.free_ids == NULL or g.pending_ids == NULL:
        return -1
    for i in range(number):
        g.free_ids[i] = number - 1 - i   # popped from the top: group 0 first
    g.nfree = number
    g.npending = 0
    return 0


cdef void _groups_fini(pd_lpm_groups *g) noexcept nogil:
    free(g.free_ids)
    free(g.pending_ids)


cdef inline uint32_t _group_alloc(pd_lpm_groups *g) noexcept nogil:
    g.nfree -= 1                      # callers checked nfree first
    return g.free_ids[g.nfree]


cdef inline void _group_defer(pd_lpm_groups *g, uint32_t id) noexcept nogil:
    g.pending_ids[g.npending] = id
    g.npending += 1


cdef uint32_t _groups_reclaim(pd_lpm_groups *g) noexcept nogil:
    cdef uint32_t i, n = g.npending
    for i in range(n):
        g.free_ids[g.nfree] = g.pending_ids[i]
        g.nfree += 1
    g.npending = 0
    return n


# Fill a fresh group with what its parent entry meant, then publish it in the
# parent: release, paired with the readers' acquire load of the parent, so a
# reader that sees EXT sees the filled group.
cdef inline uint32_t _group_publish(uint32_t *tbl8, pd_lpm_groups *groups, uint32_t *parent) noexcept nogil:
    cdef uint32_t g = _group_alloc(groups)
    cdef uint32_t inherited = parent[0]
    cdef uint32_t j
    cdef uint32_t *grp = &tbl8[<size_t>g << 8]
    for j in range(PD_LPM_GROUP_ENTRIES):
        pd_store_relaxed_u32(&grp[j], inherited)
    pd_store_release_u32(parent, PD_LPM_VALID | PD_LPM_EXT | g)
    return g


# ================================ IPv4 =============================================

cdef inline uint32_t _mask4(uint8_t depth) noexcept nogil:
    return 0 if depth == 0 else (<uint32_t>0xffffffff) << (32 - depth)

cdef inline uint8_t _depth4(uint32_t e) noexcept nogil:
    return (e >> PD_LPM4_DEPTH_SHIFT) & 0x3f

cdef inline uint32_t _home4(const pd_lpm4 *lpm, uint32_t ip, uint8_t depth) noexcept nogil:
    return <uint32_t>hash_mix64((<uint64_t>ip << 8) | depth) & lpm.rules_mask


cdef pd_lpm4_rule *_r4_find(const pd_lpm4 *lpm, uint32_t ip, uint8_t depth) noexcept nogil:
    cdef uint32_t i = _home4(lpm, ip, depth)
    while lpm.rules[i].used:
        if lpm.rules[i].ip == ip and lpm.rules[i].depth == depth:
            return &lpm.rules[i]
        i = (i + 1) & lpm.rules_mask
    return NULL


cdef pd_lpm4_rule *_r4_insert(pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t nh) noexcept nogil:
    cdef uint32_t i = _home4(lpm, ip, depth)
    while lpm.rules[i].used:
        i = (i + 1) & lpm.rules_mask
    lpm.rules[i].ip = ip
    lpm.rules[i].depth = depth
    lpm.rules[i].nh = nh
    lpm.rules[i].used = 1
    lpm.nrules += 1
    lpm.depth_rules[depth] += 1
    return &lpm.rules[i]


# Linear probing without tombstones: after emptying slot i, pull back each
# later entry of the run whose home is not cyclically in (i, j].
cdef void _r4_remove(pd_lpm4 *lpm, pd_lpm4_rule *r) noexcept nogil:
    cdef uint32_t mask = lpm.rules_mask
    cdef uint32_t i = <uint32_t>(r - lpm.rules), j = i, k
    lpm.nrules -= 1
    lpm.depth_rules[r.depth] -= 1
    while True:
        j = (j + 1) & mask
        if not lpm.rules[j].used:
            break
        k = _home4(lpm, lpm.rules[j].ip, lpm.rules[j].depth)
        if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
            continue
        lpm.rules[i] = lpm.rules[j]
        i = j
    lpm.rules[i].used = 0


# The entry of the longest rule shorter than `depth` that holds ip (0: none
# but possibly /0, which lives in default_entry).
cdef uint32_t _cover4(const pd_lpm4 *lpm, uint32_t ip, uint8_t depth) noexcept nogil:
    cdef int d
    cdef pd_lpm4_rule *r
    for d in range(depth - 1, 0, -1):
        if lpm.depth_rules[d]:
            r = _r4_find(lpm, ip & _mask4(d), d)
            if r != NULL:
                return PD_LPM_VALID | (<uint32_t>d << PD_LPM4_DEPTH_SHIFT) | r.nh
    return 0


cdef int _lpm_tables_init(uint32_t **tbl24, uint32_t **tbl8, pd_lpm_groups *g,
                          uint32_t number_tbl8s) noexcept nogil:
    """The lookup tables both families share: tbl24, the tbl8 groups and their free list."""
    g.number = number_tbl8s           # what _lpm_tables_fini unmaps, even after a failure here
    tbl24[0] = _table_map(PD_LPM_TBL24_ENTRIES)
    tbl8[0] = _table_map(<size_t>number_tbl8s * PD_LPM_GROUP_ENTRIES if number_tbl8s else 1)
    if tbl24[0] == NULL or tbl8[0] == NULL:
        return -1
    return _groups_init(g, number_tbl8s)


cdef void _lpm_tables_fini(uint32_t *tbl24, uint32_t *tbl8, pd_lpm_groups *g) noexcept nogil:
    _table_unmap(tbl24, PD_LPM_TBL24_ENTRIES)
    _table_unmap(tbl8, <size_t>g.number * PD_LPM_GROUP_ENTRIES if g.number else 1)
    _groups_fini(g)


cdef pd_lpm4 *lpm4_create(uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil:
    global errno
    cdef pd_lpm4 *lpm
    if max_rules == 0 or max_rules > (1u << 30) or number_tbl8s > PD_LPM4_NH_MASK + 1:
        errno = EINVAL
        return NULL
    lpm = <pd_lpm4 *>calloc(1, sizeof(pd_lpm4))
    if lpm == NULL:
        errno = ENOMEM
        return NULL
    lpm.max_rules = max_rules
    lpm.rules_mask = _pow2_at_least(<uint64_t>max_rules * 2) - 1
    lpm.rules = <pd_lpm4_rule *>calloc(<size_t>lpm.rules_mask + 1, sizeof(pd_lpm4_rule))
    if (lpm.rules == NULL
            or _lpm_tables_init(&lpm.tbl24, &lpm.tbl8, &lpm.groups, number_tbl8s) != 0):
        lpm4_free(lpm)
        errno = ENOMEM
        return NULL
    return lpm


cdef void lpm4_free(pd_lpm4 *lpm) noexcept nogil:
    if lpm == NULL:
        return
    _lpm_tables_fini(lpm.tbl24, lpm.tbl8, &lpm.groups)
    free(lpm.rules)
    free(lpm)


cdef int lpm4_add(pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t nh) noexcept nogil:
    cdef pd_lpm4_rule *r
    cdef uint32_t new, e, i, first, count, g, j
    cdef uint32_t *grp
    if depth > 32 or nh > PD_LPM4_NH_MASK:
        return -EINVAL
    ip &= _mask4(depth)
    r = _r4_find(lpm, ip, depth)
    if r == NULL:
        if lpm.nrules >= lpm.max_rules:
            return -ENOSPC
        if depth > 24 and not (lpm.tbl24[ip >> 8] & PD_LPM_EXT) and lpm.groups.nfree == 0:
            return -ENOBUFS
        r = _r4_insert(lpm, ip, depth, nh)
    r.nh = nh
    if depth == 0:
        pd_store_release_u32(&lpm.default_entry, PD_LPM_VALID | nh)
        return 0
    new = PD_LPM_VALID | (<uint32_t>depth << PD_LPM4_DEPTH_SHIFT) | nh
    if depth <= 24:
        # Every /24 slot of the range, and inside groups every address, that
        # no longer route holds takes the new route.
        first = ip >> 8
        count = 1u << (24 - depth)
        for i in range(first, first + count):
            e = lpm.tbl24[i]
            if e & PD_LPM_EXT:
                grp = &lpm.tbl8[<size_t>(e & PD_LPM4_NH_MASK) << 8]
                for j in range(PD_LPM_GROUP_ENTRIES):
                    if not (grp[j] & PD_LPM_VALID) or _depth4(grp[j]) <= depth:
                        pd_store_release_u32(&grp[j], new)
            elif not (e & PD_LPM_VALID) or _depth4(e) <= depth:
                pd_store_release_u32(&lpm.tbl24[i], new)
        return 0
    i = ip >> 8
    e = lpm.tbl24[i]
    if e & PD_LPM_EXT:
        g = e & PD_LPM4_NH_MASK
    else:
        g = _group_publish(lpm.tbl8, &lpm.groups, &lpm.tbl24[i])
    grp = &lpm.tbl8[<size_t>g << 8]
    first = ip & 0xff
    count = 1u << (32 - depth)
    for j in range(first, first + count):
        if not (grp[j] & PD_LPM_VALID) or _depth4(grp[j]) <= depth:
            pd_store_release_u32(&grp[j], new)
    return 0


cdef int lpm4_delete(pd_lpm4 *lpm, uint32_t ip, uint8_t depth) noexcept nogil:
    cdef pd_lpm4_rule *r
    cdef uint32_t repl, e, e0, i, first, count, g, j
    cdef uint32_t *grp
    cdef bint uniform
    if depth > 32:
        return -EINVAL
    ip &= _mask4(depth)
    r = _r4_find(lpm, ip, depth)
    if r == NULL:
        return -ENOENT
    _r4_remove(lpm, r)
    if depth == 0:
        pd_store_release_u32(&lpm.default_entry, 0)
        return 0
    repl = _cover4(lpm, ip, depth)
    if depth <= 24:
        # Entries of exactly this depth in the range were this rule's.
        first = ip >> 8
        count = 1u << (24 - depth)
        for i in range(first, first + count):
            e = lpm.tbl24[i]
            if e & PD_LPM_EXT:
                grp = &lpm.tbl8[<size_t>(e & PD_LPM4_NH_MASK) << 8]
                for j in range(PD_LPM_GROUP_ENTRIES):
                    if (grp[j] & PD_LPM_VALID) and _depth4(grp[j]) == depth:
                        pd_store_release_u32(&grp[j], repl)
            elif (e & PD_LPM_VALID) and _depth4(e) == depth:
                pd_store_release_u32(&lpm.tbl24[i], repl)
        return 0
    i = ip >> 8
    g = lpm.tbl24[i] & PD_LPM4_NH_MASK
    grp = &lpm.tbl8[<size_t>g << 8]
    first = ip & 0xff
    count = 1u << (32 - depth)
    for j in range(first, first + count):
        if (grp[j] & PD_LPM_VALID) and _depth4(grp[j]) == depth:
            pd_store_release_u32(&grp[j], repl)
    # No route longer than /24 left in the group: it is uniform (the /24
    # slot's own route or nothing), so the tbl24 slot can say it directly.
    e0 = grp[0]
    uniform = True
    for j in range(PD_LPM_GROUP_ENTRIES):
        if grp[j] != e0 or ((grp[j] & PD_LPM_VALID) and _depth4(grp[j]) > 24):
            uniform = False
            break
    if uniform:
        pd_store_release_u32(&lpm.tbl24[i], e0)
        _group_defer(&lpm.groups, g)     # a reader may still be in it
    return 0


cdef void lpm4_delete_all(pd_lpm4 *lpm) noexcept nogil:
    cdef uint32_t i, e
    for i in range(PD_LPM_TBL24_ENTRIES):
        e = lpm.tbl24[i]
        if e:
            pd_store_release_u32(&lpm.tbl24[i], 0)
            if e & PD_LPM_EXT:
                _group_defer(&lpm.groups, e & PD_LPM4_NH_MASK)
    pd_store_release_u32(&lpm.default_entry, 0)
    memset(lpm.rules, 0, (<size_t>lpm.rules_mask + 1) * sizeof(pd_lpm4_rule))
    memset(lpm.depth_rules, 0, sizeof(lpm.depth_rules))
    lpm.nrules = 0


cdef int lpm4_rule_find(const pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t *nh) noexcept nogil:
    cdef pd_lpm4_rule *r
    if depth > 32:
        return -EINVAL
    r = _r4_find(lpm, ip & _mask4(depth), depth)
    if r == NULL:
        return -ENOENT
    nh[0] = r.nh
    return 0


cdef uint32_t lpm4_reclaim(pd_lpm4 *lpm) noexcept nogil:
    return _groups_reclaim(&lpm.groups)


# ================================ IPv6 =============================================

cdef inline uint8_t _depth6(uint32_t e) noexcept nogil:
    return (e >> PD_LPM6_DEPTH_SHIFT) & 0xff

cdef inline uint32_t _idx24(const uint8_t *ip) noexcept nogil:
    return (<uint32_t>ip[0] << 16) | (<uint32_t>ip[1] << 8) | ip[2]

cdef inline void _mask6(uint8_t *dst, const uint8_t *ip, uint8_t depth) noexcept nogil:
    cdef int b, bits
    for b in range(16):
        bits = depth - 8 * b
        if bits >= 8:
            dst[b] = ip[b]
        elif bits <= 0:
            dst[b] = 0
        else:
            dst[b] = ip[b] & <uint8_t>(0xff << (8 - bits))

cdef inline uint32_t _home6(const pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth) noexcept nogil:
    return <uint32_t>hash_bytes(ip, 16, depth) & lpm.rules_mask


cdef pd_lpm6_rule *_r6_find(const pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth) noexcept nogil:
    cdef uint32_t i = _home6(lpm, ip, depth)
    while lpm.rules[i].used:
        if lpm.rules[i].depth == depth and memcmp(lpm.rules[i].ip, ip, 16) == 0:
            return &lpm.rules[i]
        i = (i + 1) & lpm.rules_mask
    return NULL


cdef pd_lpm6_rule *_r6_insert(pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth, uint32_t nh) noexcept nogil:
    cdef uint32_t i = _home6(lpm, ip, depth)
    while lpm.rules[i].used:
        i = (i + 1) & lpm.rules_mask
    memcpy(lpm.rules[i].ip, ip, 16)
    lpm.rules[i].depth = depth
    lpm.rules[i].nh = nh
    lpm.rules[i].used = 1
    lpm.nrules += 1
    lpm.depth_rules[depth] += 1
    return &lpm.rules[i]


cdef void _r6_remove(pd_lpm6 *lpm, pd_lpm6_rule *r) noexcept nogil:
    cdef uint32_t mask = lpm.rules_mask
    cdef uint32_t i = <uint32_t>(r - lpm.rules), j = i, k
    lpm.nrules -= 1
    lpm.depth_rules[r.depth] -= 1
    while True:
        j = (j + 1) & mask
        if not lpm.rules[j].used:
            break
        k = _home6(lpm, lpm.rules[j].ip, lpm.rules[j].depth)
        if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
            continue
        lpm.rules[i] = lpm.rules[j]
        i = j
    lpm.rules[i].used = 0


cdef uint32_t _cover6(const pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth) noexcept nogil:
    cdef int d
    cdef uint8_t m[16]
    cdef pd_lpm6_rule *r
    for d in range(depth - 1, 0, -1):
        if lpm.depth_rules[d]:
            _mask6(m, ip, d)
            r = _r6_find(lpm, m, d)
            if r != NULL:
                return PD_LPM_VALID | (<uint32_t>d << PD_LPM6_DEPTH_SHIFT) | r.nh
    return 0


# Every entry under *p held by no rule longer than `depth` takes `new`.
cdef void _set6(pd_lpm6 *lpm, uint32_t *p, uint8_t depth, uint32_t new) noexcept nogil:
    cdef uint32_t e = p[0], j
    cdef uint32_t *grp
    if e & PD_LPM_EXT:
        grp = &lpm.tbl8[<size_t>(e & PD_LPM6_NH_MASK) << 8]
        for j in range(PD_LPM_GROUP_ENTRIES):
            _set6(lpm, &grp[j], depth, new)
    elif not (e & PD_LPM_VALID) or _depth6(e) <= depth:
        pd_store_release_u32(p, new)


# Every entry under *p of exactly `depth` takes `repl`.
cdef void _clear6(pd_lpm6 *lpm, uint32_t *p, uint8_t depth, uint32_t repl) noexcept nogil:
    cdef uint32_t e = p[0], j
    cdef uint32_t *grp
    if e & PD_LPM_EXT:
        grp = &lpm.tbl8[<size_t>(e & PD_LPM6_NH_MASK) << 8]
        for j in range(PD_LPM_GROUP_ENTRIES):
            _clear6(lpm, &grp[j], depth, repl)
    elif (e & PD_LPM_VALID) and _depth6(e) == depth:
        pd_store_release_u32(p, repl)


# Defer every group under *p (delete_all).
cdef void _defer6(pd_lpm6 *lpm, uint32_t e) noexcept nogil:
    cdef uint32_t j, g
    cdef uint32_t *grp
    if not (e & PD_LPM_EXT):
        return
    g = e & PD_LPM6_NH_MASK
    grp = &lpm.tbl8[<size_t>g << 8]
    for j in range(PD_LPM_GROUP_ENTRIES):
        _defer6(lpm, grp[j])
    _group_defer(&lpm.groups, g)


# Groups an add of ip/depth (depth > 24) would have to create.
cdef uint32_t _groups_needed6(const pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth) noexcept nogil:
    cdef uint32_t kt = (depth - 1) >> 3, k = 3
    cdef uint32_t e = lpm.tbl24[_idx24(ip)]
    while True:
        if not (e & PD_LPM_EXT):
            return kt - k + 1
        if k == kt:
            return 0
        e = lpm.tbl8[((<size_t>e & PD_LPM6_NH_MASK) << 8) | ip[k]]
        k += 1


cdef pd_lpm6 *lpm6_create(uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil:
    global errno
    cdef pd_lpm6 *lpm
    if max_rules == 0 or max_rules > (1u << 30) or number_tbl8s > PD_LPM6_NH_MASK + 1:
        errno = EINVAL
        return NULL
    lpm = <pd_lpm6 *>calloc(1, sizeof(pd_lpm6))
    if lpm == NULL:
        errno = ENOMEM
        return NULL
    lpm.max_rules = max_rules
    lpm.rules_mask = _pow2_at_least(<uint64_t>max_rules * 2) - 1
    lpm.rules = <pd_lpm6_rule *>calloc(<size_t>lpm.rules_mask + 1, sizeof(pd_lpm6_rule))
    if (lpm.rules == NULL
            or _lpm_tables_init(&lpm.tbl24, &lpm.tbl8, &lpm.groups, number_tbl8s) != 0):
        lpm6_free(lpm)
        errno = ENOMEM
        return NULL
    return lpm


cdef void lpm6_free(pd_lpm6 *lpm) noexcept nogil:
    if lpm == NULL:
        return
    _lpm_tables_fini(lpm.tbl24, lpm.tbl8, &lpm.groups)
    free(lpm.rules)
    free(lpm)


cdef int lpm6_add(pd_lpm6 *lpm, const uint8_t *ip_in, uint8_t depth, uint32_t nh) noexcept nogil:
    cdef uint8_t ip[16]
    cdef pd_lpm6_rule *r
    cdef uint32_t new, i, first, count, g = 0, j, k, kt
    cdef uint32_t *p
    if depth > 128 or nh > PD_LPM6_NH_MASK:
        return -EINVAL
    _mask6(ip, ip_in, depth)
    r = _r6_find(lpm, ip, depth)
    if r == NULL:
        if lpm.nrules >= lpm.max_rules:
            return -ENOSPC
        if depth > 24 and _groups_needed6(lpm, ip, depth) > lpm.groups.nfree:
            return -ENOBUFS
        r = _r6_insert(lpm, ip, depth, nh)
    r.nh = nh
    if depth == 0:
        pd_store_release_u32(&lpm.default_entry, PD_LPM_VALID | nh)
        return 0
    new = PD_LPM_VALID | (<uint32_t>depth << PD_LPM6_DEPTH_SHIFT) | nh
    if depth <= 24:
        first = _idx24(ip)
        count = 1u << (24 - depth)
        for i in range(first, first + count):
            _set6(lpm, &lpm.tbl24[i], depth, new)
        return 0
    # Walk (and grow: each new group means what its parent meant) down to
    # the group of byte kt, where the prefix ends.
    kt = (depth - 1) >> 3
    p = &lpm.tbl24[_idx24(ip)]
    for k in range(3, kt + 1):
        if p[0] & PD_LPM_EXT:
            g = p[0] & PD_LPM6_NH_MASK
        else:
            g = _group_publish(lpm.tbl8, &lpm.groups, p)
        if k < kt:
            p = &lpm.tbl8[(<size_t>g << 8) | ip[k]]
    first = ip[kt]
    count = 1u << (8 * (kt + 1) - depth)
    for j in range(first, first + count):
        _set6(lpm, &lpm.tbl8[(<size_t>g << 8) | j], depth, new)
    return 0


cdef int lpm6_delete(pd_lpm6 *lpm, const uint8_t *ip_in, uint8_t depth) noexcept nogil:
    cdef uint8_t ip[16]
    cdef pd_lpm6_rule *r
    cdef uint32_t repl, i, first, count, g, j, e0, e
    cdef int k, kt
    cdef uint32_t *p
    cdef uint32_t *grp
    cdef uint32_t *path_p[16]
    cdef uint32_t path_g[16]
    cdef bint uniform
    if depth > 128:
        return -EINVAL
    _mask6(ip, ip_in, depth)
    r = _r6_find(lpm, ip, depth)
    if r == NULL:
        return -ENOENT
    _r6_remove(lpm, r)
    if depth == 0:
        pd_store_release_u32(&lpm.default_entry, 0)
        return 0
    repl = _cover6(lpm, ip, depth)
    if depth <= 24:
        first = _idx24(ip)
        count = 1u << (24 - depth)
        for i in range(first, first + count):
            _clear6(lpm, &lpm.tbl24[i], depth, repl)
        return 0
    kt = (depth - 1) >> 3
    p = &lpm.tbl24[_idx24(ip)]
    for k in range(3, kt + 1):
        path_p[k] = p
        path_g[k] = p[0] & PD_LPM6_NH_MASK     # EXT: the rule's groups exist
        if k < kt:
            p = &lpm.tbl8[(<size_t>path_g[k] << 8) | ip[k]]
    g = path_g[kt]
    first = ip[kt]
    count = 1u << (8 * (kt + 1) - depth)
    for j in range(first, first + count):
        _clear6(lpm, &lpm.tbl8[(<size_t>g << 8) | j], depth, repl)
    # Bottom up: a group with no EXT entry and no route longer than its
    # level is uniform; its parent entry can say it directly.
    for k in range(kt, 2, -1):
        grp = &lpm.tbl8[<size_t>path_g[k] << 8]
        e0 = grp[0]
        uniform = True
        for j in range(PD_LPM_GROUP_ENTRIES):
            e = grp[j]
            if e != e0 or (e & PD_LPM_EXT) or ((e & PD_LPM_VALID) and _depth6(e) > 8 * k):
                uniform = False
                break
        if not uniform:
            break
        pd_store_release_u32(path_p[k], e0)
        _group_defer(&lpm.groups, path_g[k])
    return 0


cdef void lpm6_delete_all(pd_lpm6 *lpm) noexcept nogil:
    cdef uint32_t i, e
    for i in range(PD_LPM_TBL24_ENTRIES):
        e = lpm.tbl24[i]
        if e:
            pd_store_release_u32(&lpm.tbl24[i], 0)
            _defer6(lpm, e)
    pd_store_release_u32(&lpm.default_entry, 0)
    memset(lpm.rules, 0, (<size_t>lpm.rules_mask + 1) * sizeof(pd_lpm6_rule))
    memset(lpm.depth_rules, 0, sizeof(lpm.depth_rules))
    lpm.nrules = 0


cdef int lpm6_rule_find(const pd_lpm6 *lpm, const uint8_t *ip_in, uint8_t depth, uint32_t *nh) noexcept nogil:
    cdef uint8_t ip[16]
    cdef pd_lpm6_rule *r
    if depth > 128:
        return -EINVAL
    _mask6(ip, ip_in, depth)
    r = _r6_find(lpm, ip, depth)
    if r == NULL:
        return -ENOENT
    nh[0] = r.nh
    return 0


cdef uint32_t lpm6_reclaim(pd_lpm6 *lpm) noexcept nogil:
    return _groups_reclaim(&lpm.groups)


# ================================ Python =============================================

cdef _raise(int rc, str what, uint32_t max_nh):
    if rc == -EINVAL:
        raise UsageError(f"{what}: depth or next hop out of range", f"depth within the family, next hop 0..{max_nh}")
    if rc == -ENOSPC:
        raise ResourceError(f"{what}: the table holds max_rules rules already", "delete routes or create a bigger table")
    if rc == -ENOBUFS:
        raise ResourceError(f"{what}: no free tbl8 group",
                            "create the table with more number_tbl8s, or reclaim() groups freed by deletes")
    if rc == -ENOENT:
        raise KeyError(f"{what}: no such route")
    raise OSError(-rc, what)


cdef object _as_int(object a):
    """ints and numpy integers as int; anything else unchanged."""
    if isinstance(a, (str, bytes, bytearray)) or not hasattr(a, "__index__"):
        return a
    return operator.index(a)


cdef uint32_t _ip4(object a) except? 0xffffffff:
    a = _as_int(a)
    if isinstance(a, int):
        if not 0 <= a <= 0xffffffff:
            raise UsageError(f"IPv4 address {a} out of range", "give 0..2^32-1 or a dotted quad")
        return a
    try:
        return int(ipaddress.IPv4Address(a))
    except ValueError as e:
        raise UsageError(str(e), "give an IPv4 address like 10.0.0.1 or an int") from None


cdef bytes _ip6(object a):
    a = _as_int(a)
    if isinstance(a, (bytes, bytearray)) and len(a) == 16:
        return bytes(a)
    if isinstance(a, int):
        if not 0 <= a < (1 << 128):
            raise UsageError(f"IPv6 address {a} out of range", "give 0..2^128-1 or text like 2001:db8::1")
        return a.to_bytes(16, "big")
    try:
        return ipaddress.IPv6Address(a).packed
    except ValueError as e:
        raise UsageError(str(e), "give an IPv6 address like 2001:db8::1, 16 bytes or an int") from None


cdef uint8_t _depth(object depth, int maxd) except? 255:
    depth = _as_int(depth)
    if not isinstance(depth, int) or not 0 <= depth <= maxd:
        raise UsageError(f"prefix length {depth!r} out of range", f"give 0..{maxd}")
    return depth


cdef class LPM4:
    """IPv4 longest-prefix match (DIR-24-8) with a rule set.

    Args:
        max_rules: routes it can hold (the /0 route counts).
        number_tbl8s: 256-entry groups for routes longer than /24: one per
            /24 that holds such a route (1 KiB each, mapped lazily).

    The control methods must not run concurrently with each other (the GIL
    serialises Python callers); nogil lookups may run on any lcore at any
    time, through `addr` (a pd_lpm4 *). See lpm.pxd for the rules, and
    reclaim() for when freed groups can be reused.
    """
    cdef pd_lpm4 *lpm

    def __cinit__(self, uint32_t max_rules, uint32_t number_tbl8s=256):
        self.lpm = lpm4_create(max_rules, number_tbl8s)
        if self.lpm == NULL:
            if errno == EINVAL:
                raise UsageError(f"LPM4({max_rules}, {number_tbl8s}): bad size",
                                 f"max_rules 1..2^30, number_tbl8s 0..{PD_LPM4_NH_MASK + 1}")
            raise MemoryError(f"LPM4({max_rules}, {number_tbl8s})")

    def __dealloc__(self):
        lpm4_free(self.lpm)
        self.lpm = NULL

    cdef pd_lpm4 *_p(self) except NULL:
        if self.lpm == NULL:
            raise UsageError("the LPM4 table is closed", "make a new one")
        return self.lpm

    def close(self):
        """Free the tables now (stop every reader first)."""
        lpm4_free(self.lpm)
        self.lpm = NULL

    @property
    def addr(self):
        """The pd_lpm4's address, for nogil code (valid while this object lives)."""
        return <uintptr_t>self._p()

    def add(self, prefix, depth, nh):
        """Add the route prefix/depth -> nh, or change its next hop.

        Args:
            prefix: the network (str, int or IPv4Address); host bits are ignored.
            depth: the prefix length, 0..32.
            nh: the next hop, 0..2^24-1.
        Raises:
            UsageError: bad address, depth or next hop.
            ResourceError: max_rules reached, or no free tbl8 group.
        """
        cdef uint32_t ip = _ip4(prefix)
        cdef uint8_t d = _depth(depth, 32)
        cdef int rc
        nh = _as_int(nh)
        if not isinstance(nh, int) or not 0 <= nh <= PD_LPM4_NH_MASK:
            raise UsageError(f"next hop {nh!r} out of range", f"give 0..{PD_LPM4_NH_MASK}")
        rc = lpm4_add(self._p(), ip, d, nh)
        if rc:
            _raise(rc, f"add {ipaddress.IPv4Address(ip)}/{d}", PD_LPM4_NH_MASK)

    def add_bulk(self, prefixes, depths, nhs):
        """Add many routes from arrays (uint32 host-order prefixes, depths, next hops).

        Returns:
            int: the number added (all of them).
        Raises:
            as add(); routes before the failing one stay added.
        """
        cdef const uint32_t[::1] p = np.ascontiguousarray(prefixes, dtype=np.uint32)
        cdef const uint8_t[::1] d = np.ascontiguousarray(depths, dtype=np.uint8)
        cdef const uint32_t[::1] h = np.ascontiguousarray(nhs, dtype=np.uint32)
        cdef pd_lpm4 *lpm = self._p()
        cdef Py_ssize_t i, n = p.shape[0]
        cdef int rc = 0
        if d.shape[0] != n or h.shape[0] != n:
            raise UsageError("prefixes, depths and nhs differ in length", "pass three arrays of one length")
        # The loop keeps the GIL: it is what makes this thread the only writer.
        for i in range(n):
            rc = lpm4_add(lpm, p[i], d[i], h[i])
            if rc:
                break
        if rc:
            _raise(rc, f"add {ipaddress.IPv4Address(p[i])}/{d[i]} (index {i})", PD_LPM4_NH_MASK)
        return n

    def delete(self, prefix, depth):
        """Delete the route prefix/depth; addresses fall back to the covering route.

        Raises:
            KeyError: no such route.
        """
        cdef uint32_t ip = _ip4(prefix)
        cdef uint8_t d = _depth(depth, 32)
        cdef int rc = lpm4_delete(self._p(), ip, d)
        if rc:
            _raise(rc, f"delete {ipaddress.IPv4Address(ip & (0 if d == 0 else (0xffffffff << (32 - d)) & 0xffffffff))}/{d}",
                   PD_LPM4_NH_MASK)

    def delete_all(self):
        """Delete every route (groups go to the pending list)."""
        lpm4_delete_all(self._p())

    def get(self, prefix, depth):
        """The next hop of the route prefix/depth, or None (an exact match, not a lookup)."""
        cdef uint32_t nh
        if lpm4_rule_find(self._p(), _ip4(prefix), _depth(depth, 32), &nh) != 0:
            return None
        return nh

    def lookup(self, ip):
        """The next hop of the longest prefix holding `ip`, or None."""
        cdef uint32_t a = _ip4(ip), nh
        if lpm4_lookup(self._p(), a, &nh) != 0:
            return None
        return nh

    def lookup_bulk(self, ips):
        """Look up many addresses at once.

        Args:
            ips: a uint32 array of host-order addresses, or any iterable of
                addresses (str/int).
        Returns:
            numpy.ndarray: int64 next hops, -1 where no route matched.
        """
        cdef pd_lpm4 *lpm = self._p()
        arr = ips if isinstance(ips, np.ndarray) else np.fromiter((_ip4(a) for a in ips), dtype=np.uint32)
        cdef const uint32_t[::1] a = np.ascontiguousarray(arr, dtype=np.uint32)
        out = np.empty(a.shape[0], dtype=np.uint32)
        cdef uint32_t[::1] o = out
        if a.shape[0]:
            with nogil:
                lpm4_lookup_bulk(lpm, &a[0], &o[0], a.shape[0], PD_LPM_MISS)
        res = out.astype(np.int64)
        res[out == PD_LPM_MISS] = -1
        return res

    def rules(self):
        """Every route as (prefix str, depth, nh), sorted by address then depth."""
        cdef pd_lpm4 *lpm = self._p()
        cdef uint32_t i
        out = []
        for i in range(lpm.rules_mask + 1):
            if lpm.rules[i].used:
                out.append((lpm.rules[i].ip, lpm.rules[i].depth, lpm.rules[i].nh))
        out.sort()
        return [(str(ipaddress.IPv4Address(ip)), d, nh) for ip, d, nh in out]

    def reclaim(self):
        """Make the groups freed by deletes reusable; returns how many.

        Call it only when no reader can still be inside them: every lcore
        doing lookups has passed a quiescent point (finished the burst it
        was processing) since those deletes. With no concurrent readers,
        any time is right.
        """
        return lpm4_reclaim(self._p())

    def __len__(self):
        return self._p().nrules

    @property
    def max_rules(self):
        return self._p().max_rules

    @property
    def number_tbl8s(self):
        return self._p().groups.number

    @property
    def tbl8_free(self):
        """Groups ready for use."""
        return self._p().groups.nfree

    @property
    def tbl8_pending(self):
        """Groups freed by deletes, waiting for reclaim()."""
        return self._p().groups.npending

    @property
    def tbl8_used(self):
        """Groups holding routes now."""
        cdef pd_lpm4 *lpm = self._p()
        return lpm.groups.number - lpm.groups.nfree - lpm.groups.npending


cdef class LPM6:
    """IPv6 longest-prefix match: a 2^24 first stride, then 8-bit groups.

    Args:
        max_rules: routes it can hold (the ::/0 route counts).
        number_tbl8s: 256-entry groups, at most 2^22. A route longer than
            /24 needs one group per 8 bits past 24 that no other route
            already made: a lone /48 up to 3, a lone /64 up to 5, a /128 up
            to 13; routes under a common prefix share them.

    Methods and rules as LPM4 (addresses: str, int, 16 bytes or IPv6Address;
    next hops 0..2^22-1).
    """
    cdef pd_lpm6 *lpm

    def __cinit__(self, uint32_t max_rules, uint32_t number_tbl8s=1024):
        self.lpm = lpm6_create(max_rules, number_tbl8s)
        if self.lpm == NULL:
            if errno == EINVAL:
                raise UsageError(f"LPM6({max_rules}, {number_tbl8s}): bad size",
                                 f"max_rules 1..2^30, number_tbl8s 0..{PD_LPM6_NH_MASK + 1}")
            raise MemoryError(f"LPM6({max_rules}, {number_tbl8s})")

    def __dealloc__(self):
        lpm6_free(self.lpm)
        self.lpm = NULL

    cdef pd_lpm6 *_p(self) except NULL:
        if self.lpm == NULL:
            raise UsageError("the LPM6 table is closed", "make a new one")
        return self.lpm

    def close(self):
        """Free the tables now (stop every reader first)."""
        lpm6_free(self.lpm)
        self.lpm = NULL

    @property
    def addr(self):
        """The pd_lpm6's address, for nogil code (valid while this object lives)."""
        return <uintptr_t>self._p()

    def add(self, prefix, depth, nh):
        """Add the route prefix/depth -> nh (depth 0..128, nh 0..2^22-1), or change its next hop."""
        cdef bytes ip = _ip6(prefix)
        cdef uint8_t d = _depth(depth, 128)
        cdef int rc
        nh = _as_int(nh)
        if not isinstance(nh, int) or not 0 <= nh <= PD_LPM6_NH_MASK:
            raise UsageError(f"next hop {nh!r} out of range", f"give 0..{PD_LPM6_NH_MASK}")
        rc = lpm6_add(self._p(), <const uint8_t *><char *>ip, d, nh)
        if rc:
            _raise(rc, f"add {ipaddress.IPv6Address(ip)}/{d}", PD_LPM6_NH_MASK)

    def add_bulk(self, prefixes, depths, nhs):
        """Add many routes: prefixes as an (n, 16) uint8 array (network order)."""
        cdef const uint8_t[:, ::1] p = np.ascontiguousarray(prefixes, dtype=np.uint8).reshape(-1, 16)
        cdef const uint8_t[::1] d = np.ascontiguousarray(depths, dtype=np.uint8)
        cdef const uint32_t[::1] h = np.ascontiguousarray(nhs, dtype=np.uint32)
        cdef pd_lpm6 *lpm = self._p()
        cdef Py_ssize_t i, n = p.shape[0]
        cdef int rc = 0
        if d.shape[0] != n or h.shape[0] != n:
            raise UsageError("prefixes, depths and nhs differ in length", "pass arrays of one length")
        for i in range(n):                 # with the GIL: the single writer
            rc = lpm6_add(lpm, &p[i, 0], d[i], h[i])
            if rc:
                break
        if rc:
            _raise(rc, f"add {ipaddress.IPv6Address(bytes(p[i]))}/{d[i]} (index {i})", PD_LPM6_NH_MASK)
        return n

    def delete(self, prefix, depth):
        """Delete the route prefix/depth; addresses fall back to the covering route."""
        cdef bytes ip = _ip6(prefix)
        cdef uint8_t d = _depth(depth, 128)
        cdef int rc = lpm6_delete(self._p(), <const uint8_t *><char *>ip, d)
        if rc:
            _raise(rc, f"delete {ipaddress.IPv6Address(ip)}/{d}", PD_LPM6_NH_MASK)

    def delete_all(self):
        """Delete every route (groups go to the pending list)."""
        lpm6_delete_all(self._p())

    def get(self, prefix, depth):
        """The next hop of the route prefix/depth, or None (an exact match)."""
        cdef bytes ip = _ip6(prefix)
        cdef uint32_t nh
        if lpm6_rule_find(self._p(), <const uint8_t *><char *>ip, _depth(depth, 128), &nh) != 0:
            return None
        return nh

    def lookup(self, ip):
        """The next hop of the longest prefix holding `ip`, or None."""
        cdef bytes a = _ip6(ip)
        cdef uint32_t nh
        if lpm6_lookup(self._p(), <const uint8_t *><char *>a, &nh) != 0:
            return None
        return nh

    def lookup_bulk(self, ips):
        """Look up many addresses: an (n, 16) uint8 array or an iterable of addresses.

        Returns:
            numpy.ndarray: int64 next hops, -1 where no route matched.
        """
        cdef pd_lpm6 *lpm = self._p()
        if isinstance(ips, np.ndarray):
            arr = np.ascontiguousarray(ips, dtype=np.uint8).reshape(-1, 16)
        else:
            arr = np.frombuffer(b"".join(_ip6(a) for a in ips), dtype=np.uint8).reshape(-1, 16)
        cdef const uint8_t[:, ::1] a = arr
        out = np.empty(a.shape[0], dtype=np.uint32)
        cdef uint32_t[::1] o = out
        if a.shape[0]:
            with nogil:
                lpm6_lookup_bulk(lpm, &a[0, 0], &o[0], a.shape[0], PD_LPM_MISS)
        res = out.astype(np.int64)
        res[out == PD_LPM_MISS] = -1
        return res

    def rules(self):
        """Every route as (prefix str, depth, nh), sorted by address then depth."""
        cdef pd_lpm6 *lpm = self._p()
        cdef uint32_t i
        out = []
        for i in range(lpm.rules_mask + 1):
            if lpm.rules[i].used:
                out.append((bytes(lpm.rules[i].ip[:16]), lpm.rules[i].depth, lpm.rules[i].nh))
        out.sort()
        return [(str(ipaddress.IPv6Address(ip)), d, nh) for ip, d, nh in out]

    def reclaim(self):
        """Make the groups freed by deletes reusable; returns how many (see LPM4.reclaim)."""
        return lpm6_reclaim(self._p())

    def __len__(self):
        return self._p().nrules

    @property
    def max_rules(self):
        return self._p().max_rules

    @property
    def number_tbl8s(self):
        return self._p().groups.number

    @property
    def tbl8_free(self):
        return self._p().groups.nfree

    @property
    def tbl8_pending(self):
        return self._p().groups.npending

    @property
    def tbl8_used(self):
        cdef pd_lpm6 *lpm = self._p()
        return lpm.groups.number - lpm.groups.nfree - lpm.groups.npending
