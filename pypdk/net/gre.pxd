# GRE header (RFC 2784; key and sequence number: RFC 2890), as used by
# MPLSoGRE (proto = PD_ETHER_TYPE_MPLS) and NVGRE/TEB.
#
# After the 4 fixed bytes come, each present only when its flag is set and
# in this order: checksum + reserved1 (4 bytes), key (4), sequence (4).

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from pypdk.net.byteorder cimport PD_BE16, pd_ntohl, pd_load_u32

from pd_net cimport (pd_gre_hdr, PD_GRE_HDR_LEN, PD_GRE_F_CSUM, PD_GRE_F_KEY, PD_GRE_F_SEQ,
                     PD_GRE_VER_MASK)


# The whole header's length: 4, 8, 12 or 16 bytes.
cdef inline uint32_t gre_hdr_len(const pd_gre_hdr *g) noexcept nogil:
    cdef uint32_t n = PD_GRE_HDR_LEN
    if g.flags_ver & PD_BE16(PD_GRE_F_CSUM):
        n += 4
    if g.flags_ver & PD_BE16(PD_GRE_F_KEY):
        n += 4
    if g.flags_ver & PD_BE16(PD_GRE_F_SEQ):
        n += 4
    return n

# Version 0 and only the C, K and S flags (RFC 2784, 2890: a receiver drops the
# rest: routing, strict source route, recursion, other versions).
cdef inline bint gre_hdr_ok(const pd_gre_hdr *g) noexcept nogil:
    return (g.flags_ver & PD_BE16(0x4fff)) == 0

# The key field (host order) when the K flag is set; 0 otherwise.
cdef inline uint32_t gre_key(const pd_gre_hdr *g) noexcept nogil:
    cdef const uint8_t *p = <const uint8_t *>g + PD_GRE_HDR_LEN
    if not (g.flags_ver & PD_BE16(PD_GRE_F_KEY)):
        return 0
    if g.flags_ver & PD_BE16(PD_GRE_F_CSUM):
        p += 4
    return pd_ntohl(pd_load_u32(p))
