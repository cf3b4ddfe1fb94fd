"""Bridging (bridge.pxd): flooding (head-end replication to the VXLAN peers), the table's writers."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from libc.string cimport memset
from pypdk.net.flow_hash cimport flow_hash_add, flow_hash_delete
from apps.vrouter.dp.vif cimport pkt_copy


cdef int bridge_set(vr_router *r, uint16_t vrf, const uint8_t *mac, uint32_t idx) noexcept nogil:
    cdef uint8_t key[BRIDGE_KEY_LEN]
    bridge_key(key, vrf, mac)
    # A new key is published with its data; an existing one's data changes in one store.
    return 0 if flow_hash_add(r.bridge, key, idx) >= 0 else -1


cdef int bridge_clear(vr_router *r, uint16_t vrf, const uint8_t *mac) noexcept nogil:
    cdef uint8_t key[BRIDGE_KEY_LEN]
    bridge_key(key, vrf, mac)
    return 0 if flow_hash_delete(r.bridge, key) >= 0 else -1


cdef void flood(vr_worker *w, vr_vif *in_vif, uint16_t in_id, pd_mbuf *m, uint16_t vrf,
                uint32_t hash) noexcept nogil:
    # A copy to every L2 vif of the VRF but the input one, and (when it came
    # from a VM) to the VRF's flood nexthop (head-end replication to the
    # VXLAN peers). The last destination takes m itself.
    cdef vr_router *r = w.r
    cdef uint8_t bcast[6]
    cdef uint32_t fnh_id, fvni
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
        if bridge_lookup(r, vrf, bcast, &fnh_id, &fvni) == 0:
            fnh = vr_load_nh(&r.nhs[fnh_id]) if fnh_id < VR_MAX_NHS else NULL
            if fnh != NULL and fnh.type == NH_TUNNEL and fnh.encap == TUN_VXLAN and fnh.flags & NH_F_VALID:
                tun[0] = fnh
                vnis[0] = fvni
                nt = 1
            elif fnh != NULL and fnh.type == NH_COMPOSITE:
                for i in range(fnh.nb_members):
                    tn = vr_load_nh(&r.nhs[fnh.members[i]])
                    if tn != NULL and tn.type == NH_TUNNEL and tn.encap == TUN_VXLAN and tn.flags & NH_F_VALID:
                        tun[nt] = tn
                        vnis[nt] = fnh.vnis[i] if fnh.vnis[i] != VR_NONE else fvni
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
