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
# Counters: every forwarding context (`vr_worker`) owns one `vr_stats`
# block and is its only writer; Python sums the blocks.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_fp
from pypdk.ring.ring cimport pd_ring

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
    VR_BURST = 32
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

# Drop reasons (TF's dropstats, snake_case). DROP_NAMES in datapath.pyx is
# the tuple of names, in this order; keep them in step.
cdef enum:
    DROP_DISCARD = 0
    DROP_NO_ROUTE
    DROP_L2_NO_ROUTE
    DROP_INVALID_LABEL
    DROP_INVALID_VNI
    DROP_INVALID_NH
    DROP_INVALID_IF
    DROP_INVALID_PROTOCOL
    DROP_FLOW_ACTION_DROP
    DROP_FLOW_TABLE_FULL
    DROP_TTL_EXCEEDED
    DROP_INVALID_PACKET
    DROP_CHECKSUM_ERROR
    DROP_INTERFACE_DROP
    DROP_NO_MBUF
    DROP_MTU_EXCEEDED
    DROP_FRAGMENTS
    DROP_VLAN
    DROP_TRAP_NO_IF
    DROP_INVALID_ARP
    DROP_PUSH
    DROP_MAX

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

# VRF statistics per path (TF vrfstats); VRFS_NAMES in datapath.pyx.
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

ctypedef struct vr_flow_key:    # 40 bytes, padding zeroed
    uint8_t src[16]             # IPv4: first 4 bytes (network order), rest zero
    uint8_t dst[16]
    uint16_t sport              # network order
    uint16_t dport
    uint16_t vrf
    uint8_t proto
    uint8_t family

ctypedef struct vr_flow:
    uint32_t rflow              # the reverse entry's index, VR_NONE if none
    uint16_t action
    uint16_t flags
    uint16_t mirror_vif
    uint16_t vrf
    uint32_t nat_ip             # network order
    uint64_t packets
    uint64_t bytes
    uint64_t last_used          # the owning lcore's loop clock (pd_rdtsc)
    vr_flow_key key

ctypedef struct vr_stats:
    uint64_t drop[DROP_MAX]
    uint64_t vif_drop[VR_MAX_VIFS][DROP_MAX]
    uint64_t vifq[VR_MAX_VIFS][VR_MAX_QUEUES][VIFQ_MAX]
    uint64_t vrf[VR_MAX_VRFS][VRFS_MAX]
    uint64_t traps
    uint64_t flows_created
    uint64_t flow_lock_spins

ctypedef struct vr_poll:
    uint16_t vif
    uint16_t queue

ctypedef struct vr_pollset:
    uint32_t n
    vr_poll p[VR_MAX_POLL]
