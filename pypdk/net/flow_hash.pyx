"""Flow hash table: the control side (add, delete, reclaim) and the Python
class FlowHash. Lookups are inline in flow_hash.pxd, where the layout and
the reader/writer rules are described.

Sizing: `capacity` positions (records of 16..128 bytes, 64 for the 40-byte
flow key) and a power of two of 8-slot buckets with at least two slots per
position, so at full capacity buckets are at most half full on average and
an add is almost never refused for a full bucket pair before the positions
run out (`full_buckets` counts the times it was).
"""
import ipaddress
import os

import numpy as np

from libc.stdint cimport uint8_t, uint16_t, int32_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy, memset, memcmp
from libc.errno cimport errno, EINVAL, ENOMEM, ENOSPC, ENOENT

from pypdk.net.byteorder cimport pd_htons, pd_htonl
from pypdk.eal.tablemem cimport table_mem_map, table_mem_unmap

from pypdk.eal import tablemem
from pypdk.errors import UsageError, ResourceError

from pd_atomic cimport (pd_store_relaxed_u32, pd_store_release_u32, pd_store_release_u64,
                        pd_fence_release)

KEY_LEN = sizeof(pd_flow_key)


cdef inline size_t _records_bytes(const pd_flow_hash *h) noexcept nogil:
    return <size_t>h.capacity << h.rec_shift


cdef inline size_t _buckets_bytes(const pd_flow_hash *h) noexcept nogil:
    return (<size_t>h.bucket_mask + 1) * sizeof(pd_fh_bucket)


cdef pd_flow_hash *flow_hash_create(uint32_t capacity, uint32_t key_len, uint32_t flags,
                                    uint64_t seed, uint32_t buckets) noexcept nogil:
    global errno
    cdef pd_flow_hash *h
    cdef uint32_t i, shift = 4
    cdef uint64_t nb = 2
    if (capacity == 0 or capacity > 0x7fffffff or key_len == 0 or key_len > PD_FH_KEY_MAX
            or (buckets & (buckets - 1)) != 0):
        errno = EINVAL
        return NULL
    h = <pd_flow_hash *>calloc(1, sizeof(pd_flow_hash))
    if h == NULL:
        errno = ENOMEM
        return NULL
    while (1u << shift) < 8 + key_len:
        shift += 1
    if buckets:
        nb = buckets
    else:
        while nb * PD_FH_BUCKET_SLOTS < <uint64_t>capacity * 2:
            nb <<= 1
    h.capacity = capacity
    h.key_len = key_len
    h.flags = flags
    h.seed = seed
    h.rec_shift = shift
    h.bucket_mask = <uint32_t>(nb - 1)
    h.mem_records = table_mem_map(_records_bytes(h))
    h.mem_buckets = table_mem_map(_buckets_bytes(h))
    h.free_pos = <uint32_t *>malloc(<size_t>capacity * sizeof(uint32_t))
    h.pending_pos = <uint32_t *>malloc(<size_t>capacity * sizeof(uint32_t))
    if h.mem_records == NULL or h.mem_buckets == NULL or h.free_pos == NULL or h.pending_pos == NULL:
        flow_hash_free(h)
        errno = ENOMEM
        return NULL
    h.records = <uint8_t *>h.mem_records
    h.buckets = <pd_fh_bucket *>h.mem_buckets
    for i in range(capacity):
        h.free_pos[i] = capacity - 1 - i       # popped from the top: position 0 first
    h.nfree = capacity
    return h


cdef void flow_hash_free(pd_flow_hash *h) noexcept nogil:
    if h == NULL:
        return
    table_mem_unmap(h.mem_records, _records_bytes(h))
    table_mem_unmap(h.mem_buckets, _buckets_bytes(h))
    free(h.free_pos)
    free(h.pending_pos)
    free(h)


cdef inline int _fh_empty_slot(const pd_flow_hash *h, uint32_t b) noexcept nogil:
    cdef int i
    for i in range(PD_FH_BUCKET_SLOTS):
        if h.buckets[b].slot[i] == 0:
            return i
    return -1


# Bucket b is full: move one resident whose *first* bucket is b to its second
# bucket, if that has room. New slot first, then the old one cleared (both
# release stores): a reader scanning b1 then b2 cannot miss the key. Returns
# the slot freed in b, or -1.
cdef int _fh_make_room(pd_flow_hash *h, uint32_t b) noexcept nogil:
    cdef int i, j
    cdef uint64_t s, hv
    cdef uint32_t pos, alt
    for i in range(PD_FH_BUCKET_SLOTS):
        s = h.buckets[b].slot[i]
        pos = <uint32_t>(s & 0xffffffffu) - 1
        hv = hash_bytes(_fh_rec(h, pos) + 8, h.key_len, h.seed)
        if _fh_b1(h, hv) != b:
            continue
        alt = _fh_alt(h, b, <uint32_t>(s >> 32))
        j = _fh_empty_slot(h, alt)
        if j < 0:
            continue
        pd_store_release_u64(&h.buckets[alt].slot[j], s)
        pd_store_release_u64(&h.buckets[b].slot[i], 0)
        h.moves += 1
        return i
    return -1


cdef int32_t flow_hash_add(pd_flow_hash *h, const void *key, uint32_t data) noexcept nogil:
    cdef uint64_t hv = hash_bytes(key, h.key_len, h.seed)
    cdef uint32_t sig = <uint32_t>(hv >> 32)
    cdef uint32_t b1 = _fh_b1(h, hv), b2 = _fh_alt(h, b1, sig), b, pos, ver
    cdef int32_t found
    cdef int i
    cdef uint8_t *rec
    found = flow_hash_lookup_with_hash(h, key, hv, NULL)
    if found >= 0:
        # One atomic word: readers see the old or the new data with the key.
        pd_store_release_u32(<uint32_t *>(_fh_rec(h, found) + 4), data)
        return found
    if h.nfree == 0:
        return -ENOSPC
    # b1 while it has room (most keys then sit in their first bucket and a
    # lookup reads one bucket), then b2, then room made by a move.
    b = b1
    i = _fh_empty_slot(h, b1)
    if i < 0:
        b = b2
        i = _fh_empty_slot(h, b2)
    if i < 0:
        b = b1
        i = _fh_make_room(h, b1)
        if i < 0:
            b = b2
            i = _fh_make_room(h, b2)
    if i < 0:
        h.full_buckets += 1
        return -ENOSPC
    h.nfree -= 1
    pos = h.free_pos[h.nfree]
    rec = _fh_rec(h, pos)
    # Rewrite the record under its sequence counter: odd while the bytes
    # change (a reader holding a stale slot to this position sees odd or a
    # changed ver and does not match), even again when done.
    ver = (<uint32_t *>rec)[0]
    pd_store_relaxed_u32(<uint32_t *>rec, ver + 1)
    pd_fence_release()
    memcpy(rec + 8, key, h.key_len)
    (<uint32_t *>(rec + 4))[0] = data
    pd_store_release_u32(<uint32_t *>rec, ver + 2)
    # Publish: pairs with the acquire load of the slot in _fh_scan.
    pd_store_release_u64(&h.buckets[b].slot[i], (<uint64_t>sig << 32) | (pos + 1))
    h.count += 1
    return <int32_t>pos


cdef int32_t flow_hash_delete(pd_flow_hash *h, const void *key) noexcept nogil:
    cdef uint64_t hv = hash_bytes(key, h.key_len, h.seed)
    cdef uint32_t sig = <uint32_t>(hv >> 32)
    cdef uint32_t bs[2]
    cdef uint32_t pos
    cdef uint64_t s
    cdef int i, k
    bs[0] = _fh_b1(h, hv)
    bs[1] = _fh_alt(h, bs[0], sig)
    for k in range(2):
        for i in range(PD_FH_BUCKET_SLOTS):
            s = h.buckets[bs[k]].slot[i]
            if s == 0 or (s >> 32) != sig:
                continue
            pos = <uint32_t>(s & 0xffffffffu) - 1
            if memcmp(_fh_rec(h, pos) + 8, key, h.key_len) != 0:
                continue
            pd_store_release_u64(&h.buckets[bs[k]].slot[i], 0)   # unpublish first
            if h.flags & PD_FH_F_DEFER_FREE:
                h.pending_pos[h.npending] = pos
                h.npending += 1
            else:
                h.free_pos[h.nfree] = pos
                h.nfree += 1
            h.count -= 1
            return <int32_t>pos
    return -ENOENT


cdef void flow_hash_reset(pd_flow_hash *h) noexcept nogil:
    cdef uint32_t b, pos
    cdef int i
    cdef uint64_t s
    for b in range(h.bucket_mask + 1):
        for i in range(PD_FH_BUCKET_SLOTS):
            s = h.buckets[b].slot[i]
            if s == 0:
                continue
            pd_store_release_u64(&h.buckets[b].slot[i], 0)
            pos = <uint32_t>(s & 0xffffffffu) - 1
            if h.flags & PD_FH_F_DEFER_FREE:
                h.pending_pos[h.npending] = pos
                h.npending += 1
            else:
                h.free_pos[h.nfree] = pos
                h.nfree += 1
    h.count = 0


cdef uint32_t flow_hash_reclaim(pd_flow_hash *h) noexcept nogil:
    cdef uint32_t i, n = h.npending
    for i in range(n):
        h.free_pos[h.nfree] = h.pending_pos[i]
        h.nfree += 1
    h.npending = 0
    return n


# ---- Python --------------------------------------------------------------------

def make_key_v4(vrf, src, dst, proto, sport, dport):
    """The 40-byte pd_flow_key of an IPv4 flow (addresses str/int, ports ints), as flow_key_v4."""
    cdef pd_flow_key k
    flow_key_v4(&k, vrf, pd_htonl(int(ipaddress.IPv4Address(src))), pd_htonl(int(ipaddress.IPv4Address(dst))),
                  proto, pd_htons(sport), pd_htons(dport))
    return (<char *>&k)[:sizeof(pd_flow_key)]


def make_key_v6(vrf, src, dst, proto, sport, dport):
    """The 40-byte pd_flow_key of an IPv6 flow."""
    cdef pd_flow_key k
    cdef bytes s = ipaddress.IPv6Address(src).packed
    cdef bytes d = ipaddress.IPv6Address(dst).packed
    flow_key_v6(&k, vrf, <const uint8_t *><char *>s, <const uint8_t *><char *>d, proto,
                  pd_htons(sport), pd_htons(dport))
    return (<char *>&k)[:sizeof(pd_flow_key)]


cdef class FlowHash:
    """A bounded hash table of fixed-size keys -> (position, 32-bit data).

    Args:
        capacity: positions (keys it can hold), 1..2^31-1.
        key_len: bytes per key, 1..120 (default 40: pd_flow_key).
        defer_free: freed positions wait for reclaim() before reuse (use it
            when readers keep positions past a quiescent point).
        seed: hash salt; default random.
        buckets: 8-slot buckets, a power of two; default the smallest with
            two slots per position (fewer save memory and fill up sooner).

    Control methods must not run concurrently with each other (the GIL
    serialises Python callers); nogil lookups may run on any lcore through
    `addr` (a pd_flow_hash *). See flow_hash.pxd.
    """
    cdef pd_flow_hash *h

    def __cinit__(self, uint32_t capacity, uint32_t key_len=40, bint defer_free=False, seed=None,
                  uint32_t buckets=0):
        cdef uint64_t s = int.from_bytes(os.urandom(8), "little") if seed is None else seed
        tablemem.mark()         # a hugepage shortage names what all its tables need
        self.h = flow_hash_create(capacity, key_len, PD_FH_F_DEFER_FREE if defer_free else 0, s, buckets)
        if self.h == NULL:
            if errno == EINVAL:
                raise UsageError(f"FlowHash({capacity}, key_len={key_len}, buckets={buckets}): bad size",
                                 f"capacity 1..2^31-1, key_len 1..{PD_FH_KEY_MAX}, buckets a power of two")
            what = f"FlowHash({capacity}, key_len={key_len})"
            raise tablemem.take_failure(what) or MemoryError(what)   # hugepages: node and fix

    def __dealloc__(self):
        flow_hash_free(self.h)
        self.h = NULL

    cdef pd_flow_hash *_p(self) except NULL:
        if self.h == NULL:
            raise UsageError("the flow table is closed", "make a new one")
        return self.h

    def close(self):
        """Free the table now (stop every reader first); closing twice is a no-op."""
        flow_hash_free(self.h)
        self.h = NULL

    def __enter__(self):
        self._p()
        return self

    def __exit__(self, *exc):
        self.close()

    cdef const uint8_t *_key(self, const uint8_t[::1] key) except NULL:
        if key.shape[0] != self._p().key_len:
            raise UsageError(f"a key of {key.shape[0]} bytes in a table of {self.h.key_len}-byte keys",
                             "pass keys of the table's key_len")
        return &key[0]

    @property
    def addr(self):
        """The pd_flow_hash's address, for nogil code (valid while this object lives)."""
        return <uintptr_t>self._p()

    def add(self, const uint8_t[::1] key not None, uint32_t data=0):
        """Add a key (or replace its data); returns its position.

        Raises:
            ResourceError: the table is full (no free position, or both of
                the key's buckets are full).
        """
        cdef int32_t pos = flow_hash_add(self._p(), self._key(key), data)
        if pos < 0:
            raise ResourceError(f"flow table full ({self.h.count} of {self.h.capacity} positions used)",
                                "delete flows or create a bigger table")
        return pos

    def delete(self, const uint8_t[::1] key not None):
        """Delete a key; returns the position it had.

        Raises:
            KeyError: the key is not there.
        """
        cdef int32_t pos = flow_hash_delete(self._p(), self._key(key))
        if pos < 0:
            raise KeyError(bytes(key))
        return pos

    def lookup(self, const uint8_t[::1] key not None):
        """The key's position, or None."""
        cdef int32_t pos = flow_hash_lookup(self._p(), self._key(key), NULL)
        return None if pos < 0 else pos

    def get(self, const uint8_t[::1] key not None):
        """(position, data) of the key, or None."""
        cdef uint32_t data
        cdef int32_t pos = flow_hash_lookup(self._p(), self._key(key), &data)
        return None if pos < 0 else (pos, data)

    def lookup_bulk(self, keys):
        """Positions of many keys: an (n, key_len) uint8 array or a sequence of bytes.

        Returns:
            numpy.ndarray: int32 positions, -1 for keys not there.
        """
        cdef pd_flow_hash *h = self._p()
        arr = np.ascontiguousarray(keys if isinstance(keys, np.ndarray)
                                   else np.frombuffer(b"".join(keys), dtype=np.uint8), dtype=np.uint8)
        arr = arr.reshape(-1, h.key_len)
        cdef const uint8_t[:, ::1] a = arr
        cdef Py_ssize_t n = a.shape[0], i
        out = np.empty(n, dtype=np.int32)
        cdef int32_t[::1] o = out
        cdef const void **ptrs
        if n == 0:
            return out
        ptrs = <const void **>malloc(n * sizeof(void *))
        if ptrs == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                ptrs[i] = &a[i, 0]
            with nogil:
                flow_hash_lookup_bulk(h, ptrs, <uint32_t>n, &o[0], NULL)
        finally:
            free(ptrs)
        return out

    def key(self, uint32_t pos):
        """The key stored at a position (meaningful while it is in the table)."""
        cdef pd_flow_hash *h = self._p()
        if pos >= h.capacity:
            raise UsageError(f"position {pos} out of range", f"0..{h.capacity - 1}")
        return (<char *>_fh_rec(h, pos) + 8)[:h.key_len]

    def items(self):
        """Every (key, position, data) in the table, in bucket order."""
        cdef pd_flow_hash *h = self._p()
        cdef uint32_t b, pos
        cdef int i
        cdef uint64_t s
        out = []
        for b in range(h.bucket_mask + 1):
            for i in range(PD_FH_BUCKET_SLOTS):
                s = h.buckets[b].slot[i]
                if s:
                    pos = <uint32_t>(s & 0xffffffffu) - 1
                    out.append(((<char *>_fh_rec(h, pos) + 8)[:h.key_len], pos,
                                (<uint32_t *>(_fh_rec(h, pos) + 4))[0]))
        return out

    def reset(self):
        """Delete every key."""
        flow_hash_reset(self._p())

    def reclaim(self):
        """With defer_free: make the freed positions reusable; returns how many.

        Call it only when every reader has passed a quiescent point since
        those deletes."""
        return flow_hash_reclaim(self._p())

    def __len__(self):
        return self._p().count

    def __contains__(self, key):
        return self.lookup(key) is not None

    @property
    def capacity(self):
        return self._p().capacity

    @property
    def key_len(self):
        return self._p().key_len

    @property
    def free_count(self):
        """Positions ready for new keys."""
        return self._p().nfree

    @property
    def pending_count(self):
        """Freed positions waiting for reclaim() (defer_free)."""
        return self._p().npending

    @property
    def stats(self):
        """{'moves': residents moved to make room, 'full_buckets': adds refused for full buckets,
        'buckets': bucket count}."""
        cdef pd_flow_hash *h = self._p()
        return {"moves": h.moves, "full_buckets": h.full_buckets, "buckets": h.bucket_mask + 1}
