# UDP header (RFC 768) and the well-known ports of the overlays.

from libc.stdint cimport uint16_t

from pd_net cimport (pd_udp_hdr, PD_UDP_HDR_LEN, PD_UDP_PORT_VXLAN, PD_UDP_PORT_MPLS,
                     PD_UDP_PORT_GENEVE)
