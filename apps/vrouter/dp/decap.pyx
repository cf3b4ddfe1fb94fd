"""Input from the fabric (decap.pxd): tunnel decapsulation, floating IPs, the host's traffic."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int32_t
from pypdk.mempool.mbuf cimport pd_mbuf, mbuf_adj, pktmbuf_free
from pypdk.net.byteorder cimport pd_ntohs, pd_ntohl, pd_load_u16, pd_load_u32, PD_BE16
from pypdk.net.ether cimport PD_ETHER_TYPE_IPV4, PD_ETHER_TYPE_IPV6, PD_ETHER_TYPE_ARP, PD_ETHER_TYPE_MPLS
from pypdk.net.ipv4 cimport (pd_ipv4_hdr, ipv4_hdr_ok, ipv4_hdr_len, ipv4_is_fragment, PD_IPPROTO_UDP,
                             PD_IPPROTO_GRE, PD_IPV4_HDR_LEN)
from pypdk.net.ipv6 cimport pd_ipv6_hdr, PD_IPV6_HDR_LEN
from pypdk.net.udp cimport pd_udp_hdr, PD_UDP_HDR_LEN, PD_UDP_PORT_MPLS, PD_UDP_PORT_VXLAN
from pypdk.net.gre cimport pd_gre_hdr, gre_hdr_ok, gre_hdr_len, PD_GRE_HDR_LEN
from pypdk.net.vxlan cimport pd_vxlan_hdr, vxlan_vni_valid, vxlan_get_vni, PD_VXLAN_HDR_LEN
from pypdk.net.cksum cimport ipv4_hdr_cksum_ok, ipv4_nat_rewrite
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from pypdk.net.mpls cimport pd_mpls_hdr, mpls_get_label, mpls_get_bos, PD_MPLS_HDR_LEN
from pypdk.net.flow_hash cimport flow_hash_lookup, flow_hash_add, flow_hash_delete
from apps.vrouter.dp.vif cimport ETH_LEN, TRAP_ARP, drop, eth_write, tx_enqueue, vif_tx, trap, pkt_copy, mirror_tx
from apps.vrouter.dp.route cimport ipv4_check, ipv6_check
from apps.vrouter.dp.flow cimport (key_fill, key_hash, pkt_hash, flow_get, flow_account, dest_flow,
                                   flow_prefetch_bucket, flow_burst_lookup, FLOW_POS_UNKNOWN, FLOW_POS_WANT)
from apps.vrouter.dp.bridge cimport bridge_pre, bridge_fin

from pd_compiler cimport pd_likely, pd_unlikely, pd_prefetch0


cdef inline void to_vhost(vr_worker *w, uint16_t in_id, pd_mbuf *m) noexcept nogil:
    cdef vr_router *r = w.r
    cdef vr_vif *v
    if r.vhost_vif == VR_NO_VIF:
        drop(w, m, in_id, DROP_INVALID_IF)
        return
    v = vr_load_vif(&r.vifs[r.vhost_vif])
    if v == NULL:
        drop(w, m, in_id, DROP_INVALID_IF)
        return
    tx_enqueue(w, v.id, 0, m)


cdef enum:
    KIND_MPLS = 1               # vr_pkt.kind: mpls_decap_fin
    KIND_BRIDGE = 2             # bridge_fin


# MPLS (after UDP or GRE) at offset off: label -> nh -> the VM, up to the
# VM's flow. True when the packet waits for its flow (c filled in, the flow
# bucket prefetched); False when it was delivered or dropped.
cdef inline bint mpls_decap_pre(vr_worker *w, vr_vif *fab, pd_mbuf *m, uint32_t off, uint32_t tun,
                                vr_pkt *c) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef const pd_mpls_hdr *mh
    cdef uint32_t label, nh_id, avail
    cdef const vr_nh *nh
    cdef vr_vif *out
    cdef uint8_t *l3
    cdef uint8_t family
    cdef int rc, l4off
    if pd_unlikely(m.data_len < off + PD_MPLS_HDR_LEN + PD_IPV4_HDR_LEN):
        drop(w, m, fab.id, DROP_INVALID_PACKET)
        return False
    mh = <const pd_mpls_hdr *>(p + off)
    label = mpls_get_label(mh)
    if pd_unlikely(label >= r.mpls_max):
        drop(w, m, fab.id, DROP_INVALID_LABEL)
        return False
    nh_id = r.mpls[label]
    if pd_unlikely(nh_id == VR_NONE):
        drop(w, m, fab.id, DROP_INVALID_LABEL)
        return False
    if pd_unlikely(not mpls_get_bos(mh)):
        drop(w, m, fab.id, DROP_INVALID_LABEL)         # a label stack: not ours
        return False
    nh = vr_load_nh(&r.nhs[nh_id]) if nh_id < VR_MAX_NHS else NULL
    if pd_unlikely(nh == NULL):
        drop(w, m, fab.id, DROP_INVALID_NH)
        return False
    l3 = p + off + PD_MPLS_HDR_LEN
    avail = m.data_len - off - PD_MPLS_HDR_LEN
    if (l3[0] >> 4) == 4:
        family = 4
        rc = ipv4_check(<pd_ipv4_hdr *>l3, avail, m.pkt_len - off - PD_MPLS_HDR_LEN)
    elif (l3[0] >> 4) == 6:
        family = 6
        rc = ipv6_check(<pd_ipv6_hdr *>l3, avail, m.pkt_len - off - PD_MPLS_HDR_LEN)
    else:
        rc = DROP_INVALID_PACKET
    if pd_unlikely(rc != 0):
        drop(w, m, fab.id, rc)
        return False
    if nh.type != NH_ENCAP:
        if nh.type == NH_DISCARD:
            drop(w, m, fab.id, DROP_DISCARD)
        else:
            drop(w, m, fab.id, DROP_INVALID_NH)
        return False
    out = vr_load_vif(&r.vifs[nh.vif])
    if pd_unlikely(out == NULL):
        drop(w, m, fab.id, DROP_INVALID_IF)
        return False
    if pd_unlikely((family == 4 and (<pd_ipv4_hdr *>l3).time_to_live == 0)
                   or (family == 6 and (<pd_ipv6_hdr *>l3).hop_limits == 0)):
        drop(w, m, fab.id, DROP_TTL_EXCEEDED)
        return False
    if tun == TUN_MPLSOUDP:
        w.st.vrf[out.vrf][VRFS_UDP_MPLS_DECAPS] += 1
    else:
        w.st.vrf[out.vrf][VRFS_GRE_MPLS_DECAPS] += 1
    l4off = key_fill(&c.k, l3, avail, out.vrf, family)
    if pd_unlikely(l4off < 0):
        drop(w, m, fab.id, DROP_INVALID_PACKET)
        return False
    c.hv = key_hash(r, &c.k)
    c.m = m
    c.out = out
    c.nh = nh
    c.l3 = l3
    c.avail = avail
    c.off = off
    c.l4off = <int16_t>l4off
    c.family = family
    c.kind = KIND_MPLS
    if out.flags & VIF_F_POLICY:
        c.pos = FLOW_POS_WANT
        flow_prefetch_bucket(r.flow_h, c.hv)
        return True
    c.pos = FLOW_POS_UNKNOWN
    mpls_decap_fin(w, fab, c)
    return False


# The rest of the MPLS decap: the VM's flow (policy vifs), the outer headers
# off, the VM's L2 header on, to the VM.
cdef inline void mpls_decap_fin(vr_worker *w, vr_vif *fab, vr_pkt *c) noexcept nogil:
    cdef vr_router *r = w.r
    cdef pd_mbuf *m = c.m
    cdef vr_vif *out = c.out
    cdef uint32_t hash = pkt_hash(c.hv), len3
    cdef uint16_t mirror = VR_NO_VIF
    if out.flags & VIF_F_POLICY:
        if not dest_flow(w, fab.id, out, m, &c.k, c.hv, c.pos, c.l3, c.l4off, c.avail, &mirror):
            return
    # Outer headers off; the VM's L2 header in their place (trailing bytes
    # past the inner packet, Ethernet padding, go too).
    mbuf_adj(m, <uint16_t>(c.off + PD_MPLS_HDR_LEN - ETH_LEN))
    if c.family == 4:
        len3 = pd_ntohs((<pd_ipv4_hdr *>c.l3).total_length)
    else:
        len3 = pd_ntohs((<pd_ipv6_hdr *>c.l3).payload_len) + PD_IPV6_HDR_LEN
    if m.nb_segs == 1 and len3 + ETH_LEN < m.data_len:
        m.data_len = <uint16_t>(len3 + ETH_LEN)
        m.pkt_len = m.data_len
    eth_write(<uint8_t *>m.buf_addr + m.data_off, c.nh.dmac, r.mac,
              PD_BE16(PD_ETHER_TYPE_IPV4) if c.family == 4 else PD_BE16(PD_ETHER_TYPE_IPV6))
    w.st.vrf[out.vrf][VRFS_ENCAPS] += 1
    mirror_tx(w, mirror, m, hash)
    vif_tx(w, out, m, hash)


# VXLAN at offset off: VNI -> VRF -> bridged by the inner MAC; as
# mpls_decap_pre, True when the frame waits for its flow (bridge_fin).
cdef inline bint vxlan_decap_pre(vr_worker *w, vr_vif *fab, pd_mbuf *m, uint32_t off, vr_pkt *c) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef const pd_vxlan_hdr *vx
    cdef uint32_t vni, vrf
    if pd_unlikely(m.data_len < off + PD_VXLAN_HDR_LEN + ETH_LEN):
        drop(w, m, fab.id, DROP_INVALID_PACKET)
        return False
    vx = <const pd_vxlan_hdr *>(p + off)
    if pd_unlikely(not vxlan_vni_valid(vx)):
        drop(w, m, fab.id, DROP_INVALID_VNI)
        return False
    vni = vxlan_get_vni(vx)
    if pd_unlikely(flow_hash_lookup(r.vxlan, &vni, &vrf) < 0):
        drop(w, m, fab.id, DROP_INVALID_VNI)
        return False
    w.st.vrf[vrf][VRFS_VXLAN_DECAPS] += 1
    mbuf_adj(m, <uint16_t>(off + PD_VXLAN_HDR_LEN))
    if bridge_pre(w, NULL, fab.id, m, <uint16_t>vrf, c):
        c.kind = KIND_BRIDGE
        return True
    return False


# A packet for a floating IP: DNAT to the VM, through the flow table.
cdef void fip_rx(vr_worker *w, vr_vif *fab, pd_mbuf *m, uint32_t vm_id) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>(p + ETH_LEN)
    cdef vr_vif *vm = vr_load_vif(&r.vifs[vm_id]) if vm_id < VR_MAX_VIFS else NULL
    cdef pd_flow_key k
    cdef vr_flow *f
    cdef uint64_t hv
    cdef uint32_t hash, avail = m.data_len - ETH_LEN
    cdef int l4off, rc
    rc = ipv4_check(ip, avail, m.pkt_len - ETH_LEN)
    if pd_unlikely(rc != 0):
        drop(w, m, fab.id, rc)
        return
    if pd_unlikely(vm == NULL):
        drop(w, m, fab.id, DROP_INVALID_IF)
        return
    if pd_unlikely(ipv4_is_fragment(ip)):
        drop(w, m, fab.id, DROP_FRAGMENTS)
        return
    l4off = key_fill(&k, <uint8_t *>ip, avail, 0, 4)
    if pd_unlikely(l4off < 0):
        drop(w, m, fab.id, DROP_INVALID_PACKET)
        return
    hv = key_hash(r, &k)
    hash = pkt_hash(hv)
    f = flow_get(w, &k, hv, vm, vm.ip4, vm.vrf)
    if pd_unlikely(f == NULL):
        drop(w, m, fab.id, DROP_FLOW_TABLE_FULL)
        return
    flow_account(w, f, m, &k, <uint8_t *>ip + l4off, avail - l4off)
    if f.action == FLOW_DROP or f.nat_ip == 0:
        drop(w, m, fab.id, DROP_FLOW_ACTION_DROP)
        return
    ipv4_nat_rewrite(ip, <uint8_t *>ip + l4off, False, f.nat_ip, k.dport)
    w.st.vrf[vm.vrf][VRFS_TRANSLATES] += 1
    eth_write(p, vm.mac, r.mac, PD_BE16(PD_ETHER_TYPE_IPV4))
    vif_tx(w, vm, m, hash)


# A frame from the fabric, classified and, unless it waits for its flow
# (True: c filled in), finished.
cdef inline bint fabric_pre(vr_worker *w, vr_vif *vif, pd_mbuf *m, vr_pkt *c) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef uint16_t et
    cdef pd_ipv4_hdr *ip
    cdef pd_udp_hdr *u
    cdef const pd_gre_hdr *g
    cdef uint32_t hl, avail, dst, vm_id
    cdef pd_mbuf *cp
    if pd_unlikely(m.data_len < ETH_LEN):
        drop(w, m, vif.id, DROP_INVALID_PACKET)
        return False
    et = pd_load_u16(p + 12)
    if et == PD_BE16(PD_ETHER_TYPE_IPV4):
        ip = <pd_ipv4_hdr *>(p + ETH_LEN)
        avail = m.data_len - ETH_LEN
        if pd_unlikely(not ipv4_hdr_ok(ip, avail)):
            drop(w, m, vif.id, DROP_INVALID_PACKET)
            return False
        dst = ip.dst_addr
        if dst == r.underlay_ip:
            hl = ipv4_hdr_len(ip)
            if ip.next_proto_id == PD_IPPROTO_UDP and avail >= hl + PD_UDP_HDR_LEN:
                u = <pd_udp_hdr *>(<uint8_t *>ip + hl)
                if u.dst_port == PD_BE16(PD_UDP_PORT_MPLS) or u.dst_port == PD_BE16(PD_UDP_PORT_VXLAN):
                    if pd_unlikely(pd_ntohs(ip.total_length) > avail):
                        drop(w, m, vif.id, DROP_INVALID_PACKET)
                        return False
                    if pd_unlikely(not ipv4_hdr_cksum_ok(ip)):
                        drop(w, m, vif.id, DROP_CHECKSUM_ERROR)
                        return False
                    if pd_unlikely(ipv4_is_fragment(ip)):
                        drop(w, m, vif.id, DROP_FRAGMENTS)
                        return False
                    if u.dst_port == PD_BE16(PD_UDP_PORT_MPLS):
                        return mpls_decap_pre(w, vif, m, ETH_LEN + hl + PD_UDP_HDR_LEN, TUN_MPLSOUDP, c)
                    return vxlan_decap_pre(w, vif, m, ETH_LEN + hl + PD_UDP_HDR_LEN, c)
            elif ip.next_proto_id == PD_IPPROTO_GRE and avail >= hl + PD_GRE_HDR_LEN:
                g = <const pd_gre_hdr *>(<uint8_t *>ip + hl)
                if g.proto == PD_BE16(PD_ETHER_TYPE_MPLS):
                    if pd_unlikely(pd_ntohs(ip.total_length) > avail or not gre_hdr_ok(g)):
                        drop(w, m, vif.id, DROP_INVALID_PACKET)
                        return False
                    if pd_unlikely(not ipv4_hdr_cksum_ok(ip)):
                        drop(w, m, vif.id, DROP_CHECKSUM_ERROR)
                        return False
                    if pd_unlikely(ipv4_is_fragment(ip)):
                        drop(w, m, vif.id, DROP_FRAGMENTS)
                        return False
                    return mpls_decap_pre(w, vif, m, ETH_LEN + hl + gre_hdr_len(g), TUN_MPLSOGRE, c)
        elif r.fip.count and flow_hash_lookup(r.fip, &dst, &vm_id) >= 0:
            fip_rx(w, vif, m, vm_id)
            return False
    elif et == PD_BE16(PD_ETHER_TYPE_ARP):
        # The host answers ARP for the underlay address; the agent learns neighbours.
        if r.agent_vif != VR_NO_VIF:
            cp = pkt_copy(w, m)
            if cp != NULL:
                trap(w, cp, vif.id, TRAP_ARP)
    to_vhost(w, vif.id, m)
    return False


cdef void fabric_input(vr_worker *w, vr_vif *vif, pd_mbuf **pkts, uint32_t n) noexcept nogil:
    # Stage 1: every frame parsed, checked and, unless it waits for its flow,
    # finished; stage 2: the flows of those that wait, looked up together;
    # stage 3: those finished, in their order.
    cdef vr_pkt c[VR_BURST_MAX]
    cdef uint32_t i, nc = 0
    for i in range(n):
        if i + 1 < n:
            pd_prefetch0(<char *>pkts[i + 1].buf_addr + pkts[i + 1].data_off)
        if fabric_pre(w, vif, pkts[i], &c[nc]):
            nc += 1
    if nc == 0:
        return
    flow_burst_lookup(w.r, c, nc)
    for i in range(nc):
        if c[i].kind == KIND_MPLS:
            mpls_decap_fin(w, vif, &c[i])
        else:
            bridge_fin(w, vif.id, &c[i])


# ---- control (the control thread): the VNI and floating-IP tables ----------------------

cdef int vxlan_set(vr_router *r, uint32_t vni, uint32_t vrf) noexcept nogil:
    return 0 if flow_hash_add(r.vxlan, &vni, vrf) >= 0 else -1


cdef int vxlan_clear(vr_router *r, uint32_t vni) noexcept nogil:
    return 0 if flow_hash_delete(r.vxlan, &vni) >= 0 else -1


cdef int fip_set(vr_router *r, uint32_t ip_be, uint32_t vif) noexcept nogil:
    return 0 if flow_hash_add(r.fip, &ip_be, vif) >= 0 else -1


cdef int fip_clear(vr_router *r, uint32_t ip_be) noexcept nogil:
    return 0 if flow_hash_delete(r.fip, &ip_be) >= 0 else -1
