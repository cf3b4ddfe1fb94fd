# Toeplitz RSS hash (Microsoft's "Receive Side Scaling" hash, the one NICs
# compute), in software.
#
# The hash of an input bit string d (here at most 36 bytes: an IPv6 4-tuple)
# under a key K is the XOR, over every set input bit i (most significant bit
# of byte 0 first), of the 32 key bits starting at bit i. It is linear in the
# input, so a context precomputes, for each input byte position and each of
# the 256 byte values, that byte's contribution: a hash is then one table
# load and one XOR per input byte (36 KiB of tables, of which an IPv4 4-tuple
# touches 12 KiB). toeplitz_hash() is the bit-at-a-time definition, for any
# key length.
#
# Inputs are in network order, in the order NICs use: source address,
# destination address, source port, destination port. The `_sym` variants
# put the tuple in a canonical order first (the smaller endpoint first), so
# both directions of a flow give the same hash with any key, which is what a
# vRouter wants to keep a flow's two directions on one lcore. (The other
# way, a key made of one repeated 16-bit pattern such as rss_key_symmetric(),
# makes the plain functions symmetric too and also works on NICs.)

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pypdk.net.byteorder cimport pd_store_u16, pd_store_u32, pd_load_u64, pd_ntohll

cdef enum:
    PD_RSS_KEY_LEN = 40       # the key length NICs use, and ours
    PD_RSS_MAX_INPUT = 36     # PD_RSS_KEY_LEN - 4: bytes a 40-byte key can hash

cdef struct pd_rss_ctx:
    uint32_t tbl[PD_RSS_MAX_INPUT][256]
    uint8_t key[PD_RSS_KEY_LEN]


# Microsoft's default key (the one in the RSS verification suite and most
# NIC datasheets), and the symmetric 0x6d5a-repeated key.
cdef const uint8_t *rss_key_default() noexcept nogil
cdef const uint8_t *rss_key_symmetric() noexcept nogil

# Fill a context's tables for a 40-byte key (control path: ~74k steps).
cdef void rss_ctx_init(pd_rss_ctx *ctx, const uint8_t *key) noexcept nogil


# The Toeplitz hash by definition, one bit at a time; any key with
# key_len >= length + 4 (missing key bits count as zero).
cdef inline uint32_t toeplitz_hash(const uint8_t *key, uint32_t key_len,
                                   const uint8_t *data, uint32_t length) noexcept nogil:
    cdef uint64_t win = 0          # key bits [8i, 8i + 64), most significant first
    cdef uint32_t h = 0, i, k
    cdef int b
    cdef uint8_t v
    for k in range(8):
        win = (win << 8) | (key[k] if k < key_len else 0)
    for i in range(length):
        v = data[i]
        for b in range(8):
            if v & (0x80 >> b):
                h ^= <uint32_t>(win >> (32 - b))
        k = i + 8
        win = (win << 8) | (key[k] if k < key_len else 0)
    return h

# The hash of `length` (<= PD_RSS_MAX_INPUT) bytes, through the tables.
cdef inline uint32_t rss_hash(const pd_rss_ctx *ctx, const uint8_t *data, uint32_t length) noexcept nogil:
    cdef uint32_t h = 0, i
    for i in range(length):
        h ^= ctx.tbl[i][data[i]]
    return h

# IPv4 2-tuple and 4-tuple; addresses and ports network order (as in the headers).
cdef inline uint32_t rss_hash_ipv4(const pd_rss_ctx *ctx, uint32_t src, uint32_t dst) noexcept nogil:
    cdef uint8_t t[8]
    pd_store_u32(t, src)
    pd_store_u32(t + 4, dst)
    return rss_hash(ctx, t, 8)

cdef inline uint32_t rss_hash_ipv4_l4(const pd_rss_ctx *ctx, uint32_t src, uint32_t dst,
                                      uint16_t sport, uint16_t dport) noexcept nogil:
    cdef uint8_t t[12]
    pd_store_u32(t, src)
    pd_store_u32(t + 4, dst)
    pd_store_u16(t + 8, sport)
    pd_store_u16(t + 10, dport)
    return rss_hash(ctx, t, 12)

# IPv6: 16-byte addresses in network order (e.g. ip6.src_addr).
cdef inline uint32_t rss_hash_ipv6(const pd_rss_ctx *ctx, const uint8_t *src, const uint8_t *dst) noexcept nogil:
    cdef uint32_t h = 0, i
    for i in range(16):
        h ^= ctx.tbl[i][src[i]] ^ ctx.tbl[16 + i][dst[i]]
    return h

cdef inline uint32_t rss_hash_ipv6_l4(const pd_rss_ctx *ctx, const uint8_t *src, const uint8_t *dst,
                                      uint16_t sport, uint16_t dport) noexcept nogil:
    cdef uint8_t t[4]
    pd_store_u16(t, sport)
    pd_store_u16(t + 2, dport)
    return (rss_hash_ipv6(ctx, src, dst) ^ ctx.tbl[32][t[0]] ^ ctx.tbl[33][t[1]]
            ^ ctx.tbl[34][t[2]] ^ ctx.tbl[35][t[3]])


# ---- symmetric: (a, pa) -> (b, pb) and (b, pb) -> (a, pa) hash alike ----

cdef inline uint32_t rss_hash_ipv4_sym(const pd_rss_ctx *ctx, uint32_t src, uint32_t dst) noexcept nogil:
    if src > dst:
        return rss_hash_ipv4(ctx, dst, src)
    return rss_hash_ipv4(ctx, src, dst)

cdef inline uint32_t rss_hash_ipv4_l4_sym(const pd_rss_ctx *ctx, uint32_t src, uint32_t dst,
                                          uint16_t sport, uint16_t dport) noexcept nogil:
    if src > dst or (src == dst and sport > dport):
        return rss_hash_ipv4_l4(ctx, dst, src, dport, sport)
    return rss_hash_ipv4_l4(ctx, src, dst, sport, dport)

# -1, 0, 1 as a < b, a == b, a > b (byte order, as memcmp).
cdef inline int _ipv6_cmp(const uint8_t *a, const uint8_t *b) noexcept nogil:
    cdef uint64_t x = pd_ntohll(pd_load_u64(a)), y = pd_ntohll(pd_load_u64(b))
    if x == y:
        x = pd_ntohll(pd_load_u64(a + 8))
        y = pd_ntohll(pd_load_u64(b + 8))
    return (x > y) - (x < y)

cdef inline uint32_t rss_hash_ipv6_sym(const pd_rss_ctx *ctx, const uint8_t *src, const uint8_t *dst) noexcept nogil:
    if _ipv6_cmp(src, dst) > 0:
        return rss_hash_ipv6(ctx, dst, src)
    return rss_hash_ipv6(ctx, src, dst)

cdef inline uint32_t rss_hash_ipv6_l4_sym(const pd_rss_ctx *ctx, const uint8_t *src, const uint8_t *dst,
                                          uint16_t sport, uint16_t dport) noexcept nogil:
    cdef int c = _ipv6_cmp(src, dst)
    if c > 0 or (c == 0 and sport > dport):
        return rss_hash_ipv6_l4(ctx, dst, src, dport, sport)
    return rss_hash_ipv6_l4(ctx, src, dst, sport, dport)
