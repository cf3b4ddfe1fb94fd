"""net_ring: a port made of rings, for wiring lcores and apps together in memory.

Each queue pair is two rings: what the port transmits is enqueued on its tx
ring, what it receives is dequeued from its rx ring. Ports are wired by how
the rings are shared:
  net_ring0                       a port of its own rings (feed its rx ring
                                  from Python or another lcore: `rx_ring(q)`)
  net_ring0,loopback=1            tx ring == rx ring: it receives what it sends
  net_ring1,peer=net_ring0        crossed with net_ring0: 1 sends to 0 and 0 to 1

Rings are multi-producer/multi-consumer, so a Python script may inject while
an lcore polls. A full tx ring refuses the rest of the burst (the caller
frees it: DPDK semantics); that is flow control, not an error, so it is
counted apart, as `tx_qN_ring_full` in xstats.

Keys:
  size      slots per ring (power of two, default 1024)
  loopback  1: receive what is sent (default 0)
  peer      name of an open net_ring port to cross with (same queue count)
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memset

from pypdk.mempool.mbuf cimport pd_mbuf, PktMbufPool
from pypdk.ring.ring cimport Ring, pd_ring, ring_mc_dequeue_burst, ring_mp_enqueue_burst
from pypdk.pmd.ethdev cimport EthDev, pd_eth_qstats

from pypdk.pmd.devargs import Key, parse_bool
from pypdk.errors import UsageError

DRIVER = "net_ring"
HELP = "a port made of in-memory rings (loopback or crossed with another net_ring port)"
KEYS = (
    Key("size", int, 1024, "slots per ring, a power of two"),
    Key("loopback", parse_bool, False, "1: the port receives what it sends"),
    Key("peer", str, None, "an open net_ring port to cross with"),
)

ctypedef struct ring_q:
    pd_eth_qstats stats
    pd_ring *ring
    uint64_t full          # tx: packets refused because the ring was full
    uint16_t port
    uint16_t queue


cdef uint16_t ring_rx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef ring_q *rxq = <ring_q *>q
    cdef uint16_t got = <uint16_t>ring_mc_dequeue_burst(rxq.ring, <void **>pkts, n), i
    cdef uint64_t nbytes = 0
    for i in range(got):
        nbytes += pkts[i].pkt_len
        pkts[i].port = rxq.port
        pkts[i].queue = rxq.queue
    rxq.stats.packets += got
    rxq.stats.bytes += nbytes
    return got


cdef uint16_t ring_tx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef ring_q *txq = <ring_q *>q
    cdef uint16_t sent = <uint16_t>ring_mp_enqueue_burst(txq.ring, <void **>pkts, n), i
    cdef uint64_t nbytes = 0
    for i in range(sent):
        nbytes += pkts[i].pkt_len
    txq.stats.packets += sent
    txq.stats.bytes += nbytes
    txq.full += n - sent
    return sent


cdef class Port(EthDev):
    max_rx_queues = 16
    max_tx_queues = 16
    DRIVER = DRIVER

    cdef readonly list rx_rings     # Ring per queue
    cdef readonly list tx_rings
    cdef object peer_port

    def __cinit__(self):
        self.drv_rx = ring_rx
        self.drv_tx = ring_tx
        self.rx_rings = []
        self.tx_rings = []
        self.peer_port = None

    def _dev_probe(self, dict args):
        self._wire(args)

    def _wire(self, args):
        size = args["size"]
        if size < 2 or size & (size - 1):
            raise UsageError(f"{self.name}: size {size} is not a power of two",
                             "use size=1024 or another power of two")
        if args["peer"] and args["loopback"]:
            raise UsageError(f"{self.name}: peer and loopback both given", "choose one")
        if args["peer"]:
            from pypdk.pmd.ethdev import ports
            peers = [p for p in ports() if p.name == args["peer"]]
            if not peers or peers[0].driver != DRIVER:
                raise UsageError(f"{self.name}: peer {args['peer']!r} is not an open net_ring port",
                                 "open the peer first (its --vdev comes earlier)")
            if (<Port>peers[0]).peer_port is not None:
                raise UsageError(f"{self.name}: {args['peer']} is already crossed with another port",
                                 "cross each net_ring port with one peer")
            self.peer_port = peers[0]
            (<Port>self.peer_port).peer_port = self

    def _dev_configure(self, nb_rxq, nb_txq):
        if nb_rxq != nb_txq:
            raise UsageError(f"{self.name}: net_ring needs as many rx as tx queues "
                             f"({nb_rxq} rx, {nb_txq} tx)", "configure queue pairs")
        size = self.devargs["size"]
        if self.peer_port is not None and (<Port>self.peer_port).rx_rings:
            peer = <Port>self.peer_port
            if len(peer.rx_rings) != nb_rxq:
                raise UsageError(f"{self.name}: {nb_rxq} queues, its peer {peer.name} has "
                                 f"{len(peer.rx_rings)}", "give both ports the same queue count")
            self.rx_rings = list(peer.tx_rings)
            self.tx_rings = list(peer.rx_rings)
        else:
            self.rx_rings = [Ring(f"{self.name}_rx{q}", size) for q in range(nb_rxq)]
            if self.devargs["loopback"]:
                self.tx_rings = self.rx_rings
            else:
                self.tx_rings = [Ring(f"{self.name}_tx{q}", size) for q in range(nb_txq)]

    cdef _init_q(self, bint rx, Ring r, uint16_t qid):
        cdef ring_q *q = <ring_q *>self.queue_alloc(rx, qid, sizeof(ring_q))
        memset(q, 0, sizeof(ring_q))
        q.ring = r.r
        q.port = self.port_id
        q.queue = qid

    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        self._init_q(True, self.rx_rings[q], q)

    def _dev_tx_queue_setup(self, q, nb_desc):
        self._init_q(False, self.tx_rings[q], q)

    def rx_ring(self, q=0):
        """The ring this port receives from on queue q (inject mbufs here)."""
        return self.rx_rings[q]

    def tx_ring(self, q=0):
        """The ring this port transmits to on queue q."""
        return self.tx_rings[q]

    def _dev_queue_xstats(self, rx, q):
        return {} if rx else {"ring_full": (<ring_q *>self.fp.txq[q]).full}

    def _dev_close(self):
        # Packets still in rings the port owns go back to their pools.
        from pypdk.mempool.mbuf import Mbuf
        owned = self.rx_rings + [r for r in self.tx_rings if r not in self.rx_rings]
        for r in owned:
            while True:
                got = r.dequeue_burst(256)
                if not got:
                    break
                for a in got:
                    Mbuf.from_addr(a).free()
        if self.peer_port is not None:
            (<Port>self.peer_port).peer_port = None
