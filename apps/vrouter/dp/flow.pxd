# Flows: the per-flow state of policy vifs, keyed on pd_flow_key (vrf,
# family, proto, addresses, ports; pypdk.net.flow_hash).
#
# The table is a pypdk.net.flow_hash (cuckoo-style buckets of signatures,
# one record per position) whose positions index `vr_router.flows`: a
# lookup costs a bucket line, a record line and the flow's line, and the
# per-burst paths prefetch all three for the packets ahead (flow_prefetch*).
# The key's 64-bit hash is computed once per packet: it finds the buckets
# and gives the packet's entropy (ECMP member, tx queue, outer UDP source
# port; pkt_hash).
#
# The first packet of a flow evaluates the policy of the VM's vif (first
# match wins, default allow) and, under `vr_router.flow_lock`, adds the
# forward and the reverse entry (flow_create, flow.pyx); every later packet
# finds its entry lock-free (flow_get). An entry's `state` turns VALID
# (release store) only once it is filled in, so a reader that finds a key
# whose entry is still being written takes the slow path and waits for the
# lock. A floating IP's flows are a NAT pair: DNAT on the way in, SNAT on
# the VM's replies, keyed on the translated tuple.
#
# Aging (flow.pyx, control thread, under the same lock) clears an entry's
# state and deletes its key; the table is created with deferred free, so a
# deleted position is reused only after a synchronize (flow_reclaim): a
# lcore that found it just before the delete still reads that flow's entry.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from libc.string cimport memcpy, memset
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.net.byteorder cimport pd_load_u16, pd_ntohs
from pypdk.net.ipv4 cimport (pd_ipv4_hdr, ipv4_hdr_len, ipv4_is_fragment, PD_IPPROTO_UDP, PD_IPPROTO_TCP,
                             PD_IPPROTO_ICMP, PD_IPV4_HDR_LEN)
from pypdk.net.ipv6 cimport pd_ipv6_hdr, ipv6_skip_ext, PD_IPV6_HDR_LEN
from pypdk.net.tcp cimport pd_tcp_hdr, PD_TCP_FIN, PD_TCP_RST, PD_TCP_HDR_LEN
from pypdk.net.udp cimport PD_UDP_HDR_LEN
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from pypdk.net.flow_hash cimport (pd_flow_hash, pd_flow_key, flow_hash_hash, flow_hash_lookup_with_hash,
                                  _fh_b1, _fh_rec, PD_FH_BUCKET_SLOTS)
from apps.vrouter.dp.vif cimport drop

from pd_compiler cimport pd_likely, pd_unlikely, pd_prefetch0

from pd_atomic cimport pd_load_acquire_u32, pd_load_relaxed_u64, pd_add_fetch_u64

# The 64-bit hash of a flow key (the flow table's hash, its seed included).
cdef inline uint64_t key_hash(vr_router *r, const pd_flow_key *k) noexcept nogil:
    return flow_hash_hash(r.flow_h, k)

# A packet's 32-bit entropy (ECMP member, tx queue, outer UDP source port)
# from its key's hash: the high half, which the bucket index does not use.
cdef inline uint32_t pkt_hash(uint64_t hv) noexcept nogil:
    return <uint32_t>(hv >> 32)

# Fill a flow key from an IPv4/IPv6 packet at l3 (avail bytes). Returns the
# L4 offset from l3, -1 for a packet too short for its headers. The L3
# header's own length (IPv4 total length, IPv6 payload length) bounds avail
# too (Ethernet padding is not L4 data). A TCP/UDP packet (not a fragment)
# returns >= 0 only when its whole TCP (20 bytes) or UDP (8 bytes) header lies
# inside both: this is the one bounds check for everything that reads or
# writes L4 ports and checksums afterwards (policy port match, NAT rewrite,
# flow accounting), so every path drops a -1 as invalid_packet first.
cdef inline int key_fill(pd_flow_key *k, const uint8_t *l3, uint32_t avail, uint16_t vrf,
                         uint8_t family) noexcept nogil:
    cdef const pd_ipv4_hdr *ip
    cdef const pd_ipv6_hdr *ip6
    cdef int off
    cdef uint8_t proto
    cdef uint32_t tot
    memset(k, 0, sizeof(pd_flow_key))
    k.vrf = vrf
    k.family = family
    if family == 4:
        ip = <const pd_ipv4_hdr *>l3
        if pd_unlikely(avail < PD_IPV4_HDR_LEN):
            return -1
        tot = pd_ntohs(ip.total_length)
        if tot < avail:
            avail = tot
        memcpy(k.src, &ip.src_addr, 4)
        memcpy(k.dst, &ip.dst_addr, 4)
        k.proto = ip.next_proto_id
        off = <int>ipv4_hdr_len(ip)
        if pd_unlikely(off < PD_IPV4_HDR_LEN or <uint32_t>off > avail):
            return -1
        if ipv4_is_fragment(ip):
            return off              # no ports: the flow is per address pair
    else:
        ip6 = <const pd_ipv6_hdr *>l3
        if pd_unlikely(avail < PD_IPV6_HDR_LEN):
            return -1
        tot = <uint32_t>pd_ntohs(ip6.payload_len) + PD_IPV6_HDR_LEN
        if tot < avail:
            avail = tot
        memcpy(k.src, ip6.src_addr, 16)
        memcpy(k.dst, ip6.dst_addr, 16)
        off = ipv6_skip_ext(ip6, avail, &proto)
        if off < 0:
            return -1
        k.proto = proto
    if k.proto == PD_IPPROTO_TCP or k.proto == PD_IPPROTO_UDP:
        if pd_unlikely(<uint32_t>off + (PD_TCP_HDR_LEN if k.proto == PD_IPPROTO_TCP else PD_UDP_HDR_LEN) > avail):
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
cdef vr_flow *flow_create(vr_worker *w, const pd_flow_key *k, uint64_t hv, const vr_vif *pvif,
                          uint32_t nat_ip, uint16_t nat_vrf) noexcept nogil

# The entry at a position the table returned, if it is filled in.
cdef inline vr_flow *flow_at(vr_router *r, int32_t pos) noexcept nogil:
    cdef vr_flow *f
    if pd_unlikely(pos < 0):
        return NULL
    f = &r.flows[pos]
    # acquire: pairs with the release store of state in flow_create
    if pd_unlikely(pd_load_acquire_u32(&f.state) != VR_FLOW_VALID):
        return NULL
    return f

# The flow of key k (hash hv), created on a miss. NULL: the table is full.
cdef inline vr_flow *flow_get(vr_worker *w, const pd_flow_key *k, uint64_t hv, const vr_vif *pvif,
                              uint32_t nat_ip, uint16_t nat_vrf) noexcept nogil:
    cdef vr_flow *f = flow_at(w.r, flow_hash_lookup_with_hash(w.r.flow_h, k, hv, NULL))
    if pd_likely(f != NULL):
        return f
    return flow_create(w, k, hv, pvif, nat_ip, nat_vrf)


# ---- lookups ahead, for a whole burst ----------------------------------------------
# A burst path makes every packet's key and hash first and prefetches the
# key's first bucket (flow_prefetch_bucket); then, over the whole burst, the
# record of each bucket's first signature match (flow_prefetch_record: a
# hint, the lookup re-reads with acquire); then the lookups, each
# prefetching its flow entry (flow_lookup_prefetch); then it processes the
# packets (flow_get_at). flow_burst_lookup below runs the middle two.

cdef inline void flow_prefetch_bucket(const pd_flow_hash *h, uint64_t hv) noexcept nogil:
    pd_prefetch0(&h.buckets[_fh_b1(h, hv)])

cdef inline void flow_prefetch_record(const pd_flow_hash *h, uint64_t hv) noexcept nogil:
    cdef uint32_t sig = <uint32_t>(hv >> 32)
    cdef const uint64_t *slot = h.buckets[_fh_b1(h, hv)].slot
    cdef uint64_t s
    cdef int i
    for i in range(PD_FH_BUCKET_SLOTS):
        s = pd_load_relaxed_u64(&slot[i])
        if (s >> 32) == sig and (s & 0xffffffffu) != 0:
            pd_prefetch0(_fh_rec(h, <uint32_t>(s & 0xffffffffu) - 1))
            return

# The key's position (lock-free lookup), its entry prefetched; -1 if absent.
cdef inline int32_t flow_lookup_prefetch(vr_router *r, const pd_flow_key *k, uint64_t hv) noexcept nogil:
    cdef int32_t pos = flow_hash_lookup_with_hash(r.flow_h, k, hv, NULL)
    if pos >= 0:
        pd_prefetch0(&r.flows[pos])
    return pos

# The flow of a packet whose position was looked up ahead (pos, -1 for a
# miss then): created now if it was missing or not yet filled in.
cdef inline vr_flow *flow_get_at(vr_worker *w, int32_t pos, const pd_flow_key *k, uint64_t hv,
                                 const vr_vif *pvif) noexcept nogil:
    cdef vr_flow *f = flow_at(w.r, pos)
    if pd_likely(f != NULL):
        return f
    return flow_create(w, k, hv, pvif, 0, 0)

# Count a packet on its flow (atomically when several lcores forward: a flow's packets
# may arrive on any of them); TCP FIN/RST mark the pair for early aging.
cdef inline void flow_account(vr_worker *w, vr_flow *f, pd_mbuf *m, const pd_flow_key *k,
                              const uint8_t *l4, uint32_t l4_avail) noexcept nogil:
    cdef uint8_t fl
    if w.r.tx_locking:          # several forwarding lcores may count on one flow at once
        pd_add_fetch_u64(&f.packets, 1)
        pd_add_fetch_u64(&f.bytes, m.pkt_len)
    else:
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
cdef enum:
    FLOW_POS_UNKNOWN = -2       # not looked up ahead: look up when needed
    FLOW_POS_WANT = -3          # a burst path's first stage: look up with the burst
cdef inline bint dest_flow(vr_worker *w, uint16_t in_id, vr_vif *dv, pd_mbuf *m, pd_flow_key *k,
                           uint64_t hv, int32_t pos, uint8_t *l3, int l4off, uint32_t avail,
                           uint16_t *mirror) noexcept nogil:
    # pos: the key's position if the caller looked it up ahead, else -2.
    cdef vr_flow *f
    if pd_unlikely(k.family == 4 and ipv4_is_fragment(<pd_ipv4_hdr *>l3)):
        drop(w, m, in_id, DROP_FRAGMENTS)
        return False
    if pos == FLOW_POS_UNKNOWN:
        f = flow_get(w, k, hv, dv, 0, 0)
    else:
        f = flow_get_at(w, pos, k, hv, dv)
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


# The flows of the packets of a burst marked FLOW_POS_WANT (their buckets
# prefetched when their keys were made): their records prefetched, then
# their positions looked up and their entries prefetched, each stage over
# the whole burst, so the misses of different packets overlap instead of
# adding up.
cdef inline void flow_burst_lookup(vr_router *r, vr_pkt *c, uint32_t n) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        if c[i].pos == FLOW_POS_WANT:
            flow_prefetch_record(r.flow_h, c[i].hv)
    for i in range(n):
        if c[i].pos == FLOW_POS_WANT:
            c[i].pos = flow_lookup_prefetch(r, &c[i].k, c[i].hv)


# ---- control (flow.pyx) ----------------------------------------------------------

# The flow table of `capacity` entries (seeded), with its entry array; 0 or -ENOMEM.
cdef int flow_table_create(vr_router *r, uint32_t capacity, uint64_t seed) noexcept nogil
cdef void flow_table_free(vr_router *r) noexcept nogil
# Age the flows idle for longer than the timeouts at `now` (all of them with
# all_): the entries go, their positions wait for flow_reclaim. Takes the
# flow lock. Returns how many went.
cdef uint32_t flow_age(vr_router *r, uint64_t now, bint all_) noexcept nogil
# After a synchronize: aged positions become reusable (takes the flow lock).
cdef void flow_reclaim(vr_router *r) noexcept nogil
