# A fixed-capacity hash table of fixed-size keys (flows), for one control
# thread and many nogil readers.
#
# Layout
#   records: `capacity` fixed-size records, one per position 0..capacity-1:
#            {uint32 ver, uint32 data, key bytes}, the stride a power of two
#            (a 40-byte flow key: 64-byte, cache-line aligned records). A
#            key's position is its index in the app's entry array (the
#            vRouter's flow table), as in DPDK's rte_hash; `data` is a
#            32-bit word of the app's own.
#   buckets: 8 slots of 64 bits (one cache line), at least twice as many
#            slots as positions. A slot is 0 (empty) or (signature << 32 |
#            position + 1); the signature is the top 32 bits of the key's
#            64-bit hash.
#   Each key has two candidate buckets: b1 from the low hash bits, b2 = b1 ^
#   f(signature). An add takes b1 while it has a free slot, else b2; when
#   both are full it tries to move one resident from its b1 to its b2 (never
#   the other way, see below); when that fails too the add reports -ENOSPC,
#   as it does when every position is taken. A lookup reads b1, and b2 only
#   when the key is not in b1: at the default sizing nearly every hit costs
#   one bucket line and one record (both prefetched in bulk lookups).
#
# Concurrency (single writer, any number of nogil readers, no locks)
#   - add: write the record (key, data), then publish the slot with a release
#     store; readers load slots with acquire, so a reader that sees the slot
#     sees the whole key.
#   - delete: clear the slot (release) first, then free the position.
#   - positions are reused: a record is rewritten under a sequence counter
#     (ver odd while it is written, +2 when done); a reader compares the key
#     and reads data between two reads of ver and counts a changed or odd ver
#     as "not this key". Only records no live slot points to are rewritten,
#     so this never hides a present key, and a reader never returns a
#     position whose key it did not match in full. Changing the data of a
#     present key is one atomic 32-bit store.
#   - a move (b1 -> b2) writes the new slot before clearing the old: a reader
#     scanning b1 then b2 finds the key in at least one of them.
#   - what a position *means* after lookup returns it is the app's business:
#     a flow deleted and its position reused while a reader still works on
#     it is the classic use-after-free. Create the table with
#     PD_FH_F_DEFER_FREE and freed positions wait on a pending list until
#     flow_hash_reclaim(), which the app calls once every reader has passed
#     a quiescent point (as for the LPM groups).
#   The writer side (add/delete/reclaim) must be serialised by the caller.

from libc.stdint cimport uint8_t, uint16_t, int32_t, uint32_t, uint64_t
from libc.string cimport memset, memcpy
from pypdk.net.hash cimport hash_bytes
from pypdk.net.byteorder cimport pd_load_u64

from pd_compiler cimport pd_likely, pd_unlikely, pd_prefetch0

from pd_atomic cimport (pd_load_acquire_u32, pd_load_relaxed_u32, pd_load_acquire_u64,
                        pd_load_relaxed_u64, pd_fence_acquire)

cdef enum:
    PD_FH_BUCKET_SLOTS = 8
    PD_FH_KEY_MAX = 120           # record = 8-byte header + key, at most 128 bytes
    PD_FH_F_DEFER_FREE = 1        # freed positions wait for flow_hash_reclaim()

cdef struct pd_fh_bucket:
    uint64_t slot[8]

cdef struct pd_flow_hash:
    # read by lookups
    pd_fh_bucket *buckets
    uint8_t *records
    uint64_t seed
    uint32_t bucket_mask
    uint32_t key_len
    uint32_t rec_shift            # record stride = 1 << rec_shift
    # control thread only
    uint32_t capacity
    uint32_t count
    uint32_t flags
    uint32_t nfree
    uint32_t npending
    uint32_t *free_pos
    uint32_t *pending_pos
    uint64_t moves                # residents moved b1 -> b2 to make room
    uint64_t full_buckets         # adds refused: both buckets full, no move possible
    void *mem_buckets
    void *mem_records


# The vRouter's flow key, 40 bytes, no padding: zero what a family does not
# use (flow_key_v4 does), so equal flows are equal bytes.
cdef enum:
    PD_FLOW_KEY_V4 = 4
    PD_FLOW_KEY_V6 = 6

cdef struct pd_flow_key:
    uint8_t src[16]               # IPv4: the first 4 bytes, network order
    uint8_t dst[16]
    uint16_t sport                # network order (ICMP: the identifier)
    uint16_t dport
    uint16_t vrf                  # host order
    uint8_t proto
    uint8_t family                # PD_FLOW_KEY_V4 / _V6

cdef inline void flow_key_v4(pd_flow_key *k, uint16_t vrf, uint32_t src_be, uint32_t dst_be,
                             uint8_t proto, uint16_t sport_be, uint16_t dport_be) noexcept nogil:
    memset(k, 0, sizeof(pd_flow_key))
    memcpy(k.src, &src_be, 4)
    memcpy(k.dst, &dst_be, 4)
    k.sport = sport_be
    k.dport = dport_be
    k.vrf = vrf
    k.proto = proto
    k.family = PD_FLOW_KEY_V4

cdef inline void flow_key_v6(pd_flow_key *k, uint16_t vrf, const uint8_t *src, const uint8_t *dst,
                             uint8_t proto, uint16_t sport_be, uint16_t dport_be) noexcept nogil:
    memcpy(k.src, src, 16)
    memcpy(k.dst, dst, 16)
    k.sport = sport_be
    k.dport = dport_be
    k.vrf = vrf
    k.proto = proto
    k.family = PD_FLOW_KEY_V6


# ---- control (flow_hash.pyx): one writer at a time ----------------------------

# A table of `capacity` positions for keys of key_len bytes (1..120), with
# `buckets` buckets (a power of two; 0: the default, two slots per position).
# NULL with errno (EINVAL, ENOMEM). `seed` salts the hash (take it random).
cdef pd_flow_hash *flow_hash_create(uint32_t capacity, uint32_t key_len, uint32_t flags,
                                    uint64_t seed, uint32_t buckets) noexcept nogil
cdef void flow_hash_free(pd_flow_hash *h) noexcept nogil
# The key's position (a new one, or the existing one whose data is replaced),
# or -ENOSPC: no free position, or both of its buckets full.
cdef int32_t flow_hash_add(pd_flow_hash *h, const void *key, uint32_t data) noexcept nogil
# The freed position, or -ENOENT.
cdef int32_t flow_hash_delete(pd_flow_hash *h, const void *key) noexcept nogil
cdef void flow_hash_reset(pd_flow_hash *h) noexcept nogil
# Pending positions (PD_FH_F_DEFER_FREE) become free; returns how many.
cdef uint32_t flow_hash_reclaim(pd_flow_hash *h) noexcept nogil


# ---- lookups (inline, nogil, any number of readers) -----------------------------

cdef inline uint64_t flow_hash_hash(const pd_flow_hash *h, const void *key) noexcept nogil:
    return hash_bytes(key, h.key_len, h.seed)

cdef inline uint32_t _fh_b1(const pd_flow_hash *h, uint64_t hv) noexcept nogil:
    return <uint32_t>hv & h.bucket_mask

# The other bucket: XOR with an odd function of the signature, so it always
# differs from b1 (when there are two buckets or more) and f(b2) gives b1 back.
cdef inline uint32_t _fh_alt(const pd_flow_hash *h, uint32_t b, uint32_t sig) noexcept nogil:
    return (b ^ ((sig * <uint32_t>0x9E3779B1) | 1)) & h.bucket_mask

cdef inline uint8_t *_fh_rec(const pd_flow_hash *h, uint32_t pos) noexcept nogil:
    return h.records + (<size_t>pos << h.rec_shift)

# Compare the record at pos with key under its sequence counter; on a match
# store its data (if data != NULL) and return True.
cdef inline bint _fh_match(const pd_flow_hash *h, uint32_t pos, const uint8_t *key,
                           uint32_t *data) noexcept nogil:
    cdef const uint8_t *rec = _fh_rec(h, pos)
    cdef const uint8_t *rk = rec + 8
    cdef uint32_t v1, v2, d, i, n = h.key_len
    cdef uint64_t diff = 0
    v1 = pd_load_acquire_u32(<const uint32_t *>rec)   # pairs with the writer's release of ver
    if pd_unlikely(v1 & 1):
        return False                                  # being rewritten: a stale slot
    i = 0
    while i + 8 <= n:
        diff |= pd_load_u64(rk + i) ^ pd_load_u64(key + i)
        i += 8
    while i < n:
        diff |= rk[i] ^ key[i]
        i += 1
    d = pd_load_relaxed_u32(<const uint32_t *>(rec + 4))
    pd_fence_acquire()                                # key and data reads before the re-check
    v2 = pd_load_relaxed_u32(<const uint32_t *>rec)
    if diff != 0 or v1 != v2:
        return False
    if data != NULL:
        data[0] = d
    return True

cdef inline int32_t _fh_scan(const pd_flow_hash *h, uint32_t b, uint32_t sig, const uint8_t *key,
                             uint32_t *data) noexcept nogil:
    cdef const pd_fh_bucket *bkt = &h.buckets[b]
    cdef uint64_t s
    cdef int i
    for i in range(PD_FH_BUCKET_SLOTS):
        s = pd_load_acquire_u64(&bkt.slot[i])         # pairs with the release that published it
        if (s >> 32) == sig and (s & 0xffffffffu) != 0:
            if _fh_match(h, <uint32_t>(s & 0xffffffffu) - 1, key, data):
                return <int32_t>((s & 0xffffffffu) - 1)
    return -1

# With the hash already computed (flow_hash_hash).
cdef inline int32_t flow_hash_lookup_with_hash(const pd_flow_hash *h, const void *key, uint64_t hv,
                                               uint32_t *data) noexcept nogil:
    cdef uint32_t sig = <uint32_t>(hv >> 32)
    cdef uint32_t b1 = _fh_b1(h, hv)
    cdef int32_t pos = _fh_scan(h, b1, sig, <const uint8_t *>key, data)
    if pos >= 0:
        return pos
    return _fh_scan(h, _fh_alt(h, b1, sig), sig, <const uint8_t *>key, data)

# The key's position (and its data in *data when data != NULL), or -1.
cdef inline int32_t flow_hash_lookup(const pd_flow_hash *h, const void *key, uint32_t *data) noexcept nogil:
    return flow_hash_lookup_with_hash(h, key, flow_hash_hash(h, key), data)

# Look up n keys: positions[i] = position or -1, data[i] its data (data may be
# NULL). Returns the number of hits. Eight at a time: hash all eight and
# prefetch both buckets of each, then prefetch the record of each key's first
# signature match, then resolve.
cdef inline uint32_t flow_hash_lookup_bulk(const pd_flow_hash *h, const void **keys, uint32_t n,
                                           int32_t *positions, uint32_t *data) noexcept nogil:
    cdef uint64_t hv[8]
    cdef uint32_t b1[8]
    cdef uint32_t sig
    cdef uint32_t i = 0, j, cnt, hits = 0
    cdef int k
    cdef uint64_t s
    cdef const pd_fh_bucket *bkt
    while i < n:
        cnt = n - i if n - i < 8 else 8
        for j in range(cnt):
            hv[j] = hash_bytes(keys[i + j], h.key_len, h.seed)
            b1[j] = _fh_b1(h, hv[j])
            pd_prefetch0(&h.buckets[b1[j]])
            pd_prefetch0(&h.buckets[_fh_alt(h, b1[j], <uint32_t>(hv[j] >> 32))])
        for j in range(cnt):
            sig = <uint32_t>(hv[j] >> 32)
            bkt = &h.buckets[b1[j]]
            for k in range(PD_FH_BUCKET_SLOTS):
                s = pd_load_relaxed_u64(&bkt.slot[k])  # a hint only: re-read with acquire below
                if (s >> 32) == sig and (s & 0xffffffffu) != 0:
                    pd_prefetch0(_fh_rec(h, <uint32_t>(s & 0xffffffffu) - 1))
                    break
        for j in range(cnt):
            positions[i + j] = flow_hash_lookup_with_hash(h, keys[i + j], hv[j],
                                                          &data[i + j] if data != NULL else NULL)
            if positions[i + j] >= 0:
                hits += 1
        i += cnt
    return hits
