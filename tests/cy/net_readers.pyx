"""nogil readers for the LPM and flow-hash concurrency tests (tests only).

A reader runs on a worker lcore (lcore.pxd) and looks up addresses or keys
in a loop while the test's main thread, holding the GIL, adds and deletes.
Every result is checked against what *any* state of the table could give
(the tests choose next hops and data that say which route or key they
belong to), so a torn entry, a half-built group, a recycled group or record
seen too early, or a key returned for the wrong record shows up as an error.

Each pass over a batch is one read-side critical section: between batches
the reader bumps `passes` (its quiescent-state counter, release), and the
writer calls reclaim() only after seeing `passes` move past the value it
read after its deletes (`wait_quiescent`).
"""
from libc.stdint cimport uint8_t, uint16_t, int32_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from pypdk.eal.lcore cimport lcore_function_new, lcore_function_t
from pypdk.net.lpm4 cimport pd_lpm4, lpm4_lookup, lpm4_lookup_bulk
from pypdk.net.lpm6 cimport pd_lpm6, lpm6_lookup, lpm6_lookup_bulk
from pypdk.net.flow_hash cimport pd_flow_hash, flow_hash_lookup, flow_hash_lookup_bulk

from pd_atomic cimport (pd_load_acquire_u64, pd_store_release_u64, pd_load_acquire_int,
                        pd_store_release_int)

from pd_compiler cimport pd_pause

cdef enum:
    BATCH = 64
    MAX_ERRS = 8

ctypedef struct reader_t:
    int quit                  # set by the test
    int kind                  # 4, 6 (LPM) or 0 (flow hash)
    void *table
    # LPM: addresses (host-order uint32 or 16-byte) and what they may give
    uint32_t *addrs4
    uint8_t *addrs6
    uint32_t naddrs
    uint32_t stable_nh        # next hop of the route that always covers `covered` addresses
    uint32_t ncovered         # the first ncovered addresses are always covered
    uint32_t default_nh       # the churned /0's next hop
    # flow hash: keys of 40 bytes, index i in bytes 0-3; class in byte 4
    uint8_t *keys
    uint32_t nkeys
    # results
    uint64_t passes
    uint64_t lookups
    uint64_t hits
    uint64_t errors
    uint64_t err_info[MAX_ERRS][3]


cdef inline uint32_t _lcg(uint32_t *s) noexcept nogil:
    s[0] = s[0] * 1664525u + 1013904223u
    return s[0] >> 8


cdef inline void _note_error(reader_t *r, uint64_t a, uint64_t b, uint64_t c) noexcept nogil:
    cdef uint64_t k = r.errors
    if k < MAX_ERRS:
        r.err_info[k][0] = a
        r.err_info[k][1] = b
        r.err_info[k][2] = c
    r.errors += 1


# ---- LPM ------------------------------------------------------------------------
# Churned routes live inside the stable route's space and have next hop
#   nh = depth << SHIFT | (prefix bits [base, min(depth, base + BITS)))
# so a reader can tell whether a next hop could belong to a route holding
# the address: IPv4 base 8 (inside 10/8), 18 bits; IPv6 base 32 (inside
# 2001:db8::/32), 14 bits.

cdef inline bint _nh4_ok(uint32_t a, uint32_t nh) noexcept nogil:
    cdef uint32_t d = nh >> 18, dd
    if d < 9 or d > 32:
        return False
    dd = d if d < 26 else 26
    return (nh & 0x3ffff) == ((a >> (32 - dd)) & ((1u << (dd - 8)) - 1))


cdef inline bint _check4(reader_t *r, uint32_t i, uint32_t a, uint32_t nh, bint hit) noexcept nogil:
    if i < r.ncovered:
        return hit and (nh == r.stable_nh or _nh4_ok(a, nh))
    return (not hit) or nh == r.default_nh


cdef inline uint32_t _bits6(const uint8_t *a, uint32_t lo, uint32_t hi) noexcept nogil:
    """Address bits [lo, hi) as a number (hi - lo <= 32)."""
    cdef uint64_t v = 0
    cdef uint32_t b
    for b in range(lo, hi):
        v = (v << 1) | ((a[b >> 3] >> (7 - (b & 7))) & 1)
    return <uint32_t>v


cdef inline bint _nh6_ok(const uint8_t *a, uint32_t nh) noexcept nogil:
    cdef uint32_t d = nh >> 14, dd
    if d < 33 or d > 128:
        return False
    dd = d if d < 46 else 46
    return (nh & 0x3fff) == _bits6(a, 32, dd)


cdef inline bint _check6(reader_t *r, uint32_t i, const uint8_t *a, uint32_t nh, bint hit) noexcept nogil:
    if i < r.ncovered:
        return hit and (nh == r.stable_nh or _nh6_ok(a, nh))
    return (not hit) or nh == r.default_nh


cdef int lpm_reader(void *arg) noexcept nogil:
    cdef reader_t *r = <reader_t *>arg
    cdef uint32_t idx[BATCH]
    cdef uint32_t a4[BATCH]
    cdef uint8_t a6[BATCH * 16]
    cdef uint32_t nhs[BATCH]
    cdef uint32_t seed = 12345, nh
    cdef int j
    cdef int rc
    while not pd_load_acquire_int(&r.quit):
        for j in range(BATCH):
            idx[j] = _lcg(&seed) % r.naddrs
            if r.kind == 4:
                a4[j] = r.addrs4[idx[j]]
            else:
                memcpy(&a6[16 * j], &r.addrs6[16 * idx[j]], 16)
        if r.kind == 4:
            lpm4_lookup_bulk(<pd_lpm4 *>r.table, a4, nhs, BATCH, 0xffffffffu)
            for j in range(BATCH):
                if not _check4(r, idx[j], a4[j], nhs[j], nhs[j] != 0xffffffffu):
                    _note_error(r, idx[j], nhs[j], 1)
                rc = lpm4_lookup(<pd_lpm4 *>r.table, a4[j], &nh)
                if not _check4(r, idx[j], a4[j], nh, rc == 0):
                    _note_error(r, idx[j], nh if rc == 0 else 0xffffffffu, 2)
                r.hits += rc == 0
        else:
            lpm6_lookup_bulk(<pd_lpm6 *>r.table, a6, nhs, BATCH, 0xffffffffu)
            for j in range(BATCH):
                if not _check6(r, idx[j], &a6[16 * j], nhs[j], nhs[j] != 0xffffffffu):
                    _note_error(r, idx[j], nhs[j], 1)
                rc = lpm6_lookup(<pd_lpm6 *>r.table, &a6[16 * j], &nh)
                if not _check6(r, idx[j], &a6[16 * j], nh, rc == 0):
                    _note_error(r, idx[j], nh if rc == 0 else 0xffffffffu, 2)
                r.hits += rc == 0
        r.lookups += 2 * BATCH
        pd_store_release_u64(&r.passes, r.passes + 1)    # quiescent point
    return 0


# ---- flow hash ----------------------------------------------------------------------
# Key i: bytes 0-3 = i, byte 4 = class (0 stable: always there, 1 churned:
# there or not, 2 never added), the rest a pattern of i. Data = i ^ 0x5a5a5a5a.

cdef inline bint _key_check(reader_t *r, uint32_t i, int32_t pos, uint32_t data) noexcept nogil:
    cdef uint8_t cls = r.keys[40 * i + 4]
    if pos < 0:
        return cls != 0
    return cls != 2 and data == (i ^ 0x5a5a5a5au)


cdef int flow_reader(void *arg) noexcept nogil:
    cdef reader_t *r = <reader_t *>arg
    cdef pd_flow_hash *h = <pd_flow_hash *>r.table
    cdef const void *ptrs[BATCH]
    cdef uint32_t idx[BATCH]
    cdef int32_t pos[BATCH]
    cdef uint32_t data[BATCH]
    cdef uint32_t seed = 777, d
    cdef int j
    cdef int32_t p
    while not pd_load_acquire_int(&r.quit):
        for j in range(BATCH):
            idx[j] = _lcg(&seed) % r.nkeys
            ptrs[j] = &r.keys[40 * idx[j]]
        flow_hash_lookup_bulk(h, ptrs, BATCH, pos, data)
        for j in range(BATCH):
            if not _key_check(r, idx[j], pos[j], data[j]):
                _note_error(r, idx[j], <uint32_t>pos[j], 1)
            p = flow_hash_lookup(h, ptrs[j], &d)
            if not _key_check(r, idx[j], p, d):
                _note_error(r, idx[j], <uint32_t>p, 2)
            r.hits += p >= 0
        r.lookups += 2 * BATCH
        pd_store_release_u64(&r.passes, r.passes + 1)
    return 0


cdef class Reader:
    """A reader's shared state, owned here while its lcore runs."""
    cdef reader_t r
    cdef object keep          # the table object and the arrays the pointers point into

    def start(self, eal, unsigned lcore):
        cdef lcore_function_t fn = lpm_reader if self.r.kind else flow_reader
        eal.remote_launch(lcore_function_new(fn, &self.r, self), lcore)

    @property
    def passes(self):
        return pd_load_acquire_u64(&self.r.passes)

    def wait_quiescent(self, timeout=10.0):
        """Return once the reader has finished a batch it began after this call."""
        import time
        cdef uint64_t p0 = pd_load_acquire_u64(&self.r.passes)
        deadline = time.monotonic() + timeout
        while pd_load_acquire_u64(&self.r.passes) <= p0:
            if time.monotonic() > deadline:
                raise TimeoutError("reader made no progress")
            time.sleep(0)

    def stop(self, eal, unsigned lcore):
        pd_store_release_int(&self.r.quit, 1)
        eal.wait_lcore(lcore)
        return {"passes": self.r.passes, "lookups": self.r.lookups, "hits": self.r.hits,
                "errors": self.r.errors,
                "first_errors": [(self.r.err_info[k][0], self.r.err_info[k][1], self.r.err_info[k][2])
                                 for k in range(min(self.r.errors, MAX_ERRS))]}


def lpm4_reader(table, addrs, uint32_t ncovered, uint32_t stable_nh, uint32_t default_nh):
    """A reader over LPM4 `table` (an LPM4) for host-order uint32 `addrs` (numpy)."""
    cdef Reader rd = Reader()
    cdef const uint32_t[::1] a = addrs
    rd.r.kind = 4
    rd.r.table = <void *><uintptr_t>table.addr
    rd.r.addrs4 = <uint32_t *>&a[0]
    rd.r.naddrs = a.shape[0]
    rd.r.ncovered = ncovered
    rd.r.stable_nh = stable_nh
    rd.r.default_nh = default_nh
    rd.keep = (table, addrs)
    return rd


def lpm6_reader(table, addrs, uint32_t ncovered, uint32_t stable_nh, uint32_t default_nh):
    """A reader over LPM6 `table` for an (n, 16) uint8 array of addresses."""
    cdef Reader rd = Reader()
    cdef const uint8_t[:, ::1] a = addrs
    rd.r.kind = 6
    rd.r.table = <void *><uintptr_t>table.addr
    rd.r.addrs6 = <uint8_t *>&a[0, 0]
    rd.r.naddrs = a.shape[0]
    rd.r.ncovered = ncovered
    rd.r.stable_nh = stable_nh
    rd.r.default_nh = default_nh
    rd.keep = (table, addrs)
    return rd


def flow_reader_new(table, keys):
    """A reader over FlowHash `table` for an (n, 40) uint8 array of keys built as above."""
    cdef Reader rd = Reader()
    cdef const uint8_t[:, ::1] k = keys
    rd.r.kind = 0
    rd.r.table = <void *><uintptr_t>table.addr
    rd.r.keys = <uint8_t *>&k[0, 0]
    rd.r.nkeys = k.shape[0]
    rd.keep = (table, keys)
    return rd


def flow_record_ver(table, uint32_t pos, ver=None):
    """The sequence counter of the record at pos; set it when `ver` is given (white-box tests)."""
    cdef pd_flow_hash *h = <pd_flow_hash *><uintptr_t>table.addr
    cdef uint32_t *p = <uint32_t *>(h.records + (<size_t>pos << h.rec_shift))
    old = p[0]
    if ver is not None:
        p[0] = ver
    return old
