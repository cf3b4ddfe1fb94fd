"""net_null: a port that receives made-up packets and drops what it sends.

For measuring the framework's own cost (testpmd's net_null, same idea): rx
hands out `size`-byte mbufs from the queue's pool as fast as it is asked,
tx frees what it is given. With `copy=1`, rx writes a template packet into
each mbuf and tx reads each packet's bytes, so the data is touched as a real
driver would touch it.

Keys:
  size   packet length in bytes (default 64)
  copy   1: touch packet data on rx and tx (default 0)
  no-rx  1: rx returns nothing (a sink port; default 0)
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free_bulk, mbuf_mtod,
                                 PktMbufPool)
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport EthDev, pd_eth_qstats
from pypdk.net.ether cimport PD_ETHER_HDR_LEN, PD_ETHER_TYPE_IPV4
from pypdk.net.ipv4 cimport PD_IPV4_HDR_LEN, PD_IPPROTO_UDP
from pypdk.net.udp cimport PD_UDP_HDR_LEN

from pypdk.pmd.devargs import Key, parse_bool
from pypdk.errors import UsageError

DRIVER = "net_null"
HELP = "made-up packets in, everything out dropped (framework cost)"
KEYS = (
    Key("size", int, 64, "packet length in bytes (14..data room)"),
    Key("copy", parse_bool, False, "1: write/read packet data on rx/tx"),
    Key("no-rx", parse_bool, False, "1: rx returns nothing"),
)

ctypedef struct null_q:
    pd_eth_qstats stats
    pd_mempool *mp
    uint32_t size
    uint16_t port
    uint16_t queue
    int copy
    int no_rx
    char tmpl[2048]          # the packet copy=1 writes (an Ethernet/IPv4/UDP frame)
    char sink[2048]          # where copy=1 tx reads to


cdef uint16_t null_rx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef null_q *rxq = <null_q *>q
    cdef uint16_t i
    cdef pd_mbuf *m
    if rxq.no_rx:
        return 0
    if pktmbuf_alloc_bulk(rxq.mp, pkts, n) != 0:
        rxq.stats.nombuf += n
        return 0
    for i in range(n):
        m = pkts[i]
        m.data_len = <uint16_t>rxq.size
        m.pkt_len = rxq.size
        m.port = rxq.port
        m.queue = rxq.queue
        if rxq.copy:
            memcpy(mbuf_mtod(m), rxq.tmpl, rxq.size)
    rxq.stats.packets += n
    rxq.stats.bytes += <uint64_t>n * rxq.size
    return n


cdef uint16_t null_tx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef null_q *txq = <null_q *>q
    cdef uint16_t i
    cdef uint64_t nbytes = 0
    cdef uint32_t len
    for i in range(n):
        len = pkts[i].data_len
        nbytes += pkts[i].pkt_len
        if txq.copy:
            memcpy(txq.sink, mbuf_mtod(pkts[i]), len if len <= 2048 else 2048)
    pktmbuf_free_bulk(pkts, n)
    txq.stats.packets += n
    txq.stats.bytes += nbytes
    return n


def _template(size):
    # A plausible frame: broadcast Ethernet, IPv4/UDP, zero payload.
    frame = bytearray(size)
    frame[0:6] = b"\xff" * 6
    frame[6:12] = b"\x02\x00\x00\x00\x00\x01"
    frame[12:14] = bytes([PD_ETHER_TYPE_IPV4 >> 8, PD_ETHER_TYPE_IPV4 & 0xff])
    if size >= PD_ETHER_HDR_LEN + PD_IPV4_HDR_LEN + PD_UDP_HDR_LEN:
        frame[PD_ETHER_HDR_LEN] = 0x45                  # version 4, 5 words
        frame[PD_ETHER_HDR_LEN + 8] = 64                # TTL
        frame[PD_ETHER_HDR_LEN + 9] = PD_IPPROTO_UDP
    return bytes(frame)


cdef class Port(EthDev):
    max_rx_queues = 16
    max_tx_queues = 16
    DRIVER = DRIVER

    def __cinit__(self):
        self.drv_rx = null_rx
        self.drv_tx = null_tx

    def _dev_probe(self, dict args):
        if not 14 <= args["size"] <= 2048:
            raise UsageError(f"{self.name}: size {args['size']} is out of range",
                             "use size=14..2048")

    cdef null_q *_init_q(self, bint rx, uint16_t qid) except NULL:
        cdef null_q *q = <null_q *>self.queue_alloc(rx, qid, sizeof(null_q))
        memset(q, 0, sizeof(null_q))
        q.size = self.devargs["size"]
        q.copy = self.devargs["copy"]
        q.no_rx = self.devargs["no-rx"]
        q.port = self.port_id
        q.queue = qid
        tmpl = _template(q.size)
        memcpy(q.tmpl, <char *>tmpl, q.size)
        return q

    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        if self.devargs["size"] > pool.data_room:
            raise UsageError(f"{self.name}: size {self.devargs['size']} is larger than the pool's "
                             f"data room {pool.data_room}", "use a smaller size")
        self._init_q(True, q).mp = pool.mp

    def _dev_tx_queue_setup(self, q, nb_desc):
        self._init_q(False, q)
