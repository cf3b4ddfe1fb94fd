/* pd_net.h: wire layouts of the protocol headers and the byte-order helpers.
 *
 * One packed struct per header, fields in network byte order exactly as on
 * the wire, sizes pinned with static_assert. Packed means alignment 1: a
 * header may start at any offset in a packet (an IPv4 header after a 14-byte
 * Ethernet header is only 2-byte aligned) and the compiler emits accesses
 * that are safe there (plain loads on x86 and arm64). Do not take the address
 * of a multi-byte field of a packed struct; read it by value.
 *
 * The logic (field helpers, checksums) lives in the .pxd files of pypdk/net; the values
 * of the constants are from the IANA registries and the RFCs named beside
 * them. Constants are host-order numbers: compare with pd_ntohs(field) or
 * with PD_BE16(CONST), which the compiler folds.
 */
#ifndef PD_NET_H
#define PD_NET_H

#include <stddef.h>
#include <stdint.h>
#include <assert.h>

/* ---- byte order ------------------------------------------------------- */

static inline uint16_t pd_bswap16(uint16_t x) { return __builtin_bswap16(x); }
static inline uint32_t pd_bswap32(uint32_t x) { return __builtin_bswap32(x); }
static inline uint64_t pd_bswap64(uint64_t x) { return __builtin_bswap64(x); }

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define PD_BIG_ENDIAN 1
static inline uint16_t pd_ntohs(uint16_t x) { return x; }
static inline uint32_t pd_ntohl(uint32_t x) { return x; }
static inline uint64_t pd_ntohll(uint64_t x) { return x; }
#define PD_BE16(x) ((uint16_t)(x))
#define PD_BE32(x) ((uint32_t)(x))
#else
#define PD_BIG_ENDIAN 0
static inline uint16_t pd_ntohs(uint16_t x) { return __builtin_bswap16(x); }
static inline uint32_t pd_ntohl(uint32_t x) { return __builtin_bswap32(x); }
static inline uint64_t pd_ntohll(uint64_t x) { return __builtin_bswap64(x); }
#define PD_BE16(x) ((uint16_t)__builtin_bswap16((uint16_t)(x)))
#define PD_BE32(x) ((uint32_t)__builtin_bswap32((uint32_t)(x)))
#endif
static inline uint16_t pd_htons(uint16_t x) { return pd_ntohs(x); }
static inline uint32_t pd_htonl(uint32_t x) { return pd_ntohl(x); }
static inline uint64_t pd_htonll(uint64_t x) { return pd_ntohll(x); }

/* Unaligned loads/stores of native-order words (memcpy compiles to one move). */
static inline uint16_t pd_load_u16(const void *p) { uint16_t v; __builtin_memcpy(&v, p, 2); return v; }
static inline uint32_t pd_load_u32(const void *p) { uint32_t v; __builtin_memcpy(&v, p, 4); return v; }
static inline uint64_t pd_load_u64(const void *p) { uint64_t v; __builtin_memcpy(&v, p, 8); return v; }
static inline void pd_store_u16(void *p, uint16_t v) { __builtin_memcpy(p, &v, 2); }
static inline void pd_store_u32(void *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }
static inline void pd_store_u64(void *p, uint64_t v) { __builtin_memcpy(p, &v, 8); }

/* The 128-bit product of a and b, its halves XORed: one multiply that mixes
 * every bit of both inputs (the table hashes in pypdk/net/hash.pxd). */
static inline uint64_t pd_mul_fold64(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

#define PD_PACKED __attribute__((packed))

/* ---- Ethernet, VLAN (IEEE 802.3, 802.1Q) ------------------------------ */

#define PD_ETHER_ADDR_LEN   6
#define PD_ETHER_HDR_LEN    14
#define PD_VLAN_HDR_LEN     4
#define PD_ETHER_MIN_LEN    60      /* without FCS */
#define PD_ETHER_MTU        1500

#define PD_ETHER_TYPE_IPV4  0x0800
#define PD_ETHER_TYPE_ARP   0x0806
#define PD_ETHER_TYPE_VLAN  0x8100  /* 802.1Q C-tag */
#define PD_ETHER_TYPE_QINQ  0x88A8  /* 802.1ad S-tag */
#define PD_ETHER_TYPE_IPV6  0x86DD
#define PD_ETHER_TYPE_MPLS  0x8847  /* unicast */
#define PD_ETHER_TYPE_MPLSM 0x8848  /* multicast */
#define PD_ETHER_TYPE_TEB   0x6558  /* transparent Ethernet bridging (GRE) */

struct pd_ether_addr {
    uint8_t addr_bytes[PD_ETHER_ADDR_LEN];
} PD_PACKED;

struct pd_ether_hdr {
    struct pd_ether_addr dst_addr;
    struct pd_ether_addr src_addr;
    uint16_t ether_type;
} PD_PACKED;

/* 802.1Q tag as it follows the outer ether_type 0x8100. */
struct pd_vlan_hdr {
    uint16_t vlan_tci;      /* PCP:3 DEI:1 VID:12 */
    uint16_t eth_proto;     /* the inner ether_type */
} PD_PACKED;

#define PD_VLAN_VID_MASK 0x0FFF
#define PD_VLAN_DEI      0x1000
#define PD_VLAN_PCP_SHIFT 13

/* ---- ARP (RFC 826) ---------------------------------------------------- */

#define PD_ARP_HRD_ETHER   1
#define PD_ARP_OP_REQUEST  1
#define PD_ARP_OP_REPLY    2
#define PD_ARP_OP_RREQUEST 3
#define PD_ARP_OP_RREPLY   4

struct pd_arp_ipv4 {
    struct pd_ether_addr arp_sha;
    uint32_t arp_sip;
    struct pd_ether_addr arp_tha;
    uint32_t arp_tip;
} PD_PACKED;

struct pd_arp_hdr {
    uint16_t arp_hardware;  /* PD_ARP_HRD_ETHER */
    uint16_t arp_protocol;  /* PD_ETHER_TYPE_IPV4 */
    uint8_t arp_hlen;       /* 6 */
    uint8_t arp_plen;       /* 4 */
    uint16_t arp_opcode;
    struct pd_arp_ipv4 arp_data;
} PD_PACKED;

/* ---- IP protocol numbers (IANA) --------------------------------------- */

#define PD_IPPROTO_HOPOPTS  0
#define PD_IPPROTO_ICMP     1
#define PD_IPPROTO_IPIP     4
#define PD_IPPROTO_TCP      6
#define PD_IPPROTO_UDP      17
#define PD_IPPROTO_IPV6     41
#define PD_IPPROTO_ROUTING  43
#define PD_IPPROTO_FRAGMENT 44
#define PD_IPPROTO_GRE      47
#define PD_IPPROTO_ESP      50
#define PD_IPPROTO_AH       51
#define PD_IPPROTO_ICMPV6   58
#define PD_IPPROTO_NONE     59
#define PD_IPPROTO_DSTOPTS  60
#define PD_IPPROTO_SCTP     132
#define PD_IPPROTO_MPLS     137  /* MPLS-in-IP, RFC 4023 */

/* ---- IPv4 (RFC 791) --------------------------------------------------- */

#define PD_IPV4_HDR_LEN     20      /* without options */
#define PD_IPV4_VHL_DEF     0x45    /* version 4, IHL 5 */
#define PD_IPV4_HDR_DF_FLAG 0x4000  /* in fragment_offset, host order */
#define PD_IPV4_HDR_MF_FLAG 0x2000
#define PD_IPV4_HDR_OFFSET_MASK 0x1FFF
#define PD_IPV4_MAX_PKT_LEN 65535

struct pd_ipv4_hdr {
    uint8_t version_ihl;        /* version:4 IHL:4 (32-bit words) */
    uint8_t type_of_service;    /* DSCP:6 ECN:2 */
    uint16_t total_length;
    uint16_t packet_id;
    uint16_t fragment_offset;   /* flags:3 offset:13 (8-byte units) */
    uint8_t time_to_live;
    uint8_t next_proto_id;
    uint16_t hdr_checksum;
    uint32_t src_addr;
    uint32_t dst_addr;
} PD_PACKED;

/* ---- IPv6 (RFC 8200) -------------------------------------------------- */

#define PD_IPV6_HDR_LEN 40
#define PD_IPV6_ADDR_LEN 16

struct pd_ipv6_hdr {
    uint32_t vtc_flow;          /* version:4 traffic class:8 flow label:20 */
    uint16_t payload_len;       /* after this header, extensions included */
    uint8_t proto;              /* next header */
    uint8_t hop_limits;
    uint8_t src_addr[PD_IPV6_ADDR_LEN];
    uint8_t dst_addr[PD_IPV6_ADDR_LEN];
} PD_PACKED;

/* The fragment extension header (RFC 8200 4.5). */
struct pd_ipv6_frag_hdr {
    uint8_t next_header;
    uint8_t reserved;
    uint16_t frag_data;         /* offset:13 res:2 M:1 */
    uint32_t id;
} PD_PACKED;

/* Hop-by-hop, routing and destination options headers start like this;
 * hdr_ext_len is in 8-byte units, not counting the first 8. */
struct pd_ipv6_ext_hdr {
    uint8_t next_header;
    uint8_t hdr_ext_len;
} PD_PACKED;

/* ---- ICMP (RFC 792) and ICMPv6 (RFC 4443, ND: RFC 4861) --------------- */

#define PD_ICMP_ECHO_REPLY      0
#define PD_ICMP_DEST_UNREACH    3
#define PD_ICMP_REDIRECT        5
#define PD_ICMP_ECHO_REQUEST    8
#define PD_ICMP_TIME_EXCEEDED   11
#define PD_ICMP_PARAM_PROBLEM   12
#define PD_ICMP_CODE_FRAG_NEEDED 4  /* with DEST_UNREACH */

struct pd_icmp_hdr {
    uint8_t icmp_type;
    uint8_t icmp_code;
    uint16_t icmp_cksum;
    uint16_t icmp_ident;        /* echo; other types use these 4 bytes otherwise */
    uint16_t icmp_seq_nb;
} PD_PACKED;

#define PD_ICMP6_DEST_UNREACH   1
#define PD_ICMP6_PACKET_TOO_BIG 2
#define PD_ICMP6_TIME_EXCEEDED  3
#define PD_ICMP6_PARAM_PROBLEM  4
#define PD_ICMP6_ECHO_REQUEST   128
#define PD_ICMP6_ECHO_REPLY     129
#define PD_ICMP6_ROUTER_SOLICIT 133
#define PD_ICMP6_ROUTER_ADVERT  134
#define PD_ICMP6_NEIGH_SOLICIT  135
#define PD_ICMP6_NEIGH_ADVERT   136
#define PD_ICMP6_REDIRECT       137

struct pd_icmp6_hdr {
    uint8_t icmp6_type;
    uint8_t icmp6_code;
    uint16_t icmp6_cksum;
    uint32_t icmp6_data;        /* echo: ident:16 seq:16; too big: MTU */
} PD_PACKED;

/* Neighbour solicitation and advertisement: the ICMPv6 header, then the
 * target address; options (pd_nd_opt_hdr) follow. */
#define PD_ND_NA_FLAG_ROUTER    0x80000000u  /* in nd_flags, host order */
#define PD_ND_NA_FLAG_SOLICITED 0x40000000u
#define PD_ND_NA_FLAG_OVERRIDE  0x20000000u

struct pd_nd_ns_hdr {
    uint8_t icmp6_type;         /* PD_ICMP6_NEIGH_SOLICIT */
    uint8_t icmp6_code;
    uint16_t icmp6_cksum;
    uint32_t reserved;
    uint8_t target[PD_IPV6_ADDR_LEN];
} PD_PACKED;

struct pd_nd_na_hdr {
    uint8_t icmp6_type;         /* PD_ICMP6_NEIGH_ADVERT */
    uint8_t icmp6_code;
    uint16_t icmp6_cksum;
    uint32_t nd_flags;          /* R S O, then reserved */
    uint8_t target[PD_IPV6_ADDR_LEN];
} PD_PACKED;

#define PD_ND_OPT_SOURCE_LLADDR 1
#define PD_ND_OPT_TARGET_LLADDR 2
#define PD_ND_OPT_MTU           5

/* An ND option; `len` counts 8-byte units (a link-layer address option is 1). */
struct pd_nd_opt_hdr {
    uint8_t type;
    uint8_t len;
} PD_PACKED;

struct pd_nd_opt_lladdr {
    uint8_t type;               /* PD_ND_OPT_SOURCE_LLADDR or _TARGET_ */
    uint8_t len;                /* 1 */
    struct pd_ether_addr addr;
} PD_PACKED;

/* ---- UDP (RFC 768), TCP (RFC 9293) ------------------------------------ */

#define PD_UDP_HDR_LEN 8
#define PD_UDP_PORT_VXLAN     4789  /* RFC 7348 */
#define PD_UDP_PORT_MPLS      6635  /* MPLS-in-UDP, RFC 7510 */
#define PD_UDP_PORT_GENEVE    6081

struct pd_udp_hdr {
    uint16_t src_port;
    uint16_t dst_port;
    uint16_t dgram_len;         /* header + payload */
    uint16_t dgram_cksum;       /* 0: none (IPv4 only) */
} PD_PACKED;

#define PD_TCP_HDR_LEN 20
#define PD_TCP_FIN 0x01
#define PD_TCP_SYN 0x02
#define PD_TCP_RST 0x04
#define PD_TCP_PSH 0x08
#define PD_TCP_ACK 0x10
#define PD_TCP_URG 0x20
#define PD_TCP_ECE 0x40
#define PD_TCP_CWR 0x80

struct pd_tcp_hdr {
    uint16_t src_port;
    uint16_t dst_port;
    uint32_t sent_seq;
    uint32_t recv_ack;
    uint8_t data_off;           /* data offset:4 (32-bit words), reserved:4 */
    uint8_t tcp_flags;          /* CWR ECE URG ACK PSH RST SYN FIN */
    uint16_t rx_win;
    uint16_t cksum;
    uint16_t tcp_urp;
} PD_PACKED;

/* ---- GRE (RFC 2784, key and sequence: RFC 2890) ----------------------- */

#define PD_GRE_HDR_LEN 4
#define PD_GRE_F_CSUM  0x8000   /* in flags_ver, host order */
#define PD_GRE_F_KEY   0x2000
#define PD_GRE_F_SEQ   0x1000
#define PD_GRE_VER_MASK 0x0007

/* The fixed part; optional checksum(+reserved), key and sequence words
 * follow in that order, 4 bytes each, when their flag is set. */
struct pd_gre_hdr {
    uint16_t flags_ver;
    uint16_t proto;             /* an ether_type: PD_ETHER_TYPE_MPLS for MPLSoGRE */
} PD_PACKED;

/* ---- MPLS label stack entry (RFC 3032) -------------------------------- */

#define PD_MPLS_HDR_LEN 4
#define PD_MPLS_LABEL_SHIFT 12
#define PD_MPLS_TC_SHIFT    9
#define PD_MPLS_BOS_SHIFT   8
#define PD_MPLS_LABEL_MAX   0xFFFFF
#define PD_MPLS_LABEL_IPV4_NULL 0
#define PD_MPLS_LABEL_IPV6_NULL 2
#define PD_MPLS_LABEL_IMPLICIT_NULL 3

struct pd_mpls_hdr {
    uint32_t lse;               /* label:20 TC:3 S:1 TTL:8 */
} PD_PACKED;

/* ---- VXLAN (RFC 7348) ------------------------------------------------- */

#define PD_VXLAN_HDR_LEN 8
#define PD_VXLAN_F_VNI  0x08000000u   /* the I flag, in vx_flags host order */
#define PD_VXLAN_VNI_MAX 0xFFFFFF

struct pd_vxlan_hdr {
    uint32_t vx_flags;          /* flags:8 reserved:24 */
    uint32_t vx_vni;            /* VNI:24 reserved:8 */
} PD_PACKED;

/* ---- the sizes and offsets the wire fixes ----------------------------- */

static_assert(sizeof(struct pd_ether_addr) == 6, "ether addr");
static_assert(sizeof(struct pd_ether_hdr) == PD_ETHER_HDR_LEN, "ether hdr");
static_assert(sizeof(struct pd_vlan_hdr) == PD_VLAN_HDR_LEN, "vlan hdr");
static_assert(sizeof(struct pd_arp_ipv4) == 20, "arp ipv4 part");
static_assert(sizeof(struct pd_arp_hdr) == 28, "arp hdr");
static_assert(offsetof(struct pd_arp_hdr, arp_data.arp_tip) == 24, "arp tip");
static_assert(sizeof(struct pd_ipv4_hdr) == PD_IPV4_HDR_LEN, "ipv4 hdr");
static_assert(offsetof(struct pd_ipv4_hdr, time_to_live) == 8, "ipv4 ttl");
static_assert(offsetof(struct pd_ipv4_hdr, src_addr) == 12, "ipv4 src");
static_assert(sizeof(struct pd_ipv6_hdr) == PD_IPV6_HDR_LEN, "ipv6 hdr");
static_assert(offsetof(struct pd_ipv6_hdr, src_addr) == 8, "ipv6 src");
static_assert(offsetof(struct pd_ipv6_hdr, dst_addr) == 24, "ipv6 dst");
static_assert(sizeof(struct pd_ipv6_frag_hdr) == 8, "ipv6 frag hdr");
static_assert(sizeof(struct pd_icmp_hdr) == 8, "icmp hdr");
static_assert(sizeof(struct pd_icmp6_hdr) == 8, "icmp6 hdr");
static_assert(sizeof(struct pd_nd_ns_hdr) == 24, "nd ns");
static_assert(sizeof(struct pd_nd_na_hdr) == 24, "nd na");
static_assert(sizeof(struct pd_nd_opt_lladdr) == 8, "nd lladdr opt");
static_assert(sizeof(struct pd_udp_hdr) == PD_UDP_HDR_LEN, "udp hdr");
static_assert(sizeof(struct pd_tcp_hdr) == PD_TCP_HDR_LEN, "tcp hdr");
static_assert(offsetof(struct pd_tcp_hdr, cksum) == 16, "tcp cksum");
static_assert(sizeof(struct pd_gre_hdr) == PD_GRE_HDR_LEN, "gre hdr");
static_assert(sizeof(struct pd_mpls_hdr) == PD_MPLS_HDR_LEN, "mpls hdr");
static_assert(sizeof(struct pd_vxlan_hdr) == PD_VXLAN_HDR_LEN, "vxlan hdr");

#endif
