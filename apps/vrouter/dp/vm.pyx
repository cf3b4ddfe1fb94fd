"""Input from VMs (vm.pxd): proxy ARP/ND, bridging, routing with flows and policy."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int16_t
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
from pypdk.net.byteorder cimport pd_ntohl
from pypdk.net.lpm4 cimport pd_lpm4, lpm4_lookup_bulk
from pd_lpm cimport PD_LPM_MISS
from apps.vrouter.dp.route cimport route_lookup, rt_data, ipv4_check, ipv6_check
from apps.vrouter.dp.flow cimport (key_fill, key_hash, pkt_hash, flow_get_at, flow_account, dest_flow,
                                   flow_prefetch_bucket, flow_burst_lookup, FLOW_POS_UNKNOWN, FLOW_POS_WANT)
from apps.vrouter.dp.arp cimport arp_from_vm, nd_from_vm
from apps.vrouter.dp.nexthop cimport nh_output_l3
from apps.vrouter.dp.bridge cimport bridge_forward

from pd_compiler cimport pd_likely, pd_unlikely, pd_prefetch0


cdef enum:
    RT_LATER = 0xfffffffe       # vr_pkt.rt: not looked up ahead (IPv6, a NAT reply)


# m: Ethernet + IP; the IP header already validated. vif: the input vif.
# The flow key and its hash; the flow's bucket prefetched (policy vifs).
# False when the packet was dropped.
cdef inline bint l3_pre(vr_worker *w, vr_vif *vif, pd_mbuf *m, uint8_t family, vr_pkt *c) noexcept nogil:
    cdef uint8_t *l3 = <uint8_t *>m.buf_addr + m.data_off + ETH_LEN
    cdef uint32_t avail = m.data_len - ETH_LEN
    cdef int l4off = key_fill(&c.k, l3, avail, vif.vrf, family)
    if pd_unlikely(l4off < 0):
        drop(w, m, vif.id, DROP_INVALID_PACKET)
        return False
    c.hv = key_hash(w.r, &c.k)
    if vif.flags & VIF_F_POLICY:
        if pd_unlikely(family == 4 and ipv4_is_fragment(<pd_ipv4_hdr *>l3)):
            drop(w, m, vif.id, DROP_FRAGMENTS)
            return False
        c.pos = FLOW_POS_WANT
        flow_prefetch_bucket(w.r.flow_h, c.hv)
    else:
        c.pos = FLOW_POS_UNKNOWN
    c.m = m
    c.l3 = l3
    c.avail = avail
    c.l4off = <int16_t>l4off
    c.family = family
    c.rt = RT_LATER
    return True


# The rest of the L3 path: the flow (policy vifs: policy, NAT of a floating
# IP's replies), the route (c.rt: looked up ahead, or RT_LATER), the
# destination VM's flow (VM -> VM on this node), the nexthop.
cdef inline void l3_fin(vr_worker *w, vr_vif *vif, vr_pkt *c) noexcept nogil:
    cdef vr_router *r = w.r
    cdef pd_mbuf *m = c.m
    cdef uint8_t *l3 = c.l3
    cdef uint8_t family = c.family
    cdef vr_flow *f
    cdef uint32_t hash = pkt_hash(c.hv), nh_id, label
    cdef uint16_t vrf = vif.vrf, mirror = VR_NO_VIF
    cdef int rc
    cdef const vr_nh *nh
    cdef vr_vif *dv
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>l3
    if vif.flags & VIF_F_POLICY:
        f = flow_get_at(w, c.pos, &c.k, c.hv, vif)
        if pd_unlikely(f == NULL):
            drop(w, m, vif.id, DROP_FLOW_TABLE_FULL)
            return
        flow_account(w, f, m, &c.k, l3 + c.l4off, c.avail - c.l4off)
        if f.action == FLOW_DROP:
            drop(w, m, vif.id, DROP_FLOW_ACTION_DROP)
            return
        if f.action == FLOW_MIRROR:
            mirror = f.mirror_vif
        elif f.action == FLOW_NAT and (f.flags & FLOW_F_SNAT) and family == 4:
            # A VM's reply on a floating-IP flow: from the public address, routed in VRF 0.
            ipv4_nat_rewrite(ip, l3 + c.l4off if not ipv4_is_fragment(ip) else NULL, True,
                             f.nat_ip, c.k.sport)
            w.st.vrf[vrf][VRFS_TRANSLATES] += 1
            vrf = 0
            c.rt = RT_LATER
    if c.rt == RT_LATER:
        rc = route_lookup(r, vrf, family, l3, &nh_id, &label)
    elif c.rt == PD_LPM_MISS:
        rc = -1
    else:
        rt_data(r, c.rt, &nh_id, &label)
        rc = 0
    if pd_unlikely(rc != 0):
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
            if not dest_flow(w, vif.id, dv, m, &c.k, c.hv, FLOW_POS_UNKNOWN, l3, c.l4off, c.avail, &mirror):
                return
    nh_output_l3(w, vif, m, nh, label, hash, family, vrf, True, mirror)


# A frame from a VM: finished here unless it is an IP packet to route (True:
# c filled in by l3_pre).
cdef inline bint virtual_pre(vr_worker *w, vr_vif *vif, pd_mbuf *m, vr_pkt *c) noexcept nogil:
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef uint16_t et
    cdef uint8_t family
    cdef int rc
    if pd_unlikely(m.data_len < ETH_LEN):
        drop(w, m, vif.id, DROP_INVALID_PACKET)
        return False
    et = pd_load_u16(p + 12)
    if pd_unlikely(et == PD_BE16(PD_ETHER_TYPE_VLAN) or et == PD_BE16(PD_ETHER_TYPE_QINQ)):
        drop(w, m, vif.id, DROP_VLAN)
        return False
    if et == PD_BE16(PD_ETHER_TYPE_ARP):
        if not arp_from_vm(w, vif, m):
            if vif.flags & VIF_F_L2:
                bridge_forward(w, vif, vif.id, m, vif.vrf)
            else:
                drop(w, m, vif.id, DROP_INVALID_ARP)
        return False
    # An L2 vif bridges; an L2+L3 vif routes what is addressed to the vRouter.
    if (vif.flags & VIF_F_L2) and (not (vif.flags & VIF_F_L3) or memcmp(p, w.r.mac, 6) != 0):
        if not (vif.flags & VIF_F_L3) or not (et == PD_BE16(PD_ETHER_TYPE_IPV6) and p[0] == 0x33):
            bridge_forward(w, vif, vif.id, m, vif.vrf)
            return False
    if et == PD_BE16(PD_ETHER_TYPE_IPV4):
        rc = ipv4_check(<pd_ipv4_hdr *>(p + ETH_LEN), m.data_len - ETH_LEN, m.pkt_len - ETH_LEN)
        family = 4
    elif et == PD_BE16(PD_ETHER_TYPE_IPV6):
        rc = ipv6_check(<pd_ipv6_hdr *>(p + ETH_LEN), m.data_len - ETH_LEN, m.pkt_len - ETH_LEN)
        family = 6
        if rc == 0 and (<pd_ipv6_hdr *>(p + ETH_LEN)).proto == PD_IPPROTO_ICMPV6:
            if nd_from_vm(w, vif, m, PD_IPV6_HDR_LEN):
                return False
    else:
        drop(w, m, vif.id, DROP_INVALID_PROTOCOL)
        return False
    if pd_unlikely(rc != 0):
        drop(w, m, vif.id, rc)
        return False
    return l3_pre(w, vif, m, family, c)


cdef void vm_input(vr_worker *w, vr_vif *vif, pd_mbuf **pkts, uint32_t n) noexcept nogil:
    # Stage 1: every frame parsed and checked; ARP/ND, bridged frames and
    # drops finished; IP packets to route keep their key (flow buckets
    # prefetched). Stage 2: their flows looked up together, and the IPv4
    # destinations in one bulk LPM lookup (one VRF: the vif's). Stage 3:
    # each finished, in order.
    cdef vr_pkt c[VR_BURST_MAX]
    cdef uint32_t ips[VR_BURST_MAX]
    cdef uint32_t rts[VR_BURST_MAX]
    cdef uint8_t at[VR_BURST_MAX]
    cdef uint32_t i, nc = 0, n4 = 0
    cdef const pd_lpm4 *lpm
    for i in range(n):
        if i + 1 < n:
            pd_prefetch0(<char *>pkts[i + 1].buf_addr + pkts[i + 1].data_off)
        if virtual_pre(w, vif, pkts[i], &c[nc]):
            if c[nc].family == 4:
                ips[n4] = pd_ntohl((<pd_ipv4_hdr *>c[nc].l3).dst_addr)
                at[n4] = <uint8_t>nc
                n4 += 1
            nc += 1
    if nc == 0:
        return
    flow_burst_lookup(w.r, c, nc)
    if n4:
        lpm = vr_load_lpm4(&w.r.rt4[vif.vrf])
        if lpm != NULL:
            lpm4_lookup_bulk(lpm, ips, rts, n4, PD_LPM_MISS)
            for i in range(n4):
                c[at[i]].rt = rts[i]
        else:
            for i in range(n4):
                c[at[i]].rt = PD_LPM_MISS
    for i in range(nc):
        l3_fin(w, vif, &c[i])
