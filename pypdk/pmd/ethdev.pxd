# The ethdev layer: the per-port fast-path table, queue counters and the
# driver template.
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
#
# The driver template
# -------------------
# A driver is one module: a key table (`DRIVER`, `HELP`, `KEYS` of
# `devargs.Key`) at its top, its nogil burst functions, then `cdef class
# Port(EthDev)`. `pypdk.pmd.open()` resolves the keys and calls
# `Port(name, devargs)`. What the driver provides, in the order it is used:
#
#   DRIVER = DRIVER       (class attribute) the driver's name, `port.driver`.
#   __cinit__(self)       C fields only (NULL, -1) and the burst functions:
#                         `self.drv_rx = my_rx; self.drv_tx = my_tx`. No I/O.
#   _dev_probe(args)      check the keys, find and open the device, set what
#                         the port knows of it: `self._mac` (6 bytes),
#                         `self._mtu`, `self.socket_id` (the NUMA node,
#                         `netdev.numa_node()` for a kernel interface), the
#                         queue limits (class attributes max_rx_queues /
#                         max_tx_queues, or properties). EthDev.__init__ has
#                         already taken a port id and the fast-path slot; if
#                         _dev_probe raises, EthDev.__init__ calls close()
#                         (so _dev_close must cope with a half-probed port)
#                         and re-raises: nothing is left behind.
#   _dev_configure(nb_rxq, nb_txq)       refuse a queue count it cannot serve.
#   _dev_rx_queue_setup(q, nb_desc, pool)
#   _dev_tx_queue_setup(q, nb_desc)
#                         `self.queue_alloc(rx, q, sizeof(my_q))` gives the
#                         queue's struct (zeroed when new; the same memory
#                         when the queue is set up again, the driver re-inits
#                         what it must). That pointer lives only in the
#                         port's pd_eth_fp slot: the driver reads it back
#                         with `self.fp.rxq[q]` / `self.fp.txq[q]` (a cdef
#                         inline `rxq(q)` that casts it reads best) and keeps
#                         no list or array of its own.
#   _dev_start()          sockets, rings, the device up; on failure undo it
#                         all and raise. The base then installs drv_rx/drv_tx.
#   _dev_stop()           the base has already put the "stopped" functions in
#                         the slot; undo start, give mbufs back.
#   _dev_queue_release(rx, q)   free what the queue struct points to (never
#                         the struct itself: the base frees it after this).
#   _dev_close()          release the device (fds, files); the base then
#                         releases every queue and clears the slot.
#   _dev_queue_xstats(rx, q)    {name: value} of the driver's own counters of
#                         one queue; the base names them rx_q<N>_<name> /
#                         tx_q<N>_<name> beside the pd_eth_qstats ones.
#   _dev_xstats()         port-wide counters; a key in STAT_NAMES (imissed,
#                         ...) is also added into stats().
#   _dev_stats_update()   fold counters kept elsewhere (the kernel) into the
#                         queues' pd_eth_qstats, before they are read.
#   _dev_link()           a dict with the LINK_KEYS (missing ones take the
#                         virtual defaults); netdev.link() for an interface.
#   _dev_info()           the driver's own keys for info() (`iface` and
#                         `ifindex` when there is a kernel interface).
#   _dev_set_mtu(mtu), _dev_set_promiscuous(on)   reach the device or raise;
#                         the base stores the value only when they return.
#
# Life cycle, as the base runs it: __init__ (port id, slot) -> _dev_probe ->
# configure -> *_queue_setup -> start (_dev_start, then the slot gets the
# driver's functions) -> stop (the slot gets the stopped functions, then
# _dev_stop) -> close (stop, _dev_close, _dev_queue_release + free for every
# queue, slot cleared, port id free). close() is idempotent and `with port:`
# closes.

from libc.stdint cimport uint16_t, uint32_t, uint64_t
from pypdk.mempool.mbuf cimport pd_mbuf

from pd_config cimport PD_MAX_ETHPORTS, PD_MAX_QUEUES

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
    cdef readonly list rx_pools    # per rx queue: the PktMbufPool it receives into
    cdef readonly int socket_id    # NUMA node of the device, -1: unknown (SOCKET_ID_ANY)
    cdef bytes _mac                # 6 bytes; read as `mac`
    cdef int _mtu                  # read as `mtu`, changed through set_mtu
    cdef bint _promisc             # read as `promiscuous`, changed through set_promiscuous
    cdef object __weakref__
    cdef void set_queue(self, bint rx, uint16_t q, void *queue)
    cdef void *queue_alloc(self, bint rx, uint16_t q, size_t size) except NULL
    cdef _release_queues(self)
