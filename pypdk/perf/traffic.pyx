"""Traffic loops for measuring ports: receive-and-drop, and a sender.

Both are nogil C loops over any port's fast-path slot (`eth_port_fp`), so
they work for every driver: `python -m pypdk.perf af_xdp` (a veth pair),
the driver tests and benchmarks/bench_af_xdp.py run them.

`RxDrop(ports_queues)` polls a list of (port, queue) round robin, counts
packets and bytes per entry, frees the mbufs; with `seq_offset` it also reads
a little-endian u32 sequence number at that byte offset of each frame and
counts how often each number was seen (up to `nseq`), so a test can check
that every packet arrived exactly once. `TxBlast(port, queue, pool, frame)`
sends copies of a frame in bursts of 32 (an optional u32 sequence number
written at `seq_offset`), until `count` frames went out or it is stopped.

Run either on a worker lcore (`launch(eal, lcore)`, then `stop()`), or on
the calling thread without the GIL (`run(seconds)`).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from pypdk.eal.timer cimport now_ns

from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free_bulk, mbuf_mtod,
                                 PktMbufPool)
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_fp, eth_port_fp, fp_rx_burst, fp_tx_burst, EthDev
from pypdk.eal.lcore cimport LcoreFunction, lcore_function_new

from pypdk.errors import UsageError

from pd_atomic cimport pd_load_relaxed_int, pd_store_release_int

cdef enum:
    BURST = 32
    MAXQ = 16


ctypedef struct rxdrop_conf:
    int quit
    uint32_t nq
    pd_eth_fp *fp[MAXQ]
    uint16_t queue[MAXQ]
    uint64_t pkts[MAXQ]
    uint64_t bytes[MAXQ]
    uint64_t polls
    uint64_t deadline_ns     # 0: until quit
    uint32_t seq_off         # 0: no sequence numbers
    uint32_t nseq
    uint32_t *seen           # seen[seq] += 1
    uint64_t seq_out_of_range


cdef int rxdrop_loop(void *arg) noexcept nogil:
    cdef rxdrop_conf *c = <rxdrop_conf *>arg
    cdef pd_mbuf *pkts[BURST]
    cdef uint16_t nb, i
    cdef uint32_t j, seq
    cdef uint64_t nbytes
    cdef const uint8_t *p
    while not pd_load_relaxed_int(&c.quit):
        for j in range(c.nq):
            nb = fp_rx_burst(c.fp[j], c.queue[j], pkts, BURST)
            if nb == 0:
                continue
            nbytes = 0
            for i in range(nb):
                nbytes += pkts[i].pkt_len
                if c.seq_off and pkts[i].data_len >= c.seq_off + 4:
                    p = <const uint8_t *>mbuf_mtod(pkts[i]) + c.seq_off
                    seq = p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)
                    if seq < c.nseq:
                        c.seen[seq] += 1
                    else:
                        c.seq_out_of_range += 1
            c.pkts[j] += nb
            c.bytes[j] += nbytes
            pktmbuf_free_bulk(pkts, nb)
        c.polls += 1
        if c.deadline_ns and (c.polls & 1023) == 0 and now_ns() >= c.deadline_ns:
            break
    return 0


cdef class RxDrop:
    """Receive and drop on (port, queue) pairs; counters per pair."""
    cdef rxdrop_conf *c
    cdef list targets
    cdef object eal
    cdef int lcore

    def __cinit__(self):
        self.c = <rxdrop_conf *>calloc(1, sizeof(rxdrop_conf))
        if self.c == NULL:
            raise MemoryError()
        self.lcore = -1

    def __init__(self, targets, seq_offset=0, nseq=0):
        cdef EthDev port
        cdef uint32_t j = 0
        self.targets = list(targets)
        if not 1 <= len(self.targets) <= MAXQ:
            raise UsageError(f"RxDrop: {len(self.targets)} queues", f"give 1..{MAXQ} (port, queue) pairs")
        for port, q in self.targets:
            if port.state != "started" or not 0 <= q < port.nb_rx_queues:
                raise UsageError(f"RxDrop: {port.name} queue {q} is not a started rx queue",
                                 "start the port first")
            self.c.fp[j] = eth_port_fp(port.port_id)
            self.c.queue[j] = q
            j += 1
        self.c.nq = j
        if seq_offset:
            self.c.seen = <uint32_t *>calloc(max(nseq, 1), sizeof(uint32_t))
            if self.c.seen == NULL:
                raise MemoryError()
            self.c.seq_off = seq_offset
            self.c.nseq = nseq

    def __dealloc__(self):
        if self.c != NULL:
            free(self.c.seen)
            free(self.c)

    def launch(self, eal, int lcore):
        """Start the loop on a worker lcore."""
        pd_store_release_int(&self.c.quit, 0)
        self.eal = eal
        self.lcore = lcore
        eal.remote_launch(lcore_function_new(rxdrop_loop, self.c, self), lcore)

    def stop(self):
        """Tell the loop to quit and wait for it (worker lcore)."""
        pd_store_release_int(&self.c.quit, 1)
        if self.lcore >= 0:
            self.eal.wait_lcore(self.lcore)
            self.lcore = -1

    def run(self, double seconds):
        """Run the loop on this thread, without the GIL, for `seconds`."""
        pd_store_release_int(&self.c.quit, 0)
        self.c.deadline_ns = now_ns() + <uint64_t>(seconds * 1e9)
        with nogil:
            rxdrop_loop(self.c)
        self.c.deadline_ns = 0

    @property
    def counts(self):
        """Packets per (port, queue) pair, in the order given."""
        return [self.c.pkts[j] for j in range(self.c.nq)]

    @property
    def byte_counts(self):
        return [self.c.bytes[j] for j in range(self.c.nq)]

    @property
    def total(self):
        return sum(self.counts)

    @property
    def polls(self):
        return self.c.polls

    def seen(self):
        """seen[seq] for seq < nseq (how often each sequence number arrived),
        and how many frames had a number >= nseq."""
        return [self.c.seen[i] for i in range(self.c.nseq)], self.c.seq_out_of_range


ctypedef struct txblast_conf:
    int quit
    pd_eth_fp *fp
    uint16_t queue
    pd_mempool *mp
    uint32_t length
    uint32_t seq_off
    uint64_t limit           # 0: until quit / deadline
    uint64_t deadline_ns
    uint64_t sent
    uint64_t nombuf          # bursts with no mbufs
    uint64_t full            # frames the port did not take (ring full)
    uint64_t seq
    char frame[2048]


cdef int txblast_loop(void *arg) noexcept nogil:
    cdef txblast_conf *c = <txblast_conf *>arg
    cdef pd_mbuf *pkts[BURST]
    cdef uint16_t n, i, nb_tx
    cdef uint64_t left, iters = 0
    cdef uint8_t *p
    while not pd_load_relaxed_int(&c.quit):
        n = BURST
        if c.limit:
            left = c.limit - c.sent
            if left == 0:
                break
            if left < n:
                n = <uint16_t>left
        iters += 1
        if c.deadline_ns and (iters & 255) == 0 and now_ns() >= c.deadline_ns:
            break
        if pktmbuf_alloc_bulk(c.mp, pkts, n) != 0:
            c.nombuf += 1
            continue
        for i in range(n):
            memcpy(mbuf_mtod(pkts[i]), c.frame, c.length)
            pkts[i].data_len = <uint16_t>c.length
            pkts[i].pkt_len = c.length
            if c.seq_off:
                p = <uint8_t *>mbuf_mtod(pkts[i]) + c.seq_off
                p[0] = c.seq & 0xff
                p[1] = (c.seq >> 8) & 0xff
                p[2] = (c.seq >> 16) & 0xff
                p[3] = (c.seq >> 24) & 0xff
            c.seq += 1
        nb_tx = fp_tx_burst(c.fp, c.queue, pkts, n)
        c.sent += nb_tx
        if nb_tx < n:
            # Sequence numbers of frames not taken are skipped, not reused.
            c.full += n - nb_tx
            pktmbuf_free_bulk(&pkts[nb_tx], n - nb_tx)
    return 0


cdef class TxBlast:
    """Send copies of a frame on a port's tx queue as fast as it takes them."""
    cdef txblast_conf *c
    cdef object eal
    cdef object pool
    cdef int lcore

    def __cinit__(self):
        self.c = <txblast_conf *>calloc(1, sizeof(txblast_conf))
        if self.c == NULL:
            raise MemoryError()
        self.lcore = -1

    def __init__(self, EthDev port, int queue, PktMbufPool pool, bytes frame, count=0, seq_offset=0):
        if port.state != "started" or not 0 <= queue < port.nb_tx_queues:
            raise UsageError(f"TxBlast: {port.name} tx queue {queue} is not started", "start the port first")
        if not 14 <= len(frame) <= min(2048, pool.data_room):
            raise UsageError(f"TxBlast: frame of {len(frame)} bytes", "use 14..2048 bytes")
        if seq_offset and seq_offset + 4 > len(frame):
            raise UsageError("TxBlast: seq_offset past the frame", "use an offset inside the frame")
        self.pool = pool
        self.c.fp = eth_port_fp(port.port_id)
        self.c.queue = queue
        self.c.mp = <pd_mempool *><uintptr_t>pool.addr
        self.c.length = len(frame)
        memcpy(self.c.frame, <char *>frame, len(frame))
        self.c.limit = count
        self.c.seq_off = seq_offset

    def __dealloc__(self):
        free(self.c)

    def launch(self, eal, int lcore):
        pd_store_release_int(&self.c.quit, 0)
        self.eal = eal
        self.lcore = lcore
        eal.remote_launch(lcore_function_new(txblast_loop, self.c, self), lcore)

    def stop(self):
        pd_store_release_int(&self.c.quit, 1)
        if self.lcore >= 0:
            self.eal.wait_lcore(self.lcore)
            self.lcore = -1

    def run(self, double seconds=0):
        """Send on this thread without the GIL: until `count` frames are out,
        or for `seconds` (0: no time limit)."""
        pd_store_release_int(&self.c.quit, 0)
        self.c.deadline_ns = now_ns() + <uint64_t>(seconds * 1e9) if seconds > 0 else 0
        with nogil:
            txblast_loop(self.c)
        self.c.deadline_ns = 0

    @property
    def sent(self):
        return self.c.sent

    @property
    def not_taken(self):
        return self.c.full

    @property
    def nombuf(self):
        return self.c.nombuf
