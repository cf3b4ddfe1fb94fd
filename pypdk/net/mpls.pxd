# MPLS label stack entry (RFC 3032): label:20 TC:3 S(bottom of stack):1 TTL:8,
# one big-endian 32-bit word. The getters read and the setters rewrite one
# part of `lse` in place; mpls_lse_make builds a whole entry (network order).

from libc.stdint cimport uint8_t, uint32_t
from pypdk.net.byteorder cimport pd_ntohl, pd_htonl

from pd_net cimport (pd_mpls_hdr, PD_MPLS_HDR_LEN, PD_MPLS_LABEL_SHIFT, PD_MPLS_TC_SHIFT,
                     PD_MPLS_BOS_SHIFT, PD_MPLS_LABEL_MAX, PD_MPLS_LABEL_IPV4_NULL,
                     PD_MPLS_LABEL_IPV6_NULL, PD_MPLS_LABEL_IMPLICIT_NULL)


cdef inline uint32_t mpls_lse_make(uint32_t label, uint8_t tc, bint bos, uint8_t ttl) noexcept nogil:
    return pd_htonl(((label & PD_MPLS_LABEL_MAX) << PD_MPLS_LABEL_SHIFT)
                    | (<uint32_t>(tc & 7) << PD_MPLS_TC_SHIFT)
                    | ((<uint32_t>1 << PD_MPLS_BOS_SHIFT) if bos else 0)
                    | ttl)

cdef inline uint32_t mpls_get_label(const pd_mpls_hdr *h) noexcept nogil:
    return pd_ntohl(h.lse) >> PD_MPLS_LABEL_SHIFT

cdef inline uint8_t mpls_get_tc(const pd_mpls_hdr *h) noexcept nogil:
    return <uint8_t>((pd_ntohl(h.lse) >> PD_MPLS_TC_SHIFT) & 7)

cdef inline bint mpls_get_bos(const pd_mpls_hdr *h) noexcept nogil:
    return (pd_ntohl(h.lse) >> PD_MPLS_BOS_SHIFT) & 1

cdef inline uint8_t mpls_get_ttl(const pd_mpls_hdr *h) noexcept nogil:
    return <uint8_t>(pd_ntohl(h.lse) & 0xff)

cdef inline void mpls_set_label(pd_mpls_hdr *h, uint32_t label) noexcept nogil:
    h.lse = pd_htonl((pd_ntohl(h.lse) & 0xfff) | ((label & PD_MPLS_LABEL_MAX) << PD_MPLS_LABEL_SHIFT))

cdef inline void mpls_set_tc(pd_mpls_hdr *h, uint8_t tc) noexcept nogil:
    h.lse = pd_htonl((pd_ntohl(h.lse) & ~(<uint32_t>7 << PD_MPLS_TC_SHIFT))
                     | (<uint32_t>(tc & 7) << PD_MPLS_TC_SHIFT))

cdef inline void mpls_set_bos(pd_mpls_hdr *h, bint bos) noexcept nogil:
    h.lse = pd_htonl((pd_ntohl(h.lse) & ~(<uint32_t>1 << PD_MPLS_BOS_SHIFT))
                     | ((<uint32_t>1 << PD_MPLS_BOS_SHIFT) if bos else 0))

cdef inline void mpls_set_ttl(pd_mpls_hdr *h, uint8_t ttl) noexcept nogil:
    h.lse = pd_htonl((pd_ntohl(h.lse) & 0xffffff00u) | ttl)
