# ICMP (RFC 792) and ICMPv6 (RFC 4443) headers, with neighbour discovery's
# solicitation, advertisement and link-layer address option (RFC 4861).
# Checksums: cksum.pxd (icmp_cksum for ICMP, ipv6_l4_cksum for ICMPv6,
# which covers a pseudo-header).

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from pypdk.net.ether cimport pd_ether_addr

from pd_net cimport (PD_ND_NA_FLAG_ROUTER, PD_ND_NA_FLAG_SOLICITED, PD_ND_NA_FLAG_OVERRIDE,
                     pd_icmp_hdr, pd_icmp6_hdr, pd_nd_ns_hdr, pd_nd_na_hdr, pd_nd_opt_hdr,
                     pd_nd_opt_lladdr, PD_ICMP_ECHO_REPLY, PD_ICMP_DEST_UNREACH,
                     PD_ICMP_REDIRECT, PD_ICMP_ECHO_REQUEST, PD_ICMP_TIME_EXCEEDED,
                     PD_ICMP_PARAM_PROBLEM, PD_ICMP_CODE_FRAG_NEEDED, PD_ICMP6_DEST_UNREACH,
                     PD_ICMP6_PACKET_TOO_BIG, PD_ICMP6_TIME_EXCEEDED,
                     PD_ICMP6_PARAM_PROBLEM, PD_ICMP6_ECHO_REQUEST, PD_ICMP6_ECHO_REPLY,
                     PD_ICMP6_ROUTER_SOLICIT, PD_ICMP6_ROUTER_ADVERT,
                     PD_ICMP6_NEIGH_SOLICIT, PD_ICMP6_NEIGH_ADVERT, PD_ICMP6_REDIRECT,
                     PD_ND_OPT_SOURCE_LLADDR, PD_ND_OPT_TARGET_LLADDR, PD_ND_OPT_MTU)


# The first ND option of `type` in the `opts_len` bytes at `opts`, or NULL;
# also NULL on a malformed option list (a zero length, or one that runs past
# the end), which RFC 4861 says to drop.
cdef inline const pd_nd_opt_hdr *nd_opt_find(const uint8_t *opts, uint32_t opts_len,
                                             uint8_t type) noexcept nogil:
    cdef uint32_t off = 0, n
    cdef const pd_nd_opt_hdr *o
    while off + 2 <= opts_len:
        o = <const pd_nd_opt_hdr *>(opts + off)
        n = <uint32_t>o.len << 3
        if n == 0 or off + n > opts_len:
            return NULL
        if o.type == type:
            return o
        off += n
    return NULL
