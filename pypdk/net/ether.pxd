# Ethernet II and 802.1Q VLAN headers (layouts in pd_net.h).
#
# ether_type and vlan_tci are network order: `eth.ether_type ==
# PD_BE16(PD_ETHER_TYPE_IPV4)` costs nothing at run time.

from libc.stdint cimport uint8_t, uint16_t
from libc.string cimport memcpy
from pypdk.net.byteorder cimport pd_ntohs, pd_htons, PD_BE16

from pd_net cimport (pd_ether_addr, pd_ether_hdr, pd_vlan_hdr, PD_ETHER_ADDR_LEN,
                     PD_ETHER_HDR_LEN, PD_VLAN_HDR_LEN, PD_ETHER_MIN_LEN, PD_ETHER_MTU,
                     PD_ETHER_TYPE_IPV4, PD_ETHER_TYPE_ARP, PD_ETHER_TYPE_VLAN,
                     PD_ETHER_TYPE_QINQ, PD_ETHER_TYPE_IPV6, PD_ETHER_TYPE_MPLS,
                     PD_ETHER_TYPE_MPLSM, PD_ETHER_TYPE_TEB, PD_VLAN_VID_MASK, PD_VLAN_DEI,
                     PD_VLAN_PCP_SHIFT)


# vlan_tci (network order as in the header) -> its parts.
cdef inline uint16_t vlan_tci_vid(uint16_t tci_be) noexcept nogil:
    return pd_ntohs(tci_be) & PD_VLAN_VID_MASK

cdef inline uint8_t vlan_tci_pcp(uint16_t tci_be) noexcept nogil:
    return <uint8_t>(pd_ntohs(tci_be) >> PD_VLAN_PCP_SHIFT)

cdef inline bint vlan_tci_dei(uint16_t tci_be) noexcept nogil:
    return (pd_ntohs(tci_be) & PD_VLAN_DEI) != 0

# A tag (network order) from its parts.
cdef inline uint16_t vlan_tci_make(uint16_t vid, uint8_t pcp, bint dei) noexcept nogil:
    return pd_htons(<uint16_t>((vid & PD_VLAN_VID_MASK) | (<uint16_t>(pcp & 7) << PD_VLAN_PCP_SHIFT)
                               | (PD_VLAN_DEI if dei else 0)))

cdef inline bint ether_addr_is_multicast(const pd_ether_addr *a) noexcept nogil:
    return (a.addr_bytes[0] & 1) != 0     # the I/G bit; broadcast is a multicast

cdef inline bint ether_addr_is_broadcast(const pd_ether_addr *a) noexcept nogil:
    return (a.addr_bytes[0] & a.addr_bytes[1] & a.addr_bytes[2] & a.addr_bytes[3]
            & a.addr_bytes[4] & a.addr_bytes[5]) == 0xff

cdef inline bint ether_addr_eq(const pd_ether_addr *a, const pd_ether_addr *b) noexcept nogil:
    cdef int i
    for i in range(6):
        if a.addr_bytes[i] != b.addr_bytes[i]:
            return False
    return True

cdef inline void ether_addr_copy(pd_ether_addr *dst, const pd_ether_addr *src) noexcept nogil:
    memcpy(dst, src, 6)
