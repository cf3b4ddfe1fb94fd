# TCP header (RFC 9293) and its flag bits (tcp_flags: CWR ECE URG ACK PSH RST SYN FIN).

from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef extern from "pd_net.h" nogil:
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


# Header length in bytes, options included (data offset * 4).
cdef inline uint32_t tcp_hdr_len(const pd_tcp_hdr *t) noexcept nogil:
    return (t.data_off >> 4) << 2
