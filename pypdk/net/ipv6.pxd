# IPv6 header (RFC 8200), its fragment header and the generic extension
# header. Protocol numbers are in ipv4.pxd (one IANA registry for both).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pypdk.net.byteorder cimport pd_ntohl, pd_ntohs, pd_load_u64, PD_BE16
from pypdk.net.ipv4 cimport (PD_IPPROTO_HOPOPTS, PD_IPPROTO_ROUTING, PD_IPPROTO_FRAGMENT,
                             PD_IPPROTO_DSTOPTS, PD_IPPROTO_AH)

from pd_net cimport (pd_ipv6_hdr, pd_ipv6_frag_hdr, pd_ipv6_ext_hdr, PD_IPV6_HDR_LEN,
                     PD_IPV6_ADDR_LEN)


cdef inline uint8_t ipv6_version(const pd_ipv6_hdr *ip6) noexcept nogil:
    return <uint8_t>(pd_ntohl(ip6.vtc_flow) >> 28)

cdef inline uint8_t ipv6_traffic_class(const pd_ipv6_hdr *ip6) noexcept nogil:
    return <uint8_t>(pd_ntohl(ip6.vtc_flow) >> 20)

cdef inline uint32_t ipv6_flow_label(const pd_ipv6_hdr *ip6) noexcept nogil:
    return pd_ntohl(ip6.vtc_flow) & 0xfffff

cdef inline bint ipv6_addr_eq(const uint8_t *a, const uint8_t *b) noexcept nogil:
    return pd_load_u64(a) == pd_load_u64(b) and pd_load_u64(a + 8) == pd_load_u64(b + 8)

cdef inline bint ipv6_addr_is_multicast(const uint8_t *a) noexcept nogil:
    return a[0] == 0xff

# The extension headers that can be skipped generically (hop-by-hop,
# routing, destination options: 8 * (1 + hdr_ext_len) bytes; AH: 4 * (2 + len)).
cdef inline bint ipv6_is_ext_hdr(uint8_t proto) noexcept nogil:
    return (proto == PD_IPPROTO_HOPOPTS or proto == PD_IPPROTO_ROUTING
            or proto == PD_IPPROTO_DSTOPTS or proto == PD_IPPROTO_FRAGMENT
            or proto == PD_IPPROTO_AH)

# Walk the extension headers after the fixed header in a buffer of `avail`
# bytes (starting at the IPv6 header). Returns the offset of the upper-layer
# header from the start of the IPv6 header and stores its protocol in
# *proto; -1 if a header runs past `avail`. A non-first fragment stops the
# walk at the fragment header (*proto = PD_IPPROTO_FRAGMENT): it has no L4
# header.
cdef inline int ipv6_skip_ext(const pd_ipv6_hdr *ip6, uint32_t avail, uint8_t *proto) noexcept nogil:
    cdef const uint8_t *base = <const uint8_t *>ip6
    cdef uint32_t off = PD_IPV6_HDR_LEN
    cdef uint8_t nh = ip6.proto
    cdef const pd_ipv6_ext_hdr *ext
    cdef const pd_ipv6_frag_hdr *frag
    cdef int hops = 0
    while ipv6_is_ext_hdr(nh):
        hops += 1
        if off + 8 > avail or hops > 8:
            return -1
        if nh == PD_IPPROTO_FRAGMENT:
            frag = <const pd_ipv6_frag_hdr *>(base + off)
            if (frag.frag_data & PD_BE16(0xfff8)) != 0:
                proto[0] = nh
                return <int>off
            nh = frag.next_header
            off += 8
            continue
        ext = <const pd_ipv6_ext_hdr *>(base + off)
        if nh == PD_IPPROTO_AH:
            off += (<uint32_t>ext.hdr_ext_len + 2) << 2
        else:
            off += (<uint32_t>ext.hdr_ext_len + 1) << 3
        nh = ext.next_header
    if off > avail:
        return -1
    proto[0] = nh
    return <int>off
