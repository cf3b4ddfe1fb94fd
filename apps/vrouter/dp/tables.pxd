# Lookup tables the datapath uses: route tables (LPM) and exact-match hash
# tables (flows, bridge entries, VNIs), behind one small adapter so the
# packet paths do not depend on how they are built.
#
# INTERIM: pypdk/net/lpm.pxd and flow_hash.pxd (DIR-24-8 / LPM6 and the
# single-writer flow hash) are being written; until they land this file
# holds the smallest correct stand-ins: a route table is an immutable array
# of prefixes sorted longest first (linear scan; rebuilt and republished by
# the control thread on every change), and a hash table is open addressing
# with linear probing over fixed-size keys. The adapter functions keep the
# names and semantics the real ones will be wired to (lookup -> value or
# miss; add reports full), so the swap touches only this file and tables.pyx.
#
# Concurrency (both): one writer (the control thread, or a forwarding lcore
# under the flow lock), lock-free readers. A route table is published by a
# release store of its pointer; a hash slot is filled (key, value) and then
# made visible by a release store of its state word, read with acquire.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from pypdk.net.byteorder cimport pd_load_u32

cdef extern from "pd_atomic.h":
    uint32_t pd_load_acquire_u32(const uint32_t *p) nogil
    void pd_store_release_u32(uint32_t *p, uint32_t v) nogil

ctypedef struct vr_rt_entry:
    uint8_t addr[16]            # network order, host bits zero
    uint32_t plen
    uint32_t value

ctypedef struct vr_rt_table:
    uint32_t n
    uint32_t family             # 4 or 6
    vr_rt_entry e[1]            # n entries, longest prefix first

cdef inline bint _rt_match(const uint8_t *a, const uint8_t *p, uint32_t plen) noexcept nogil:
    cdef uint32_t i = 0
    while plen >= 8:
        if a[i] != p[i]:
            return False
        i += 1
        plen -= 8
    if plen:
        return ((a[i] ^ p[i]) & <uint8_t>(0xff00 >> plen)) == 0
    return True

# Longest-prefix match of addr (network order, 4 or 16 bytes): 0 and *value
# on a hit, -1 on a miss (t may be NULL: an empty table).
cdef inline int rt_lookup(const vr_rt_table *t, const uint8_t *addr, uint32_t *value) noexcept nogil:
    cdef uint32_t i
    if t == NULL:
        return -1
    for i in range(t.n):
        if _rt_match(addr, t.e[i].addr, t.e[i].plen):
            value[0] = t.e[i].value
            return 0
    return -1


# ---- exact match ---------------------------------------------------------

cdef enum:
    HT_EMPTY = 0
    HT_USED = 1
    HT_DELETED = 2              # a tombstone: probing goes on past it
    HT_KEY_MAX = 40

ctypedef struct vr_hash:
    uint32_t size               # slots, a power of two
    uint32_t mask
    uint32_t key_len            # bytes, <= HT_KEY_MAX
    uint32_t count
    uint32_t max_count          # "full" beyond this (keeps probes short)
    uint32_t *state             # HT_* per slot (release store publishes a slot)
    uint32_t *sig
    uint8_t *keys               # size * key_len

cdef vr_hash *hash_create(uint32_t entries, uint32_t key_len) noexcept nogil
cdef void hash_free(vr_hash *h) noexcept nogil
# Slot index of key, or -1.
cdef int32_t hash_lookup(const vr_hash *h, const void *key, uint32_t sig) noexcept nogil
# Slot index of key (added if absent), or -1 when the table is full.
cdef int32_t hash_add(vr_hash *h, const void *key, uint32_t sig) noexcept nogil
# Slot index the key had, or -1 if absent. The slot may be reused by the
# next add: callers that keep per-slot data clear it first.
cdef int32_t hash_del(vr_hash *h, const void *key, uint32_t sig) noexcept nogil

# A 32-bit hash of a key of n bytes (n a multiple of 4). The words are read
# with pd_load_u32 (a memcpy), not through a uint32_t pointer: keys are
# structs of narrower fields written just before, and a uint32_t load may
# not alias them (C strict aliasing; GCC -O3 then hashes stale bytes).
cdef inline uint32_t hash_key(const void *key, uint32_t n) noexcept nogil:
    cdef const uint8_t *w = <const uint8_t *>key
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ n
    cdef uint32_t i
    for i in range(n >> 2):
        h = (h ^ pd_load_u32(w + 4 * i)) * 0xff51afd7ed558ccdULL
        h ^= h >> 29
    h ^= h >> 32
    return <uint32_t>h
