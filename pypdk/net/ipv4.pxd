# IPv4 header (RFC 791) and the IP protocol numbers (shared with IPv6).
#
# Addresses and 16-bit fields are network order as stored. The LPM and the
# flow key take addresses in host order: pd_ntohl(ip.dst_addr).

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from pypdk.net.byteorder cimport pd_ntohs, PD_BE16

from pd_net cimport (pd_ipv4_hdr, PD_IPPROTO_HOPOPTS, PD_IPPROTO_ICMP, PD_IPPROTO_IPIP,
                     PD_IPPROTO_TCP, PD_IPPROTO_UDP, PD_IPPROTO_IPV6, PD_IPPROTO_ROUTING,
                     PD_IPPROTO_FRAGMENT, PD_IPPROTO_GRE, PD_IPPROTO_ESP, PD_IPPROTO_AH,
                     PD_IPPROTO_ICMPV6, PD_IPPROTO_NONE, PD_IPPROTO_DSTOPTS,
                     PD_IPPROTO_SCTP, PD_IPPROTO_MPLS, PD_IPV4_HDR_LEN, PD_IPV4_VHL_DEF,
                     PD_IPV4_HDR_DF_FLAG, PD_IPV4_HDR_MF_FLAG, PD_IPV4_HDR_OFFSET_MASK,
                     PD_IPV4_MAX_PKT_LEN)


cdef inline uint8_t ipv4_version(const pd_ipv4_hdr *ip) noexcept nogil:
    return ip.version_ihl >> 4

# Header length in bytes (IHL * 4: 20 without options, at most 60).
cdef inline uint32_t ipv4_hdr_len(const pd_ipv4_hdr *ip) noexcept nogil:
    return (ip.version_ihl & 0x0f) << 2

# A fragment (first, middle or last): MF set or a non-zero offset.
cdef inline bint ipv4_is_fragment(const pd_ipv4_hdr *ip) noexcept nogil:
    return (ip.fragment_offset & PD_BE16(PD_IPV4_HDR_MF_FLAG | PD_IPV4_HDR_OFFSET_MASK)) != 0

# Fragment offset in bytes.
cdef inline uint32_t ipv4_frag_offset(const pd_ipv4_hdr *ip) noexcept nogil:
    return (pd_ntohs(ip.fragment_offset) & PD_IPV4_HDR_OFFSET_MASK) << 3

# A quick sanity check for a received header of `avail` bytes: version 4,
# IHL >= 5, header and total_length within what is there.
cdef inline bint ipv4_hdr_ok(const pd_ipv4_hdr *ip, uint32_t avail) noexcept nogil:
    cdef uint32_t hl
    if avail < PD_IPV4_HDR_LEN or (ip.version_ihl >> 4) != 4:
        return False
    hl = (ip.version_ihl & 0x0f) << 2
    return hl >= PD_IPV4_HDR_LEN and hl <= avail and hl <= pd_ntohs(ip.total_length)
