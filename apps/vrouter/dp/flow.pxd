# Flows: the per-flow state of policy vifs, keyed on (vrf, family, proto,
# addresses, ports).
#
# The first packet of a flow evaluates the policy of the VM's vif (first
# match wins, default allow) and, under `vr_router.flow_lock`, adds the
# forward and the reverse entry (flow_create, flow.pyx); every later packet
# finds its entry lock-free (flow_get). A floating IP's flows are a NAT pair:
# DNAT on the way in, SNAT on the VM's replies, keyed on the translated
# tuple. Aging runs on the control thread (Router.flow_age) under the same
# lock. A slot deleted by aging may be reused at once; a lcore that looked
# it up just before may count one packet on the new flow (counters are
# advisory).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from libc.string cimport memcpy, memset
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.net.byteorder cimport pd_load_u16
from pypdk.net.ipv4 cimport (pd_ipv4_hdr, ipv4_hdr_len, ipv4_is_fragment, PD_IPPROTO_UDP, PD_IPPROTO_TCP,
                             PD_IPPROTO_ICMP)
from pypdk.net.ipv6 cimport pd_ipv6_hdr, ipv6_skip_ext
from pypdk.net.tcp cimport pd_tcp_hdr, PD_TCP_FIN, PD_TCP_RST
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.tables cimport hash_lookup, hash_key
from apps.vrouter.dp.vif cimport drop

cdef extern from "pd_compiler.h" nogil:
    bint pd_likely(bint)
    bint pd_unlikely(bint)

# The flow hash of a key (ECMP member, tx queue, outer UDP source port).
cdef inline uint32_t key_hash(const vr_flow_key *k) noexcept nogil:
    return hash_key(k, sizeof(vr_flow_key))

# Fill a flow key from an IPv4/IPv6 packet at l3 (avail bytes). Returns the
# L4 offset from l3, -1 for a packet too short for its headers.
cdef inline int key_fill(vr_flow_key *k, const uint8_t *l3, uint32_t avail, uint16_t vrf,
                         uint8_t family) noexcept nogil:
    cdef const pd_ipv4_hdr *ip
    cdef const pd_ipv6_hdr *ip6
    cdef int off
    cdef uint8_t proto
    memset(k, 0, sizeof(vr_flow_key))
    k.vrf = vrf
    k.family = family
    if family == 4:
        ip = <const pd_ipv4_hdr *>l3
        memcpy(k.src, &ip.src_addr, 4)
        memcpy(k.dst, &ip.dst_addr, 4)
        k.proto = ip.next_proto_id
        off = <int>ipv4_hdr_len(ip)
        if ipv4_is_fragment(ip):
            return off              # no ports: the flow is per address pair
    else:
        ip6 = <const pd_ipv6_hdr *>l3
        memcpy(k.src, ip6.src_addr, 16)
        memcpy(k.dst, ip6.dst_addr, 16)
        off = ipv6_skip_ext(ip6, avail, &proto)
        if off < 0:
            return -1
        k.proto = proto
    if k.proto == PD_IPPROTO_TCP or k.proto == PD_IPPROTO_UDP:
        if <uint32_t>off + 4 > avail:
            return -1
        k.sport = pd_load_u16(l3 + off)
        k.dport = pd_load_u16(l3 + off + 2)
    elif k.proto == PD_IPPROTO_ICMP and <uint32_t>off + 8 <= avail:
        # Echo: the identifier tells sessions apart (both directions share it).
        k.sport = pd_load_u16(l3 + off + 4)
        k.dport = k.sport
    return off

# The miss path (flow.pyx): the policy of `pvif`, or NAT to a floating IP
# when nat_ip != 0 (DNAT forward, SNAT reverse keyed on the translated tuple
# in `nat_vrf`); adds both entries under the flow lock. NULL: table full.
cdef vr_flow *flow_create(vr_worker *w, const vr_flow_key *k, uint32_t sig, const vr_vif *pvif,
                          uint32_t nat_ip, uint16_t nat_vrf) noexcept nogil

# The flow of key k, created on a miss. NULL: the table is full.
cdef inline vr_flow *flow_get(vr_worker *w, const vr_flow_key *k, uint32_t sig, const vr_vif *pvif,
                              uint32_t nat_ip, uint16_t nat_vrf) noexcept nogil:
    cdef int32_t fi = hash_lookup(w.r.flow_h, k, sig)
    if pd_likely(fi >= 0):
        return &w.r.flows[fi]
    return flow_create(w, k, sig, pvif, nat_ip, nat_vrf)

# Count a packet on its flow; TCP FIN/RST mark the pair for early aging.
cdef inline void flow_account(vr_worker *w, vr_flow *f, pd_mbuf *m, const vr_flow_key *k,
                              const uint8_t *l4, uint32_t l4_avail) noexcept nogil:
    cdef uint8_t fl
    f.packets += 1
    f.bytes += m.pkt_len
    f.last_used = w.now
    if k.proto == PD_IPPROTO_TCP and l4_avail >= 20:
        fl = (<const pd_tcp_hdr *>l4).tcp_flags
        if pd_unlikely(fl & (PD_TCP_FIN | PD_TCP_RST)):
            if fl & PD_TCP_RST:
                f.flags |= FLOW_F_TCP_CLOSED
            else:
                f.flags |= FLOW_F_TCP_FIN_FWD
            if f.rflow != VR_NONE:
                if fl & PD_TCP_RST or w.r.flows[f.rflow].flags & FLOW_F_TCP_FIN_FWD:
                    w.r.flows[f.rflow].flags |= FLOW_F_TCP_CLOSED
                    f.flags |= FLOW_F_TCP_CLOSED

# Flow and policy of a destination VM vif `dv` with policy on (decap,
# bridged, VM->VM): False when the packet was dropped; a mirror vif in *mirror.
cdef inline bint dest_flow(vr_worker *w, uint16_t in_id, vr_vif *dv, pd_mbuf *m, vr_flow_key *k,
                           uint32_t hash, uint8_t *l3, int l4off, uint32_t avail,
                           uint16_t *mirror) noexcept nogil:
    cdef vr_flow *f
    if pd_unlikely(k.family == 4 and ipv4_is_fragment(<pd_ipv4_hdr *>l3)):
        drop(w, m, in_id, DROP_FRAGMENTS)
        return False
    f = flow_get(w, k, hash, dv, 0, 0)
    if pd_unlikely(f == NULL):
        drop(w, m, in_id, DROP_FLOW_TABLE_FULL)
        return False
    flow_account(w, f, m, k, l3 + l4off, avail - l4off)
    if f.action == FLOW_DROP:
        drop(w, m, in_id, DROP_FLOW_ACTION_DROP)
        return False
    if f.action == FLOW_MIRROR:
        mirror[0] = f.mirror_vif
    return True
