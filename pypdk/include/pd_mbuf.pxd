# pd_mbuf.h, declared once: the packet buffer header (two cache lines) and
# its offload flags. The operations are in pypdk/mempool/mbuf.pxd.
# Cimport as `from pd_mbuf cimport ...`: "include" is a Cython keyword, so
# pypdk.include cannot be spelled in a cimport; this directory is on the
# Cython include path instead (setup.py).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pd_mempool cimport pd_mempool

cdef extern from "pd_mbuf.h":
    enum:
        PD_MBUF_DEFAULT_HEADROOM
        PD_MBUF_DEFAULT_DATAROOM
    uint64_t PD_MBUF_F_RX_VLAN
    uint64_t PD_MBUF_F_RX_RSS_HASH
    uint64_t PD_MBUF_F_RX_IP_CKSUM_BAD
    uint64_t PD_MBUF_F_RX_L4_CKSUM_BAD
    uint64_t PD_MBUF_F_TX_VLAN
    uint64_t PD_MBUF_F_TX_IP_CKSUM
    uint64_t PD_MBUF_F_TX_L4_CKSUM
    uint64_t PD_MBUF_F_INDIRECT
    struct pd_mbuf:
        void *buf_addr
        uint64_t buf_iova
        uint16_t data_off
        uint16_t refcnt
        uint16_t nb_segs
        uint16_t port
        uint64_t ol_flags
        uint32_t packet_type
        uint32_t pkt_len
        uint16_t data_len
        uint16_t vlan_tci
        uint32_t rss_hash
        uint16_t buf_len
        uint16_t queue
        uint8_t l2_len
        uint8_t l3_len
        uint8_t l4_len
        uint8_t flags
        uint64_t udata64
        pd_mbuf *next
        pd_mempool *pool
        uint64_t timestamp
        uint16_t vlan_tci_outer
        uint32_t hash2
        uint64_t dynfield[4]
    char *pd_mbuf_mtod(pd_mbuf *m) nogil
