"""Plain-Python twins of pypdk.net's fast code: the oracles the tests run against.

Written for obviousness, not speed: each follows the RFC's words, with
nothing shared with the Cython code (no tables, no tricks), so a bug would
have to be made twice to pass. Checksums are numbers as read big-endian off
the wire.
"""
from __future__ import annotations

import ipaddress
import struct

# ---- Internet checksum (RFC 1071) -----------------------------------------


def ones_sum(data: bytes) -> int:
    """The 16-bit ones'-complement sum of big-endian words (odd byte padded with 0)."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def cksum(data: bytes) -> int:
    return ~ones_sum(data) & 0xFFFF


def ipv4_hdr_cksum(hdr: bytes) -> int:
    """The header checksum: the IHL words with the checksum field as zero."""
    hl = (hdr[0] & 15) * 4
    h = bytearray(hdr[:hl])
    h[10:12] = b"\x00\x00"
    return cksum(bytes(h))


_L4_CKSUM_OFFSET = {6: 16, 17: 6, 58: 2, 1: 2}


def _l4_cksum(pseudo: bytes, l4: bytes, proto: int) -> int:
    l4 = bytearray(l4)
    off = _L4_CKSUM_OFFSET.get(proto)
    if off is not None and off + 2 <= len(l4):
        l4[off:off + 2] = b"\x00\x00"
    c = cksum(pseudo + bytes(l4))
    if proto == 17 and c == 0:
        c = 0xFFFF
    return c


def ipv4_l4_cksum(src: int, dst: int, proto: int, l4: bytes) -> int:
    """TCP/UDP over IPv4 (RFC 768/9293 pseudo-header: src, dst, 0, proto, length)."""
    pseudo = struct.pack("!IIBBH", src, dst, 0, proto, len(l4))
    return _l4_cksum(pseudo, l4, proto)


def ipv6_l4_cksum(src: bytes, dst: bytes, proto: int, l4: bytes) -> int:
    """Upper-layer checksum over IPv6 (RFC 8200 8.1: src, dst, 32-bit length, 3 zeros, next header)."""
    pseudo = bytes(src) + bytes(dst) + struct.pack("!I3xB", len(l4), proto)
    return _l4_cksum(pseudo, l4, proto)


def cksum_after_change(data: bytes, offset: int, new: bytes) -> int:
    """The oracle for incremental updates: patch the bytes and recompute."""
    d = bytearray(data)
    d[offset:offset + len(new)] = new
    return cksum(bytes(d))


# ---- Toeplitz (Microsoft RSS) ----------------------------------------------


def toeplitz(key: bytes, data: bytes) -> int:
    """XOR of the 32-bit key windows at every set input bit, MSB first."""
    kbits = int.from_bytes(key, "big")
    klen = len(key) * 8
    h = 0
    for i in range(len(data) * 8):
        if data[i // 8] & (0x80 >> (i % 8)):
            h ^= (kbits >> (klen - 32 - i)) & 0xFFFFFFFF if klen - 32 - i >= 0 else \
                (kbits << (i + 32 - klen)) & 0xFFFFFFFF
    return h


def rss_tuple_ipv4(src, dst, sport=None, dport=None) -> bytes:
    b = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    if sport is not None:
        b += struct.pack("!HH", sport, dport)
    return b


def rss_tuple_ipv6(src, dst, sport=None, dport=None) -> bytes:
    b = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    if sport is not None:
        b += struct.pack("!HH", sport, dport)
    return b


# ---- longest-prefix match ----------------------------------------------------


class LPM:
    """Prefixes in one dict per length; lookup tries the longest length first.

    Args:
        bits: 32 for IPv4, 128 for IPv6. Addresses are ints.
    """

    def __init__(self, bits: int = 32):
        self.bits = bits
        self.by_depth: list[dict[int, int]] = [dict() for _ in range(bits + 1)]

    def mask(self, depth: int) -> int:
        return ((1 << depth) - 1) << (self.bits - depth) if depth else 0

    def add(self, ip: int, depth: int, nh: int) -> None:
        self.by_depth[depth][ip & self.mask(depth)] = nh

    def delete(self, ip: int, depth: int) -> None:
        del self.by_depth[depth][ip & self.mask(depth)]

    def lookup(self, ip: int):
        """The next hop of the longest prefix holding ip, or None."""
        for depth in range(self.bits, -1, -1):
            nh = self.by_depth[depth].get(ip & self.mask(depth))
            if nh is not None:
                return nh
        return None

    def rules(self):
        return sorted((p, d, nh) for d, t in enumerate(self.by_depth) for p, nh in t.items())

    def __len__(self):
        return sum(len(t) for t in self.by_depth)
