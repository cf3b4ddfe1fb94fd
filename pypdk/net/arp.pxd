# ARP for IPv4 over Ethernet (RFC 826); layout in pd_net.h.
# arp_sip/arp_tip are network order, as in pd_ipv4_hdr.

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from pypdk.net.ether cimport pd_ether_addr

from pd_net cimport (pd_arp_ipv4, pd_arp_hdr, PD_ARP_HRD_ETHER, PD_ARP_OP_REQUEST,
                     PD_ARP_OP_REPLY, PD_ARP_OP_RREQUEST, PD_ARP_OP_RREPLY)
