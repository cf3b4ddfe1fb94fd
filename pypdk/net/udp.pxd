# UDP header (RFC 768) and the well-known ports of the overlays.

from libc.stdint cimport uint16_t

cdef extern from "pd_net.h" nogil:
    enum:
        PD_UDP_HDR_LEN
        PD_UDP_PORT_VXLAN
        PD_UDP_PORT_MPLS
        PD_UDP_PORT_GENEVE

    struct pd_udp_hdr:
        uint16_t src_port
        uint16_t dst_port
        uint16_t dgram_len
        uint16_t dgram_cksum
