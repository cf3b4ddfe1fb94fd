# Bridging (L2): the bridge table maps (vrf, MAC) to a nexthop and, for a
# VXLAN tunnel, a VNI (TF's vr_bridge.c): a pypdk.net.flow_hash of 8-byte
# keys (vrf, MAC) whose data is a `vr_router.rtdata` index (nh | vni << 32),
# written by the control thread, read lock-free. A frame from an L2 vif, or
# out of a VXLAN tunnel, goes by its destination MAC:
#
#   encap nexthop      to the local VM's vif (flow and policy of that vif)
#   vxlan tunnel       VXLAN to the remote VTEP (only from a local VM:
#                      no tunnel-to-tunnel)
#   multicast / broadcast, or an unknown unicast from a VM:
#                      flooded (bridge.pyx): a copy to every other L2 vif of
#                      the VRF and, from a VM, to the members of the VRF's
#                      ff:ff:ff:ff:ff:ff entry (a vxlan tunnel or a composite)

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int32_t
from libc.string cimport memcpy, memset
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.net.byteorder cimport pd_load_u16, PD_BE16
from pypdk.net.ether cimport PD_ETHER_TYPE_IPV4, PD_ETHER_TYPE_IPV6
from pypdk.net.ipv4 cimport PD_IPV4_HDR_LEN
from pypdk.net.ipv6 cimport PD_IPV6_HDR_LEN
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from pypdk.net.flow_hash cimport pd_flow_hash, flow_hash_lookup
from pypdk.net.hash cimport hash_bytes
from apps.vrouter.dp.vif cimport ETH_LEN, TRAP_RESOLVE, drop, vif_tx, trap, mirror_tx
from apps.vrouter.dp.flow cimport (key_fill, key_hash, pkt_hash, dest_flow, flow_prefetch_bucket,
                                   FLOW_POS_UNKNOWN, FLOW_POS_WANT)
from apps.vrouter.dp.route cimport rt_data
from apps.vrouter.dp.encap cimport encap_vxlan

from pd_compiler cimport pd_unlikely

cdef enum:
    BRIDGE_KEY_LEN = 8

# The bridge table's key: vrf (host order) then the MAC.
cdef inline void bridge_key(uint8_t *key, uint16_t vrf, const uint8_t *mac) noexcept nogil:
    memcpy(key, &vrf, 2)
    memcpy(key + 2, mac, 6)

# The bridge entry of (vrf, mac): 0 with its nexthop id and VNI (VR_NONE:
# none), -1 if there is none.
cdef inline int bridge_lookup(vr_router *r, uint16_t vrf, const uint8_t *mac, uint32_t *nh,
                              uint32_t *vni) noexcept nogil:
    cdef uint8_t key[BRIDGE_KEY_LEN]
    cdef uint32_t idx
    bridge_key(key, vrf, mac)
    if flow_hash_lookup(r.bridge, key, &idx) < 0:
        return -1
    rt_data(r, idx, nh, vni)
    return 0

# Flood the frame in vrf (bridge.pyx). in_vif: the VM it came from, or NULL.
cdef void flood(vr_worker *w, vr_vif *in_vif, uint16_t in_id, pd_mbuf *m, uint16_t vrf,
                uint32_t hash) noexcept nogil

# Bridge the frame at the front of m in vrf, up to the destination VM's
# flow. in_vif: the VM it came from, or NULL when it came out of a VXLAN
# tunnel (in_id: the fabric vif). Returns True when the frame waits for its
# flow (an IP packet to a VM vif with policy: c filled in, c.pos =
# FLOW_POS_WANT, its flow bucket prefetched; bridge_fin finishes it), False
# when it was sent, flooded, trapped or dropped.
cdef inline bint bridge_pre(vr_worker *w, vr_vif *in_vif, uint16_t in_id, pd_mbuf *m, uint16_t vrf,
                            vr_pkt *c) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef uint32_t nh_id, vni
    cdef const vr_nh *nh
    cdef vr_vif *out
    cdef uint64_t hv
    cdef uint32_t hash
    cdef uint16_t et = pd_load_u16(p + 12)
    cdef int l4off = -1
    cdef uint16_t mirror = VR_NO_VIF
    cdef bint is_ip = et == PD_BE16(PD_ETHER_TYPE_IPV4) or et == PD_BE16(PD_ETHER_TYPE_IPV6)
    cdef bint src_policy = in_vif != NULL and (in_vif.flags & VIF_F_POLICY) != 0 and is_ip
    if et == PD_BE16(PD_ETHER_TYPE_IPV4) and m.data_len >= ETH_LEN + PD_IPV4_HDR_LEN:
        l4off = key_fill(&c.k, p + ETH_LEN, m.data_len - ETH_LEN, vrf, 4)
    elif et == PD_BE16(PD_ETHER_TYPE_IPV6) and m.data_len >= ETH_LEN + PD_IPV6_HDR_LEN:
        l4off = key_fill(&c.k, p + ETH_LEN, m.data_len - ETH_LEN, vrf, 6)
    if l4off >= 0:
        hv = key_hash(r, &c.k)
    else:
        hv = hash_bytes(p, 12, 0)
    hash = pkt_hash(hv)
    if p[0] & 1:
        flood(w, in_vif, in_id, m, vrf, hash)
        return False
    # A unicast IP frame from a VM with policy: its flow and the source vif's
    # policy, as on the L3 path (l3_fin: the source vif's policy when it has
    # one, else the destination VM's; one flow entry per key either way).
    if src_policy:
        if pd_unlikely(l4off < 0):
            drop(w, m, in_id, DROP_INVALID_PACKET)
            return False
        if not dest_flow(w, in_id, in_vif, m, &c.k, hv, FLOW_POS_UNKNOWN, p + ETH_LEN, l4off,
                         m.data_len - ETH_LEN, &mirror):
            return False
        mirror_tx(w, mirror, m, hash)
    if bridge_lookup(r, vrf, p, &nh_id, &vni) != 0:
        if in_vif != NULL:
            flood(w, in_vif, in_id, m, vrf, hash)     # unknown unicast from a VM
        else:
            drop(w, m, in_id, DROP_L2_NO_ROUTE)
        return False
    nh = vr_load_nh(&r.nhs[nh_id]) if nh_id < VR_MAX_NHS else NULL
    if pd_unlikely(nh == NULL):
        drop(w, m, in_id, DROP_INVALID_NH)
        return False
    if nh.type == NH_ENCAP:
        out = vr_load_vif(&r.vifs[nh.vif])
        if pd_unlikely(out == NULL):
            drop(w, m, in_id, DROP_INVALID_IF)
            return False
        if (out.flags & VIF_F_POLICY) and is_ip and not src_policy:
            if pd_unlikely(l4off < 0):
                # no key (truncated headers): never past the VM's policy unchecked
                drop(w, m, in_id, DROP_INVALID_PACKET)
                return False
            c.m = m
            c.out = out
            c.hv = hv
            c.l3 = p + ETH_LEN
            c.avail = m.data_len - ETH_LEN
            c.l4off = <int16_t>l4off
            c.vrf = vrf
            c.pos = FLOW_POS_WANT
            flow_prefetch_bucket(r.flow_h, hv)
            return True
        w.st.vrf[vrf][VRFS_L2_ENCAPS] += 1
        vif_tx(w, out, m, hash)
    elif nh.type == NH_TUNNEL and nh.encap == TUN_VXLAN:
        if in_vif == NULL:
            drop(w, m, in_id, DROP_INVALID_NH)        # no tunnel-to-tunnel
        elif not (nh.flags & NH_F_VALID):
            w.st.vrf[vrf][VRFS_RESOLVES] += 1
            trap(w, m, in_id, TRAP_RESOLVE)
        else:
            encap_vxlan(w, in_vif, m, nh, vni, hash, vrf)
    elif nh.type == NH_DISCARD:
        w.st.vrf[vrf][VRFS_DISCARDS] += 1
        drop(w, m, in_id, DROP_DISCARD)
    else:
        drop(w, m, in_id, DROP_INVALID_NH)
    return False

# The frame bridge_pre kept: the destination VM's flow and policy, then to it.
cdef inline void bridge_fin(vr_worker *w, uint16_t in_id, vr_pkt *c) noexcept nogil:
    cdef uint16_t mirror = VR_NO_VIF
    cdef uint32_t hash = pkt_hash(c.hv)
    if not dest_flow(w, in_id, c.out, c.m, &c.k, c.hv, c.pos, c.l3, c.l4off, c.avail, &mirror):
        return
    w.st.vrf[c.vrf][VRFS_L2_ENCAPS] += 1
    mirror_tx(w, mirror, c.m, hash)
    vif_tx(w, c.out, c.m, hash)

# Bridge one frame, start to end (its flow looked up on the spot).
cdef inline void bridge_forward(vr_worker *w, vr_vif *in_vif, uint16_t in_id, pd_mbuf *m,
                                uint16_t vrf) noexcept nogil:
    cdef vr_pkt c
    if bridge_pre(w, in_vif, in_id, m, vrf, &c):
        c.pos = FLOW_POS_UNKNOWN
        bridge_fin(w, in_id, &c)


# ---- control (bridge.pyx; the control thread) --------------------------------------

# Add or change the entry (vrf, mac) -> rtdata index idx: 0, or -ENOSPC.
cdef int bridge_set(vr_router *r, uint16_t vrf, const uint8_t *mac, uint32_t idx) noexcept nogil
# Delete it: 0, or -ENOENT.
cdef int bridge_clear(vr_router *r, uint16_t vrf, const uint8_t *mac) noexcept nogil
