"""The vRouter's packet paths (nogil), and `Router`, their Python owner.

A burst received on a vif is processed packet by packet, run to completion;
outputs go to per-(vif, queue) tx buffers flushed once per burst. By the
input vif's type:

  fabric   IPv4 to the underlay address: MPLSoUDP (UDP 6635), MPLSoGRE (GRE
           0x8847) -> label -> nh; VXLAN (UDP 4789) -> VNI -> VRF -> bridge.
           To a floating IP: DNAT to the VM (flow). Anything else (ARP,
           host traffic, IPv6) -> vhost; ARP also copied to the agent.
  vhost    pass-through to the fabric, frame untouched.
  virtual  ARP / IPv6 NS: proxy answers with the vRouter MAC (L3 vif).
           L2 vif (or a frame not for the vRouter MAC on an L2+L3 vif):
           bridge table -> local vif, VXLAN tunnel, or flood.
           IPv4/IPv6: flow + policy (policy vifs), route in the vif's VRF ->
           nh: encap (local VM), tunnel (MPLSoUDP/GRE encap), ecmp (member by
           flow hash), receive (vhost), discard, resolve (agent).
  agent    injected by the Python agent: sent as is on vif m.port.

Drops are counted by reason, globally and per input vif (DROP_NAMES). The
header fields are checked before use; anything malformed is freed and
counted, never forwarded. Only single-segment headers are parsed (headers
must sit in the first segment, which every PMD here guarantees for frames
up to its segment size).

Flows (policy vifs): a table keyed on (vrf, proto, addresses, ports). The
first packet of a flow evaluates the policy of the VM's vif (first match
wins, default allow) and, under `flow_lock`, adds the forward and the
reverse entry; lookups are lock-free. Aging runs on the control thread
(`Router.flow_age`, from the agent's periodic tick) under the same lock.
A slot deleted by aging may be reused at once; a lcore that looked it up
just before may count one packet on the new flow (counters are advisory).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset, memcmp

from pypdk.mempool.mbuf cimport (pd_mbuf, PktMbufPool, pktmbuf_alloc, pktmbuf_free, pktmbuf_free_bulk, pktmbuf_alloc_bulk,
                                 mbuf_prepend, mbuf_adj, mbuf_append, Mbuf)
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_fp, fp_rx_burst, fp_tx_burst, eth_port_fp, EthDev
from pypdk.ring.ring cimport pd_ring, ring_create, ring_free, ring_mp_enqueue_burst, ring_sc_dequeue_burst, ring_count
from pypdk.eal.lcore cimport LcoreFunction, lcore_function_new
from pypdk.net.byteorder cimport pd_ntohs, pd_ntohl, pd_htons, pd_htonl, PD_BE16, PD_BE32, pd_load_u16, pd_load_u32, pd_store_u16, pd_load_u64
from pypdk.net.ether cimport pd_ether_hdr, PD_ETHER_TYPE_IPV4, PD_ETHER_TYPE_IPV6, PD_ETHER_TYPE_ARP, PD_ETHER_TYPE_VLAN, PD_ETHER_TYPE_QINQ, PD_ETHER_TYPE_MPLS
from pypdk.net.ipv4 cimport (pd_ipv4_hdr, ipv4_hdr_ok, ipv4_hdr_len, ipv4_is_fragment, PD_IPPROTO_UDP,
                             PD_IPPROTO_TCP, PD_IPPROTO_GRE, PD_IPPROTO_ICMP, PD_IPPROTO_ICMPV6,
                             PD_IPV4_HDR_DF_FLAG, PD_IPV4_HDR_MF_FLAG, PD_IPV4_HDR_OFFSET_MASK)
from pypdk.net.ipv6 cimport pd_ipv6_hdr, ipv6_skip_ext, PD_IPV6_HDR_LEN
from pypdk.net.udp cimport pd_udp_hdr
from pypdk.net.tcp cimport pd_tcp_hdr, PD_TCP_FIN, PD_TCP_RST
from pypdk.net.gre cimport pd_gre_hdr, gre_hdr_ok, gre_hdr_len
from pypdk.net.mpls cimport pd_mpls_hdr, mpls_lse_make
from pypdk.net.vxlan cimport pd_vxlan_hdr, vxlan_vni_valid, vxlan_get_vni, vxlan_hdr_set
from pypdk.net.arp cimport pd_arp_hdr
from pypdk.net.icmp cimport pd_icmp_hdr, pd_nd_ns_hdr, pd_nd_na_hdr
from pypdk.net.cksum cimport (ipv4_hdr_cksum, ipv4_hdr_cksum_ok, icmp_cksum, ipv4_ttl_dec,
                              ipv6_l4_cksum, ipv4_nat_rewrite)
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.tables cimport (vr_rt_table, rt_lookup, vr_hash, hash_create, hash_free,
                                     hash_lookup, hash_add, hash_del, hash_key)

cdef extern from "pd_compiler.h" nogil:
    bint pd_likely(bint)
    bint pd_unlikely(bint)
    void pd_prefetch0(const void *p)
    void pd_pause()
    uint64_t pd_rdtsc()

cdef extern from "pd_atomic.h" nogil:
    int pd_load_relaxed_int(const int *p)
    void pd_store_release_int(int *p, int v)
    int pd_load_acquire_int(const int *p)
    uint32_t pd_load_relaxed_u32(const uint32_t *p)
    void pd_store_release_u32(uint32_t *p, uint32_t v)
    uint64_t pd_load_acquire_u64(const uint64_t *p)
    void pd_store_release_u64(uint64_t *p, uint64_t v)
    bint pd_cas_weak_u32(uint32_t *p, uint32_t *expected, uint32_t desired)
    # Pointers are published and read with these (a release store pairs with
    # the acquire load in the reader).
    void *pd_load_acquire(...)
    void pd_store_release(...)

cdef extern from *:
    """
    #define vr_load_ptr(pp) __atomic_load_n((pp), __ATOMIC_ACQUIRE)
    #define vr_store_ptr(pp, v) __atomic_store_n((pp), (v), __ATOMIC_RELEASE)
    """
    vr_vif *vr_load_vif "vr_load_ptr"(vr_vif **pp) nogil
    void vr_store_vif "vr_store_ptr"(vr_vif **pp, vr_vif *v) nogil
    vr_nh *vr_load_nh "vr_load_ptr"(vr_nh **pp) nogil
    void vr_store_nh "vr_store_ptr"(vr_nh **pp, vr_nh *v) nogil
    vr_rt_table *vr_load_rt "vr_load_ptr"(vr_rt_table **pp) nogil
    void vr_store_rt "vr_store_ptr"(vr_rt_table **pp, vr_rt_table *v) nogil
    vr_pollset *vr_load_ps "vr_load_ptr"(vr_pollset **pp) nogil
    void vr_store_ps "vr_store_ptr"(vr_pollset **pp, vr_pollset *v) nogil

# The drop reasons, in vr_drop order (vrouter.pxd), as dropstats names them.
DROP_NAMES = ("discard", "no_route", "l2_no_route", "invalid_label", "invalid_vni", "invalid_nh",
              "invalid_if", "invalid_protocol", "flow_action_drop", "flow_table_full",
              "ttl_exceeded", "invalid_packet", "checksum_error", "interface_drop", "no_mbuf",
              "mtu_exceeded", "fragments", "vlan", "trap_no_if", "invalid_arp", "push_fail")
VRFS_NAMES = ("discards", "resolves", "receives", "ecmp", "l2_floods", "encaps", "l2_encaps",
              "udp_mpls_encaps", "gre_mpls_encaps", "vxlan_encaps", "udp_mpls_decaps",
              "gre_mpls_decaps", "vxlan_decaps", "arp_proxy", "nd_proxy", "translates")
VIFQ_NAMES = ("rx_packets", "rx_bytes", "rx_errors", "rx_drops",
              "tx_packets", "tx_bytes", "tx_errors", "tx_drops")
assert len(DROP_NAMES) == DROP_MAX and len(VRFS_NAMES) == VRFS_MAX and len(VIFQ_NAMES) == VIFQ_MAX

cdef enum:
    ETH_LEN = 14
    MPLSOUDP_HLEN = 14 + 20 + 8 + 4     # outer headers written in front of the inner IP packet
    MPLSOGRE_HLEN = 14 + 20 + 4 + 4
    VXLAN_HLEN = 14 + 20 + 8 + 8        # in front of the inner Ethernet frame
    OUTER_TTL = 64
    TRAP_ARP = 1
    TRAP_RESOLVE = 2
    TRAP_PACKET = 3
    ICMP_QUOTE = 128                    # bytes of the offending packet an ICMP error quotes


# ---- small helpers -----------------------------------------------------------

cdef inline void drop(vr_worker *w, pd_mbuf *m, uint16_t in_vif, int reason) noexcept nogil:
    w.st.drop[reason] += 1
    if in_vif < VR_MAX_VIFS:
        w.st.vif_drop[in_vif][reason] += 1
    pktmbuf_free(m)

cdef inline void vr_lock(uint32_t *l) noexcept nogil:
    cdef uint32_t exp
    while True:
        exp = 0
        if pd_cas_weak_u32(l, &exp, 1):
            break
        while pd_load_relaxed_u32(l) != 0:
            pd_pause()
    # The CAS is relaxed; the acquire fence orders what the holder reads after it.
    __atomic_thread_fence_acquire()

cdef extern from *:
    """
    static inline void __atomic_thread_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
    """
    void __atomic_thread_fence_acquire() nogil

cdef inline void vr_unlock(uint32_t *l) noexcept nogil:
    # Pairs with the acquire fence in vr_lock of the next holder.
    pd_store_release_u32(l, 0)

cdef inline uint32_t mix32(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    return <uint32_t>h

# The flow hash of a key (ECMP member, tx queue, outer UDP source port).
cdef inline uint32_t key_hash(const vr_flow_key *k) noexcept nogil:
    return hash_key(k, sizeof(vr_flow_key))

cdef inline void eth_write(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint16_t type_be) noexcept nogil:
    memcpy(p, dst, 6)
    memcpy(p + 6, src, 6)
    pd_store_u16(p + 12, type_be)


# ---- tx buffering ---------------------------------------------------------------

cdef void slot_flush(vr_worker *w, vr_txslot *s) noexcept nogil:
    cdef vr_router *r = w.r
    cdef vr_vif *vif = vr_load_vif(&r.vifs[s.vif])
    cdef uint32_t n = s.n, sent = 0, i
    cdef uint64_t bytes = 0
    cdef uint64_t *q
    s.n = 0
    if n == 0:
        return
    for i in range(n):
        bytes += s.pkts[i].pkt_len
    q = w.st.vifq[s.vif][s.queue]
    if pd_unlikely(vif == NULL or vif.fp == NULL):
        if vif != NULL and vif.type == VIF_AGENT and r.trap != NULL:
            sent = ring_mp_enqueue_burst(r.trap, <void **>s.pkts, n)
            w.st.traps += sent
        pass
    elif r.tx_locking:
        vr_lock(&r.txlock[s.vif][s.queue])
        sent = fp_tx_burst(vif.fp, s.queue, s.pkts, <uint16_t>n)
        vr_unlock(&r.txlock[s.vif][s.queue])
    else:
        sent = fp_tx_burst(vif.fp, s.queue, s.pkts, <uint16_t>n)
    if pd_unlikely(sent < n):
        for i in range(sent, n):
            bytes -= s.pkts[i].pkt_len
        q[VIFQ_TX_DROPS] += n - sent
        w.st.drop[DROP_INTERFACE_DROP] += n - sent
        w.st.vif_drop[s.vif][DROP_INTERFACE_DROP] += n - sent
        pktmbuf_free_bulk(&s.pkts[sent], n - sent)
    q[VIFQ_TX_PACKETS] += sent
    q[VIFQ_TX_BYTES] += bytes

cdef void tx_flush(vr_worker *w) noexcept nogil:
    cdef uint32_t i
    for i in range(w.nslots):
        slot_flush(w, &w.slots[i])
    w.nslots = 0

# Queue m for (vif, queue); sent at the end of the burst.
cdef inline void tx_enqueue(vr_worker *w, uint16_t vif, uint16_t queue, pd_mbuf *m) noexcept nogil:
    cdef uint32_t i
    cdef vr_txslot *s
    for i in range(w.nslots):
        s = &w.slots[i]
        if s.vif == vif and s.queue == queue:
            if pd_unlikely(s.n == 64):
                slot_flush(w, s)
            s.pkts[s.n] = m
            s.n += 1
            return
    if pd_unlikely(w.nslots == VR_TX_SLOTS):
        tx_flush(w)
    s = &w.slots[w.nslots]
    w.nslots += 1
    s.vif = vif
    s.queue = queue
    s.pkts[0] = m
    s.n = 1

# To a vif: the tx queue from the flow hash on a multi-queue vif.
cdef inline void vif_tx(vr_worker *w, vr_vif *vif, pd_mbuf *m, uint32_t hash) noexcept nogil:
    cdef uint16_t q = 0
    if vif.nb_txq > 1:
        q = <uint16_t>(hash % vif.nb_txq)
    tx_enqueue(w, vif.id, q, m)

# A private copy (flood, mirror): a fresh mbuf holding the same bytes.
cdef pd_mbuf *pkt_copy(vr_worker *w, pd_mbuf *m) noexcept nogil:
    cdef pd_mbuf *c = pktmbuf_alloc(w.r.pool)
    cdef char *d
    if c == NULL:
        return NULL
    if m.data_len > c.buf_len - c.data_off:
        pktmbuf_free(c)
        return NULL
    d = mbuf_append(c, m.data_len)
    memcpy(d, <char *>m.buf_addr + m.data_off, m.data_len)
    c.port = m.port
    return c

cdef void trap(vr_worker *w, pd_mbuf *m, uint16_t in_vif, uint32_t reason) noexcept nogil:
    cdef vr_router *r = w.r
    if r.agent_vif == VR_NO_VIF or r.trap == NULL:
        drop(w, m, in_vif, DROP_TRAP_NO_IF)
        return
    m.udata64 = reason | (<uint64_t>in_vif << 16)
    tx_enqueue(w, r.agent_vif, 0, m)


# ---- ICMP errors to a VM --------------------------------------------------------

# An ICMP error (type, code, 4-byte rest) about the IPv4 packet at `ip`
# (in m, from vif), sent back to the vif with the vRouter as source.
cdef void icmp4_error(vr_worker *w, vr_vif *vif, pd_mbuf *m, const pd_ipv4_hdr *ip,
                      uint8_t type, uint8_t code, uint32_t rest_be) noexcept nogil:
    cdef vr_router *r = w.r
    cdef pd_mbuf *e = pktmbuf_alloc(r.pool)
    cdef uint32_t quote = pd_ntohs(ip.total_length)
    cdef uint32_t avail = m.data_len - <uint32_t>(<const uint8_t *>ip - <uint8_t *>(<char *>m.buf_addr + m.data_off))
    cdef uint8_t *p
    cdef pd_ipv4_hdr *oip
    cdef pd_icmp_hdr *ic
    if e == NULL:
        w.st.drop[DROP_NO_MBUF] += 1
        return
    if quote > avail:
        quote = avail
    if quote > ICMP_QUOTE:
        quote = ICMP_QUOTE
    p = <uint8_t *>mbuf_append(e, <uint16_t>(ETH_LEN + 20 + 8 + quote))
    eth_write(p, (<const pd_ether_hdr *>(<char *>m.buf_addr + m.data_off)).src_addr.addr_bytes,
              r.mac, PD_BE16(PD_ETHER_TYPE_IPV4))
    oip = <pd_ipv4_hdr *>(p + ETH_LEN)
    oip.version_ihl = 0x45
    oip.type_of_service = 0
    oip.total_length = pd_htons(<uint16_t>(20 + 8 + quote))
    oip.packet_id = 0
    oip.fragment_offset = 0
    oip.time_to_live = OUTER_TTL
    oip.next_proto_id = PD_IPPROTO_ICMP
    oip.src_addr = r.icmp_src
    oip.dst_addr = ip.src_addr
    oip.hdr_checksum = ipv4_hdr_cksum(oip)
    ic = <pd_icmp_hdr *>(p + ETH_LEN + 20)
    ic.icmp_type = type
    ic.icmp_code = code
    memcpy(&ic.icmp_ident, &rest_be, 4)
    memcpy(p + ETH_LEN + 28, ip, quote)
    ic.icmp_cksum = icmp_cksum(ic, 8 + quote)
    tx_enqueue(w, vif.id, 0, e)


# ---- flows and policy -----------------------------------------------------------

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

# The flow of key k (created on a miss: policy of `pvif`, or NAT to a
# floating IP when nat_ip != 0: DNAT forward, SNAT reverse keyed on the
# translated tuple in `nat_vrf`). NULL: the table is full (counted).
cdef vr_flow *flow_get(vr_worker *w, const vr_flow_key *k, uint32_t sig, const vr_vif *pvif,
                       uint32_t nat_ip, uint16_t nat_vrf) noexcept nogil:
    cdef vr_router *r = w.r
    cdef int32_t fi = hash_lookup(r.flow_h, k, sig), ri
    cdef vr_flow_key rk
    cdef uint16_t mirror = 0, action
    cdef vr_flow *f
    if pd_likely(fi >= 0):
        return &r.flows[fi]
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
        ri = hash_add(r.flow_h, &rk, hash_key(&rk, sizeof(vr_flow_key)))
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


# ---- L3 validation --------------------------------------------------------------

# An IPv4 packet at l3 with avail bytes of frame after it: 0 or a drop reason.
cdef inline int ipv4_check(const pd_ipv4_hdr *ip, uint32_t avail, uint32_t total) noexcept nogil:
    # avail: bytes in the first segment (headers must be there); total: in the packet.
    if pd_unlikely(not ipv4_hdr_ok(ip, avail)):
        return DROP_INVALID_PACKET
    if pd_unlikely(pd_ntohs(ip.total_length) > total):
        return DROP_INVALID_PACKET
    if pd_unlikely(not ipv4_hdr_cksum_ok(ip)):
        return DROP_CHECKSUM_ERROR
    return 0

cdef inline int ipv6_check(const pd_ipv6_hdr *ip6, uint32_t avail, uint32_t total) noexcept nogil:
    if pd_unlikely(avail < PD_IPV6_HDR_LEN or (pd_load_u32(ip6) & PD_BE32(0xf0000000)) != PD_BE32(0x60000000)):
        return DROP_INVALID_PACKET
    if pd_unlikely(<uint32_t>pd_ntohs(ip6.payload_len) + PD_IPV6_HDR_LEN > total):
        return DROP_INVALID_PACKET
    return 0


# ---- tunnels: encapsulation -----------------------------------------------------

cdef inline void outer_ipv4(pd_ipv4_hdr *o, uint32_t total, uint8_t proto, uint32_t sip,
                            uint32_t dip) noexcept nogil:
    o.version_ihl = 0x45
    o.type_of_service = 0
    o.total_length = pd_htons(<uint16_t>total)
    o.packet_id = 0
    o.fragment_offset = PD_BE16(PD_IPV4_HDR_DF_FLAG)
    o.time_to_live = OUTER_TTL
    o.next_proto_id = proto
    o.hdr_checksum = 0
    o.src_addr = sip
    o.dst_addr = dip
    o.hdr_checksum = ipv4_hdr_cksum(o)

# Too big for the fabric once encapsulated: counted; an IPv4 packet with DF
# set gets an ICMP "fragmentation needed" back to the VM.
cdef void mtu_exceeded(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const uint8_t *l3,
                       uint8_t family, uint32_t fab_mtu, uint32_t overhead) noexcept nogil:
    cdef const pd_ipv4_hdr *ip = <const pd_ipv4_hdr *>l3
    if family == 4 and (ip.fragment_offset & PD_BE16(PD_IPV4_HDR_DF_FLAG)):
        icmp4_error(w, in_vif, m, ip, 3, 4, pd_htonl((fab_mtu - overhead) & 0xffff))
    drop(w, m, in_vif.id, DROP_MTU_EXCEEDED)

# L3 packet (eth + IP at the front of m) into MPLSoUDP / MPLSoGRE to nh.
cdef void encap_mpls(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const vr_nh *nh, uint32_t label,
                     uint32_t hash, uint8_t family, uint16_t vrf) noexcept nogil:
    cdef vr_router *r = w.r
    cdef vr_vif *fab = vr_load_vif(&r.vifs[r.fabric_vif]) if r.fabric_vif != VR_NO_VIF else NULL
    cdef uint32_t hlen = MPLSOUDP_HLEN if nh.encap == TUN_MPLSOUDP else MPLSOGRE_HLEN
    cdef uint32_t inner = m.pkt_len - ETH_LEN
    cdef uint8_t *p
    cdef pd_udp_hdr *u
    cdef uint8_t *l3 = <uint8_t *>m.buf_addr + m.data_off + ETH_LEN
    cdef uint32_t lse
    if pd_unlikely(fab == NULL):
        drop(w, m, in_vif.id, DROP_INVALID_IF)
        return
    if pd_unlikely(label == VR_NONE):
        drop(w, m, in_vif.id, DROP_INVALID_LABEL)
        return
    if pd_unlikely(inner + hlen - ETH_LEN > fab.mtu):
        mtu_exceeded(w, in_vif, m, l3, family, fab.mtu, hlen - ETH_LEN)
        return
    p = <uint8_t *>mbuf_prepend(m, <uint16_t>(hlen - ETH_LEN))
    if pd_unlikely(p == NULL):
        drop(w, m, in_vif.id, DROP_PUSH)
        return
    eth_write(p, nh.dmac, r.mac, PD_BE16(PD_ETHER_TYPE_IPV4))
    lse = mpls_lse_make(label, 0, True, OUTER_TTL)
    if nh.encap == TUN_MPLSOUDP:
        outer_ipv4(<pd_ipv4_hdr *>(p + ETH_LEN), inner + 32, PD_IPPROTO_UDP, nh.sip, nh.dip)
        u = <pd_udp_hdr *>(p + ETH_LEN + 20)
        # RFC 7510: the source port carries the inner flow's entropy (49152-65535).
        u.src_port = pd_htons(<uint16_t>(0xc000 | (hash & 0x3fff)))
        u.dst_port = PD_BE16(6635)
        u.dgram_len = pd_htons(<uint16_t>(inner + 12))
        u.dgram_cksum = 0
        memcpy(p + ETH_LEN + 28, &lse, 4)
        w.st.vrf[vrf][VRFS_UDP_MPLS_ENCAPS] += 1
    else:
        outer_ipv4(<pd_ipv4_hdr *>(p + ETH_LEN), inner + 28, PD_IPPROTO_GRE, nh.sip, nh.dip)
        pd_store_u16(p + ETH_LEN + 20, 0)
        pd_store_u16(p + ETH_LEN + 22, PD_BE16(PD_ETHER_TYPE_MPLS))
        memcpy(p + ETH_LEN + 24, &lse, 4)
        w.st.vrf[vrf][VRFS_GRE_MPLS_ENCAPS] += 1
    vif_tx(w, fab, m, hash)

# L2 frame (the whole of m) into VXLAN to nh with vni.
cdef void encap_vxlan(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const vr_nh *nh, uint32_t vni,
                      uint32_t hash, uint16_t vrf) noexcept nogil:
    cdef vr_router *r = w.r
    cdef vr_vif *fab = vr_load_vif(&r.vifs[r.fabric_vif]) if r.fabric_vif != VR_NO_VIF else NULL
    cdef uint32_t inner = m.pkt_len
    cdef uint8_t *p
    cdef pd_udp_hdr *u
    cdef uint8_t *l3
    cdef uint16_t in_id = in_vif.id if in_vif != NULL else VR_NO_VIF
    if pd_unlikely(fab == NULL):
        drop(w, m, in_id, DROP_INVALID_IF)
        return
    if pd_unlikely(vni == VR_NONE):
        drop(w, m, in_id, DROP_INVALID_VNI)
        return
    if pd_unlikely(inner + VXLAN_HLEN - ETH_LEN > fab.mtu):
        l3 = <uint8_t *>m.buf_addr + m.data_off + ETH_LEN
        if in_vif != NULL and pd_load_u16(l3 - 2) == PD_BE16(PD_ETHER_TYPE_IPV4) and inner >= ETH_LEN + 20:
            mtu_exceeded(w, in_vif, m, l3, 4, fab.mtu, VXLAN_HLEN)
        else:
            drop(w, m, in_id, DROP_MTU_EXCEEDED)
        return
    p = <uint8_t *>mbuf_prepend(m, VXLAN_HLEN)
    if pd_unlikely(p == NULL):
        drop(w, m, in_id, DROP_PUSH)
        return
    eth_write(p, nh.dmac, r.mac, PD_BE16(PD_ETHER_TYPE_IPV4))
    outer_ipv4(<pd_ipv4_hdr *>(p + ETH_LEN), inner + 36, PD_IPPROTO_UDP, nh.sip, nh.dip)
    u = <pd_udp_hdr *>(p + ETH_LEN + 20)
    u.src_port = pd_htons(<uint16_t>(0xc000 | (hash & 0x3fff)))
    u.dst_port = PD_BE16(4789)
    u.dgram_len = pd_htons(<uint16_t>(inner + 16))
    u.dgram_cksum = 0
    vxlan_hdr_set(<pd_vxlan_hdr *>(p + ETH_LEN + 28), vni)
    w.st.vrf[vrf][VRFS_VXLAN_ENCAPS] += 1
    vif_tx(w, fab, m, hash)


# ---- nexthops (L3) ----------------------------------------------------------------

# Forward an L3 packet (m starts with its Ethernet header, IP at +14) through
# nh. in_vif: where it came from (for errors). decrement: a routed hop
# (from a VM): TTL <= 1 is dropped with an ICMP time exceeded.
cdef void nh_output_l3(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const vr_nh *nh, uint32_t label,
                       uint32_t hash, uint8_t family, uint16_t vrf, bint decrement,
                       uint16_t mirror) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *l3 = <uint8_t *>m.buf_addr + m.data_off + ETH_LEN
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>l3
    cdef pd_ipv6_hdr *ip6 = <pd_ipv6_hdr *>l3
    cdef vr_vif *out
    cdef uint32_t depth = 0
    cdef pd_mbuf *c
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
    if pd_unlikely(mirror):
        out = vr_load_vif(&r.vifs[mirror])
        if out != NULL:
            c = pkt_copy(w, m)
            if c != NULL:
                vif_tx(w, out, c, hash)
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


# Route lookup in vrf for the destination of the packet at l3.
cdef inline int route_lookup(vr_router *r, uint16_t vrf, uint8_t family, const uint8_t *l3,
                             uint32_t *nh, uint32_t *label) noexcept nogil:
    cdef uint32_t v
    cdef uint64_t d
    cdef int rc
    if family == 4:
        rc = rt_lookup(vr_load_rt(&r.rt4[vrf]), l3 + 16, &v)
    else:
        rc = rt_lookup(vr_load_rt(&r.rt6[vrf]), l3 + 24, &v)
    if rc != 0:
        return -1
    d = pd_load_acquire_u64(&r.rtdata[v])
    nh[0] = <uint32_t>d
    label[0] = <uint32_t>(d >> 32)
    return 0


# ---- the L3 path of a packet from a VM (or a translated one) ---------------------

# m: Ethernet + IP; the IP header already validated. vif: the input vif.
cdef void l3_forward(vr_worker *w, vr_vif *vif, pd_mbuf *m, uint8_t family) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *l3 = <uint8_t *>m.buf_addr + m.data_off + ETH_LEN
    cdef uint32_t avail = m.data_len - ETH_LEN
    cdef vr_flow_key k
    cdef vr_flow *f
    cdef uint32_t hash, nh_id, label
    cdef uint16_t vrf = vif.vrf, mirror = 0
    cdef int l4off
    cdef const vr_nh *nh
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>l3
    l4off = key_fill(&k, l3, avail, vrf, family)
    if pd_unlikely(l4off < 0):
        drop(w, m, vif.id, DROP_INVALID_PACKET)
        return
    hash = key_hash(&k)
    if vif.flags & VIF_F_POLICY:
        if pd_unlikely(family == 4 and ipv4_is_fragment(ip)):
            drop(w, m, vif.id, DROP_FRAGMENTS)
            return
        f = flow_get(w, &k, hash, vif, 0, 0)
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
        if not l3_dest_flow(w, vif, m, nh, &k, hash, l3, l4off, avail, &mirror):
            return
    nh_output_l3(w, vif, m, nh, label, hash, family, vrf, True, mirror)


# Flow and policy of a destination VM vif with policy on (decap, VM->VM):
# False when the packet was dropped.
cdef inline bint l3_dest_flow(vr_worker *w, vr_vif *in_vif, pd_mbuf *m, const vr_nh *nh,
                              vr_flow_key *k, uint32_t hash, uint8_t *l3, int l4off,
                              uint32_t avail, uint16_t *mirror) noexcept nogil:
    cdef vr_vif *dv = vr_load_vif(&w.r.vifs[nh.vif])
    cdef vr_flow *f
    cdef uint16_t in_id = in_vif.id if in_vif != NULL else VR_NO_VIF
    if dv == NULL or not (dv.flags & VIF_F_POLICY):
        return True
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


# ---- L2 (bridging) -----------------------------------------------------------------

cdef inline int32_t bridge_find(vr_router *r, uint16_t vrf, const uint8_t *mac) noexcept nogil:
    cdef uint32_t key[2]
    key[0] = vrf
    key[1] = 0
    memcpy((<uint8_t *>key) + 2, mac, 6)
    return hash_lookup(r.bridge, key, hash_key(key, 8))

# A copy of the frame to every L2 vif of the VRF but the input one, and (when
# it came from a VM) to the VRF's flood nexthop (head-end replication to the
# VXLAN peers). The last destination takes m itself.
cdef void flood(vr_worker *w, vr_vif *in_vif, uint16_t in_id, pd_mbuf *m, uint16_t vrf,
                uint32_t hash) noexcept nogil:
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

# Bridge the frame at the front of m in vrf. in_vif: the VM it came from, or
# NULL when it came out of a VXLAN tunnel (in_id: the fabric vif).
cdef void bridge_forward(vr_worker *w, vr_vif *in_vif, uint16_t in_id, pd_mbuf *m,
                         uint16_t vrf) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef int32_t bi
    cdef uint64_t bv
    cdef const vr_nh *nh
    cdef vr_vif *out
    cdef vr_flow_key k
    cdef uint32_t hash
    cdef uint16_t et = pd_load_u16(p + 12), mirror = 0
    cdef int l4off = -1
    memset(&k, 0, sizeof(k))
    if et == PD_BE16(PD_ETHER_TYPE_IPV4) and m.data_len >= ETH_LEN + 20:
        l4off = key_fill(&k, p + ETH_LEN, m.data_len - ETH_LEN, vrf, 4)
    elif et == PD_BE16(PD_ETHER_TYPE_IPV6) and m.data_len >= ETH_LEN + 40:
        l4off = key_fill(&k, p + ETH_LEN, m.data_len - ETH_LEN, vrf, 6)
    if l4off >= 0:
        hash = key_hash(&k)
    else:
        hash = hash_key(p, 12)
    if p[0] & 1:
        flood(w, in_vif, in_id, m, vrf, hash)
        return
    bi = bridge_find(r, vrf, p)
    if bi < 0:
        if in_vif != NULL:
            flood(w, in_vif, in_id, m, vrf, hash)     # unknown unicast from a VM
        else:
            drop(w, m, in_id, DROP_L2_NO_ROUTE)
        return
    bv = r.bridge_val[bi]
    nh = vr_load_nh(&r.nhs[<uint32_t>bv]) if <uint32_t>bv < VR_MAX_NHS else NULL
    if pd_unlikely(nh == NULL):
        drop(w, m, in_id, DROP_INVALID_NH)
        return
    if nh.type == NH_ENCAP:
        out = vr_load_vif(&r.vifs[nh.vif])
        if pd_unlikely(out == NULL):
            drop(w, m, in_id, DROP_INVALID_IF)
            return
        if l4off >= 0 and (out.flags & VIF_F_POLICY):
            if not l3_dest_flow(w, in_vif, m, nh, &k, hash, p + ETH_LEN, l4off,
                                m.data_len - ETH_LEN, &mirror):
                return
        w.st.vrf[vrf][VRFS_L2_ENCAPS] += 1
        vif_tx(w, out, m, hash)
    elif nh.type == NH_TUNNEL and nh.encap == TUN_VXLAN:
        if in_vif == NULL:
            drop(w, m, in_id, DROP_INVALID_NH)        # no tunnel-to-tunnel
        elif not (nh.flags & NH_F_VALID):
            w.st.vrf[vrf][VRFS_RESOLVES] += 1
            trap(w, m, in_id, TRAP_RESOLVE)
        else:
            encap_vxlan(w, in_vif, m, nh, <uint32_t>(bv >> 32), hash, vrf)
    elif nh.type == NH_DISCARD:
        w.st.vrf[vrf][VRFS_DISCARDS] += 1
        drop(w, m, in_id, DROP_DISCARD)
    else:
        drop(w, m, in_id, DROP_INVALID_NH)


# ---- proxy ARP and neighbour advertisement ------------------------------------

cdef void arp_from_vm(vr_worker *w, vr_vif *vif, pd_mbuf *m) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef pd_arp_hdr *a = <pd_arp_hdr *>(p + ETH_LEN)
    cdef uint32_t nh, label, tip, sip
    cdef uint8_t dst4[20]
    if pd_unlikely(m.data_len < ETH_LEN + 28 or a.arp_hardware != PD_BE16(1)
                   or a.arp_protocol != PD_BE16(PD_ETHER_TYPE_IPV4) or a.arp_hlen != 6 or a.arp_plen != 4):
        drop(w, m, vif.id, DROP_INVALID_ARP)
        return
    if not (vif.flags & VIF_F_L3):
        bridge_forward(w, vif, vif.id, m, vif.vrf)
        return
    tip = a.arp_data.arp_tip
    sip = a.arp_data.arp_sip
    if a.arp_opcode != PD_BE16(1) or tip == sip or tip == vif.ip4:
        # Replies and gratuitous ARP: nothing to answer (L2+L3 vifs bridge them).
        if vif.flags & VIF_F_L2:
            bridge_forward(w, vif, vif.id, m, vif.vrf)
        else:
            drop(w, m, vif.id, DROP_INVALID_ARP)
        return
    memcpy(dst4 + 16, &tip, 4)
    if route_lookup(r, vif.vrf, 4, dst4, &nh, &label) != 0:
        if vif.flags & VIF_F_L2:
            bridge_forward(w, vif, vif.id, m, vif.vrf)
        else:
            drop(w, m, vif.id, DROP_INVALID_ARP)
        return
    # The reply, in place: to the asker, from the vRouter's MAC.
    memcpy(p, p + 6, 6)
    memcpy(p + 6, r.mac, 6)
    a.arp_opcode = PD_BE16(2)
    memcpy(a.arp_data.arp_tha.addr_bytes, a.arp_data.arp_sha.addr_bytes, 6)
    memcpy(a.arp_data.arp_sha.addr_bytes, r.mac, 6)
    a.arp_data.arp_tip = sip
    a.arp_data.arp_sip = tip
    w.st.vrf[vif.vrf][VRFS_ARP_PROXY] += 1
    tx_enqueue(w, vif.id, 0, m)

# An IPv6 neighbour solicitation from a VM for an address routed in its VRF:
# answer with an advertisement carrying the vRouter's MAC. True if handled.
cdef bint nd_from_vm(vr_worker *w, vr_vif *vif, pd_mbuf *m, int l4off) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef pd_ipv6_hdr *ip6 = <pd_ipv6_hdr *>(p + ETH_LEN)
    cdef pd_nd_ns_hdr *ns
    cdef pd_nd_na_hdr *na
    cdef uint8_t tgt[40]
    cdef uint32_t nh, label, i, unspec = 1
    if l4off != PD_IPV6_HDR_LEN or <uint32_t>m.data_len < ETH_LEN + PD_IPV6_HDR_LEN + 24:
        return False
    ns = <pd_nd_ns_hdr *>(p + ETH_LEN + PD_IPV6_HDR_LEN)
    if ns.icmp6_type != 135 or ns.icmp6_code != 0 or ip6.hop_limits != 255:
        return False
    memcpy(tgt + 24, ns.target, 16)
    if route_lookup(r, vif.vrf, 6, tgt, &nh, &label) != 0:
        return False
    if m.buf_len - m.data_off < ETH_LEN + PD_IPV6_HDR_LEN + 32:
        return False
    for i in range(16):
        if ip6.src_addr[i]:
            unspec = 0
    memcpy(p, p + 6, 6)
    memcpy(p + 6, r.mac, 6)
    if unspec:
        # DAD: answer to all-nodes (RFC 4861 7.2.4).
        memset(ip6.dst_addr, 0, 16)
        ip6.dst_addr[0] = 0xff
        ip6.dst_addr[1] = 0x02
        ip6.dst_addr[15] = 1
        p[0] = 0x33
        p[1] = 0x33
        p[2] = 0
        p[3] = 0
        p[4] = 0
        p[5] = 1
    else:
        memcpy(ip6.dst_addr, ip6.src_addr, 16)
    memcpy(ip6.src_addr, tgt + 24, 16)
    ip6.payload_len = PD_BE16(32)
    ip6.proto = PD_IPPROTO_ICMPV6
    ip6.hop_limits = 255
    na = <pd_nd_na_hdr *>ns
    na.icmp6_type = 136
    na.icmp6_code = 0
    na.nd_flags = PD_BE32(0xe0000000 if not unspec else 0xa0000000)   # R S O (no S for DAD)
    # target stays; one option: target link-layer address.
    (<uint8_t *>na)[24] = 2
    (<uint8_t *>na)[25] = 1
    memcpy((<uint8_t *>na) + 26, r.mac, 6)
    m.data_len = ETH_LEN + PD_IPV6_HDR_LEN + 32
    m.pkt_len = m.data_len
    na.icmp6_cksum = ipv6_l4_cksum(ip6, na, 32, PD_IPPROTO_ICMPV6)
    w.st.vrf[vif.vrf][VRFS_ND_PROXY] += 1
    tx_enqueue(w, vif.id, 0, m)
    return True


# ---- per input vif type -------------------------------------------------------------

cdef void virtual_rx(vr_worker *w, vr_vif *vif, pd_mbuf *m) noexcept nogil:
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef uint16_t et
    cdef uint8_t family
    cdef int rc, l4off
    cdef uint8_t proto
    if pd_unlikely(m.data_len < ETH_LEN):
        drop(w, m, vif.id, DROP_INVALID_PACKET)
        return
    et = pd_load_u16(p + 12)
    if pd_unlikely(et == PD_BE16(PD_ETHER_TYPE_VLAN) or et == PD_BE16(PD_ETHER_TYPE_QINQ)):
        drop(w, m, vif.id, DROP_VLAN)
        return
    if et == PD_BE16(PD_ETHER_TYPE_ARP):
        arp_from_vm(w, vif, m)
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


cdef void to_vhost(vr_worker *w, uint16_t in_id, pd_mbuf *m) noexcept nogil:
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

# MPLS (after UDP or GRE) at offset off: label -> nh -> the VM.
cdef void mpls_decap(vr_worker *w, vr_vif *fab, pd_mbuf *m, uint32_t off, uint32_t tun) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef uint32_t lse, label, nh_id, avail
    cdef const vr_nh *nh
    cdef vr_vif *out
    cdef uint8_t *l3
    cdef uint8_t family
    cdef int rc, l4off
    cdef vr_flow_key k
    cdef uint32_t hash
    cdef uint16_t mirror = 0
    cdef pd_mbuf *c
    if pd_unlikely(m.data_len < off + 4 + 20):
        drop(w, m, fab.id, DROP_INVALID_PACKET)
        return
    lse = pd_ntohl(pd_load_u32(p + off))
    label = lse >> 12
    if pd_unlikely(label >= r.mpls_max):
        drop(w, m, fab.id, DROP_INVALID_LABEL)
        return
    nh_id = r.mpls[label]
    if pd_unlikely(nh_id == VR_NONE):
        drop(w, m, fab.id, DROP_INVALID_LABEL)
        return
    if pd_unlikely(not (lse & 0x100)):
        drop(w, m, fab.id, DROP_INVALID_LABEL)         # a label stack: not ours
        return
    nh = vr_load_nh(&r.nhs[nh_id]) if nh_id < VR_MAX_NHS else NULL
    if pd_unlikely(nh == NULL):
        drop(w, m, fab.id, DROP_INVALID_NH)
        return
    l3 = p + off + 4
    avail = m.data_len - off - 4
    if (l3[0] >> 4) == 4:
        family = 4
        rc = ipv4_check(<pd_ipv4_hdr *>l3, avail, m.pkt_len - off - 4)
    elif (l3[0] >> 4) == 6:
        family = 6
        rc = ipv6_check(<pd_ipv6_hdr *>l3, avail, m.pkt_len - off - 4)
    else:
        rc = DROP_INVALID_PACKET
    if pd_unlikely(rc != 0):
        drop(w, m, fab.id, rc)
        return
    if nh.type != NH_ENCAP:
        if nh.type == NH_DISCARD:
            drop(w, m, fab.id, DROP_DISCARD)
        else:
            drop(w, m, fab.id, DROP_INVALID_NH)
        return
    out = vr_load_vif(&r.vifs[nh.vif])
    if pd_unlikely(out == NULL):
        drop(w, m, fab.id, DROP_INVALID_IF)
        return
    if pd_unlikely((family == 4 and (<pd_ipv4_hdr *>l3).time_to_live == 0)
                   or (family == 6 and (<pd_ipv6_hdr *>l3).hop_limits == 0)):
        drop(w, m, fab.id, DROP_TTL_EXCEEDED)
        return
    if tun == TUN_MPLSOUDP:
        w.st.vrf[out.vrf][VRFS_UDP_MPLS_DECAPS] += 1
    else:
        w.st.vrf[out.vrf][VRFS_GRE_MPLS_DECAPS] += 1
    l4off = key_fill(&k, l3, avail, out.vrf, family)
    if pd_unlikely(l4off < 0):
        drop(w, m, fab.id, DROP_INVALID_PACKET)
        return
    hash = key_hash(&k)
    if out.flags & VIF_F_POLICY:
        if not l3_dest_flow(w, fab, m, nh, &k, hash, l3, l4off, avail, &mirror):
            return
    # Outer headers off; the VM's L2 header in their place (trailing bytes
    # past the inner packet, Ethernet padding, go too).
    mbuf_adj(m, <uint16_t>(off + 4 - ETH_LEN))
    if family == 4:
        rc = pd_ntohs((<pd_ipv4_hdr *>l3).total_length)
    else:
        rc = pd_ntohs((<pd_ipv6_hdr *>l3).payload_len) + PD_IPV6_HDR_LEN
    if m.nb_segs == 1 and <uint32_t>rc + ETH_LEN < m.data_len:
        m.data_len = <uint16_t>(rc + ETH_LEN)
        m.pkt_len = m.data_len
    eth_write(<uint8_t *>m.buf_addr + m.data_off, nh.dmac, r.mac,
              PD_BE16(PD_ETHER_TYPE_IPV4) if family == 4 else PD_BE16(PD_ETHER_TYPE_IPV6))
    w.st.vrf[out.vrf][VRFS_ENCAPS] += 1
    if pd_unlikely(mirror):
        c = pkt_copy(w, m)
        if c != NULL and vr_load_vif(&r.vifs[mirror]) != NULL:
            vif_tx(w, vr_load_vif(&r.vifs[mirror]), c, hash)
        elif c != NULL:
            pktmbuf_free(c)
    vif_tx(w, out, m, hash)

cdef void vxlan_decap(vr_worker *w, vr_vif *fab, pd_mbuf *m, uint32_t off) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef const pd_vxlan_hdr *vx
    cdef uint32_t vni, key
    cdef int32_t si
    cdef uint16_t vrf
    if pd_unlikely(m.data_len < off + 8 + ETH_LEN):
        drop(w, m, fab.id, DROP_INVALID_PACKET)
        return
    vx = <const pd_vxlan_hdr *>(p + off)
    if pd_unlikely(not vxlan_vni_valid(vx)):
        drop(w, m, fab.id, DROP_INVALID_VNI)
        return
    key = vxlan_get_vni(vx)
    si = hash_lookup(r.vxlan, &key, hash_key(&key, 4))
    if pd_unlikely(si < 0):
        drop(w, m, fab.id, DROP_INVALID_VNI)
        return
    vrf = <uint16_t>r.vxlan_vrf[si]
    w.st.vrf[vrf][VRFS_VXLAN_DECAPS] += 1
    mbuf_adj(m, <uint16_t>(off + 8))
    bridge_forward(w, NULL, fab.id, m, vrf)

# A packet for a floating IP: DNAT to the VM, through the flow table.
cdef void fip_rx(vr_worker *w, vr_vif *fab, pd_mbuf *m, int32_t si) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef pd_ipv4_hdr *ip = <pd_ipv4_hdr *>(p + ETH_LEN)
    cdef vr_vif *vm = vr_load_vif(&r.vifs[r.fip_vif[si]])
    cdef vr_flow_key k
    cdef vr_flow *f
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
    hash = key_hash(&k)
    f = flow_get(w, &k, hash, vm, vm.ip4, vm.vrf)
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

cdef void fabric_rx(vr_worker *w, vr_vif *vif, pd_mbuf *m) noexcept nogil:
    cdef vr_router *r = w.r
    cdef uint8_t *p = <uint8_t *>m.buf_addr + m.data_off
    cdef uint16_t et
    cdef pd_ipv4_hdr *ip
    cdef pd_udp_hdr *u
    cdef const pd_gre_hdr *g
    cdef uint32_t hl, avail, dst
    cdef int32_t si
    cdef pd_mbuf *c
    if pd_unlikely(m.data_len < ETH_LEN):
        drop(w, m, vif.id, DROP_INVALID_PACKET)
        return
    et = pd_load_u16(p + 12)
    if et == PD_BE16(PD_ETHER_TYPE_IPV4):
        ip = <pd_ipv4_hdr *>(p + ETH_LEN)
        avail = m.data_len - ETH_LEN
        if pd_unlikely(not ipv4_hdr_ok(ip, avail)):
            drop(w, m, vif.id, DROP_INVALID_PACKET)
            return
        dst = ip.dst_addr
        if dst == r.underlay_ip:
            hl = ipv4_hdr_len(ip)
            if ip.next_proto_id == PD_IPPROTO_UDP and avail >= hl + 8:
                u = <pd_udp_hdr *>(<uint8_t *>ip + hl)
                if u.dst_port == PD_BE16(6635) or u.dst_port == PD_BE16(4789):
                    if pd_unlikely(pd_ntohs(ip.total_length) > avail):
                        drop(w, m, vif.id, DROP_INVALID_PACKET)
                        return
                    if pd_unlikely(not ipv4_hdr_cksum_ok(ip)):
                        drop(w, m, vif.id, DROP_CHECKSUM_ERROR)
                        return
                    if pd_unlikely(ipv4_is_fragment(ip)):
                        drop(w, m, vif.id, DROP_FRAGMENTS)
                        return
                    if u.dst_port == PD_BE16(6635):
                        mpls_decap(w, vif, m, ETH_LEN + hl + 8, TUN_MPLSOUDP)
                    else:
                        vxlan_decap(w, vif, m, ETH_LEN + hl + 8)
                    return
            elif ip.next_proto_id == PD_IPPROTO_GRE and avail >= hl + 4:
                g = <const pd_gre_hdr *>(<uint8_t *>ip + hl)
                if g.proto == PD_BE16(PD_ETHER_TYPE_MPLS):
                    if pd_unlikely(pd_ntohs(ip.total_length) > avail or not gre_hdr_ok(g)):
                        drop(w, m, vif.id, DROP_INVALID_PACKET)
                        return
                    if pd_unlikely(not ipv4_hdr_cksum_ok(ip)):
                        drop(w, m, vif.id, DROP_CHECKSUM_ERROR)
                        return
                    if pd_unlikely(ipv4_is_fragment(ip)):
                        drop(w, m, vif.id, DROP_FRAGMENTS)
                        return
                    mpls_decap(w, vif, m, ETH_LEN + hl + gre_hdr_len(g), TUN_MPLSOGRE)
                    return
        elif r.fip.count:
            si = hash_lookup(r.fip, &dst, hash_key(&dst, 4))
            if si >= 0:
                fip_rx(w, vif, m, si)
                return
    elif et == PD_BE16(PD_ETHER_TYPE_ARP):
        # The host answers ARP for the underlay address; the agent learns neighbours.
        if r.agent_vif != VR_NO_VIF:
            c = pkt_copy(w, m)
            if c != NULL:
                trap(w, c, vif.id, TRAP_ARP)
    to_vhost(w, vif.id, m)


# From the agent: m.port is the output vif.
cdef void agent_tx(vr_worker *w, pd_mbuf *m) noexcept nogil:
    cdef vr_vif *v = vr_load_vif(&w.r.vifs[m.port]) if m.port < VR_MAX_VIFS else NULL
    if v == NULL or v.type == VIF_AGENT:
        drop(w, m, VR_NO_VIF, DROP_INVALID_IF)
        return
    tx_enqueue(w, v.id, 0, m)


cdef void vr_process_burst(vr_worker *w, uint16_t vif_id, uint16_t queue, pd_mbuf **pkts,
                           uint32_t n) noexcept nogil:
    cdef vr_vif *vif = vr_load_vif(&w.r.vifs[vif_id])
    cdef uint32_t i
    cdef uint64_t bytes = 0
    cdef uint64_t *q = w.st.vifq[vif_id][queue]
    cdef pd_mbuf *m
    if pd_unlikely(vif == NULL):
        for i in range(n):
            drop(w, pkts[i], vif_id, DROP_INVALID_IF)
        return
    for i in range(n):
        bytes += pkts[i].pkt_len
    q[VIFQ_RX_PACKETS] += n
    q[VIFQ_RX_BYTES] += bytes
    for i in range(n):
        m = pkts[i]
        if i + 1 < n:
            pd_prefetch0(<char *>pkts[i + 1].buf_addr + pkts[i + 1].data_off)
        if vif.type == VIF_VIRTUAL:
            virtual_rx(w, vif, m)
        elif vif.type == VIF_FABRIC:
            fabric_rx(w, vif, m)
        elif vif.type == VIF_VHOST:
            # Host -> fabric: pass-through, untouched.
            if w.r.fabric_vif != VR_NO_VIF and vr_load_vif(&w.r.vifs[w.r.fabric_vif]) != NULL:
                tx_enqueue(w, w.r.fabric_vif, 0, m)
            else:
                drop(w, m, vif_id, DROP_INVALID_IF)
        else:
            drop(w, m, vif_id, DROP_INVALID_IF)
    tx_flush(w)


cdef uint32_t vr_worker_poll(vr_worker *w) noexcept nogil:
    cdef vr_router *r = w.r
    cdef vr_pollset *ps = vr_load_ps(&w.ps)
    cdef pd_mbuf *pkts[64]
    cdef uint32_t i, j, nb, total = 0
    cdef vr_vif *vif
    for i in range(ps.n if ps != NULL else 0):
        vif = vr_load_vif(&r.vifs[ps.p[i].vif])
        if vif == NULL or vif.fp == NULL:
            continue
        nb = fp_rx_burst(vif.fp, ps.p[i].queue, pkts, <uint16_t>w.burst)
        w.polls += 1
        if nb == 0:
            w.empty_polls += 1
            continue
        total += nb
        vr_process_burst(w, ps.p[i].vif, ps.p[i].queue, pkts, nb)
    if w.owns_inject and r.inject != NULL:
        # The inject ring is single-consumer: one worker (owns_inject) drains it.
        nb = ring_sc_dequeue_burst(r.inject, <void **>pkts, 32)
        for j in range(nb):
            agent_tx(w, pkts[j])
        if nb:
            tx_flush(w)
    return total


cdef int vr_worker_main(void *arg) noexcept nogil:
    cdef vr_worker *w = <vr_worker *>arg
    pd_store_release_int(&w.running, 1)
    while not pd_load_relaxed_int(&w.quit):
        w.now = pd_rdtsc()
        vr_worker_poll(w)
        # Quiescent point: nothing of the tables is held across it. Pairs
        # with the acquire load in Router.synchronize.
        pd_store_release_u64(&w.epoch, w.epoch + 1)
    pd_store_release_int(&w.running, 0)
    return 0


# ==== Python owners (control thread) ==========================================

import time as _time
from pypdk.errors import ResourceError as _ResourceError
from apps.vrouter.dp import tables as _tables
from pypdk.ring.ring cimport PD_RING_F_SC_DEQ, PD_RING_F_SP_ENQ
from pypdk.mempool.mempool cimport Mempool

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int nanosleep(const timespec *req, timespec *rem)


cdef class Worker:
    """One forwarding context: its loop state, counters and tx buffers.

    `lcore_function()` runs the loop on a worker lcore; `Router.poll()` runs
    one round of the internal poller on the calling thread (tests).
    """
    cdef vr_worker *w
    cdef readonly Router router
    cdef readonly int lcore

    def __cinit__(self, Router router, int lcore=-1, int burst=32):
        self.w = <vr_worker *>calloc(1, sizeof(vr_worker))
        if self.w == NULL:
            raise MemoryError()
        self.w.st = <vr_stats *>calloc(1, sizeof(vr_stats))
        if self.w.st == NULL:
            raise MemoryError()
        self.w.r = router.r
        self.w.burst = min(max(burst, 1), 64)
        self.router = router
        self.lcore = lcore

    def __dealloc__(self):
        if self.w != NULL:
            free(<void *>self.w.ps)
            free(self.w.st)
            free(self.w)
            self.w = NULL

    def lcore_function(self):
        return lcore_function_new(vr_worker_main, self.w, self)

    def stop(self):
        pd_store_release_int(&self.w.quit, 1)

    def stats(self):
        return {"polls": self.w.polls, "empty_polls": self.w.empty_polls,
                "flows_created": self.w.st.flows_created, "traps": self.w.st.traps}

    @property
    def running(self):
        return bool(pd_load_acquire_int(&self.w.running))

    cdef void set_pollset(self, list pairs):
        cdef vr_pollset *ps = <vr_pollset *>calloc(1, sizeof(vr_pollset))
        cdef vr_pollset *old
        cdef uint32_t i = 0
        for vif, q in pairs[:VR_MAX_POLL]:
            ps.p[i].vif = vif
            ps.p[i].queue = q
            i += 1
        ps.n = i
        old = self.w.ps
        vr_store_ps(&self.w.ps, ps)
        self.router._retire(<uintptr_t>old)


cdef class Router:
    """The forwarding state (vr_router) and its writers. Not thread-safe:
    one control thread calls these (apps/vrouter/ctl/ops.py)."""
    cdef vr_router *r
    cdef readonly object pool
    cdef readonly list workers          # lcore workers
    cdef readonly Worker poller         # the Python-thread poller (tests, benchmarks)
    cdef list retired                   # addresses to free after the next synchronize
    cdef dict ports                     # vif id -> EthDev (to keep them alive)

    def __cinit__(self, PktMbufPool pool not None, uint32_t mpls_max=1 << 20, uint32_t flow_max=1 << 16,
                  uint32_t bridge_max=1 << 16, uint32_t vxlan_max=1 << 14, uint32_t fip_max=VR_MAX_FIPS,
                  uint32_t ring_size=1024):
        cdef uint32_t i
        self.r = <vr_router *>calloc(1, sizeof(vr_router))
        if self.r == NULL:
            raise MemoryError()
        self.r.fabric_vif = self.r.vhost_vif = self.r.agent_vif = VR_NO_VIF
        self.r.pool = (<Mempool>pool).mp
        self.r.mpls_max = mpls_max
        self.r.mpls = <uint32_t *>malloc(mpls_max * sizeof(uint32_t))
        self.r.flow_max = flow_max
        self.r.flows = <vr_flow *>calloc(flow_max * 2 + 64, sizeof(vr_flow))
        self.r.flow_h = hash_create(flow_max, sizeof(vr_flow_key))
        self.r.bridge = hash_create(bridge_max, 8)
        self.r.bridge_val = <uint64_t *>calloc(self.r.bridge.size if self.r.bridge else 1, 8)
        self.r.vxlan = hash_create(vxlan_max, 4)
        self.r.vxlan_vrf = <uint32_t *>calloc(self.r.vxlan.size if self.r.vxlan else 1, 4)
        self.r.fip = hash_create(fip_max, 4)
        self.r.fip_vif = <uint32_t *>calloc(self.r.fip.size if self.r.fip else 1, 4)
        self.r.trap = ring_create(b"vr_trap", ring_size, PD_RING_F_SC_DEQ)
        self.r.inject = ring_create(b"vr_inject", ring_size, PD_RING_F_SC_DEQ)
        if (self.r.mpls == NULL or self.r.flows == NULL or self.r.flow_h == NULL or self.r.bridge == NULL
                or self.r.vxlan == NULL or self.r.fip == NULL or self.r.trap == NULL or self.r.inject == NULL):
            self._free()
            raise MemoryError("vrouter tables")
        if self.r.flow_h.size > flow_max * 2 + 64:
            # flows[] is indexed by the hash slot.
            free(self.r.flows)
            self.r.flows = <vr_flow *>calloc(self.r.flow_h.size, sizeof(vr_flow))
        for i in range(mpls_max):
            self.r.mpls[i] = VR_NONE
        self.r.flow_timeout = 30 * 3_000_000_000
        self.r.flow_closed_timeout = 3_000_000_000
        self.pool = pool
        self.workers = []
        self.retired = []
        self.ports = {}
        self.poller = Worker(self)
        self.poller.w.owns_inject = 1

    cdef _free(self):
        cdef uint32_t i
        cdef pd_mbuf *m
        if self.r == NULL:
            return
        cdef pd_ring *rings[2]
        rings[0] = self.r.trap
        rings[1] = self.r.inject
        for i in range(2):
            if rings[i] != NULL:
                while ring_sc_dequeue_burst(rings[i], <void **>&m, 1) == 1:
                    pktmbuf_free(m)
                ring_free(rings[i])
        for i in range(VR_MAX_VIFS):
            free(self.r.vifs[i])
        for i in range(VR_MAX_NHS):
            free(self.r.nhs[i])
        for i in range(VR_MAX_VRFS):
            free(self.r.rt4[i])
            free(self.r.rt6[i])
        free(self.r.mpls)
        free(self.r.flows)
        hash_free(self.r.flow_h)
        hash_free(self.r.bridge)
        free(self.r.bridge_val)
        hash_free(self.r.vxlan)
        free(self.r.vxlan_vrf)
        hash_free(self.r.fip)
        free(self.r.fip_vif)
        free(self.r)
        self.r = NULL

    def close(self):
        """Free every table (after the lcores stopped); trapped mbufs go back to the pool."""
        self.synchronize()
        self._free()

    def __dealloc__(self):
        self._free()

    # ---- quiescence --------------------------------------------------------

    def _retire(self, uintptr_t addr):
        if addr:
            self.retired.append(addr)

    def synchronize(self, double timeout=5.0):
        """Wait until every running lcore worker passed a quiescent point, then
        free what was retired before the call."""
        cdef Worker wk
        cdef list pending = [(wk, pd_load_acquire_u64(&wk.w.epoch)) for wk in self.workers]
        cdef double end = _time.monotonic() + timeout
        cdef timespec ts
        ts.tv_sec = 0
        ts.tv_nsec = 20000
        retired, self.retired = self.retired, []
        while pending:
            pending = [(wk, e) for wk, e in pending
                       if pd_load_acquire_int(&wk.w.running) and pd_load_acquire_u64(&wk.w.epoch) == e]
            if pending:
                if _time.monotonic() > end:
                    self.retired = retired + self.retired
                    raise _ResourceError("a forwarding lcore did not pass a quiescent point in "
                                         f"{timeout:g} s", "is it stuck? stop the app")
                with nogil:
                    nanosleep(&ts, NULL)
        for a in retired:
            free(<void *><uintptr_t>a)

    # ---- workers -----------------------------------------------------------

    def add_worker(self, int lcore, int burst=32):
        cdef Worker wk = Worker(self, lcore, burst)
        self.workers.append(wk)
        self.r.tx_locking = len(self.workers) > 1
        (<Worker>self.workers[0]).w.owns_inject = 1
        self.poller.w.owns_inject = 0
        return wk

    def rebalance(self):
        """Deal every vif's rx queues to the lcore workers round-robin (the
        Python poller polls them all); publish the poll sets."""
        cdef Worker wk
        cdef vr_vif *v
        pairs = []
        for i in range(VR_MAX_VIFS):
            v = self.r.vifs[i]
            if v != NULL and v.fp != NULL:
                for q in range(v.fp.nb_rxq):
                    pairs.append((i, q))
        self.poller.set_pollset(pairs)
        n = len(self.workers)
        for k, wk in enumerate(self.workers):
            wk.set_pollset(pairs[k::n])
        self.synchronize()
        return {wk.lcore: pairs[k::n] for k, wk in enumerate(self.workers)}

    def poll(self, int rounds=1):
        """Run `rounds` rounds of the Python-thread poller; packets received."""
        cdef uint64_t total = 0
        cdef int i
        cdef vr_worker *w = self.poller.w
        with nogil:
            for i in range(rounds):
                w.now = pd_rdtsc()
                total += vr_worker_poll(w)
        return total

    def poll_until_idle(self, int idle_rounds=3, int max_rounds=1000000):
        """Poll until `idle_rounds` rounds in a row bring nothing; packets received."""
        total = idle = 0
        for _ in range(max_rounds):
            got = self.poll()
            total += got
            idle = 0 if got else idle + 1
            if idle >= idle_rounds:
                break
        return total

    # ---- the vRouter itself ---------------------------------------------------

    def set_router(self, bytes mac, uint32_t underlay_be, uint32_t icmp_src_be):
        memcpy(self.r.mac, <const char *>mac, 6)
        self.r.underlay_ip = underlay_be
        self.r.icmp_src = icmp_src_be

    def set_special(self, int fabric, int vhost, int agent):
        self.r.fabric_vif = fabric if fabric >= 0 else VR_NO_VIF
        self.r.vhost_vif = vhost if vhost >= 0 else VR_NO_VIF
        self.r.agent_vif = agent if agent >= 0 else VR_NO_VIF

    def set_flow_timeouts(self, double idle_s, double closed_s, double tsc_hz):
        self.r.flow_timeout = <uint64_t>(idle_s * tsc_hz)
        self.r.flow_closed_timeout = <uint64_t>(closed_s * tsc_hz)

    # ---- vifs ----------------------------------------------------------------

    def vif_set(self, int vid, int vtype, EthDev port, int vrf, bytes mac, uint32_t ip4_be,
                bytes ip6, int mtu, int flags, int nb_txq, list rules):
        """Publish vif `vid` (rules: dicts from ops.policy_rule)."""
        cdef vr_vif *v = <vr_vif *>calloc(1, sizeof(vr_vif))
        cdef vr_vif *old
        cdef vr_policy_rule *rl
        cdef bytes b
        if v == NULL:
            raise MemoryError()
        v.id = vid
        v.type = vtype
        v.vrf = vrf
        v.flags = flags
        v.mtu = mtu
        v.nb_txq = max(nb_txq, 1)
        memcpy(v.mac, <const char *>mac, 6)
        v.ip4 = ip4_be
        if ip6:
            memcpy(v.ip6, <const char *>ip6, 16)
            v.has_ip6 = 1
        if port is not None:
            v.fp = eth_port_fp(port.port_id)
            v.port_id = port.port_id
            self.ports[vid] = port
        else:
            self.ports.pop(vid, None)
        v.nb_rules = min(len(rules), VR_MAX_POLICY)
        for i in range(v.nb_rules):
            d = rules[i]
            rl = &v.rules[i]
            rl.family = d["family"]
            rl.proto = d["proto"]
            rl.action = d["action"]
            rl.mirror_vif = d["mirror_vif"]
            rl.src_plen = d["src_plen"]
            rl.dst_plen = d["dst_plen"]
            b = d["src"]
            memcpy(rl.src, <const char *>b, len(b))
            b = d["dst"]
            memcpy(rl.dst, <const char *>b, len(b))
            rl.sport_lo, rl.sport_hi = d["sport"]
            rl.dport_lo, rl.dport_hi = d["dport"]
        old = self.r.vifs[vid]
        vr_store_vif(&self.r.vifs[vid], v)
        self._retire(<uintptr_t>old)

    def vif_clear(self, int vid):
        old = <uintptr_t>self.r.vifs[vid]
        vr_store_vif(&self.r.vifs[vid], NULL)
        self._retire(old)
        self.ports.pop(vid, None)

    # ---- nexthops ------------------------------------------------------------

    def nh_set(self, uint32_t nid, int ntype, int flags, int vif, int encap, uint32_t sip_be,
               uint32_t dip_be, bytes dmac, list members, list vnis):
        cdef vr_nh *n = <vr_nh *>calloc(1, sizeof(vr_nh))
        cdef vr_nh *old
        if n == NULL:
            raise MemoryError()
        n.id = nid
        n.type = ntype
        n.flags = flags
        n.vif = vif if vif >= 0 else VR_NO_VIF
        n.encap = encap
        n.sip = sip_be
        n.dip = dip_be
        if dmac:
            memcpy(n.dmac, <const char *>dmac, 6)
        n.nb_members = min(len(members), VR_MAX_MEMBERS)
        for i in range(n.nb_members):
            n.members[i] = members[i]
            n.vnis[i] = vnis[i] if i < len(vnis) and vnis[i] is not None else VR_NONE
        old = self.r.nhs[nid]
        vr_store_nh(&self.r.nhs[nid], n)
        self._retire(<uintptr_t>old)

    def nh_clear(self, uint32_t nid):
        old = <uintptr_t>self.r.nhs[nid]
        vr_store_nh(&self.r.nhs[nid], NULL)
        self._retire(old)

    # ---- routes, labels, bridge, VNIs, floating IPs ----------------------------

    def rtdata_set(self, uint32_t idx, uint32_t nh, uint32_t label):
        pd_store_release_u64(&self.r.rtdata[idx], <uint64_t>nh | (<uint64_t>label << 32))

    def rt_publish(self, int vrf, int family, list routes):
        """Replace the route table of (vrf, family): [(addr bytes, plen, rtdata index)]."""
        cdef uintptr_t t = _tables.rt_build(family, routes) if routes else 0
        cdef vr_rt_table *old
        if family == 4:
            old = self.r.rt4[vrf]
            vr_store_rt(&self.r.rt4[vrf], <vr_rt_table *>t)
        else:
            old = self.r.rt6[vrf]
            vr_store_rt(&self.r.rt6[vrf], <vr_rt_table *>t)
        self._retire(<uintptr_t>old)

    def mpls_set(self, uint32_t label, nh):
        if label >= self.r.mpls_max:
            raise ValueError(f"label {label} >= {self.r.mpls_max}")
        pd_store_release_u32(&self.r.mpls[label], VR_NONE if nh is None else <uint32_t>nh)

    @property
    def mpls_max(self):
        return self.r.mpls_max

    def bridge_set(self, int vrf, bytes mac, uint32_t nh, vni):
        cdef uint32_t key[2]
        cdef int32_t i
        key[0] = vrf
        key[1] = 0
        memcpy((<uint8_t *>key) + 2, <const char *>mac, 6)
        i = hash_lookup(self.r.bridge, key, hash_key(key, 8))
        if i < 0:
            # Value first, then the key (hash_add publishes the slot).
            i = hash_add(self.r.bridge, key, hash_key(key, 8))
            if i < 0:
                raise _ResourceError("bridge table full", "delete entries or raise bridge_max")
        pd_store_release_u64(&self.r.bridge_val[i], <uint64_t>nh | (<uint64_t>(VR_NONE if vni is None else vni) << 32))

    def bridge_clear(self, int vrf, bytes mac):
        cdef uint32_t key[2]
        key[0] = vrf
        key[1] = 0
        memcpy((<uint8_t *>key) + 2, <const char *>mac, 6)
        hash_del(self.r.bridge, key, hash_key(key, 8))

    def vxlan_set(self, uint32_t vni, uint32_t vrf):
        cdef int32_t i = hash_lookup(self.r.vxlan, &vni, hash_key(&vni, 4))
        if i < 0:
            i = hash_add(self.r.vxlan, &vni, hash_key(&vni, 4))
            if i < 0:
                raise _ResourceError("VXLAN table full", "delete VNIs or raise vxlan_max")
        pd_store_release_u32(&self.r.vxlan_vrf[i], vrf)

    def vxlan_clear(self, uint32_t vni):
        hash_del(self.r.vxlan, &vni, hash_key(&vni, 4))

    def fip_set(self, uint32_t ip_be, uint32_t vif):
        cdef int32_t i = hash_lookup(self.r.fip, &ip_be, hash_key(&ip_be, 4))
        if i < 0:
            i = hash_add(self.r.fip, &ip_be, hash_key(&ip_be, 4))
            if i < 0:
                raise _ResourceError("floating IP table full", "delete floating IPs")
        pd_store_release_u32(&self.r.fip_vif[i], vif)

    def fip_clear(self, uint32_t ip_be):
        hash_del(self.r.fip, &ip_be, hash_key(&ip_be, 4))

    # ---- counters ------------------------------------------------------------

    cdef list _all_workers(self):
        return [self.poller] + self.workers

    def dropstats(self, vif=None):
        """{reason: count}, all vifs or one."""
        cdef Worker wk
        cdef int i
        out = [0] * DROP_MAX
        for wk in self._all_workers():
            for i in range(DROP_MAX):
                out[i] += wk.w.st.drop[i] if vif is None else wk.w.st.vif_drop[<int>vif][i]
        return dict(zip(DROP_NAMES, out))

    def vif_queue_stats(self, int vid, int nb_queues):
        """[{counter: value} per queue] of vif vid."""
        cdef Worker wk
        cdef int q, i
        out = []
        for q in range(nb_queues):
            c = [0] * VIFQ_MAX
            for wk in self._all_workers():
                for i in range(VIFQ_MAX):
                    c[i] += wk.w.st.vifq[vid][q][i]
            out.append(dict(zip(VIFQ_NAMES, c)))
        return out

    def vrf_stats(self, int vrf):
        cdef Worker wk
        cdef int i
        c = [0] * VRFS_MAX
        for wk in self._all_workers():
            for i in range(VRFS_MAX):
                c[i] += wk.w.st.vrf[vrf][i]
        return dict(zip(VRFS_NAMES, c))

    def totals(self):
        cdef Worker wk
        t = {"flows_created": 0, "traps": 0}
        for wk in self._all_workers():
            t["flows_created"] += wk.w.st.flows_created
            t["traps"] += wk.w.st.traps
        return t

    # ---- flows ---------------------------------------------------------------

    def flow_list(self):
        cdef uint32_t i
        cdef vr_flow *f
        out = []
        for i in range(self.r.flow_h.size):
            if self.r.flow_h.state[i] != 1:
                continue
            f = &self.r.flows[i]
            fam = f.key.family
            n = 4 if fam == 4 else 16
            out.append({"index": i, "vrf": f.key.vrf, "family": fam, "proto": f.key.proto,
                        "src": bytes(f.key.src[:n]), "dst": bytes(f.key.dst[:n]),
                        "sport": pd_ntohs(f.key.sport), "dport": pd_ntohs(f.key.dport),
                        "action": f.action, "flags": f.flags, "mirror_vif": f.mirror_vif,
                        "nat_ip": f.nat_ip, "rflow": None if f.rflow == VR_NONE else f.rflow,
                        "packets": f.packets, "bytes": f.bytes})
        return out

    def flow_count(self):
        return self.r.flow_h.count

    def flow_age(self, bint all_=False):
        """Delete idle flows (closed TCP ones sooner); with all_, every flow.
        Runs under the flow lock. Returns how many entries went."""
        cdef uint64_t now = pd_rdtsc(), idle
        cdef uint32_t i, n = 0
        cdef vr_flow *f
        vr_lock(&self.r.flow_lock)
        for i in range(self.r.flow_h.size):
            if self.r.flow_h.state[i] != 1:
                continue
            f = &self.r.flows[i]
            idle = now - f.last_used if now > f.last_used else 0
            if all_ or idle > self.r.flow_timeout or ((f.flags & FLOW_F_TCP_CLOSED) and idle > self.r.flow_closed_timeout):
                hash_del(self.r.flow_h, &f.key, hash_key(&f.key, sizeof(vr_flow_key)))
                f.key.family = 0
                n += 1
        vr_unlock(&self.r.flow_lock)
        return n

    # ---- agent ---------------------------------------------------------------

    def trap_dequeue(self, int n=64):
        """Packets trapped to the agent: [(reason, in vif, frame bytes)] (mbufs freed)."""
        cdef pd_mbuf *pkts[64]
        cdef uint32_t got, i
        out = []
        got = ring_sc_dequeue_burst(self.r.trap, <void **>pkts, min(n, 64))
        for i in range(got):
            m = pkts[i]
            out.append((m.udata64 & 0xffff, (m.udata64 >> 16) & 0xffff,
                        (<char *>m.buf_addr + m.data_off)[:m.data_len]))
            pktmbuf_free(m)
        return out

    def bench(self, int vif, bytes frame, uint64_t n_pkts, uint32_t flow_off=0, uint32_t nflows=1,
              uint32_t burst=32):
        """Benchmark: process n_pkts copies of `frame` as if received on vif
        (the Python-thread poller's context). Each burst is allocated and
        filled like a NIC would; when nflows > 1 the 32-bit word at flow_off (the
        ports) takes nflows values (distinct flows). Returns (seconds, packets)."""
        cdef pd_mbuf *pkts[64]
        cdef uint64_t done = 0, t0, t1
        cdef uint32_t i, k = 0, flen = len(frame)
        cdef const char *f = frame
        cdef vr_worker *w = self.poller.w
        cdef char *d
        cdef uint32_t v32
        import time as _t
        burst = min(burst, 64)
        start = _t.perf_counter()
        with nogil:
            while done < n_pkts:
                if pktmbuf_alloc_bulk(self.r.pool, pkts, burst) != 0:
                    break
                for i in range(burst):
                    d = mbuf_append(pkts[i], <uint16_t>flen)
                    memcpy(d, f, flen)
                    if nflows > 1:
                        v32 = pd_htonl(k % nflows)
                        memcpy(d + flow_off, &v32, 4)
                        k += 1
                w.now = pd_rdtsc()
                vr_process_burst(w, <uint16_t>vif, 0, pkts, burst)
                done += burst
        return _t.perf_counter() - start, done

    def inject(self, int vif, bytes frame):
        """Send a frame out of vif from the agent (through the inject ring)."""
        cdef pd_mbuf *m = pktmbuf_alloc(self.r.pool)
        cdef char *d
        if m == NULL:
            raise _ResourceError("no mbuf for an injected frame", "raise the pool size")
        d = mbuf_append(m, len(frame))
        if d == NULL:
            pktmbuf_free(m)
            raise ValueError("frame too long")
        memcpy(d, <const char *>frame, len(frame))
        m.port = vif
        if ring_mp_enqueue_burst(self.r.inject, <void **>&m, 1) != 1:
            pktmbuf_free(m)
            raise _ResourceError("inject ring full", "retry later")


# ---- benchmark entry: process prebuilt bursts without ports --------------------

cdef uint64_t vr_bench_bursts(vr_worker *w, uint16_t vif, pd_mbuf **pkts, uint32_t n) noexcept nogil:
    vr_process_burst(w, vif, 0, pkts, n)
    return n


def rdtsc():
    """The time-stamp counter (the flow clock)."""
    return pd_rdtsc()
