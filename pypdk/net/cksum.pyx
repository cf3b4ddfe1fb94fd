"""Internet checksums: the Python face of cksum.pxd (tests, tools, the slow path).

The hot path cimports the inline functions of cksum.pxd, which take and give
checksums *as stored* in the header. This module's functions take Python
buffers (bytes, bytearray, memoryview, numpy uint8 arrays) and give and take
checksums as numbers read big-endian off the wire, the way scapy and
Wireshark show them. Names drop the C prefix: `cksum.ipv4_hdr(b)` wraps
`ipv4_hdr_cksum`, `cksum.update16` wraps `cksum_update16`, and so on.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from pypdk.net.byteorder cimport pd_ntohs, pd_htons, pd_ntohl, pd_htonl
from pypdk.net.ipv4 cimport pd_ipv4_hdr, PD_IPV4_HDR_LEN
from pypdk.net.ipv6 cimport pd_ipv6_hdr, PD_IPV6_HDR_LEN, ipv6_skip_ext

from pypdk.errors import UsageError


def inet(const uint8_t[::1] data not None):
    """The Internet checksum (RFC 1071) of a buffer.

    Returns:
        int: the 16-bit checksum as it reads on the wire (big-endian).
    """
    cdef uint16_t r
    with nogil:
        r = inet_cksum(&data[0] if data.shape[0] else NULL, data.shape[0])
    return pd_ntohs(r)


def fold_sum(const uint8_t[::1] data not None):
    """The folded ones'-complement sum (not complemented) of a buffer, big-endian."""
    return pd_ntohs(cksum_fold(cksum_add(&data[0] if data.shape[0] else NULL, data.shape[0], 0)))


cdef const pd_ipv4_hdr *_ipv4(const uint8_t[::1] pkt) except NULL:
    cdef const pd_ipv4_hdr *ip
    if pkt.shape[0] < PD_IPV4_HDR_LEN:
        raise UsageError(f"an IPv4 header needs 20 bytes, got {pkt.shape[0]}", "pass the packet from its IP header")
    ip = <const pd_ipv4_hdr *>&pkt[0]
    if (ip.version_ihl >> 4) != 4 or (ip.version_ihl & 15) < 5 or (ip.version_ihl & 15) * 4 > pkt.shape[0]:
        raise UsageError("not an IPv4 header (version or IHL)", "pass the packet from its IP header")
    return ip


def ipv4_hdr(const uint8_t[::1] hdr not None):
    """The IPv4 header checksum for `hdr` (its current checksum field ignored)."""
    return pd_ntohs(ipv4_hdr_cksum(_ipv4(hdr)))


def ipv4_hdr_ok(const uint8_t[::1] hdr not None):
    """True when the header's checksum field is right."""
    return bool(ipv4_hdr_cksum_ok(_ipv4(hdr)))


def ipv4_l4(const uint8_t[::1] pkt not None, proto=None):
    """The TCP/UDP checksum of an IPv4 packet, from its IP header to total_length.

    Args:
        pkt: the packet from the IPv4 header on (contiguous).
        proto: the protocol for the pseudo-header; default next_proto_id.
    Returns:
        int: the checksum to put in the L4 header (big-endian number).
    """
    cdef const pd_ipv4_hdr *ip = _ipv4(pkt)
    cdef uint32_t hl = (ip.version_ihl & 15) * 4
    cdef uint32_t tl = pd_ntohs(ip.total_length)
    cdef uint8_t p = ip.next_proto_id if proto is None else proto
    if tl > pkt.shape[0] or tl < hl:
        raise UsageError(f"total_length {tl} does not fit the {pkt.shape[0]} bytes given", "pass the whole packet")
    return pd_ntohs(ipv4_l4_cksum(ip, &pkt[hl], tl - hl, p))


def ipv4_l4_ok(const uint8_t[::1] pkt not None):
    """True when the TCP/UDP checksum of the IPv4 packet is right (UDP 0 counts as right)."""
    cdef const pd_ipv4_hdr *ip = _ipv4(pkt)
    cdef uint32_t hl = (ip.version_ihl & 15) * 4
    cdef uint32_t tl = pd_ntohs(ip.total_length)
    if tl > pkt.shape[0] or tl < hl:
        raise UsageError(f"total_length {tl} does not fit the {pkt.shape[0]} bytes given", "pass the whole packet")
    return bool(ipv4_l4_cksum_ok(ip, &pkt[hl], tl - hl, ip.next_proto_id))


def icmp(const uint8_t[::1] msg not None):
    """The ICMP (IPv4) checksum of a message, its checksum field ignored."""
    return pd_ntohs(icmp_cksum(&msg[0] if msg.shape[0] else NULL, msg.shape[0]))


cdef int _ipv6_l4(const uint8_t[::1] pkt, uint8_t *proto) except -1:
    cdef const pd_ipv6_hdr *ip6
    cdef int off
    cdef uint32_t end
    if pkt.shape[0] < PD_IPV6_HDR_LEN:
        raise UsageError(f"an IPv6 header needs 40 bytes, got {pkt.shape[0]}", "pass the packet from its IP header")
    ip6 = <const pd_ipv6_hdr *>&pkt[0]
    end = PD_IPV6_HDR_LEN + pd_ntohs(ip6.payload_len)
    if end > pkt.shape[0]:
        raise UsageError(f"payload_len runs past the {pkt.shape[0]} bytes given", "pass the whole packet")
    off = ipv6_skip_ext(ip6, end, proto)
    if off < 0:
        raise UsageError("malformed IPv6 extension headers", "check the packet")
    return off


def ipv6_l4(const uint8_t[::1] pkt not None):
    """The upper-layer (TCP, UDP, ICMPv6) checksum of an IPv6 packet.

    Extension headers are skipped; the L4 length is what payload_len leaves
    after them.
    """
    cdef uint8_t proto = 0
    cdef int off = _ipv6_l4(pkt, &proto)
    cdef const pd_ipv6_hdr *ip6 = <const pd_ipv6_hdr *>&pkt[0]
    cdef uint32_t end = PD_IPV6_HDR_LEN + pd_ntohs(ip6.payload_len)
    return pd_ntohs(ipv6_l4_cksum(ip6, &pkt[off] if <uint32_t>off < end else NULL, end - off, proto))


def ipv6_l4_ok(const uint8_t[::1] pkt not None):
    """True when the upper-layer checksum of the IPv6 packet is right."""
    cdef uint8_t proto = 0
    cdef int off = _ipv6_l4(pkt, &proto)
    cdef const pd_ipv6_hdr *ip6 = <const pd_ipv6_hdr *>&pkt[0]
    cdef uint32_t end = PD_IPV6_HDR_LEN + pd_ntohs(ip6.payload_len)
    return bool(ipv6_l4_cksum_ok(ip6, &pkt[off] if <uint32_t>off < end else NULL, end - off, proto))


def update16(uint16_t cksum, uint16_t old, uint16_t new):
    """RFC 1624 update of a checksum when a 16-bit word changed (big-endian numbers)."""
    return pd_ntohs(cksum_update16(pd_htons(cksum), pd_htons(old), pd_htons(new)))


def update32(uint16_t cksum, uint32_t old, uint32_t new):
    """RFC 1624 update of a checksum when a 32-bit word changed (big-endian numbers)."""
    return pd_ntohs(cksum_update32(pd_htons(cksum), pd_htonl(old), pd_htonl(new)))


def udp_update16(uint16_t cksum, uint16_t old, uint16_t new):
    """update16 for UDP: 0 (no checksum) stays 0, a 0 result becomes 0xffff."""
    return pd_ntohs(udp_cksum_update16(pd_htons(cksum), pd_htons(old), pd_htons(new)))


def udp_update32(uint16_t cksum, uint32_t old, uint32_t new):
    """update32 for UDP: 0 (no checksum) stays 0, a 0 result becomes 0xffff."""
    return pd_ntohs(udp_cksum_update32(pd_htons(cksum), pd_htonl(old), pd_htonl(new)))


def ttl_dec(uint8_t[::1] pkt not None):
    """Decrement the TTL of the IPv4 header at the start of `pkt` in place (checksum patched)."""
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>_ipv4(pkt)
    ipv4_ttl_dec(ip)
    return ip.time_to_live


def nat_rewrite(uint8_t[::1] pkt not None, bint src, uint32_t addr, uint16_t port):
    """Rewrite the source (or destination) address and TCP/UDP port in place.

    Args:
        pkt: the packet from the IPv4 header on; patched in place.
        src: True for source NAT, False for destination NAT.
        addr: the new address (a host-order int, as ipaddress gives).
        port: the new port.
    """
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>_ipv4(pkt)
    cdef uint32_t hl = (ip.version_ihl & 15) * 4
    if pkt.shape[0] < hl + (20 if ip.next_proto_id == 6 else 8):
        raise UsageError("the packet ends before its L4 header", "pass the whole packet")
    ipv4_nat_rewrite(ip, &pkt[hl], src, pd_htonl(addr), pd_htons(port))
