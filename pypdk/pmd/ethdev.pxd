# The ethdev layer: the per-port fast-path table and queue counters.
#
# Every port has one flat `pd_eth_fp` slot: its driver's rx_burst/tx_burst and
# the opaque queue pointers they take. A hot loop resolves the slot once at
# setup (`eth_port_fp(port_id)`) and calls `fp_rx_burst(fp, queue, ...)`: two
# loads and one indirect call per burst, no GIL, no Python. `eth_rx_burst`
# / `eth_tx_burst` by port id are there too, DPDK-style.
#
# Semantics (DPDK's): rx_burst returns how many mbufs it wrote to `pkts`
# (<= n), which the caller now owns. tx_burst returns how many it took; the
# caller still owns (and usually frees) pkts[nb_tx:n].
#
# Every driver queue struct begins with a pd_eth_qstats, written only by the
# lcore that polls the queue; ethdev sums them for port stats.

from libc.stdint cimport uint16_t, uint32_t, uint64_t
from pypdk.mempool.mbuf cimport pd_mbuf

cdef extern from "pd_config.h":
    enum:
        PD_MAX_ETHPORTS
        PD_MAX_QUEUES

ctypedef uint16_t (*eth_rx_burst_t)(void *rxq, pd_mbuf **pkts, uint16_t n) noexcept nogil
ctypedef uint16_t (*eth_tx_burst_t)(void *txq, pd_mbuf **pkts, uint16_t n) noexcept nogil

ctypedef struct pd_eth_qstats:
    uint64_t packets
    uint64_t bytes
    uint64_t errors     # rx: ierrors (bad frames); tx: oerrors (the device refused)
    uint64_t nombuf     # rx: no mbuf to receive into (rx_nombuf)
    uint64_t missed     # rx: dropped before we saw it (imissed), when the driver can tell

ctypedef struct pd_eth_fp:
    eth_rx_burst_t rx_burst
    eth_tx_burst_t tx_burst
    void *rxq[PD_MAX_QUEUES]
    void *txq[PD_MAX_QUEUES]
    uint16_t nb_rxq
    uint16_t nb_txq
    uint16_t port_id
    uint16_t started

# The slot of a port (valid for the port's lifetime; NULL for a bad id).
cdef pd_eth_fp *eth_port_fp(uint16_t port_id) noexcept nogil

cdef inline uint16_t fp_rx_burst(pd_eth_fp *fp, uint16_t queue_id, pd_mbuf **pkts,
                                 uint16_t n) noexcept nogil:
    return fp.rx_burst(fp.rxq[queue_id], pkts, n)

cdef inline uint16_t fp_tx_burst(pd_eth_fp *fp, uint16_t queue_id, pd_mbuf **pkts,
                                 uint16_t n) noexcept nogil:
    return fp.tx_burst(fp.txq[queue_id], pkts, n)

cdef uint16_t eth_rx_burst(uint16_t port_id, uint16_t queue_id, pd_mbuf **pkts,
                           uint16_t n) noexcept nogil
cdef uint16_t eth_tx_burst(uint16_t port_id, uint16_t queue_id, pd_mbuf **pkts,
                           uint16_t n) noexcept nogil

# What a stopped port's slot points at: rx gives nothing, tx takes nothing.
cdef uint16_t eth_rx_burst_stopped(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil
cdef uint16_t eth_tx_burst_stopped(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil


cdef class EthDev:
    """Base of every driver's port class (Python owner, slow path)."""
    cdef pd_eth_fp *fp
    cdef eth_rx_burst_t drv_rx     # the driver's functions, installed on start
    cdef eth_tx_burst_t drv_tx
    cdef readonly int port_id
    cdef readonly str name         # the vdev name, e.g. "net_tap0"
    cdef readonly str driver       # e.g. "net_tap"
    cdef readonly dict devargs     # parsed and typed keys
    cdef readonly str state        # "probed", "configured", "started", "stopped", "closed"
    cdef public object rx_pools    # per rx queue: the PktMbufPool it receives into
    cdef public bytes mac          # 6 bytes
    cdef public int mtu
    cdef public bint promiscuous
    cdef object __weakref__
    cdef void set_queue(self, bint rx, uint16_t q, void *queue)
