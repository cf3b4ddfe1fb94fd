"""ARP frames for the slow path: build and parse Ethernet/IPv4 ARP (RFC 826).

The datapath answers and forwards ARP in Cython (pypdk/net/arp.pxd); an
agent, a tool or a test that sends a request or reads a reply uses these.
Addresses are bytes as on the wire: MACs of 6 bytes, IPv4 addresses of 4.
"""
from __future__ import annotations

import struct

from pypdk.net.proto import (ARP_HRD_ETHER, ARP_OP_REPLY, ARP_OP_REQUEST, ETHER_HDR_LEN,
                             ETHER_MIN_LEN, ETHER_TYPE_ARP, ETHER_TYPE_IPV4)

BROADCAST = b"\xff" * 6
ARP_LEN = 28                                    # the IPv4-over-Ethernet ARP message
_HDR = struct.Struct("!HHBBH")                  # htype, ptype, hlen, plen, op


def arp_frame(op: int, src_mac: bytes, src_ip: bytes, dst_mac: bytes, dst_ip: bytes,
              eth_dst: bytes | None = None) -> bytes:
    """An Ethernet ARP frame for IPv4, padded to the 60-byte minimum.

    Args:
        op: ARP_OP_REQUEST or ARP_OP_REPLY.
        src_mac, src_ip: the sender's addresses.
        dst_mac, dst_ip: the target's addresses (a request sends a zero
            target MAC whatever dst_mac is).
        eth_dst: the frame's destination; default broadcast for a request,
            dst_mac for a reply.
    """
    if eth_dst is None:
        eth_dst = BROADCAST if op == ARP_OP_REQUEST else dst_mac
    f = (eth_dst + src_mac + struct.pack("!H", ETHER_TYPE_ARP) + _HDR.pack(ARP_HRD_ETHER, ETHER_TYPE_IPV4, 6, 4, op)
         + src_mac + src_ip + (bytes(6) if op == ARP_OP_REQUEST else dst_mac) + dst_ip)
    return f + bytes(ETHER_MIN_LEN - len(f))


def parse_arp(frame: bytes):
    """(op, sender mac, sender ip, target mac, target ip) of an Ethernet/IPv4 ARP frame, else None."""
    e = ETHER_HDR_LEN
    if len(frame) < e + ARP_LEN or frame[12:14] != struct.pack("!H", ETHER_TYPE_ARP):
        return None
    htype, ptype, hlen, plen, op = _HDR.unpack(frame[e:e + 8])
    if htype != ARP_HRD_ETHER or ptype != ETHER_TYPE_IPV4 or hlen != 6 or plen != 4:
        return None
    return op, frame[e + 8:e + 14], frame[e + 14:e + 18], frame[e + 18:e + 24], frame[e + 24:e + 28]


__all__ = ["arp_frame", "parse_arp", "BROADCAST", "ARP_LEN", "ARP_OP_REQUEST", "ARP_OP_REPLY"]
