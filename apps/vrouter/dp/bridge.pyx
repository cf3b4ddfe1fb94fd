"""Bridging (bridge.pxd): flooding, head-end replication to the VXLAN peers."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from libc.string cimport memset
from apps.vrouter.dp.vif cimport pkt_copy


cdef void flood(vr_worker *w, vr_vif *in_vif, uint16_t in_id, pd_mbuf *m, uint16_t vrf,
                uint32_t hash) noexcept nogil:
    # A copy to every L2 vif of the VRF but the input one, and (when it came
    # from a VM) to the VRF's flood nexthop (head-end replication to the
    # VXLAN peers). The last destination takes m itself.
    cdef vr_router *r = w.r
    cdef uint8_t bcast[6]
    cdef int32_t bi
    cdef uint64_t bv
    cdef const vr_nh *fnh = NULL
    cdef const vr_nh *tn
    cdef vr_vif *v
    cdef uint32_t i, nt = 0
    cdef pd_mbuf *c
    cdef const vr_nh *tun[VR_MAX_MEMBERS]
    cdef uint32_t vnis[VR_MAX_MEMBERS]
    cdef uint16_t locals_[VR_MAX_VIFS]
    cdef uint32_t nl = 0
    w.st.vrf[vrf][VRFS_L2_FLOODS] += 1
    if in_vif != NULL:
        memset(bcast, 0xff, 6)
        bi = bridge_find(r, vrf, bcast)
        if bi >= 0:
            bv = r.bridge_val[bi]
            fnh = vr_load_nh(&r.nhs[<uint32_t>bv]) if <uint32_t>bv < VR_MAX_NHS else NULL
            if fnh != NULL and fnh.type == NH_TUNNEL and fnh.encap == TUN_VXLAN and fnh.flags & NH_F_VALID:
                tun[0] = fnh
                vnis[0] = <uint32_t>(bv >> 32)
                nt = 1
            elif fnh != NULL and fnh.type == NH_COMPOSITE:
                for i in range(fnh.nb_members):
                    tn = vr_load_nh(&r.nhs[fnh.members[i]])
                    if tn != NULL and tn.type == NH_TUNNEL and tn.encap == TUN_VXLAN and tn.flags & NH_F_VALID:
                        tun[nt] = tn
                        vnis[nt] = fnh.vnis[i] if fnh.vnis[i] != VR_NONE else <uint32_t>(bv >> 32)
                        nt += 1
    for i in range(VR_MAX_VIFS):
        v = vr_load_vif(&r.vifs[i])
        if v != NULL and v.type == VIF_VIRTUAL and v.vrf == vrf and (v.flags & VIF_F_L2) and v.id != in_id:
            locals_[nl] = v.id
            nl += 1
    if nl + nt == 0:
        drop(w, m, in_id, DROP_L2_NO_ROUTE)
        return
    for i in range(nl):
        if i + 1 == nl and nt == 0:
            c = m
        else:
            c = pkt_copy(w, m)
            if c == NULL:
                w.st.drop[DROP_NO_MBUF] += 1
                continue
        vif_tx(w, vr_load_vif(&r.vifs[locals_[i]]), c, hash)
    for i in range(nt):
        if i + 1 == nt:
            c = m
        else:
            c = pkt_copy(w, m)
            if c == NULL:
                w.st.drop[DROP_NO_MBUF] += 1
                continue
        encap_vxlan(w, in_vif, c, tun[i], vnis[i], hash, vrf)
