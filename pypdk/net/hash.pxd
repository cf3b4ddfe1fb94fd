# Hash functions for pypdk's tables (flow hash, LPM rule sets); not RSS.
#
# Our own design: the key is cut into 16-byte chunks; each chunk's two words,
# XORed with secrets that depend on the seed and on the chunk's position, are
# multiplied into a 128-bit product whose halves are XORed (pd_mul_fold64).
# The chunk products do not depend on each other, so the multiplies overlap
# in the CPU; they are summed and a final avalanche (two multiply-xorshift
# rounds) spreads every bit over the 64-bit result, so any slice of it
# (bucket index, signature) is usable. A per-table random seed keeps a
# remote sender from precomputing colliding flow keys. Not cryptographic.
# The constants are random odd numbers with about half their bits set.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from pypdk.net.byteorder cimport pd_load_u64

from pd_net cimport pd_mul_fold64

# Full avalanche of one 64-bit word.
cdef inline uint64_t hash_mix64(uint64_t x) noexcept nogil:
    x ^= x >> 32
    x *= <uint64_t>0xD1A6E55E9B9B1325
    x ^= x >> 29
    x *= <uint64_t>0xCF0C26EF4243ED53
    x ^= x >> 32
    return x

# The hash of `length` bytes at key (any alignment).
cdef inline uint64_t hash_bytes(const void *key, uint32_t length, uint64_t seed) noexcept nogil:
    cdef const uint8_t *p = <const uint8_t *>key
    cdef uint64_t acc = seed ^ (<uint64_t>length * <uint64_t>0x5E6A0A2EDD70E34D)
    cdef uint64_t ka = seed ^ <uint64_t>0xB37523A53B4A3EE3
    cdef uint64_t kb = seed ^ <uint64_t>0x4DE45321AD915A37
    cdef uint64_t a = 0, b = 0
    cdef uint32_t i
    while length >= 16:
        acc += pd_mul_fold64(pd_load_u64(p) ^ ka, pd_load_u64(p + 8) ^ kb)
        ka += <uint64_t>0x9823BEB1E6BA3AD7        # the next chunk's secrets
        kb += <uint64_t>0xAED09B824CA87FC3
        p += 16
        length -= 16
    if length:
        if length >= 8:
            a = pd_load_u64(p)
            p += 8
            length -= 8
            for i in range(length):
                b |= <uint64_t>p[i] << (8 * i)
        else:
            for i in range(length):
                a |= <uint64_t>p[i] << (8 * i)
        acc += pd_mul_fold64(a ^ ka, b ^ kb)
    return hash_mix64(acc)
