"""Longest-prefix match, the part both families share (lpm_tbl8.pxd): the
tbl8 group allocator, the tables' memory, the grow-by-rebuild and the
Python classes' argument and error helpers. The families and their classes:
`pypdk.net.lpm4` (LPM4) and `pypdk.net.lpm6` (LPM6).

Memory: the 64 MiB tbl24 and the tbl8 groups (1 KiB each) are table memory
(pypdk.eal.tablemem): lazily backed ordinary/THP pages by default, or the
EAL's hugepages on one node (Eal.place_tables). The tbl24 is a sparse table:
an add backs the range it writes first (lpm_tbl24_back), so on hugepages a
table pays one 2 MiB page per 1/32 of the address space its routes touch.
"""
import operator

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.errno cimport EINVAL, ENOMEM, ENOSPC, ENOENT, ENOBUFS

from pypdk.eal.tablemem cimport table_mem_map, table_mem_map_sparse, table_mem_back, table_mem_unmap

from pypdk.errors import UsageError, ResourceError
from pypdk.eal import tablemem

MISS = PD_LPM_MISS


# ---- tables and groups --------------------------------------------------------------

cdef inline size_t _tbl8_bytes(uint32_t number_tbl8s) noexcept nogil:
    # a table without groups still maps one entry: tbl8 is never NULL
    return (<size_t>number_tbl8s * PD_LPM_GROUP_ENTRIES if number_tbl8s else 1) * sizeof(uint32_t)


cdef int lpm_tables_init(uint32_t **tbl24, uint32_t **tbl8, pd_lpm_groups *g,
                         uint32_t number_tbl8s) noexcept nogil:
    cdef uint32_t i
    g.number = number_tbl8s           # what lpm_tables_fini unmaps, even after a failure here
    tbl24[0] = <uint32_t *>table_mem_map_sparse(<size_t>PD_LPM_TBL24_ENTRIES * sizeof(uint32_t))
    tbl8[0] = <uint32_t *>table_mem_map(_tbl8_bytes(number_tbl8s))
    if tbl24[0] == NULL or tbl8[0] == NULL:
        return -1
    g.free_ids = <uint32_t *>calloc(number_tbl8s if number_tbl8s else 1, sizeof(uint32_t))
    g.pending_ids = <uint32_t *>calloc(number_tbl8s if number_tbl8s else 1, sizeof(uint32_t))
    if g.free_ids == NULL or g.pending_ids == NULL:
        return -1
    for i in range(number_tbl8s):
        g.free_ids[i] = number_tbl8s - 1 - i   # popped from the top: group 0 first
    g.nfree = number_tbl8s
    g.npending = 0
    return 0


cdef void lpm_tables_fini(uint32_t *tbl24, uint32_t *tbl8, pd_lpm_groups *g) noexcept nogil:
    table_mem_unmap(tbl24, <size_t>PD_LPM_TBL24_ENTRIES * sizeof(uint32_t))
    table_mem_unmap(tbl8, _tbl8_bytes(g.number))
    free(g.free_ids)
    free(g.pending_ids)


cdef int lpm_tbl24_back(uint32_t *tbl24, uint32_t first, uint32_t count) noexcept nogil:
    if table_mem_back(tbl24, <size_t>first * sizeof(uint32_t), <size_t>count * sizeof(uint32_t)) != 0:
        return -ENOMEM
    return 0


cdef uint32_t lpm_groups_reclaim(pd_lpm_groups *g) noexcept nogil:
    cdef uint32_t i, n = g.npending
    for i in range(n):
        g.free_ids[g.nfree] = g.pending_ids[i]
        g.nfree += 1
    g.npending = 0
    return n


# ---- grow by rebuilding ----------------------------------------------------------------

cdef void *lpm_rebuild(const pd_lpm_family *f, const void *old, uint32_t max_rules,
                       uint32_t number_tbl8s) noexcept nogil:
    cdef void *lpm
    cdef uint64_t groups = number_tbl8s
    cdef int rc
    while groups <= PD_LPM_GROW_MAX:
        lpm = f.create(max_rules, <uint32_t>groups)
        if lpm == NULL or old == NULL:
            return lpm
        rc = f.refill(lpm, old)
        if rc == 0:
            return lpm
        f.free(lpm)
        if rc != -ENOBUFS:
            return NULL         # out of table memory (hugepages): no bigger table will fit
        groups = groups * 4 if groups else 1   # the old groups did not fit in the new count: more
    return NULL


cdef int lpm_grow_add(const pd_lpm_family *f, void *lpm, uint32_t max_rules, uint32_t number_tbl8s,
                      int rc, const void *ip, uint8_t depth, uint32_t nh, void **grown) noexcept nogil:
    cdef uint64_t rules = max_rules, groups = number_tbl8s
    cdef void *new
    grown[0] = NULL
    while rc == -ENOSPC or rc == -ENOBUFS:
        if rc == -ENOSPC:
            rules *= 2
        else:
            groups = groups * 4 if groups else 1
        if rules > PD_LPM_GROW_MAX or groups > PD_LPM_GROW_MAX:
            return -ENOMEM              # past what lpm*_create takes anyway
        new = lpm_rebuild(f, lpm, <uint32_t>rules, <uint32_t>groups)
        if new == NULL:
            return -ENOMEM
        rc = f.add(new, ip, depth, nh)
        if rc == 0:
            grown[0] = new
            return 0
        f.free(new)
    return rc


# ---- the Python classes' helpers -------------------------------------------------------

cdef int lpm_raise(int rc, str what, uint32_t max_nh) except -1:
    if rc == -EINVAL:
        raise UsageError(f"{what}: depth or next hop out of range", f"depth within the family, next hop 0..{max_nh}")
    if rc == -ENOSPC:
        raise ResourceError(f"{what}: the table holds max_rules rules already", "delete routes or create a bigger table")
    if rc == -ENOBUFS:
        raise ResourceError(f"{what}: no free tbl8 group",
                            "create the table with more number_tbl8s, or reclaim() groups freed by deletes")
    if rc == -ENOENT:
        raise KeyError(f"{what}: no such route")
    if rc == -ENOMEM:
        err = tablemem.take_failure(what)      # hugepage table memory (Eal.place_tables)
        if err is not None:
            raise err
    raise OSError(-rc, what)


cdef object lpm_as_int(object a):
    if isinstance(a, (str, bytes, bytearray)) or not hasattr(a, "__index__"):
        return a
    return operator.index(a)


cdef uint8_t lpm_depth(object depth, int maxd) except? 255:
    depth = lpm_as_int(depth)
    if not isinstance(depth, int) or not 0 <= depth <= maxd:
        raise UsageError(f"prefix length {depth!r} out of range", f"give 0..{maxd}")
    return depth
