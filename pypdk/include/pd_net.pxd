# pd_net.h, declared once: wire layouts of the protocol headers, their
# constants and the byte-order helpers. The field helpers live in the .pxd
# files of pypdk/net, which cimport their part of this file.
# Cimport as `from pd_net cimport ...`: "include" is a Cython keyword, so
# pypdk.include cannot be spelled in a cimport; this directory is on the
# Cython include path instead (setup.py).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "pd_net.h" nogil:
    # byte order (pypdk/net/byteorder.pxd)
    enum: PD_BIG_ENDIAN
    uint16_t pd_bswap16(uint16_t x)
    uint32_t pd_bswap32(uint32_t x)
    uint64_t pd_bswap64(uint64_t x)
    uint16_t pd_ntohs(uint16_t x)
    uint16_t pd_htons(uint16_t x)
    uint32_t pd_ntohl(uint32_t x)
    uint32_t pd_htonl(uint32_t x)
    uint64_t pd_ntohll(uint64_t x)
    uint64_t pd_htonll(uint64_t x)
    uint16_t PD_BE16(uint16_t x)
    uint32_t PD_BE32(uint32_t x)
    uint16_t pd_load_u16(const void *p)
    uint32_t pd_load_u32(const void *p)
    uint64_t pd_load_u64(const void *p)
    void pd_store_u16(void *p, uint16_t v)
    void pd_store_u32(void *p, uint32_t v)
    void pd_store_u64(void *p, uint64_t v)

    # Ethernet, VLAN
    enum:
        PD_ETHER_ADDR_LEN
        PD_ETHER_HDR_LEN
        PD_VLAN_HDR_LEN
        PD_ETHER_MIN_LEN
        PD_ETHER_MTU
        PD_ETHER_TYPE_IPV4
        PD_ETHER_TYPE_ARP
        PD_ETHER_TYPE_VLAN
        PD_ETHER_TYPE_QINQ
        PD_ETHER_TYPE_IPV6
        PD_ETHER_TYPE_MPLS
        PD_ETHER_TYPE_MPLSM
        PD_ETHER_TYPE_TEB
        PD_VLAN_VID_MASK
        PD_VLAN_DEI
        PD_VLAN_PCP_SHIFT

    struct pd_ether_addr:
        uint8_t addr_bytes[6]

    struct pd_ether_hdr:
        pd_ether_addr dst_addr
        pd_ether_addr src_addr
        uint16_t ether_type

    struct pd_vlan_hdr:
        uint16_t vlan_tci
        uint16_t eth_proto

    # ARP
    enum:
        PD_ARP_HRD_ETHER
        PD_ARP_OP_REQUEST
        PD_ARP_OP_REPLY
        PD_ARP_OP_RREQUEST
        PD_ARP_OP_RREPLY

    struct pd_arp_ipv4:
        pd_ether_addr arp_sha
        uint32_t arp_sip
        pd_ether_addr arp_tha
        uint32_t arp_tip

    struct pd_arp_hdr:
        uint16_t arp_hardware
        uint16_t arp_protocol
        uint8_t arp_hlen
        uint8_t arp_plen
        uint16_t arp_opcode
        pd_arp_ipv4 arp_data

    # IP protocol numbers, IPv4
    enum:
        PD_IPPROTO_HOPOPTS
        PD_IPPROTO_ICMP
        PD_IPPROTO_IPIP
        PD_IPPROTO_TCP
        PD_IPPROTO_UDP
        PD_IPPROTO_IPV6
        PD_IPPROTO_ROUTING
        PD_IPPROTO_FRAGMENT
        PD_IPPROTO_GRE
        PD_IPPROTO_ESP
        PD_IPPROTO_AH
        PD_IPPROTO_ICMPV6
        PD_IPPROTO_NONE
        PD_IPPROTO_DSTOPTS
        PD_IPPROTO_SCTP
        PD_IPPROTO_MPLS

        PD_IPV4_HDR_LEN
        PD_IPV4_VHL_DEF
        PD_IPV4_HDR_DF_FLAG
        PD_IPV4_HDR_MF_FLAG
        PD_IPV4_HDR_OFFSET_MASK
        PD_IPV4_MAX_PKT_LEN

    struct pd_ipv4_hdr:
        uint8_t version_ihl
        uint8_t type_of_service
        uint16_t total_length
        uint16_t packet_id
        uint16_t fragment_offset
        uint8_t time_to_live
        uint8_t next_proto_id
        uint16_t hdr_checksum
        uint32_t src_addr
        uint32_t dst_addr

    # IPv6
    enum:
        PD_IPV6_HDR_LEN
        PD_IPV6_ADDR_LEN

    struct pd_ipv6_hdr:
        uint32_t vtc_flow
        uint16_t payload_len
        uint8_t proto
        uint8_t hop_limits
        uint8_t src_addr[16]
        uint8_t dst_addr[16]

    struct pd_ipv6_frag_hdr:
        uint8_t next_header
        uint8_t reserved
        uint16_t frag_data
        uint32_t id

    struct pd_ipv6_ext_hdr:
        uint8_t next_header
        uint8_t hdr_ext_len

    # ICMP, ICMPv6, ND
    enum:
        PD_ICMP_ECHO_REPLY
        PD_ICMP_DEST_UNREACH
        PD_ICMP_REDIRECT
        PD_ICMP_ECHO_REQUEST
        PD_ICMP_TIME_EXCEEDED
        PD_ICMP_PARAM_PROBLEM
        PD_ICMP_CODE_FRAG_NEEDED

        PD_ICMP6_DEST_UNREACH
        PD_ICMP6_PACKET_TOO_BIG
        PD_ICMP6_TIME_EXCEEDED
        PD_ICMP6_PARAM_PROBLEM
        PD_ICMP6_ECHO_REQUEST
        PD_ICMP6_ECHO_REPLY
        PD_ICMP6_ROUTER_SOLICIT
        PD_ICMP6_ROUTER_ADVERT
        PD_ICMP6_NEIGH_SOLICIT
        PD_ICMP6_NEIGH_ADVERT
        PD_ICMP6_REDIRECT

        PD_ND_OPT_SOURCE_LLADDR
        PD_ND_OPT_TARGET_LLADDR
        PD_ND_OPT_MTU

    uint32_t PD_ND_NA_FLAG_ROUTER
    uint32_t PD_ND_NA_FLAG_SOLICITED
    uint32_t PD_ND_NA_FLAG_OVERRIDE

    struct pd_icmp_hdr:
        uint8_t icmp_type
        uint8_t icmp_code
        uint16_t icmp_cksum
        uint16_t icmp_ident
        uint16_t icmp_seq_nb

    struct pd_icmp6_hdr:
        uint8_t icmp6_type
        uint8_t icmp6_code
        uint16_t icmp6_cksum
        uint32_t icmp6_data

    struct pd_nd_ns_hdr:
        uint8_t icmp6_type
        uint8_t icmp6_code
        uint16_t icmp6_cksum
        uint32_t reserved
        uint8_t target[16]

    struct pd_nd_na_hdr:
        uint8_t icmp6_type
        uint8_t icmp6_code
        uint16_t icmp6_cksum
        uint32_t nd_flags
        uint8_t target[16]

    struct pd_nd_opt_hdr:
        uint8_t type
        uint8_t len

    struct pd_nd_opt_lladdr:
        uint8_t type
        uint8_t len
        pd_ether_addr addr

    # UDP
    enum:
        PD_UDP_HDR_LEN
        PD_UDP_PORT_VXLAN
        PD_UDP_PORT_MPLS
        PD_UDP_PORT_GENEVE

    struct pd_udp_hdr:
        uint16_t src_port
        uint16_t dst_port
        uint16_t dgram_len
        uint16_t dgram_cksum

    # TCP
    enum:
        PD_TCP_HDR_LEN
        PD_TCP_FIN
        PD_TCP_SYN
        PD_TCP_RST
        PD_TCP_PSH
        PD_TCP_ACK
        PD_TCP_URG
        PD_TCP_ECE
        PD_TCP_CWR

    struct pd_tcp_hdr:
        uint16_t src_port
        uint16_t dst_port
        uint32_t sent_seq
        uint32_t recv_ack
        uint8_t data_off
        uint8_t tcp_flags
        uint16_t rx_win
        uint16_t cksum
        uint16_t tcp_urp

    # GRE
    enum:
        PD_GRE_HDR_LEN
        PD_GRE_F_CSUM
        PD_GRE_F_KEY
        PD_GRE_F_SEQ
        PD_GRE_VER_MASK

    struct pd_gre_hdr:
        uint16_t flags_ver
        uint16_t proto

    # MPLS
    enum:
        PD_MPLS_HDR_LEN
        PD_MPLS_LABEL_SHIFT
        PD_MPLS_TC_SHIFT
        PD_MPLS_BOS_SHIFT
        PD_MPLS_LABEL_MAX
        PD_MPLS_LABEL_IPV4_NULL
        PD_MPLS_LABEL_IPV6_NULL
        PD_MPLS_LABEL_IMPLICIT_NULL

    struct pd_mpls_hdr:
        uint32_t lse

    # VXLAN
    enum:
        PD_VXLAN_HDR_LEN
        PD_VXLAN_VNI_MAX
    uint32_t PD_VXLAN_F_VNI

    struct pd_vxlan_hdr:
        uint32_t vx_flags
        uint32_t vx_vni

    # mixing (pypdk/net/hash.pxd)
    uint64_t pd_mul_fold64(uint64_t a, uint64_t b)
