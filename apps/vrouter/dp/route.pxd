# The VRFs' route tables: per VRF an IPv4 and an IPv6 longest-prefix-match
# table whose results index `vr_router.rtdata` (what a route points at: a
# nexthop id and the label pushed through an MPLS tunnel, one 64-bit word).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pypdk.net.byteorder cimport pd_ntohs, pd_load_u32, PD_BE32
from pypdk.net.ipv4 cimport pd_ipv4_hdr, ipv4_hdr_ok
from pypdk.net.ipv6 cimport pd_ipv6_hdr, PD_IPV6_HDR_LEN
from pypdk.net.cksum cimport ipv4_hdr_cksum_ok
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.tables cimport rt_lookup

cdef extern from "pd_compiler.h" nogil:
    bint pd_unlikely(bint)

cdef extern from "pd_atomic.h" nogil:
    uint64_t pd_load_acquire_u64(const uint64_t *p)

# Route lookup in vrf for the destination of the IP packet at l3: 0 with the
# nexthop id and label, -1 for no route.
cdef inline int route_lookup(vr_router *r, uint16_t vrf, uint8_t family, const uint8_t *l3,
                             uint32_t *nh, uint32_t *label) noexcept nogil:
    cdef uint32_t v
    cdef uint64_t d
    cdef int rc
    if family == 4:
        rc = rt_lookup(vr_load_rt(&r.rt4[vrf]), l3 + 16, &v)
    else:
        rc = rt_lookup(vr_load_rt(&r.rt6[vrf]), l3 + 24, &v)
    if rc != 0:
        return -1
    d = pd_load_acquire_u64(&r.rtdata[v])
    nh[0] = <uint32_t>d
    label[0] = <uint32_t>(d >> 32)
    return 0


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
