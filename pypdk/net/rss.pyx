"""Toeplitz RSS hash: the keys, the table builder and the Python face.

The hash itself is inline in rss.pxd. `Rss(key)` owns a pd_rss_ctx (36 KiB
of tables built from the key); hot code gets it with `<pd_rss_ctx *>rss.addr`
or keeps its own. Verified against the published RSS verification values for
Microsoft's key (tests/net/test_rss.py).
"""
import ipaddress

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from pypdk.net.byteorder cimport pd_htonl, pd_htons

from pypdk.errors import UsageError

cdef uint8_t _KEY_DEFAULT[40]
cdef uint8_t _KEY_SYM[40]

_DEFAULT = bytes([
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2,
    0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4,
    0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
])
_SYMMETRIC = bytes([0x6d, 0x5a] * 20)
for _i in range(40):
    _KEY_DEFAULT[_i] = _DEFAULT[_i]
    _KEY_SYM[_i] = _SYMMETRIC[_i]

KEY_DEFAULT = _DEFAULT
"""Microsoft's default 40-byte RSS key."""
KEY_SYMMETRIC = _SYMMETRIC
"""0x6d5a repeated: Toeplitz with it hashes both directions of a flow alike."""


cdef const uint8_t *rss_key_default() noexcept nogil:
    return _KEY_DEFAULT


cdef const uint8_t *rss_key_symmetric() noexcept nogil:
    return _KEY_SYM


cdef void rss_ctx_init(pd_rss_ctx *ctx, const uint8_t *key) noexcept nogil:
    cdef int i, v, b
    cdef uint32_t acc
    cdef uint32_t bitk[8]
    cdef uint64_t win = 0
    memcpy(ctx.key, key, PD_RSS_KEY_LEN)
    for i in range(8):
        win = (win << 8) | key[i]
    for i in range(PD_RSS_MAX_INPUT):
        # bitk[b]: the 32 key bits lined up with bit b (MSB first) of byte i.
        for b in range(8):
            bitk[b] = <uint32_t>(win >> (32 - b))
        for v in range(256):
            acc = 0
            for b in range(8):
                if v & (0x80 >> b):
                    acc ^= bitk[b]
            ctx.tbl[i][v] = acc
        win = (win << 8) | (key[i + 8] if i + 8 < PD_RSS_KEY_LEN else 0)


def toeplitz(key, const uint8_t[::1] data not None):
    """The Toeplitz hash of `data` under `key`, bit by bit (any key length).

    Raises:
        UsageError: the key is shorter than len(data) + 4 bytes.
    """
    cdef bytes k = bytes(key)
    if len(k) < data.shape[0] + 4:
        raise UsageError(f"a {len(k)}-byte key hashes at most {max(len(k) - 4, 0)} bytes, got {data.shape[0]}",
                         "use a longer key or less input")
    return toeplitz_hash(<const uint8_t *><char *>k, len(k), &data[0] if data.shape[0] else NULL,
                         data.shape[0])


cdef class Rss:
    """A Toeplitz context: the tables for one 40-byte key.

    Args:
        key: 40 bytes; default Microsoft's key (KEY_DEFAULT).
    """
    cdef pd_rss_ctx *ctx

    def __cinit__(self, key=None):
        cdef bytes k = _DEFAULT if key is None else bytes(key)
        if len(k) != PD_RSS_KEY_LEN:
            raise UsageError(f"an RSS key has 40 bytes, got {len(k)}", "pass 40 bytes or None for the default")
        self.ctx = <pd_rss_ctx *>malloc(sizeof(pd_rss_ctx))
        if self.ctx == NULL:
            raise MemoryError()
        rss_ctx_init(self.ctx, <const uint8_t *><char *>k)

    def __dealloc__(self):
        free(self.ctx)

    @property
    def addr(self):
        """The pd_rss_ctx's address, for nogil code (valid while this object lives)."""
        return <uintptr_t>self.ctx

    @property
    def key(self):
        return bytes(self.ctx.key[:PD_RSS_KEY_LEN])

    def hash(self, const uint8_t[::1] data not None):
        """The hash of up to 36 bytes of input (network order)."""
        if data.shape[0] > PD_RSS_MAX_INPUT:
            raise UsageError(f"RSS input is at most 36 bytes, got {data.shape[0]}", "hash a 4-tuple at most")
        return rss_hash(self.ctx, &data[0] if data.shape[0] else NULL, data.shape[0])

    def ipv4(self, src, dst, sport=None, dport=None, symmetric=False):
        """Hash an IPv4 2-tuple, or 4-tuple when ports are given.

        Args:
            src, dst: addresses (str, int or IPv4Address).
            sport, dport: L4 ports (ints) or None for the 2-tuple.
            symmetric: hash the canonical order (both directions alike).
        """
        cdef uint32_t s = pd_htonl(int(ipaddress.IPv4Address(src)))
        cdef uint32_t d = pd_htonl(int(ipaddress.IPv4Address(dst)))
        cdef uint16_t sp, dp
        if sport is None and dport is None:
            return rss_hash_ipv4_sym(self.ctx, s, d) if symmetric else rss_hash_ipv4(self.ctx, s, d)
        sp = pd_htons(sport)
        dp = pd_htons(dport)
        if symmetric:
            return rss_hash_ipv4_l4_sym(self.ctx, s, d, sp, dp)
        return rss_hash_ipv4_l4(self.ctx, s, d, sp, dp)

    def ipv6(self, src, dst, sport=None, dport=None, symmetric=False):
        """Hash an IPv6 2-tuple, or 4-tuple when ports are given (as ipv4())."""
        cdef bytes s = ipaddress.IPv6Address(src).packed
        cdef bytes d = ipaddress.IPv6Address(dst).packed
        cdef const uint8_t *ps = <const uint8_t *><char *>s
        cdef const uint8_t *pd = <const uint8_t *><char *>d
        cdef uint16_t sp, dp
        if sport is None and dport is None:
            return rss_hash_ipv6_sym(self.ctx, ps, pd) if symmetric else rss_hash_ipv6(self.ctx, ps, pd)
        sp = pd_htons(sport)
        dp = pd_htons(dport)
        if symmetric:
            return rss_hash_ipv6_l4_sym(self.ctx, ps, pd, sp, dp)
        return rss_hash_ipv6_l4(self.ctx, ps, pd, sp, dp)
