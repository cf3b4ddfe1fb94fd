# Hash functions for pypdk's tables (flow hash, LPM rule sets); not RSS.
#
# A multiply-xorshift design of our own: each 8-byte word is multiplied into
# the state and rotated, and a final avalanche (two multiply/xorshift rounds)
# spreads every input bit over all 64 output bits, so any slice of the result
# (bucket index, signature) is usable. A per-table seed keeps a remote sender
# from precomputing colliding keys. Not cryptographic.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
from pypdk.net.byteorder cimport pd_load_u64

# Full avalanche of one 64-bit word.
cdef inline uint64_t hash_mix64(uint64_t x) noexcept nogil:
    x ^= x >> 32
    x *= <uint64_t>0xD6E8FEB86659FD93
    x ^= x >> 29
    x *= <uint64_t>0x9FB21C651E98DF25
    x ^= x >> 32
    return x

cdef inline uint64_t _hash_step(uint64_t h, uint64_t w) noexcept nogil:
    h ^= w * <uint64_t>0x9E3779B97F4A7C15
    return ((h << 27) | (h >> 37)) * <uint64_t>0xC2B2AE3D27D4EB4F + <uint64_t>0x165667B19E3779F9

# The hash of `length` bytes at key (any alignment).
cdef inline uint64_t hash_bytes(const void *key, uint32_t length, uint64_t seed) noexcept nogil:
    cdef const uint8_t *p = <const uint8_t *>key
    cdef uint64_t h = seed ^ (<uint64_t>length * <uint64_t>0xA0761D6478BD642F)
    cdef uint64_t w = 0
    while length >= 8:
        h = _hash_step(h, pd_load_u64(p))
        p += 8
        length -= 8
    if length:
        memcpy(&w, p, length)
        h = _hash_step(h, w)
    return hash_mix64(h)
