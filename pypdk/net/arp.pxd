# ARP for IPv4 over Ethernet (RFC 826); layout in pd_net.h.
# arp_sip/arp_tip are network order, as in pd_ipv4_hdr.

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from pypdk.net.ether cimport pd_ether_addr

cdef extern from "pd_net.h" nogil:
    enum:
        PD_ARP_HRD_ETHER
        PD_ARP_OP_REQUEST
        PD_ARP_OP_REPLY
        PD_ARP_OP_RREQUEST
        PD_ARP_OP_RREPLY

    struct pd_arp_ipv4:
        pd_ether_addr arp_sha
        uint32_t arp_sip
        pd_ether_addr arp_tha
        uint32_t arp_tip

    struct pd_arp_hdr:
        uint16_t arp_hardware
        uint16_t arp_protocol
        uint8_t arp_hlen
        uint8_t arp_plen
        uint16_t arp_opcode
        pd_arp_ipv4 arp_data
