"""Flows (flow.pxd): the miss path (policy, NAT pair, both entries added under the flow lock)."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t
from libc.string cimport memcpy, memset, memcmp
from pypdk.net.byteorder cimport pd_ntohs
from apps.vrouter.dp.tables cimport hash_add


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
cdef uint16_t policy_eval(const vr_vif *vif, const vr_flow_key *k, uint16_t *mirror) noexcept nogil:
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


cdef inline void key_reverse(const vr_flow_key *k, vr_flow_key *rk) noexcept nogil:
    memcpy(rk, k, sizeof(vr_flow_key))
    memcpy(rk.src, k.dst, 16)
    memcpy(rk.dst, k.src, 16)
    rk.sport = k.dport
    rk.dport = k.sport


cdef inline void flow_init(vr_flow *f, const vr_flow_key *k, uint16_t action, uint16_t flags,
                           uint16_t mirror, uint32_t nat_ip, uint64_t now) noexcept nogil:
    memcpy(&f.key, k, sizeof(vr_flow_key))
    f.action = action
    f.flags = flags
    f.mirror_vif = mirror
    f.vrf = k.vrf
    f.nat_ip = nat_ip
    f.packets = 0
    f.bytes = 0
    f.last_used = now
    f.rflow = VR_NONE


cdef vr_flow *flow_create(vr_worker *w, const vr_flow_key *k, uint32_t sig, const vr_vif *pvif,
                          uint32_t nat_ip, uint16_t nat_vrf) noexcept nogil:
    cdef vr_router *r = w.r
    cdef int32_t fi, ri
    cdef vr_flow_key rk
    cdef uint16_t mirror = 0, action
    cdef vr_flow *f
    action = policy_eval(pvif, k, &mirror) if pvif != NULL else FLOW_ALLOW
    key_reverse(k, &rk)
    if nat_ip:
        # Reverse of a DNAT to the VM: from the VM's address in its VRF.
        memset(rk.src, 0, 16)
        memcpy(rk.src, &nat_ip, 4)
        rk.vrf = nat_vrf
    vr_lock(&r.flow_lock)
    fi = hash_add(r.flow_h, k, sig)
    if fi < 0:
        vr_unlock(&r.flow_lock)
        return NULL
    f = &r.flows[fi]
    if f.key.family == 0 or memcmp(&f.key, k, sizeof(vr_flow_key)) != 0:
        # New (not raced in by another lcore).
        flow_init(f, k, action, FLOW_F_DNAT if nat_ip else 0, mirror, nat_ip, w.now)
        if nat_ip:
            f.action = FLOW_NAT
        ri = hash_add(r.flow_h, &rk, key_hash(&rk))
        if ri >= 0:
            flow_init(&r.flows[ri], &rk, FLOW_NAT if nat_ip else action,
                      FLOW_F_SNAT if nat_ip else 0, mirror, 0, w.now)
            if nat_ip:
                memcpy(&r.flows[ri].nat_ip, k.dst, 4)    # the public address
            r.flows[ri].rflow = <uint32_t>fi
            f.rflow = <uint32_t>ri
        w.st.flows_created += 1
    vr_unlock(&r.flow_lock)
    return f
