"""IPv6 longest-prefix match: the control side (add, delete, reclaim, grow)
and the Python class LPM6. Lookups are inline in lpm6.pxd; the design,
entry formats and reader/writer rules are in lpm_tbl8.pxd.

Costs (control thread): adding or deleting a route of depth d <= 24 writes
2^(24-d) tbl24 entries plus the groups under them; a longer route touches
one group per 8 bits beyond 24. Memory: the 64 MiB tbl24 is mapped lazily, a
group is 1 KiB, a rule 24 bytes with the rule set sized at twice max_rules.
"""
import ipaddress

import numpy as np

from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset, memcpy, memcmp
from libc.errno cimport errno, EINVAL, ENOMEM, ENOSPC, ENOENT, ENOBUFS

from pypdk.net.hash cimport hash_bytes
from pypdk.net.lpm_tbl8 cimport (pd_lpm_family, lpm_tables_init, lpm_tables_fini, lpm_groups_reclaim,
                                 lpm_tbl24_back,
                                 lpm_pow2_at_least, lpm_group_publish, lpm_group_defer,
                                 lpm_rebuild, lpm_grow_add, lpm_raise, lpm_as_int, lpm_depth)

from pypdk.eal import tablemem
from pypdk.errors import UsageError


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
    lpm_group_defer(&lpm.groups, g)


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
    lpm.rules_mask = lpm_pow2_at_least(<uint64_t>max_rules * 2) - 1
    lpm.rules = <pd_lpm6_rule *>calloc(<size_t>lpm.rules_mask + 1, sizeof(pd_lpm6_rule))
    if (lpm.rules == NULL
            or lpm_tables_init(&lpm.tbl24, &lpm.tbl8, &lpm.groups, number_tbl8s) != 0):
        lpm6_free(lpm)
        errno = ENOMEM
        return NULL
    return lpm


cdef void lpm6_free(pd_lpm6 *lpm) noexcept nogil:
    if lpm == NULL:
        return
    lpm_tables_fini(lpm.tbl24, lpm.tbl8, &lpm.groups)
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
    # The tbl24 range this add writes has its pages first (hugepages: may fail, nothing changed).
    if depth and lpm_tbl24_back(lpm.tbl24, _idx24(ip), 1u << (24 - depth) if depth <= 24 else 1) != 0:
        return -ENOMEM
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
            g = lpm_group_publish(lpm.tbl8, &lpm.groups, p)
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
        lpm_group_defer(&lpm.groups, path_g[k])
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
    return lpm_groups_reclaim(&lpm.groups)


# ---- grow by rebuilding (lpm_tbl8's lpm_grow_add over this family) -------------------

cdef void *_f6_create(uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil:
    return lpm6_create(max_rules, number_tbl8s)

cdef void _f6_free(void *lpm) noexcept nogil:
    lpm6_free(<pd_lpm6 *>lpm)

cdef int _f6_add(void *lpm, const void *ip, uint8_t depth, uint32_t nh) noexcept nogil:
    return lpm6_add(<pd_lpm6 *>lpm, <const uint8_t *>ip, depth, nh)

cdef int _f6_refill(void *dst, const void *src) noexcept nogil:
    cdef const pd_lpm6 *old = <const pd_lpm6 *>src
    cdef uint32_t i
    cdef int rc
    for i in range(old.rules_mask + 1):
        if old.rules[i].used:
            rc = lpm6_add(<pd_lpm6 *>dst, old.rules[i].ip, old.rules[i].depth, old.rules[i].nh)
            if rc != 0:
                return rc
    return 0

cdef pd_lpm_family _family6
_family6.create = _f6_create
_family6.free = _f6_free
_family6.add = _f6_add
_family6.refill = _f6_refill


cdef int lpm6_add_grow(pd_lpm6 *lpm, const uint8_t *ip, uint8_t depth, uint32_t nh,
                       pd_lpm6 **grown) noexcept nogil:
    cdef int rc = lpm6_add(lpm, ip, depth, nh)
    return lpm_grow_add(&_family6, lpm, lpm.max_rules, lpm.groups.number, rc, ip, depth, nh,
                        <void **>grown)


cdef pd_lpm6 *lpm6_rebuild(const pd_lpm6 *old, uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil:
    return <pd_lpm6 *>lpm_rebuild(&_family6, old, max_rules, number_tbl8s)


# ---- Python ---------------------------------------------------------------------------

MAX_NH6 = PD_LPM6_NH_MASK


cdef bytes _ip6(object a):
    a = lpm_as_int(a)
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
        tablemem.mark()         # a hugepage shortage names what all its tables need
        self.lpm = lpm6_create(max_rules, number_tbl8s)
        if self.lpm == NULL:
            if errno == EINVAL:
                raise UsageError(f"LPM6({max_rules}, {number_tbl8s}): bad size",
                                 f"max_rules 1..2^30, number_tbl8s 0..{PD_LPM6_NH_MASK + 1}")
            what = f"LPM6({max_rules}, {number_tbl8s})"
            raise tablemem.take_failure(what) or MemoryError(what)   # hugepages: node and fix

    def __dealloc__(self):
        lpm6_free(self.lpm)
        self.lpm = NULL

    cdef pd_lpm6 *_p(self) except NULL:
        if self.lpm == NULL:
            raise UsageError("the LPM6 table is closed", "make a new one")
        return self.lpm

    def close(self):
        """Free the tables now (stop every reader first); closing twice is a no-op."""
        lpm6_free(self.lpm)
        self.lpm = NULL

    def __enter__(self):
        self._p()
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def addr(self):
        """The pd_lpm6's address, for nogil code (valid while this object lives)."""
        return <uintptr_t>self._p()

    def add(self, prefix, depth, nh):
        """Add the route prefix/depth -> nh (depth 0..128, nh 0..2^22-1), or change its next hop."""
        cdef bytes ip = _ip6(prefix)
        cdef uint8_t d = lpm_depth(depth, 128)
        cdef int rc
        nh = lpm_as_int(nh)
        if not isinstance(nh, int) or not 0 <= nh <= PD_LPM6_NH_MASK:
            raise UsageError(f"next hop {nh!r} out of range", f"give 0..{PD_LPM6_NH_MASK}")
        rc = lpm6_add(self._p(), <const uint8_t *><char *>ip, d, nh)
        if rc:
            lpm_raise(rc, f"add {ipaddress.IPv6Address(ip)}/{d}", PD_LPM6_NH_MASK)

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
            lpm_raise(rc, f"add {ipaddress.IPv6Address(bytes(p[i]))}/{d[i]} (index {i})", PD_LPM6_NH_MASK)
        return n

    def delete(self, prefix, depth):
        """Delete the route prefix/depth; addresses fall back to the covering route."""
        cdef bytes ip = _ip6(prefix)
        cdef uint8_t d = lpm_depth(depth, 128)
        cdef int rc = lpm6_delete(self._p(), <const uint8_t *><char *>ip, d)
        if rc:
            lpm_raise(rc, f"delete {ipaddress.IPv6Address(ip)}/{d}", PD_LPM6_NH_MASK)

    def delete_all(self):
        """Delete every route (groups go to the pending list)."""
        lpm6_delete_all(self._p())

    def get(self, prefix, depth):
        """The next hop of the route prefix/depth, or None (an exact match)."""
        cdef bytes ip = _ip6(prefix)
        cdef uint32_t nh
        if lpm6_rule_find(self._p(), <const uint8_t *><char *>ip, lpm_depth(depth, 128), &nh) != 0:
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
