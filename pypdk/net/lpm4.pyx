"""IPv4 longest-prefix match (DIR-24-8): the control side (add, delete,
reclaim, grow) and the Python class LPM4. Lookups are inline in lpm4.pxd;
the design, entry formats and reader/writer rules are in lpm_tbl8.pxd.

Costs (control thread): adding or deleting a route of depth d <= 24 writes
2^(24-d) tbl24 entries (a /8: 65536) plus the groups under them; a longer
route touches one group. Memory: the 64 MiB tbl24 is mapped lazily, a group
is 1 KiB, a rule 12 bytes with the rule set sized at twice max_rules.
"""
import ipaddress

import numpy as np

from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset, memcpy, memcmp
from libc.errno cimport errno, EINVAL, ENOMEM, ENOSPC, ENOENT, ENOBUFS

from pypdk.net.hash cimport hash_mix64
from pypdk.net.lpm_tbl8 cimport (pd_lpm_family, lpm_tables_init, lpm_tables_fini, lpm_groups_reclaim,
                                 lpm_tbl24_back,
                                 lpm_pow2_at_least, lpm_group_publish, lpm_group_defer,
                                 lpm_rebuild, lpm_grow_add, lpm_raise, lpm_as_int, lpm_depth)

from pypdk.eal import tablemem
from pypdk.errors import UsageError


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
    lpm.rules_mask = lpm_pow2_at_least(<uint64_t>max_rules * 2) - 1
    lpm.rules = <pd_lpm4_rule *>calloc(<size_t>lpm.rules_mask + 1, sizeof(pd_lpm4_rule))
    if (lpm.rules == NULL
            or lpm_tables_init(&lpm.tbl24, &lpm.tbl8, &lpm.groups, number_tbl8s) != 0):
        lpm4_free(lpm)
        errno = ENOMEM
        return NULL
    return lpm


cdef void lpm4_free(pd_lpm4 *lpm) noexcept nogil:
    if lpm == NULL:
        return
    lpm_tables_fini(lpm.tbl24, lpm.tbl8, &lpm.groups)
    free(lpm.rules)
    free(lpm)


cdef int lpm4_add(pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t nh) noexcept nogil:
    cdef pd_lpm4_rule *r
    cdef uint32_t new, e, i, first, count, g, j
    cdef uint32_t *grp
    if depth > 32 or nh > PD_LPM4_NH_MASK:
        return -EINVAL
    ip &= _mask4(depth)
    # The tbl24 range this add writes has its pages first (hugepages: may fail, nothing changed).
    if depth and lpm_tbl24_back(lpm.tbl24, ip >> 8, 1u << (24 - depth) if depth <= 24 else 1) != 0:
        return -ENOMEM
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
        g = lpm_group_publish(lpm.tbl8, &lpm.groups, &lpm.tbl24[i])
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
        lpm_group_defer(&lpm.groups, g)     # a reader may still be in it
    return 0


cdef void lpm4_delete_all(pd_lpm4 *lpm) noexcept nogil:
    cdef uint32_t i, e
    for i in range(PD_LPM_TBL24_ENTRIES):
        e = lpm.tbl24[i]
        if e:
            pd_store_release_u32(&lpm.tbl24[i], 0)
            if e & PD_LPM_EXT:
                lpm_group_defer(&lpm.groups, e & PD_LPM4_NH_MASK)
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
    return lpm_groups_reclaim(&lpm.groups)


# ---- grow by rebuilding (lpm_tbl8's lpm_grow_add over this family) -------------------

cdef void *_f4_create(uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil:
    return lpm4_create(max_rules, number_tbl8s)

cdef void _f4_free(void *lpm) noexcept nogil:
    lpm4_free(<pd_lpm4 *>lpm)

cdef int _f4_add(void *lpm, const void *ip, uint8_t depth, uint32_t nh) noexcept nogil:
    return lpm4_add(<pd_lpm4 *>lpm, (<const uint32_t *>ip)[0], depth, nh)

cdef int _f4_refill(void *dst, const void *src) noexcept nogil:
    cdef const pd_lpm4 *old = <const pd_lpm4 *>src
    cdef uint32_t i
    cdef int rc
    for i in range(old.rules_mask + 1):
        if old.rules[i].used:
            rc = lpm4_add(<pd_lpm4 *>dst, old.rules[i].ip, old.rules[i].depth, old.rules[i].nh)
            if rc != 0:
                return rc
    return 0

cdef pd_lpm_family _family4
_family4.create = _f4_create
_family4.free = _f4_free
_family4.add = _f4_add
_family4.refill = _f4_refill


cdef int lpm4_add_grow(pd_lpm4 *lpm, uint32_t ip, uint8_t depth, uint32_t nh,
                       pd_lpm4 **grown) noexcept nogil:
    cdef int rc = lpm4_add(lpm, ip, depth, nh)
    return lpm_grow_add(&_family4, lpm, lpm.max_rules, lpm.groups.number, rc, &ip, depth, nh,
                        <void **>grown)


cdef pd_lpm4 *lpm4_rebuild(const pd_lpm4 *old, uint32_t max_rules, uint32_t number_tbl8s) noexcept nogil:
    return <pd_lpm4 *>lpm_rebuild(&_family4, old, max_rules, number_tbl8s)


# ---- Python ---------------------------------------------------------------------------

MAX_NH4 = PD_LPM4_NH_MASK


cdef uint32_t _ip4(object a) except? 0xffffffff:
    a = lpm_as_int(a)
    if isinstance(a, int):
        if not 0 <= a <= 0xffffffff:
            raise UsageError(f"IPv4 address {a} out of range", "give 0..2^32-1 or a dotted quad")
        return a
    try:
        return int(ipaddress.IPv4Address(a))
    except ValueError as e:
        raise UsageError(str(e), "give an IPv4 address like 10.0.0.1 or an int") from None


cdef class LPM4:
    """IPv4 longest-prefix match (DIR-24-8) with a rule set.

    Args:
        max_rules: routes it can hold (the /0 route counts).
        number_tbl8s: 256-entry groups for routes longer than /24: one per
            /24 that holds such a route (1 KiB each, mapped lazily).

    The control methods must not run concurrently with each other (the GIL
    serialises Python callers); nogil lookups may run on any lcore at any
    time, through `addr` (a pd_lpm4 *). See lpm_tbl8.pxd for the rules, and
    reclaim() for when freed groups can be reused.
    """
    cdef pd_lpm4 *lpm

    def __cinit__(self, uint32_t max_rules, uint32_t number_tbl8s=256):
        tablemem.mark()         # a hugepage shortage names what all its tables need
        self.lpm = lpm4_create(max_rules, number_tbl8s)
        if self.lpm == NULL:
            if errno == EINVAL:
                raise UsageError(f"LPM4({max_rules}, {number_tbl8s}): bad size",
                                 f"max_rules 1..2^30, number_tbl8s 0..{PD_LPM4_NH_MASK + 1}")
            what = f"LPM4({max_rules}, {number_tbl8s})"
            raise tablemem.take_failure(what) or MemoryError(what)   # hugepages: node and fix

    def __dealloc__(self):
        lpm4_free(self.lpm)
        self.lpm = NULL

    cdef pd_lpm4 *_p(self) except NULL:
        if self.lpm == NULL:
            raise UsageError("the LPM4 table is closed", "make a new one")
        return self.lpm

    def close(self):
        """Free the tables now (stop every reader first); closing twice is a no-op."""
        lpm4_free(self.lpm)
        self.lpm = NULL

    def __enter__(self):
        self._p()
        return self

    def __exit__(self, *exc):
        self.close()

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
        cdef uint8_t d = lpm_depth(depth, 32)
        cdef int rc
        nh = lpm_as_int(nh)
        if not isinstance(nh, int) or not 0 <= nh <= PD_LPM4_NH_MASK:
            raise UsageError(f"next hop {nh!r} out of range", f"give 0..{PD_LPM4_NH_MASK}")
        rc = lpm4_add(self._p(), ip, d, nh)
        if rc:
            lpm_raise(rc, f"add {ipaddress.IPv4Address(ip)}/{d}", PD_LPM4_NH_MASK)

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
            lpm_raise(rc, f"add {ipaddress.IPv4Address(p[i])}/{d[i]} (index {i})", PD_LPM4_NH_MASK)
        return n

    def delete(self, prefix, depth):
        """Delete the route prefix/depth; addresses fall back to the covering route.

        Raises:
            KeyError: no such route.
        """
        cdef uint32_t ip = _ip4(prefix)
        cdef uint8_t d = lpm_depth(depth, 32)
        cdef int rc = lpm4_delete(self._p(), ip, d)
        if rc:
            lpm_raise(rc, f"delete {ipaddress.IPv4Address(ip & (0 if d == 0 else (0xffffffff << (32 - d)) & 0xffffffff))}/{d}",
                   PD_LPM4_NH_MASK)

    def delete_all(self):
        """Delete every route (groups go to the pending list)."""
        lpm4_delete_all(self._p())

    def get(self, prefix, depth):
        """The next hop of the route prefix/depth, or None (an exact match, not a lookup)."""
        cdef uint32_t nh
        if lpm4_rule_find(self._p(), _ip4(prefix), lpm_depth(depth, 32), &nh) != 0:
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
