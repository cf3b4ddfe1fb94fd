# The vRouter's datapath objects (the C-level contract of apps/vrouter/dp).
#
# Object model (Tungsten Fabric's words): vif (interfaces), nh (nexthops),
# vrf (an IPv4 and an IPv6 route table and a bridge table), the MPLS label
# table (label -> nh), the VXLAN table (VNI -> vrf), flows, dropstats and
# vrfstats. The control thread (Python, main lcore) writes these; the
# forwarding lcores read them.
#
# Publication rule (one writer, many readers): a vif or an nh is an
# immutable `vr_vif`/`vr_nh` in malloc'd memory, published by a release
# store of its pointer into `vr_router.vifs[]`/`nhs[]` and read by the
# lcores with an acquire load. A change builds a new entry and swaps the
# pointer; the old one is freed only after `synchronize()` saw every
# forwarding lcore pass its quiescent point (the top of its loop, where it
# bumps `vr_worker.epoch`). Readers therefore never see a half-written entry
# and never touch a freed one. Small scalar tables (MPLS labels, route data)
# are single 32/64-bit words stored with release semantics.
#
# Lookup tables are pypdk.net's: per VRF an LPM4 (DIR-24-8) and an LPM6,
# made at the VRF's first route of the family; the bridge, VNI and
# floating-IP tables and the flow table are pypdk.net.flow_hash tables. All
# are single-writer, lock-free-reader structures: the control thread is the
# one writer of the route, bridge, VNI and floating-IP tables (under the
# agent's control lock); flow entries are added by the forwarding lcores
# under `vr_router.flow_lock` and deleted (aged) by the control thread under
# the same lock. What a delete frees (LPM groups, flow positions) is
# reclaimed only after a synchronize() (router.pyx), never while a reader
# may still be inside it.
#
# Counters: every forwarding context (`vr_worker`) owns one `vr_stats`
# block and is its only writer; Python sums the blocks (router.pyx).
#
# The modules of dp/ (one concern each; per-packet functions are `cdef
# inline` in the .pxd, so a call across modules costs nothing; what runs
# once per burst or off the fast path is a plain cdef function in the .pyx):
#   drop      the drop reasons and their names
#   vrouter   this object model, the publication accessors, the spinlock
#   vif       output: per-burst tx buffers per (vif, queue), drops, traps, copies
#   route     the VRFs' IPv4/IPv6 route tables and route data
#   flow      flow keys, the flow table, policy, NAT, aging
#   arp       proxy ARP and ND, ICMP errors to VMs
#   encap     tunnel headers: MPLSoUDP, MPLSoGRE, VXLAN
#   nexthop   L3 nexthop output (discard, receive, encap, tunnel, ecmp, resolve)
#   bridge    the bridge table, L2 forwarding, flooding (composite nexthops)
#   decap     input from the fabric: labels, VNIs, floating IPs, tunnel decap
#   vm        input from VMs: ARP/ND, bridging, routing with flows
#   datapath  the burst loop of a forwarding lcore
#   router    Router and Worker: the Python owners of all of the above

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int32_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_fp
from pypdk.ring.ring cimport pd_ring
from pypdk.worker.lcore_loop cimport pd_lcore
from apps.vrouter.dp.drop cimport DROP_MAX
from pypdk.net.lpm4 cimport pd_lpm4
from pypdk.net.lpm6 cimport pd_lpm6
from pypdk.net.flow_hash cimport pd_flow_hash, pd_flow_key

cdef enum:
    VR_MAX_VIFS = 256
    VR_MAX_NHS = 4096
    VR_MAX_VRFS = 1024
    VR_MAX_QUEUES = 16
    VR_MAX_WORKERS = 16
    VR_MAX_MEMBERS = 16         # ecmp / composite members
    VR_MAX_POLICY = 64          # rules per vif
    VR_MAX_RTDATA = 65536       # distinct (nh, label) pairs routes point at
    VR_MAX_POLL = 128           # (vif, queue) pairs one lcore polls
    VR_TX_SLOTS = 8             # distinct (vif, queue) outputs buffered per burst
    VR_IDLE_ROUNDS = 64         # empty rounds in a row before an lcore with sleep_us sleeps
    VR_BURST = 32
    VR_BURST_MAX = 64           # packets an input path takes at once (vr_pkt arrays)
    VR_NONE = 0xffffffff

# vif types (TF: VIF_TYPE_PHYSICAL, VIF_TYPE_HOST, VIF_TYPE_VIRTUAL, VIF_TYPE_AGENT)
cdef enum:
    VIF_FABRIC = 0
    VIF_VHOST = 1
    VIF_VIRTUAL = 2
    VIF_AGENT = 3

# vif flags
cdef enum:
    VIF_F_POLICY = 1            # flow lookup and policy
    VIF_F_L3 = 2                # routed (proxy ARP, L2 rewrite)
    VIF_F_L2 = 4                # bridged (VXLAN, flooding)
    VIF_F_PROXY_ARP = 8

# nexthop types (TF: NH_DISCARD, NH_RCV, NH_ENCAP, NH_TUNNEL, NH_COMPOSITE, NH_RESOLVE)
cdef enum:
    NH_NONE = 0
    NH_DISCARD = 1
    NH_RECEIVE = 2
    NH_ENCAP = 3
    NH_TUNNEL = 4
    NH_ECMP = 5
    NH_RESOLVE = 6
    NH_COMPOSITE = 7            # L2 flood: a copy to every member

# tunnel encapsulations
cdef enum:
    TUN_MPLSOUDP = 1
    TUN_MPLSOGRE = 2
    TUN_VXLAN = 3

# nexthop flags
cdef enum:
    NH_F_VALID = 1              # a tunnel's underlay neighbour is resolved

# flow actions
cdef enum:
    FLOW_ALLOW = 0
    FLOW_DROP = 1
    FLOW_MIRROR = 2
    FLOW_NAT = 3

# flow flags
cdef enum:
    FLOW_F_DNAT = 1             # rewrite the destination to nat_ip
    FLOW_F_SNAT = 2             # rewrite the source to nat_ip
    FLOW_F_TCP_FIN_FWD = 4
    FLOW_F_TCP_FIN_REV = 8
    FLOW_F_TCP_CLOSED = 16      # RST, or FIN both ways: aged sooner

# Per vif, per queue counters (vr_stats.vifq[vif][queue][...])
cdef enum:
    VIFQ_RX_PACKETS = 0
    VIFQ_RX_BYTES
    VIFQ_RX_ERRORS
    VIFQ_RX_DROPS
    VIFQ_TX_PACKETS
    VIFQ_TX_BYTES
    VIFQ_TX_ERRORS
    VIFQ_TX_DROPS
    VIFQ_MAX

# VRF statistics per path (TF vrfstats); VRFS_NAMES in router.pyx.
cdef enum:
    VRFS_DISCARDS = 0
    VRFS_RESOLVES
    VRFS_RECEIVES
    VRFS_ECMP
    VRFS_L2_FLOODS
    VRFS_ENCAPS                 # L3 to a local vif (L2 rewrite)
    VRFS_L2_ENCAPS              # bridged to a local vif
    VRFS_UDP_MPLS_ENCAPS
    VRFS_GRE_MPLS_ENCAPS
    VRFS_VXLAN_ENCAPS
    VRFS_UDP_MPLS_DECAPS
    VRFS_GRE_MPLS_DECAPS
    VRFS_VXLAN_DECAPS
    VRFS_ARP_PROXY
    VRFS_ND_PROXY
    VRFS_TRANSLATES             # NAT (floating IP)
    VRFS_MAX

ctypedef struct vr_policy_rule:
    uint8_t family              # 4 or 6
    uint8_t proto               # 0: any
    uint8_t action              # FLOW_ALLOW / FLOW_DROP / FLOW_MIRROR
    uint8_t src_plen
    uint8_t dst_plen
    uint16_t mirror_vif
    uint16_t sport_lo, sport_hi, dport_lo, dport_hi   # host order
    uint8_t src[16]             # prefixes: IPv4 in the first 4 bytes, network order
    uint8_t dst[16]

ctypedef struct vr_vif:
    uint16_t id
    uint16_t type
    uint16_t vrf
    uint16_t flags
    uint16_t mtu
    uint16_t nb_txq             # tx queues in use (a multi-queue VM: flow hash picks)
    uint16_t port_id
    uint16_t nb_rules
    pd_eth_fp *fp               # NULL for the agent vif
    uint8_t mac[6]
    uint8_t has_ip6
    uint8_t shared_tx           # several lcores send on it: tx takes the queue lock
    uint8_t lcore_txq           # a tx queue per forwarding lcore (vr_worker.txq): tx takes no lock
    uint8_t distribute          # software distribution: the inner flow's hash picks the lcore (datapath.pyx)
    uint32_t ip4                # network order (0: none)
    uint32_t fip                # floating IP, network order (0: none)
    uint8_t ip6[16]
    vr_policy_rule rules[VR_MAX_POLICY]

ctypedef struct vr_nh:
    uint32_t id
    uint16_t type
    uint16_t flags
    uint16_t vif                # ENCAP: output vif
    uint16_t encap              # TUNNEL: TUN_*
    uint32_t sip                # TUNNEL: outer addresses, network order
    uint32_t dip
    uint8_t dmac[6]             # ENCAP: the vif's peer MAC; TUNNEL: the underlay neighbour's
    uint16_t nb_members
    uint32_t members[VR_MAX_MEMBERS]
    uint32_t vnis[VR_MAX_MEMBERS]   # COMPOSITE: VNI per member (vxlan tunnels)

# What a route points at: an nh and the label pushed through a tunnel.
ctypedef struct vr_rtdata:
    uint32_t nh
    uint32_t label              # VR_NONE: no label

# A flow entry: the state of one direction of a flow, at the position the
# flow table (pypdk.net.flow_hash, keyed by pd_flow_key: vrf, family,
# proto, addresses, ports) gave its key. One cache line.
ctypedef struct vr_flow:
    uint32_t state              # VR_FLOW_VALID once filled in (release), 0 when deleted
    uint32_t rflow              # the reverse entry's position, VR_NONE if none
    uint16_t action
    uint16_t flags
    uint16_t mirror_vif
    uint16_t vrf
    uint32_t nat_ip             # network order
    uint32_t _pad0
    uint64_t packets
    uint64_t bytes
    uint64_t last_used          # the owning lcore's loop clock (pd_rdtsc)
    uint64_t _pad1[2]

cdef enum:
    VR_FLOW_VALID = 1

# A packet between the stages of a burst path (decap.pyx, vm.pyx): the
# first stage parses and checks every packet of the burst, finishes those
# it can and, for those that need a flow (or a route), keeps what it found
# here; the flow entries of all of them are then looked up together with
# their cache misses overlapped (flow.pxd), and the last stage finishes
# each in turn.
ctypedef struct vr_pkt:
    pd_flow_key k               # the flow key and its table hash
    uint64_t hv
    pd_mbuf *m
    vr_vif *out                 # decap, bridge: the destination VM's vif
    const vr_nh *nh             # decap: the label's nexthop
    uint8_t *l3                 # the (inner) IP header
    uint32_t avail              # bytes from l3 to the end of the first segment
    uint32_t off                # decap: offset of the MPLS header
    uint32_t rt                 # vm: the route's rtdata index (PD_LPM_MISS: none)
    int32_t pos                 # flow position looked up ahead (flow.pxd FLOW_POS_*)
    int16_t l4off
    uint16_t vrf
    uint8_t family
    uint8_t kind                # which last stage (the path's own enum)
    uint8_t tun                 # decap: TUN_MPLSOUDP / TUN_MPLSOGRE

ctypedef struct vr_stats:
    uint64_t drop[DROP_MAX]
    uint64_t vif_drop[VR_MAX_VIFS][DROP_MAX]
    uint64_t vifq[VR_MAX_VIFS][VR_MAX_QUEUES][VIFQ_MAX]
    uint64_t vrf[VR_MAX_VRFS][VRFS_MAX]
    uint64_t traps
    uint64_t flows_created
    # TSC cycles spent on each rx queue's bursts (rx to flush): the busy
    # share `rxq_show` reports and `rxq_rebalance` deals by. Two TSC reads
    # per burst that brought packets, none per packet.
    uint64_t vifq_cycles[VR_MAX_VIFS][VR_MAX_QUEUES]
    uint64_t distributed        # handed to another forwarding lcore (software distribution)
    uint64_t dist_ring_full     # ... whose distribution ring was full: dropped (interface_drop)

ctypedef struct vr_poll:
    uint16_t vif
    uint16_t queue

ctypedef struct vr_pollset:
    uint32_t n
    vr_poll p[VR_MAX_POLL]

cdef enum:
    VR_NO_VIF = 0xffff
    VR_MAX_FIPS = 1024

ctypedef struct vr_router:
    uint8_t mac[6]
    uint16_t fabric_vif         # VR_NO_VIF when none
    uint16_t vhost_vif
    uint16_t agent_vif
    uint32_t underlay_ip        # network order
    uint32_t icmp_src           # source of ICMP errors the vRouter writes
    uint32_t tx_locking         # >1 forwarding lcore: tx queues take txlock
    uint32_t mpls_max
    uint32_t flow_max
    uint32_t flow_lock
    uint64_t flow_timeout       # tsc ticks idle before a flow is aged
    uint64_t flow_closed_timeout
    vr_vif *vifs[VR_MAX_VIFS]
    vr_nh *nhs[VR_MAX_NHS]
    uint64_t rtdata[VR_MAX_RTDATA]      # nh | label << 32 (bridge entries: nh | vni << 32)
    pd_lpm4 *rt4[VR_MAX_VRFS]   # per VRF, made at its first route (route.pyx); -> rtdata index
    pd_lpm6 *rt6[VR_MAX_VRFS]
    uint32_t *mpls              # label -> nh id (VR_NONE: invalid)
    pd_flow_hash *bridge        # (vrf, mac) -> rtdata index
    pd_flow_hash *vxlan         # vni -> vrf
    pd_flow_hash *fip           # public IPv4 -> vif
    pd_flow_hash *flow_h        # pd_flow_key -> position in flows[]
    vr_flow *flows              # one per position of flow_h
    pd_mempool *pool            # for copies (flood, mirror) and ICMP errors
    pd_ring *trap               # datapath -> agent
    pd_ring *inject             # agent -> datapath (m.port = output vif)
    uint32_t txlock[VR_MAX_VIFS][VR_MAX_QUEUES]
    pd_ring *dist[VR_MAX_WORKERS]   # per forwarding lcore: what the others hand it (MP/SC)
    uint32_t nb_dist                # forwarding lcores with a distribution ring
    uint32_t dist_on                # a vif has distribute (sticky): the lcores drain their rings

ctypedef struct vr_txslot:
    uint16_t vif
    uint16_t queue
    uint32_t n
    pd_mbuf *pkts[64]

# One forwarding context: the (vif, queue) pairs it polls, its counters, its
# per-burst tx buffers. A worker runs on one lcore (or on the Python thread,
# for tests and benchmarks, through Router.poll / Router.bench).
ctypedef struct vr_worker:
    # The lcore loop's state (pypdk/worker/lcore_loop.pxd): quit flag,
    # yield_after, and the loop counters under pypdk.stats' names (rx:
    # packets received, all `taken` by the input paths; tx: packets a port
    # took; tx_dropped: refused by a tx queue).
    pd_lcore lc
    int running                 # inside its loop
    uint64_t epoch              # bumped at each quiescent point (release)
    uint64_t now                # the loop's clock (pd_rdtsc)
    vr_router *r
    vr_pollset *ps              # published by the control thread (acquire here)
    vr_stats *st
    uint32_t burst
    uint32_t nslots
    uint32_t owns_inject         # the one consumer of the inject ring
    uint16_t txq                # its own tx queue on lcore_txq vifs (its index among the workers)
    pd_ring *dist               # its distribution ring (r.dist[txq]); NULL for the Python poller
    uint32_t sleep_us           # idle: nanosleep this long after VR_IDLE_ROUNDS empty rounds (0: never)
    uint32_t empty_rounds
    vr_txslot slots[VR_TX_SLOTS]


# ---- publication: pointers stored with release, loaded with acquire --------------

cdef extern from *:
    """
    #define vr_load_ptr(pp) __atomic_load_n((pp), __ATOMIC_ACQUIRE)
    #define vr_store_ptr(pp, v) __atomic_store_n((pp), (v), __ATOMIC_RELEASE)
    """
    vr_vif *vr_load_vif "vr_load_ptr"(vr_vif **pp) nogil
    void vr_store_vif "vr_store_ptr"(vr_vif **pp, vr_vif *v) nogil
    vr_nh *vr_load_nh "vr_load_ptr"(vr_nh **pp) nogil
    void vr_store_nh "vr_store_ptr"(vr_nh **pp, vr_nh *v) nogil
    pd_lpm4 *vr_load_lpm4 "vr_load_ptr"(pd_lpm4 **pp) nogil
    void vr_store_lpm4 "vr_store_ptr"(pd_lpm4 **pp, pd_lpm4 *v) nogil
    pd_lpm6 *vr_load_lpm6 "vr_load_ptr"(pd_lpm6 **pp) nogil
    void vr_store_lpm6 "vr_store_ptr"(pd_lpm6 **pp, pd_lpm6 *v) nogil
    vr_pollset *vr_load_ps "vr_load_ptr"(vr_pollset **pp) nogil
    void vr_store_ps "vr_store_ptr"(vr_pollset **pp, vr_pollset *v) nogil

from pd_compiler cimport pd_pause, pd_unlikely

from pd_atomic cimport (pd_load_relaxed_u32, pd_store_release_u32, pd_cas_weak_u32,
                        pd_fence_acquire)


# ---- the spinlock (flow creation and aging, shared tx queues) ---------------------

cdef extern from "<sched.h>" nogil:
    int vr_sched_yield "sched_yield"()

cdef enum:
    VR_LOCK_SPINS = 1024        # pauses (tens of microseconds) before the waiter yields its cpu

cdef inline void vr_lock(uint32_t *l) noexcept nogil:
    # Held for at most a flow creation (about a thousand cycles): a waiter that
    # spun VR_LOCK_SPINS pauses is waiting on a holder that lost its cpu (more
    # lcores than cpus, a guest's vCPUs), so it yields to let the holder run.
    cdef uint32_t exp, spins = 0
    while True:
        exp = 0
        if pd_cas_weak_u32(l, &exp, 1):
            break
        while pd_load_relaxed_u32(l) != 0:
            pd_pause()
            spins += 1
            if pd_unlikely(spins >= VR_LOCK_SPINS):
                vr_sched_yield()
                spins = 0
    # The CAS is relaxed; the acquire fence orders what the holder reads after it.
    pd_fence_acquire()

cdef inline void vr_unlock(uint32_t *l) noexcept nogil:
    # Pairs with the acquire fence in vr_lock of the next holder.
    pd_store_release_u32(l, 0)
