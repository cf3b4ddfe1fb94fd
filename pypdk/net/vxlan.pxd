# VXLAN header (RFC 7348): flags (the I bit says the VNI is valid), then a
# 24-bit VNI in the top of the second word. Carried in UDP to port 4789.

from libc.stdint cimport uint32_t
from pypdk.net.byteorder cimport pd_ntohl, pd_htonl, PD_BE32

from pd_net cimport PD_VXLAN_F_VNI, pd_vxlan_hdr, PD_VXLAN_HDR_LEN, PD_VXLAN_VNI_MAX


cdef inline bint vxlan_vni_valid(const pd_vxlan_hdr *h) noexcept nogil:
    return (h.vx_flags & PD_BE32(PD_VXLAN_F_VNI)) != 0

cdef inline uint32_t vxlan_get_vni(const pd_vxlan_hdr *h) noexcept nogil:
    return pd_ntohl(h.vx_vni) >> 8

# A whole header: I flag set, reserved bits zero.
cdef inline void vxlan_hdr_set(pd_vxlan_hdr *h, uint32_t vni) noexcept nogil:
    h.vx_flags = PD_BE32(PD_VXLAN_F_VNI)
    h.vx_vni = pd_htonl((vni & PD_VXLAN_VNI_MAX) << 8)
