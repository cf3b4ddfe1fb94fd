# L3 nexthop output: what a route (or an MPLS label) resolves to, and how a
# packet leaves through it (TF's vr_nexthop.c). Types (vrouter.pxd):
#
#   discard    dropped and counted (vrfstats discards)
#   receive    to the host (the vhost vif), the vRouter's own addresses
#   encap      to a local VM: the L2 header rewritten (vRouter MAC -> VM MAC)
#   tunnel     to a remote vRouter: MPLSoUDP / MPLSoGRE with the route's label
#              (encap.pxd); unresolved (no underlay neighbour yet): to the agent
#   ecmp       one member picked by the flow hash (members are tunnel/encap)
#   resolve    to the agent (ARP for the destination), e.g. the underlay subnet
#   composite  L2 only: a copy per member (bridge.pxd's flood)
#
# The L2 side (bridge entries -> encap/tunnel/composite) is in bridge.pxd.

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.net.byteorder cimport PD_BE16
from pypdk.net.ether cimport PD_ETHER_TYPE_IPV4, PD_ETHER_TYPE_IPV6
from pypdk.net.ipv4 cimport pd_ipv4_hdr
from pypdk.net.ipv6 cimport pd_ipv6_hdr
from pypdk.net.cksum cimport ipv4_ttl_dec
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.vif cimport ETH_LEN, TRAP_RESOLVE, drop, eth_write, vif_tx, trap, mirror_tx
from apps.vrouter.dp.arp cimport icmp4_error
from apps.vrouter.dp.encap cimport encap_mpls

from pd_compiler cimport pd_unlikely

# Forward an L3 packet (m starts with its Ethernet header, IP at +14) through
# nh. in_vif: where it came from (for errors). decrement: a routed hop
# (from a VM): TTL <= 1 is dropped with an ICMP time exceeded. mirror: a vif
# that gets a copy (VR_NO_VIF: none).
cdef inline void nh_output_l3(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const vr_nh *nh, uint32_t label,
                              uint32_t hash, uint8_t family, uint16_t vrf, bint decrement,
                              uint16_t mirror) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *l3 = <uint8_t *>m.buf_addr + m.data_off + ETH_LEN
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>l3
    cdef pd_ipv6_hdr *ip6 = <pd_ipv6_hdr *>l3
    cdef vr_vif *out
    cdef uint32_t depth = 0
    cdef uint16_t in_id = in_vif.id
    while nh.type == NH_ECMP:
        if pd_unlikely(nh.nb_members == 0 or depth > 2):
            drop(w, m, in_id, DROP_INVALID_NH)
            return
        w.st.vrf[vrf][VRFS_ECMP] += 1
        nh = vr_load_nh(&r.nhs[nh.members[hash % nh.nb_members]])
        depth += 1
        if pd_unlikely(nh == NULL):
            drop(w, m, in_id, DROP_INVALID_NH)
            return
    if nh.type == NH_DISCARD:
        w.st.vrf[vrf][VRFS_DISCARDS] += 1
        drop(w, m, in_id, DROP_DISCARD)
        return
    if nh.type == NH_RESOLVE or (nh.type == NH_TUNNEL and not (nh.flags & NH_F_VALID)):
        w.st.vrf[vrf][VRFS_RESOLVES] += 1
        trap(w, m, in_id, TRAP_RESOLVE)
        return
    if decrement:
        if family == 4:
            if pd_unlikely(ip.time_to_live <= 1):
                icmp4_error(w, in_vif, m, ip, 11, 0, 0)
                drop(w, m, in_id, DROP_TTL_EXCEEDED)
                return
            ipv4_ttl_dec(ip)
        else:
            if pd_unlikely(ip6.hop_limits <= 1):
                drop(w, m, in_id, DROP_TTL_EXCEEDED)
                return
            ip6.hop_limits -= 1
    mirror_tx(w, mirror, m, hash)
    if nh.type == NH_TUNNEL:
        if nh.encap == TUN_VXLAN:
            drop(w, m, in_id, DROP_INVALID_NH)      # an L2 tunnel for a routed packet
            return
        encap_mpls(w, in_vif, m, nh, label, hash, family, vrf)
        return
    if nh.type == NH_ENCAP or nh.type == NH_RECEIVE:
        if nh.type == NH_RECEIVE:
            if r.vhost_vif == VR_NO_VIF:
                drop(w, m, in_id, DROP_INVALID_IF)
                return
            out = vr_load_vif(&r.vifs[r.vhost_vif])
            w.st.vrf[vrf][VRFS_RECEIVES] += 1
        else:
            out = vr_load_vif(&r.vifs[nh.vif])
            w.st.vrf[vrf][VRFS_ENCAPS] += 1
        if pd_unlikely(out == NULL):
            drop(w, m, in_id, DROP_INVALID_IF)
            return
        eth_write(<uint8_t *>m.buf_addr + m.data_off, <uint8_t *>out.mac if nh.type == NH_RECEIVE else <uint8_t *>nh.dmac,
                  r.mac, PD_BE16(PD_ETHER_TYPE_IPV4) if family == 4 else PD_BE16(PD_ETHER_TYPE_IPV6))
        vif_tx(w, out, m, hash)
        return
    drop(w, m, in_id, DROP_INVALID_NH)
