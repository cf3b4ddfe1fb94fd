# The VRFs' route tables: per VRF an IPv4 LPM (pypdk.net.lpm4's DIR-24-8)
# and an IPv6 LPM whose next hops index `vr_router.rtdata` (what a route
# points at: a nexthop id and the label pushed through an MPLS tunnel, one
# 64-bit word).
#
# Memory: a VRF's tables are made at its first route of the family and
# freed with its last, so 1024 VRFs without routes cost nothing. An LPM's
# 64 MiB tbl24 is backed as routes write it (a VRF with a few routes touches
# a few pages: 4 KiB/THP ones by default, 2 MiB hugepages on the tables'
# node under pypdk-run, one per 1/32 of the address space); its rule set and its tbl8 groups start small (RT_RULES0 rules,
# RT4/6_TBL8_0 groups) and grow when an add finds them full: a bigger table
# is built from the rules, published, and the old one freed after the next
# synchronize (route.pyx). A million routes take 20 doublings of nothing
# but a few rebuilds; a bulk add sizes the table once.
#
# Concurrency: the control thread is the only writer (lpm4_add/delete are
# single-writer, many-reader safe); lookups are lock-free. A table is
# published (release) before a reader can find it and retired, not freed,
# when replaced or emptied; groups freed by deletes are reclaimed after a
# synchronize (rt_reclaim).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pypdk.net.byteorder cimport pd_ntohs, pd_ntohl, pd_load_u32, PD_BE32
from pypdk.net.ipv4 cimport pd_ipv4_hdr, ipv4_hdr_ok
from pypdk.net.ipv6 cimport pd_ipv6_hdr, PD_IPV6_HDR_LEN
from pypdk.net.cksum cimport ipv4_hdr_cksum_ok
from pypdk.net.lpm4 cimport pd_lpm4, lpm4_lookup
from pypdk.net.lpm6 cimport pd_lpm6, lpm6_lookup
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *

from pd_compiler cimport pd_unlikely

from pd_atomic cimport pd_load_acquire_u64

cdef enum:
    RT_RULES0 = 1024            # rules of a new VRF table (doubles when full)
    RT4_TBL8_0 = 64             # tbl8 groups of a new IPv4 table (x4 when out)
    RT6_TBL8_0 = 256

# What route data index v points at.
cdef inline void rt_data(vr_router *r, uint32_t v, uint32_t *nh, uint32_t *label) noexcept nogil:
    cdef uint64_t d = pd_load_acquire_u64(&r.rtdata[v])
    nh[0] = <uint32_t>d
    label[0] = <uint32_t>(d >> 32)

# Route lookup in vrf for the IPv4 destination dst_be (network order): 0
# with the nexthop id and label, -1 for no route.
cdef inline int route_lookup4(vr_router *r, uint16_t vrf, uint32_t dst_be, uint32_t *nh,
                              uint32_t *label) noexcept nogil:
    cdef const pd_lpm4 *lpm = vr_load_lpm4(&r.rt4[vrf])
    cdef uint32_t v
    if lpm == NULL or lpm4_lookup(lpm, pd_ntohl(dst_be), &v) != 0:
        return -1
    rt_data(r, v, nh, label)
    return 0

cdef inline int route_lookup6(vr_router *r, uint16_t vrf, const uint8_t *dst, uint32_t *nh,
                              uint32_t *label) noexcept nogil:
    cdef const pd_lpm6 *lpm = vr_load_lpm6(&r.rt6[vrf])
    cdef uint32_t v
    if lpm == NULL or lpm6_lookup(lpm, dst, &v) != 0:
        return -1
    rt_data(r, v, nh, label)
    return 0

# Route lookup in vrf for the destination of the IP packet at l3.
cdef inline int route_lookup(vr_router *r, uint16_t vrf, uint8_t family, const uint8_t *l3,
                             uint32_t *nh, uint32_t *label) noexcept nogil:
    if family == 4:
        return route_lookup4(r, vrf, (<const pd_ipv4_hdr *>l3).dst_addr, nh, label)
    return route_lookup6(r, vrf, (<const pd_ipv6_hdr *>l3).dst_addr, nh, label)


# ---- control (route.pyx; the control thread, one writer) -------------------------
# Results: 0, or a negative errno (-EINVAL bad depth/value, -ENOMEM, -ENOENT
# no such route). A table replaced by a bigger one, or emptied, is stored in
# *retired (else NULL): the caller frees it with rt4_free/rt6_free after a
# synchronize.

cdef int rt4_add(vr_router *r, uint16_t vrf, uint32_t ip, uint8_t plen, uint32_t value,
                 pd_lpm4 **retired) noexcept nogil
cdef int rt4_del(vr_router *r, uint16_t vrf, uint32_t ip, uint8_t plen, pd_lpm4 **retired) noexcept nogil
cdef int rt6_add(vr_router *r, uint16_t vrf, const uint8_t *ip, uint8_t plen, uint32_t value,
                 pd_lpm6 **retired) noexcept nogil
cdef int rt6_del(vr_router *r, uint16_t vrf, const uint8_t *ip, uint8_t plen, pd_lpm6 **retired) noexcept nogil
# Make room for `extra` more IPv4 rules in vrf's table (a bulk add), one rebuild at most.
cdef int rt4_reserve(vr_router *r, uint16_t vrf, uint32_t extra, pd_lpm4 **retired) noexcept nogil
# After a synchronize: every table's groups freed by deletes become reusable.
cdef void rt_reclaim(vr_router *r) noexcept nogil
# Free every table (the router is going away).
cdef void rt_free_all(vr_router *r) noexcept nogil


# ---- L3 validation (before a packet is routed or delivered) ------------------------

# An IPv4 packet at l3: 0 or a drop reason. avail: bytes in the first
# segment (headers must be there); total: bytes in the packet.
cdef inline int ipv4_check(const pd_ipv4_hdr *ip, uint32_t avail, uint32_t total) noexcept nogil:
    if pd_unlikely(not ipv4_hdr_ok(ip, avail)):
        return DROP_INVALID_PACKET
    if pd_unlikely(pd_ntohs(ip.total_length) > total):
        return DROP_INVALID_PACKET
    if pd_unlikely(not ipv4_hdr_cksum_ok(ip)):
        return DROP_CHECKSUM_ERROR
    return 0

cdef inline int ipv6_check(const pd_ipv6_hdr *ip6, uint32_t avail, uint32_t total) noexcept nogil:
    if pd_unlikely(avail < PD_IPV6_HDR_LEN or (pd_load_u32(ip6) & PD_BE32(0xf0000000)) != PD_BE32(0x60000000)):
        return DROP_INVALID_PACKET
    if pd_unlikely(<uint32_t>pd_ntohs(ip6.payload_len) + PD_IPV6_HDR_LEN > total):
        return DROP_INVALID_PACKET
    return 0
