"""Input from VMs (vm.pxd): proxy ARP/ND, bridging, routing with flows and policy."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memcmp
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.net.byteorder cimport pd_load_u16, PD_BE16
from pypdk.net.ether cimport (PD_ETHER_TYPE_IPV4, PD_ETHER_TYPE_IPV6, PD_ETHER_TYPE_ARP, PD_ETHER_TYPE_VLAN,
                              PD_ETHER_TYPE_QINQ)
from pypdk.net.ipv4 cimport pd_ipv4_hdr, ipv4_is_fragment, PD_IPPROTO_ICMPV6
from pypdk.net.ipv6 cimport pd_ipv6_hdr, PD_IPV6_HDR_LEN
from pypdk.net.cksum cimport ipv4_nat_rewrite
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.vif cimport ETH_LEN, drop
from apps.vrouter.dp.route cimport route_lookup, ipv4_check, ipv6_check
from apps.vrouter.dp.flow cimport key_fill, key_hash, pkt_hash, flow_get, flow_account, dest_flow, FLOW_POS_UNKNOWN
from apps.vrouter.dp.arp cimport arp_from_vm, nd_from_vm
from apps.vrouter.dp.nexthop cimport nh_output_l3
from apps.vrouter.dp.bridge cimport bridge_forward

cdef extern from "pd_compiler.h" nogil:
    bint pd_likely(bint)
    bint pd_unlikely(bint)
    void pd_prefetch0(const void *p)


# m: Ethernet + IP; the IP header already validated. vif: the input vif.
cdef inline void l3_forward(vr_worker *w, vr_vif *vif, pd_mbuf *m, uint8_t family) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *l3 = <uint8_t *>m.buf_addr + m.data_off + ETH_LEN
    cdef uint32_t avail = m.data_len - ETH_LEN
    cdef pd_flow_key k
    cdef vr_flow *f
    cdef uint64_t hv
    cdef uint32_t hash, nh_id, label
    cdef uint16_t vrf = vif.vrf, mirror = VR_NO_VIF
    cdef int l4off
    cdef const vr_nh *nh
    cdef vr_vif *dv
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>l3
    l4off = key_fill(&k, l3, avail, vrf, family)
    if pd_unlikely(l4off < 0):
        drop(w, m, vif.id, DROP_INVALID_PACKET)
        return
    hv = key_hash(r, &k)
    hash = pkt_hash(hv)
    if vif.flags & VIF_F_POLICY:
        if pd_unlikely(family == 4 and ipv4_is_fragment(ip)):
            drop(w, m, vif.id, DROP_FRAGMENTS)
            return
        f = flow_get(w, &k, hv, vif, 0, 0)
        if pd_unlikely(f == NULL):
            drop(w, m, vif.id, DROP_FLOW_TABLE_FULL)
            return
        flow_account(w, f, m, &k, l3 + l4off, avail - l4off)
        if f.action == FLOW_DROP:
            drop(w, m, vif.id, DROP_FLOW_ACTION_DROP)
            return
        if f.action == FLOW_MIRROR:
            mirror = f.mirror_vif
        elif f.action == FLOW_NAT and (f.flags & FLOW_F_SNAT) and family == 4:
            # A VM's reply on a floating-IP flow: from the public address, routed in VRF 0.
            ipv4_nat_rewrite(ip, l3 + l4off if not ipv4_is_fragment(ip) else NULL, True,
                             f.nat_ip, k.sport)
            w.st.vrf[vrf][VRFS_TRANSLATES] += 1
            vrf = 0
    if pd_unlikely(route_lookup(r, vrf, family, l3, &nh_id, &label) != 0):
        drop(w, m, vif.id, DROP_NO_ROUTE)
        return
    nh = vr_load_nh(&r.nhs[nh_id]) if nh_id < VR_MAX_NHS else NULL
    if pd_unlikely(nh == NULL):
        drop(w, m, vif.id, DROP_INVALID_NH)
        return
    # Policy on the destination VM too (traffic between two VMs of this node).
    if nh.type == NH_ENCAP and not (vif.flags & VIF_F_POLICY):
        dv = vr_load_vif(&r.vifs[nh.vif])
        if dv != NULL and (dv.flags & VIF_F_POLICY):
            if not dest_flow(w, vif.id, dv, m, &k, hv, FLOW_POS_UNKNOWN, l3, l4off, avail, &mirror):
                return
    nh_output_l3(w, vif, m, nh, label, hash, family, vrf, True, mirror)


cdef inline void virtual_rx(vr_worker *w, vr_vif *vif, pd_mbuf *m) noexcept nogil:
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef uint16_t et
    cdef uint8_t family
    cdef int rc
    if pd_unlikely(m.data_len < ETH_LEN):
        drop(w, m, vif.id, DROP_INVALID_PACKET)
        return
    et = pd_load_u16(p + 12)
    if pd_unlikely(et == PD_BE16(PD_ETHER_TYPE_VLAN) or et == PD_BE16(PD_ETHER_TYPE_QINQ)):
        drop(w, m, vif.id, DROP_VLAN)
        return
    if et == PD_BE16(PD_ETHER_TYPE_ARP):
        if not arp_from_vm(w, vif, m):
            if vif.flags & VIF_F_L2:
                bridge_forward(w, vif, vif.id, m, vif.vrf)
            else:
                drop(w, m, vif.id, DROP_INVALID_ARP)
        return
    # An L2 vif bridges; an L2+L3 vif routes what is addressed to the vRouter.
    if (vif.flags & VIF_F_L2) and (not (vif.flags & VIF_F_L3) or memcmp(p, w.r.mac, 6) != 0):
        if not (vif.flags & VIF_F_L3) or not (et == PD_BE16(PD_ETHER_TYPE_IPV6) and p[0] == 0x33):
            bridge_forward(w, vif, vif.id, m, vif.vrf)
            return
    if et == PD_BE16(PD_ETHER_TYPE_IPV4):
        rc = ipv4_check(<pd_ipv4_hdr *>(p + ETH_LEN), m.data_len - ETH_LEN, m.pkt_len - ETH_LEN)
        family = 4
    elif et == PD_BE16(PD_ETHER_TYPE_IPV6):
        rc = ipv6_check(<pd_ipv6_hdr *>(p + ETH_LEN), m.data_len - ETH_LEN, m.pkt_len - ETH_LEN)
        family = 6
        if rc == 0 and (<pd_ipv6_hdr *>(p + ETH_LEN)).proto == PD_IPPROTO_ICMPV6:
            if nd_from_vm(w, vif, m, PD_IPV6_HDR_LEN):
                return
    else:
        drop(w, m, vif.id, DROP_INVALID_PROTOCOL)
        return
    if pd_unlikely(rc != 0):
        drop(w, m, vif.id, rc)
        return
    l3_forward(w, vif, m, family)


cdef void vm_input(vr_worker *w, vr_vif *vif, pd_mbuf **pkts, uint32_t n) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        if i + 1 < n:
            pd_prefetch0(<char *>pkts[i + 1].buf_addr + pkts[i + 1].data_off)
        virtual_rx(w, vif, pkts[i])
