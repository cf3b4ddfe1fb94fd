# The Internet checksum (RFC 1071), full and incremental (RFC 1624).
#
# Byte order: the ones'-complement sum does not care which byte of a 16-bit
# word is the high one, as long as every word is read the same way (RFC 1071
# 2.B). So everything here sums native-order words straight from memory and
# returns a checksum *as stored*: write it into the header field as is, and
# pass field values to the update functions as read from the header (no
# pd_ntohs anywhere). Pseudo-header integers (length, protocol) are turned
# into network order before they are added.
#
# Speed: the sum adds 64-bit words with end-around carry into four
# independent accumulators (about 55 bytes per ns here); the fold to 16 bits
# happens once at the end.
#
# Partial sums (uint64_t) compose: cksum_add(b, n, cksum_add(a, m, 0)) sums a
# then b, provided a has an even length (an odd split would swap the bytes of
# every word after it). Checksum fields inside the summed range are
# *ignored* by the l4 functions below (they subtract the field), so a caller
# need not zero them first.
#
# Zero: a computed UDP checksum of 0 is sent as 0xffff (0 means "none" in
# IPv4 UDP, RFC 768); TCP and ICMP keep 0.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pypdk.net.byteorder cimport pd_load_u16, pd_load_u32, pd_load_u64, pd_store_u16, pd_htons, pd_htonl
from pypdk.net.ipv4 cimport pd_ipv4_hdr, PD_IPPROTO_UDP, PD_IPPROTO_TCP, PD_IPPROTO_ICMP, PD_IPPROTO_ICMPV6
from pypdk.net.ipv6 cimport pd_ipv6_hdr
from pypdk.net.byteorder cimport pd_ntohs

from pd_compiler cimport pd_likely


# ---- sums ---------------------------------------------------------------

# Add the bytes at buf to the partial sum (an even-length prefix of a
# message keeps the parity right for what follows).
cdef inline uint64_t cksum_add(const void *buf, size_t length, uint64_t sum) noexcept nogil:
    cdef const uint8_t *p = <const uint8_t *>buf
    cdef uint64_t s0 = sum, s1 = 0, s2 = 0, s3 = 0, w0, w1, w2, w3
    cdef uint8_t last[2]
    # 64-bit words with end-around carry (a ones'-complement sum modulo
    # 2^64 - 1, which 0xffff divides, so it folds to the 16-bit sum). Four
    # independent accumulators keep four adds in flight.
    while length >= 32:
        w0 = pd_load_u64(p)
        w1 = pd_load_u64(p + 8)
        w2 = pd_load_u64(p + 16)
        w3 = pd_load_u64(p + 24)
        s0 += w0
        s0 += s0 < w0
        s1 += w1
        s1 += s1 < w1
        s2 += w2
        s2 += s2 < w2
        s3 += w3
        s3 += s3 < w3
        p += 32
        length -= 32
    while length >= 8:
        w0 = pd_load_u64(p)
        s0 += w0
        s0 += s0 < w0
        p += 8
        length -= 8
    # The tail and the other accumulators stay far below 2^64 when added
    # as 32-bit halves: no carry to fold.
    s1 = (s1 & 0xffffffffu) + (s1 >> 32) + (s2 & 0xffffffffu) + (s2 >> 32) + (s3 & 0xffffffffu) + (s3 >> 32)
    if length >= 4:
        s1 += pd_load_u32(p)
        p += 4
        length -= 4
    if length >= 2:
        s1 += pd_load_u16(p)
        p += 2
        length -= 2
    if length:
        # The odd last byte is the first byte of a word padded with zero.
        last[0] = p[0]
        last[1] = 0
        s1 += pd_load_u16(last)
    s0 += s1
    s0 += s0 < s1
    return s0

# Fold a partial sum to 16 bits with end-around carry (0..0xffff; 0 only
# for an all-zero input).
cdef inline uint16_t cksum_fold(uint64_t s) noexcept nogil:
    s = (s & 0xffffffffu) + (s >> 32)     # < 2^33
    s = (s & 0xffff) + (s >> 16)          # < 2^17 + 2^16
    s = (s & 0xffff) + (s >> 16)          # <= 0x10001
    s = (s & 0xffff) + (s >> 16)          # <= 0xffff
    return <uint16_t>s

# The checksum to store: the complement of the folded sum.
cdef inline uint16_t cksum_finish(uint64_t s) noexcept nogil:
    return <uint16_t>~cksum_fold(s)

# The Internet checksum of a buffer (as stored).
cdef inline uint16_t inet_cksum(const void *buf, size_t length) noexcept nogil:
    return cksum_finish(cksum_add(buf, length, 0))

# Remove a 16-bit value (e.g. a checksum field inside the summed range) from
# a partial sum: adding its complement is subtracting in ones' complement.
cdef inline uint64_t cksum_sub16(uint64_t s, uint16_t v) noexcept nogil:
    cdef uint64_t x = <uint16_t>~v
    s += x
    return s + (s < x)          # end-around carry: s may be near 2^64


# ---- IPv4 header ----------------------------------------------------------

# The header checksum for `ip` (IHL words, options included), ignoring what
# its hdr_checksum field holds now.
cdef inline uint16_t ipv4_hdr_cksum(const pd_ipv4_hdr *ip) noexcept nogil:
    cdef uint32_t hl = (ip.version_ihl & 0x0f) << 2
    cdef const uint8_t *p = <const uint8_t *>ip
    cdef uint64_t s
    if pd_likely(hl == 20):      # no options: five words, no loop
        s = (<uint64_t>pd_load_u32(p) + pd_load_u32(p + 4) + pd_load_u32(p + 8) + pd_load_u32(p + 12)
             + pd_load_u32(p + 16))
    else:
        s = cksum_add(ip, hl, 0)
    return cksum_finish(cksum_sub16(s, ip.hdr_checksum))

# The received header sums to all ones (its checksum field included).
cdef inline bint ipv4_hdr_cksum_ok(const pd_ipv4_hdr *ip) noexcept nogil:
    return cksum_fold(cksum_add(ip, (ip.version_ihl & 0x0f) << 2, 0)) == 0xffff


# ---- pseudo-headers (RFC 768, RFC 9293; IPv6: RFC 8200 8.1) ----------------

cdef inline uint64_t ipv4_phdr_sum(const pd_ipv4_hdr *ip, uint32_t l4_len, uint8_t proto) noexcept nogil:
    return (<uint64_t>ip.src_addr + ip.dst_addr + pd_htons(proto) + pd_htons(<uint16_t>l4_len))

cdef inline uint64_t ipv6_phdr_sum(const pd_ipv6_hdr *ip6, uint32_t l4_len, uint8_t proto) noexcept nogil:
    return cksum_add(ip6.src_addr, 32, <uint64_t>pd_htonl(l4_len) + pd_htonl(proto))

# Where the checksum field sits in an L4 header of `proto`; -1 if unknown.
cdef inline int l4_cksum_offset(uint8_t proto) noexcept nogil:
    if proto == PD_IPPROTO_TCP:
        return 16
    if proto == PD_IPPROTO_UDP:
        return 6
    if proto == PD_IPPROTO_ICMPV6 or proto == PD_IPPROTO_ICMP:
        return 2
    return -1

# Sum of an L4 message without its own checksum field (when l4_len covers it).
cdef inline uint64_t _l4_sum_nofield(const void *l4, uint32_t l4_len, uint8_t proto, uint64_t s) noexcept nogil:
    cdef int off = l4_cksum_offset(proto)
    s = cksum_add(l4, l4_len, s)
    if off >= 0 and <uint32_t>off + 2 <= l4_len:
        s = cksum_sub16(s, pd_load_u16(<const uint8_t *>l4 + off))
    return s

cdef inline uint16_t _l4_finish(uint64_t s, uint8_t proto) noexcept nogil:
    cdef uint16_t c = cksum_finish(s)
    if proto == PD_IPPROTO_UDP and c == 0:
        return 0xffff
    return c


# ---- UDP / TCP / ICMPv6 over IPv4 and IPv6 ---------------------------------

# The checksum to store in the L4 header at l4 (l4_len bytes, contiguous)
# carried by `ip` with protocol `proto` (the field's current value is ignored).
# Not for ICMP over IPv4, which has no pseudo-header: icmp_cksum.
cdef inline uint16_t ipv4_l4_cksum(const pd_ipv4_hdr *ip, const void *l4, uint32_t l4_len,
                                   uint8_t proto) noexcept nogil:
    return _l4_finish(_l4_sum_nofield(l4, l4_len, proto, ipv4_phdr_sum(ip, l4_len, proto)), proto)

# Same, with the length and protocol taken from the IPv4 header
# (total_length - IHL * 4, next_proto_id).
cdef inline uint16_t ipv4_udptcp_cksum(const pd_ipv4_hdr *ip, const void *l4) noexcept nogil:
    cdef uint32_t l4_len = pd_ntohs(ip.total_length) - ((ip.version_ihl & 0x0f) << 2)
    return ipv4_l4_cksum(ip, l4, l4_len, ip.next_proto_id)

# The received L4 checksum is right (a UDP checksum of 0, "none", is right too).
cdef inline bint ipv4_l4_cksum_ok(const pd_ipv4_hdr *ip, const void *l4, uint32_t l4_len,
                                  uint8_t proto) noexcept nogil:
    if proto == PD_IPPROTO_UDP and l4_len >= 8 and pd_load_u16(<const uint8_t *>l4 + 6) == 0:
        return True
    return cksum_fold(cksum_add(l4, l4_len, ipv4_phdr_sum(ip, l4_len, proto))) == 0xffff

cdef inline uint16_t ipv6_l4_cksum(const pd_ipv6_hdr *ip6, const void *l4, uint32_t l4_len,
                                   uint8_t proto) noexcept nogil:
    return _l4_finish(_l4_sum_nofield(l4, l4_len, proto, ipv6_phdr_sum(ip6, l4_len, proto)), proto)

# With the length from payload_len and the protocol from ip6.proto: for a
# packet without extension headers (else call ipv6_l4_cksum with what
# ipv6_skip_ext found).
cdef inline uint16_t ipv6_udptcp_cksum(const pd_ipv6_hdr *ip6, const void *l4) noexcept nogil:
    return ipv6_l4_cksum(ip6, l4, pd_ntohs(ip6.payload_len), ip6.proto)

# In IPv6 the UDP checksum is mandatory: 0 is wrong (RFC 8200 8.1).
cdef inline bint ipv6_l4_cksum_ok(const pd_ipv6_hdr *ip6, const void *l4, uint32_t l4_len,
                                  uint8_t proto) noexcept nogil:
    return cksum_fold(cksum_add(l4, l4_len, ipv6_phdr_sum(ip6, l4_len, proto))) == 0xffff

# ICMP (IPv4): a plain checksum over the message, its field ignored.
cdef inline uint16_t icmp_cksum(const void *icmp, uint32_t length) noexcept nogil:
    return cksum_finish(_l4_sum_nofield(icmp, length, PD_IPPROTO_ICMP, 0))


# ---- incremental update (RFC 1624, equation 3: HC' = ~(~HC + ~m + m')) -----

# A 16-bit word of the covered data changed from old to new (all three
# values as stored). Gives exactly what a full recomputation would (RFC 1624
# section 3 explains why eqn. 3 avoids the -0 of RFC 1141).
cdef inline uint16_t cksum_update16(uint16_t cksum, uint16_t old, uint16_t new) noexcept nogil:
    return cksum_finish(<uint64_t><uint16_t>~cksum + <uint16_t>~old + new)

# A 32-bit word (an IPv4 address) changed; both halves at once.
cdef inline uint16_t cksum_update32(uint16_t cksum, uint32_t old, uint32_t new) noexcept nogil:
    return cksum_finish(<uint64_t><uint16_t>~cksum + <uint32_t>~old + new)

# UDP flavour: 0 ("no checksum") stays 0 and a result of 0 is sent as 0xffff.
cdef inline uint16_t udp_cksum_update16(uint16_t cksum, uint16_t old, uint16_t new) noexcept nogil:
    if cksum == 0:
        return 0
    cksum = cksum_update16(cksum, old, new)
    return cksum if cksum != 0 else 0xffff

cdef inline uint16_t udp_cksum_update32(uint16_t cksum, uint32_t old, uint32_t new) noexcept nogil:
    if cksum == 0:
        return 0
    cksum = cksum_update32(cksum, old, new)
    return cksum if cksum != 0 else 0xffff

# Decrement the TTL and patch the header checksum (the TTL shares a word with
# the protocol). The caller checks ttl > 1 first (else: ICMP time exceeded).
cdef inline void ipv4_ttl_dec(pd_ipv4_hdr *ip) noexcept nogil:
    cdef uint8_t *w = <uint8_t *>ip + 8
    cdef uint16_t old = pd_load_u16(w)
    w[0] -= 1
    ip.hdr_checksum = cksum_update16(ip.hdr_checksum, old, pd_load_u16(w))

# NAT: replace the source (src=True) or destination address and L4 port of
# an IPv4 packet, patching the IP header checksum and the TCP/UDP checksum
# (the pseudo-header covers the address). `l4` is the TCP/UDP header; with
# NULL or another protocol only the address changes. Values are network order.
cdef inline void ipv4_nat_rewrite(pd_ipv4_hdr *ip, void *l4, bint src, uint32_t addr_be,
                                  uint16_t port_be) noexcept nogil:
    cdef uint32_t old_addr = ip.src_addr if src else ip.dst_addr
    cdef uint8_t *p = <uint8_t *>l4
    cdef uint16_t old_port, c
    cdef int poff = 0 if src else 2
    if src:
        ip.src_addr = addr_be
    else:
        ip.dst_addr = addr_be
    ip.hdr_checksum = cksum_update32(ip.hdr_checksum, old_addr, addr_be)
    if p == NULL or (ip.next_proto_id != PD_IPPROTO_TCP and ip.next_proto_id != PD_IPPROTO_UDP):
        return
    old_port = pd_load_u16(p + poff)
    pd_store_u16(p + poff, port_be)
    if ip.next_proto_id == PD_IPPROTO_TCP:
        c = cksum_update32(pd_load_u16(p + 16), old_addr, addr_be)
        pd_store_u16(p + 16, cksum_update16(c, old_port, port_be))
    elif ip.next_proto_id == PD_IPPROTO_UDP:
        c = udp_cksum_update32(pd_load_u16(p + 6), old_addr, addr_be)
        pd_store_u16(p + 6, udp_cksum_update16(c, old_port, port_be))
