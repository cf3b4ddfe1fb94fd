"""Flows (flow.pxd): the miss path (policy, NAT pair, both entries added
under the flow lock), the table's creation, aging and reclaim."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memset
from libc.errno cimport ENOMEM
from pypdk.net.byteorder cimport pd_ntohs
from pypdk.net.flow_hash cimport (flow_hash_create, flow_hash_free, flow_hash_add, flow_hash_delete,
                                  flow_hash_reclaim, PD_FH_F_DEFER_FREE)
from pypdk.eal.tablemem cimport table_mem_map, table_mem_unmap

from pd_atomic cimport pd_store_release_u32


cdef inline bint pfx_match(const uint8_t *a, const uint8_t *p, uint32_t plen) noexcept nogil:
    cdef uint32_t i = 0
    while plen >= 8:
        if a[i] != p[i]:
            return False
        i += 1
        plen -= 8
    if plen:
        return ((a[i] ^ p[i]) & <uint8_t>(0xff00 >> plen)) == 0
    return True


# First matching rule of the vif (default allow): its action, and the mirror vif.
cdef uint16_t policy_eval(const vr_vif *vif, const pd_flow_key *k, uint16_t *mirror) noexcept nogil:
    cdef uint32_t i
    cdef const vr_policy_rule *rl
    cdef uint16_t sp = pd_ntohs(k.sport), dp = pd_ntohs(k.dport)
    for i in range(vif.nb_rules):
        rl = &vif.rules[i]
        if rl.family != k.family:
            continue
        if rl.proto and rl.proto != k.proto:
            continue
        if not pfx_match(k.src, rl.src, rl.src_plen) or not pfx_match(k.dst, rl.dst, rl.dst_plen):
            continue
        if sp < rl.sport_lo or sp > rl.sport_hi or dp < rl.dport_lo or dp > rl.dport_hi:
            continue
        mirror[0] = rl.mirror_vif
        return rl.action
    return FLOW_ALLOW


cdef inline void key_reverse(const pd_flow_key *k, pd_flow_key *rk) noexcept nogil:
    memcpy(rk, k, sizeof(pd_flow_key))
    memcpy(rk.src, k.dst, 16)
    memcpy(rk.dst, k.src, 16)
    rk.sport = k.dport
    rk.dport = k.sport


cdef inline void flow_init(vr_flow *f, const pd_flow_key *k, uint16_t action, uint16_t flags,
                           uint16_t mirror, uint32_t nat_ip, uint64_t now) noexcept nogil:
    f.action = action
    f.flags = flags
    f.mirror_vif = mirror
    f.vrf = k.vrf
    f.nat_ip = nat_ip
    f.packets = 0
    f.bytes = 0
    f.last_used = now
    f.rflow = VR_NONE


cdef vr_flow *flow_create(vr_worker *w, const pd_flow_key *k, uint64_t hv, const vr_vif *pvif,
                          uint32_t nat_ip, uint16_t nat_vrf) noexcept nogil:
    cdef vr_router *r = w.r
    cdef int32_t fi, ri
    cdef pd_flow_key rk
    cdef uint16_t mirror = 0, action
    cdef vr_flow *f
    cdef vr_flow *rf = NULL
    cdef vr_flow *old
    cdef uint64_t pk, pb
    action = policy_eval(pvif, k, &mirror) if pvif != NULL else FLOW_ALLOW
    key_reverse(k, &rk)
    if nat_ip:
        # Reverse of a DNAT to the VM: from the VM's address in its VRF.
        memset(rk.src, 0, 16)
        memcpy(rk.src, &nat_ip, 4)
        rk.vrf = nat_vrf
    vr_lock(&r.flow_lock)
    # Raced in by another lcore (or filled in since this one looked)?
    f = flow_at(r, flow_hash_lookup_with_hash(r.flow_h, k, hv, NULL))
    if f != NULL:
        vr_unlock(&r.flow_lock)
        return f
    fi = flow_hash_add(r.flow_h, k, 0)
    if fi < 0:
        vr_unlock(&r.flow_lock)
        return NULL
    f = &r.flows[fi]
    flow_init(f, k, FLOW_NAT if nat_ip else action, FLOW_F_DNAT if nat_ip else 0, mirror, nat_ip, w.now)
    # The reverse key may have an entry already (the forward of an earlier
    # flow, e.g. the VM's own connection before a floating-IP client used the
    # same ports, or a pair whose reverse did not fit): it becomes this
    # flow's reverse, linked both ways, so actions, NAT and aging apply to the
    # pair; its counters stay, and an old partner that pointed at it is
    # unlinked (no one-way link is left behind).
    old = flow_at(r, flow_hash_lookup_with_hash(r.flow_h, &rk, flow_hash_hash(r.flow_h, &rk), NULL))
    ri = flow_hash_add(r.flow_h, &rk, 0)
    if ri >= 0:
        rf = &r.flows[ri]
        if old == rf:
            pk, pb = rf.packets, rf.bytes
            if rf.rflow != VR_NONE and rf.rflow != <uint32_t>fi and r.flows[rf.rflow].rflow == <uint32_t>ri:
                r.flows[rf.rflow].rflow = VR_NONE
        else:
            pk, pb = 0, 0
        flow_init(rf, &rk, FLOW_NAT if nat_ip else action, FLOW_F_SNAT if nat_ip else 0, mirror, 0, w.now)
        rf.packets, rf.bytes = pk, pb
        if nat_ip:
            memcpy(&rf.nat_ip, k.dst, 4)      # the public address
        rf.rflow = <uint32_t>fi
        f.rflow = <uint32_t>ri
        # Pairs with the acquire load of state in flow_at: the entry is filled in.
        pd_store_release_u32(&rf.state, VR_FLOW_VALID)
    pd_store_release_u32(&f.state, VR_FLOW_VALID)
    w.st.flows_created += 1
    vr_unlock(&r.flow_lock)
    return f


# ---- control -----------------------------------------------------------------------

cdef int flow_table_create(vr_router *r, uint32_t capacity, uint64_t seed) noexcept nogil:
    cdef void *mem
    cdef size_t size = <size_t>capacity * sizeof(vr_flow)
    r.flow_h = flow_hash_create(capacity, sizeof(pd_flow_key), PD_FH_F_DEFER_FREE, seed, 0)
    # Page-aligned (an entry is one cache line, never two), zeroed; table
    # memory (pypdk.eal.tablemem): lazily backed THP/4 KiB pages, or the EAL's
    # hugepages on the forwarding lcores' node: a lookup in a million flows
    # should not also miss the TLB. Mapped even when the hash failed, so a
    # hugepage shortage is reported for both.
    mem = table_mem_map(size)
    if mem == NULL or r.flow_h == NULL:
        table_mem_unmap(mem, size)
        flow_hash_free(r.flow_h)
        r.flow_h = NULL
        return -ENOMEM
    r.flows = <vr_flow *>mem
    r.flow_max = capacity
    return 0


cdef void flow_table_free(vr_router *r) noexcept nogil:
    flow_hash_free(r.flow_h)
    table_mem_unmap(r.flows, <size_t>r.flow_max * sizeof(vr_flow))
    r.flow_h = NULL
    r.flows = NULL


cdef inline void flow_delete(vr_router *r, uint32_t i) noexcept nogil:
    cdef pd_flow_key k
    memcpy(&k, _fh_rec(r.flow_h, i) + 8, sizeof(pd_flow_key))
    pd_store_release_u32(&r.flows[i].state, 0)
    flow_hash_delete(r.flow_h, &k)


# A flow is its two entries: they age together, when both are idle (a
# one-way stream keeps its pair; aging one side alone left the other's
# rflow pointing at a position the table would hand to another flow).
cdef uint32_t flow_age(vr_router *r, uint64_t now, bint all_) noexcept nogil:
    cdef uint64_t idle, last
    cdef uint32_t i, n = 0
    cdef uint16_t flags
    cdef vr_flow *f
    cdef vr_flow *rf
    vr_lock(&r.flow_lock)
    for i in range(r.flow_max):
        f = &r.flows[i]
        if f.state != VR_FLOW_VALID:
            continue
        rf = NULL
        if f.rflow != VR_NONE and r.flows[f.rflow].state == VR_FLOW_VALID and r.flows[f.rflow].rflow == i:
            rf = &r.flows[f.rflow]
        last, flags = f.last_used, f.flags
        if rf != NULL:
            last = rf.last_used if rf.last_used > last else last
            flags |= rf.flags
        idle = now - last if now > last else 0
        if all_ or idle > r.flow_timeout or ((flags & FLOW_F_TCP_CLOSED) and idle > r.flow_closed_timeout):
            if rf != NULL:
                flow_delete(r, f.rflow)
                n += 1
            flow_delete(r, i)
            n += 1
    vr_unlock(&r.flow_lock)
    return n


cdef void flow_reclaim(vr_router *r) noexcept nogil:
    vr_lock(&r.flow_lock)
    flow_hash_reclaim(r.flow_h)
    vr_unlock(&r.flow_lock)
