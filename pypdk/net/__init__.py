"""Packet headers and the lookups a forwarding path needs, for nogil code.

C level (cimport these .pxd; see each for the contract):
  byteorder     pd_ntohs/pd_htonl..., PD_BE16/PD_BE32 (folded at build time),
                unaligned pd_load_u16/32/64, pd_store_*
  ether, arp, ipv4, ipv6, icmp, udp, tcp, gre, mpls, vxlan
                one packed struct per header (layouts in pypdk/include/pd_net.h,
                sizes pinned by static_assert), the protocol constants, and
                small inline field helpers (ipv4_hdr_len, ipv6_skip_ext,
                gre_hdr_len, mpls_get_label/mpls_set_ttl, vxlan_get_vni, ...)
  cksum         the Internet checksum (full, pseudo-header, incremental RFC
                1624, TTL decrement, NAT rewrite), values as stored
  rss           Toeplitz hash (Microsoft's key; symmetric variants)
  lpm4, lpm6    IPv4 DIR-24-8 and IPv6 LPM over a shared tbl8 part (lpm_tbl8):
                one writer, lock-free nogil readers, grow by rebuilding
  flow_hash     fixed-size keys -> position: one writer, lock-free nogil readers
  hash          the table hash (hash_bytes, hash_mix64)

Python level (tests, tools, control path): LPM4, LPM6 and FlowHash (each a
context manager; close() frees the tables), Rss and the `cksum` module's
functions; `_ref` holds plain-Python oracles of the same. And for code that
builds or reads frames in Python:
  proto         ethertypes, IP protocols, UDP ports (VXLAN 4789, MPLS-in-UDP
                6635) and header lengths, the values of pd_net.h
  addr          mac_str / parse_mac: the one spelling of a MAC address
  arp_frames    arp_frame / parse_arp: Ethernet/IPv4 ARP for the slow path

Table memory (the LPM tables, the flow hash, the vRouter's flow entries) is
mapped by pypdk.eal.tablemem: lazily backed, THP where possible; the EAL's
2 MiB hugepages on one node after eal.place_tables(node).
"""
from pypdk.net import cksum
from pypdk.net.flow_hash import FlowHash, make_key_v4, make_key_v6
from pypdk.net.lpm4 import LPM4
from pypdk.net.lpm6 import LPM6
from pypdk.net.rss import Rss, toeplitz

__all__ = ["cksum", "FlowHash", "make_key_v4", "make_key_v6", "LPM4", "LPM6", "Rss", "toeplitz"]
