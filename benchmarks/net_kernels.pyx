"""nogil measurement loops for benchmarks/bench_net.py (pypdk.net's hot path).

Each kernel runs `count` operations without the GIL, timed with
CLOCK_MONOTONIC around the whole loop, and returns nanoseconds per
operation. Inputs (addresses, keys, packets) are prepared by the caller in
arrays and walked in order, wrapping around, so the figure includes the
cache misses a table of that size causes but no input generation. Results
are folded into a sink the caller can read, so the compiler cannot drop the
work; a compiler barrier stops it hoisting a checksum of unchanged data out
of its loop.
"""
from libc.stdint cimport uint8_t, uint16_t, int32_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, free

from pypdk.net.lpm4 cimport pd_lpm4, lpm4_lookup, lpm4_lookup_bulk
from pypdk.net.lpm6 cimport pd_lpm6, lpm6_lookup, lpm6_lookup_bulk
from pypdk.net.flow_hash cimport pd_flow_hash, flow_hash_lookup, flow_hash_lookup_bulk
from pypdk.net.cksum cimport inet_cksum, ipv4_hdr_cksum
from pypdk.net.ipv4 cimport pd_ipv4_hdr
from pypdk.net.rss cimport (pd_rss_ctx, rss_hash_ipv4_l4, rss_hash_ipv6_l4, rss_hash_ipv4_l4_sym,
                            toeplitz_hash)
from pypdk.net.byteorder cimport pd_load_u32, pd_load_u16
from pypdk.eal.timer cimport now_ns as _now

cdef extern from *:
    """
    static inline void bench_clobber(void) { __asm__ __volatile__("" ::: "memory"); }
    """
    void bench_clobber() nogil

cdef uint64_t _sink = 0


def sink():
    """What the loops folded their results into (keeps them honest)."""
    return _sink


cdef inline bint _pow2(uint64_t n) noexcept nogil:
    return n != 0 and (n & (n - 1)) == 0


def lpm4_lookup_loop(uintptr_t lpm_addr, const uint32_t[::1] addrs not None, uint64_t count, uint32_t bulk):
    """ns per IPv4 lookup: single (bulk <= 1) or lpm4_lookup_bulk of `bulk` (<= 64).

    addrs: host-order addresses, a power-of-two count."""
    global _sink
    cdef const pd_lpm4 *lpm = <const pd_lpm4 *>lpm_addr
    cdef uint64_t mask = addrs.shape[0] - 1, k, t0, t1, s = 0
    cdef uint32_t nh, j
    cdef uint32_t nhs[64]
    if not _pow2(addrs.shape[0]) or bulk > 64 or (bulk > 1 and addrs.shape[0] % bulk):
        raise ValueError("addrs: a power-of-two count, a multiple of bulk <= 64")
    with nogil:
        t0 = _now()
        if bulk <= 1:
            for k in range(count):
                if lpm4_lookup(lpm, addrs[k & mask], &nh) == 0:
                    s += nh
        else:
            k = 0
            while k < count:
                lpm4_lookup_bulk(lpm, &addrs[k & mask], nhs, bulk, 0)
                for j in range(bulk):
                    s += nhs[j]
                k += bulk
        t1 = _now()
    _sink += s
    return (t1 - t0) / <double>count


def lpm6_lookup_loop(uintptr_t lpm_addr, const uint8_t[:, ::1] addrs not None, uint64_t count, uint32_t bulk):
    """ns per IPv6 lookup (addrs: (n, 16), n a power of two)."""
    global _sink
    cdef const pd_lpm6 *lpm = <const pd_lpm6 *>lpm_addr
    cdef uint64_t mask = addrs.shape[0] - 1, k, t0, t1, s = 0
    cdef uint32_t nh, j
    cdef uint32_t nhs[64]
    if not _pow2(addrs.shape[0]) or bulk > 64 or (bulk > 1 and addrs.shape[0] % bulk):
        raise ValueError("addrs: a power-of-two count, a multiple of bulk <= 64")
    with nogil:
        t0 = _now()
        if bulk <= 1:
            for k in range(count):
                if lpm6_lookup(lpm, &addrs[k & mask, 0], &nh) == 0:
                    s += nh
        else:
            k = 0
            while k < count:
                lpm6_lookup_bulk(lpm, &addrs[k & mask, 0], nhs, bulk, 0)
                for j in range(bulk):
                    s += nhs[j]
                k += bulk
        t1 = _now()
    _sink += s
    return (t1 - t0) / <double>count


def flow_lookup_loop(uintptr_t h_addr, const uint8_t[:, ::1] keys not None, uint64_t count, uint32_t bulk):
    """ns per flow-hash lookup: single or flow_hash_lookup_bulk of `bulk` (keys: (n, key_len))."""
    global _sink
    cdef const pd_flow_hash *h = <const pd_flow_hash *>h_addr
    cdef uint64_t n = keys.shape[0], mask = n - 1, k, t0, t1, s = 0
    cdef const void **ptrs
    cdef int32_t pos[64]
    cdef uint32_t j
    if not _pow2(n) or bulk > 64 or (bulk > 1 and n % bulk):
        raise ValueError("keys: a power-of-two count, a multiple of bulk <= 64")
    ptrs = <const void **>malloc(n * sizeof(void *))
    for k in range(n):
        ptrs[k] = &keys[k, 0]
    with nogil:
        t0 = _now()
        if bulk <= 1:
            for k in range(count):
                s += <uint32_t>flow_hash_lookup(h, ptrs[k & mask], NULL)
        else:
            k = 0
            while k < count:
                flow_hash_lookup_bulk(h, &ptrs[k & mask], bulk, pos, NULL)
                for j in range(bulk):
                    s += <uint32_t>pos[j]
                k += bulk
        t1 = _now()
    free(ptrs)
    _sink += s
    return (t1 - t0) / <double>count


def cksum_loop(const uint8_t[::1] buf not None, uint64_t count):
    """ns per Internet checksum of the whole buffer."""
    global _sink
    cdef uint64_t k, t0, t1, s = 0
    cdef size_t n = buf.shape[0]
    with nogil:
        t0 = _now()
        for k in range(count):
            bench_clobber()
            s += inet_cksum(&buf[0], n)
        t1 = _now()
    _sink += s
    return (t1 - t0) / <double>count


def ipv4_hdr_cksum_loop(const uint8_t[::1] hdr not None, uint64_t count):
    """ns per IPv4 header checksum (20 bytes)."""
    global _sink
    cdef uint64_t k, t0, t1, s = 0
    with nogil:
        t0 = _now()
        for k in range(count):
            bench_clobber()
            s += ipv4_hdr_cksum(<const pd_ipv4_hdr *>&hdr[0])
        t1 = _now()
    _sink += s
    return (t1 - t0) / <double>count


def rss_loop(uintptr_t ctx_addr, const uint8_t[:, ::1] tuples not None, uint64_t count, int kind):
    """ns per Toeplitz hash of a 4-tuple: kind 4 (IPv4), 6 (IPv6), 5 (IPv4 symmetric),
    0 (IPv4 by the bit-at-a-time definition). tuples: (n, 36) rows laid out
    src, dst, sport, dport; n a power of two."""
    global _sink
    cdef const pd_rss_ctx *ctx = <const pd_rss_ctx *>ctx_addr
    cdef uint64_t mask = tuples.shape[0] - 1, k, t0, t1, s = 0
    cdef const uint8_t *t
    if not _pow2(tuples.shape[0]) or tuples.shape[1] != 36:
        raise ValueError("tuples: (n, 36) with n a power of two")
    with nogil:
        t0 = _now()
        for k in range(count):
            t = &tuples[k & mask, 0]
            if kind == 4:
                s += rss_hash_ipv4_l4(ctx, pd_load_u32(t), pd_load_u32(t + 4), pd_load_u16(t + 8),
                                      pd_load_u16(t + 10))
            elif kind == 5:
                s += rss_hash_ipv4_l4_sym(ctx, pd_load_u32(t), pd_load_u32(t + 4), pd_load_u16(t + 8),
                                          pd_load_u16(t + 10))
            elif kind == 6:
                s += rss_hash_ipv6_l4(ctx, t, t + 16, pd_load_u16(t + 32), pd_load_u16(t + 34))
            else:
                s += toeplitz_hash(ctx.key, 40, t, 12)
        t1 = _now()
    _sink += s
    return (t1 - t0) / <double>count
