# TCP header (RFC 9293) and its flag bits (tcp_flags: CWR ECE URG ACK PSH RST SYN FIN).

from libc.stdint cimport uint8_t, uint16_t, uint32_t

from pd_net cimport (pd_tcp_hdr, PD_TCP_HDR_LEN, PD_TCP_FIN, PD_TCP_SYN, PD_TCP_RST,
                     PD_TCP_PSH, PD_TCP_ACK, PD_TCP_URG, PD_TCP_ECE, PD_TCP_CWR)


# Header length in bytes, options included (data offset * 4).
cdef inline uint32_t tcp_hdr_len(const pd_tcp_hdr *t) noexcept nogil:
    return (t.data_off >> 4) << 2
