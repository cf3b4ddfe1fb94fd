"""net_pcap: a port that replays a capture file and records what it sends.

For tests, demos and offline runs of an app: `rx_pcap=in.pcap` makes rx
hand out the file's packets in order (once, or forever with `infinite_rx=1`),
`tx_pcap=out.pcap` writes every sent packet to a new capture file that
tcpdump, tshark and scapy read.

Design
------
The capture files themselves (reading pcap/pcapng into a record index,
the pcap file and record headers) are pcapfile.pyx's; this module is the
port around them.

Reading. At `open` the whole rx file is read into one malloc'ed buffer and
indexed (`pcapfile.PcapIndex`): a C array of (offset, length, timestamp)
records over that buffer.
A bad file (not pcap/pcapng, a link type other than Ethernet, a record that
claims an impossible length) is a UsageError naming the file, at open, so
`pypdk-run` exits 2 before any lcore starts. At rx queue setup the index is
filtered for the pool: packets are copied into chains of segments of
`data_room` bytes each (multi-segment mbufs: a 9000-byte frame with the
default 2048-byte data room arrives as 5 chained segments); a packet that
would need more than 256 segments is never delivered and is counted in
`ierrors`, once per pass over the file. rx_burst is then a nogil loop: it
plans the burst (packets and segments), takes all the segments from the
pool in one bulk get, memcpy's and links them, and sets pkt_len, data_len,
nb_segs, port, queue and `timestamp` (the record's, in ns since the epoch).
When the pool is short it retries with half the burst, down to one packet,
and counts one `rx_nombuf` per burst that got nothing; the file position
does not move, so nothing is lost. At the end of the file rx returns 0, or
starts over with `infinite_rx=1`.

Understood formats: classic pcap (magic a1b2c3d4 microseconds, a1b23c4d
nanoseconds) in either byte order, and pcapng (Section Header, Interface
Description with if_tsresol/if_tsoffset, Enhanced, Simple and the obsolete
Packet Block; other blocks are skipped; several sections and interfaces are
fine). The link type must be Ethernet (1). A capture that ends in the middle
of a record (tcpdump still running, a copy cut short) is read up to the last
whole record; `info()["rx_pcap_truncated"]` says so. Zero-length records are
left out.

Writing. The tx file is created (truncated) at open and gets its global
header at once: classic pcap in host byte order, version 2.4, link type 1,
microsecond timestamps (nanosecond with `tx_pcap_ns=1`), `snaplen` bytes per
packet at most (longer packets are cut; the record keeps the original
length). tx_burst reads the clock once per burst (CLOCK_REALTIME), appends a
16-byte record header and the packet's bytes (all segments) to a 1 MiB C
buffer, frees the mbufs and returns n. The buffer goes to the file with
write() when it is 64 KiB full or 100 ms old (checked at each burst), and at
stop and close, so a stopped or closed port's file is complete. A failed
write (disk full) drops what was buffered and counts those packets in
`oerrors` (`tx_write_errors` and `tx_errno` in xstats); a partial write can
leave a cut record at the end of the file.

Without rx_pcap rx gives nothing; without tx_pcap tx frees and counts what it
is given (a sink). At least one of them is required. One rx and one tx
queue. Capturing from a live interface (rx_iface/tx_iface/iface, as in
DPDK's pcap PMD) is not supported: use net_af_packet.

Keys:
  rx_pcap      FILE  capture to replay on rx (pcap or pcapng, Ethernet)
  tx_pcap      FILE  capture file to write what is sent (created/truncated)
  infinite_rx  0/1   1: replay rx_pcap forever (default 0)
  tx_pcap_ns   0/1   1: nanosecond timestamps in tx_pcap (default 0: microseconds)
  snaplen      N     bytes of each sent packet written to tx_pcap (default 65535)
  rx_iface, tx_iface, iface   not supported (use net_af_packet)

Caveats: the rx file is held in memory (its size in RAM); the tx clock is
read once per burst, so the packets of one burst share a timestamp.
"""
import atexit
import os
import weakref

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.errno cimport errno, EINTR
from posix.unistd cimport write
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME

from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free_bulk, mbuf_mtod,
                                 PktMbufPool)
from pypdk.mempool.mempool cimport pd_mempool
from pd_compiler cimport pd_likely, pd_unlikely
from pypdk.pmd.ethdev cimport EthDev, pd_eth_qstats
from pypdk.pmd.pcapfile cimport PcapIndex, pcap_rec, pcap_rec_hdr, PCAP_REC_HDR_LEN

from pypdk.pmd.devargs import Key, parse_bool, parse_size
from pypdk.pmd.pcapfile import file_header
from pypdk.errors import UsageError, ResourceError

DRIVER = "net_pcap"
HELP = "replay a pcap/pcapng file on rx, write sent packets to a pcap file"
KEYS = (
    Key("rx_pcap", str, None, "capture file to replay on rx (pcap or pcapng, Ethernet)"),
    Key("tx_pcap", str, None, "capture file to write sent packets to (created/truncated)"),
    Key("infinite_rx", parse_bool, False, "1: replay rx_pcap forever"),
    Key("tx_pcap_ns", parse_bool, False, "1: nanosecond timestamps in tx_pcap"),
    Key("snaplen", parse_size, 65535, "bytes of each sent packet written (64..262144)"),
    Key("rx_iface", str, None, "not supported: use net_af_packet"),
    Key("tx_iface", str, None, "not supported: use net_af_packet"),
    Key("iface", str, None, "not supported: use net_af_packet"),
)

cdef extern from *:
    """
    /* net_pcap sizes */
    #define PCAP_RX_MAX_SEGS   256        /* segments one rx burst may fill (stack array) */
    #define PCAP_TX_BUF_SIZE   1048576    /* tx staging buffer */
    #define PCAP_TX_FLUSH_BYTES 65536     /* write when this much is staged... */
    #define PCAP_TX_FLUSH_NS   100000000ULL /* ...or when the last write is this old */
    """
    enum:
        RX_MAX_SEGS "PCAP_RX_MAX_SEGS"
        TX_BUF_SIZE "PCAP_TX_BUF_SIZE"
        TX_FLUSH_BYTES "PCAP_TX_FLUSH_BYTES"
    uint64_t TX_FLUSH_NS "PCAP_TX_FLUSH_NS"


ctypedef struct pcap_rxq:
    pd_eth_qstats stats
    pd_mempool *mp
    const char *buf     # the file (owned by the Port)
    pcap_rec *recs      # deliverable packets, in file order
    uint64_t nb_recs
    uint64_t next       # the next record to deliver
    uint64_t oversized  # records left out (too many segments): ierrors per pass
    uint64_t passes     # passes started over the file
    uint32_t room       # data room of one segment
    uint16_t port
    uint16_t queue
    int infinite
    int pass_counted

ctypedef struct pcap_txq:
    pd_eth_qstats stats
    int fd              # -1: no tx_pcap, tx is a sink
    int ns
    uint32_t snaplen
    uint32_t pending    # packets staged in buf (counted in stats already)
    uint64_t pending_bytes
    char *buf
    size_t used
    uint64_t last_flush_ns
    uint64_t write_errors
    int last_errno


# ---- rx --------------------------------------------------------------------

cdef uint16_t pcap_rx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef pcap_rxq *rxq = <pcap_rxq *>q
    cdef pd_mbuf *segs[RX_MAX_SEGS]
    cdef uint32_t cum[RX_MAX_SEGS]      # segments used by the first k+1 packets
    cdef uint32_t k = 0, nseg = 0, i, s, j, take, remain
    cdef uint64_t idx, nb = rxq.nb_recs, nbytes = 0
    cdef pcap_rec *r
    cdef pd_mbuf *m
    cdef pd_mbuf *prev
    cdef const char *src
    if pd_unlikely(not rxq.pass_counted and rxq.next == 0):
        # First pass: packets too big for any chain are dropped, counted once.
        rxq.stats.errors += rxq.oversized
        rxq.passes += 1
        rxq.pass_counted = 1
    if pd_unlikely(nb == 0):
        return 0
    # Plan: how many packets, how many segments.
    idx = rxq.next
    while k < n and k < RX_MAX_SEGS:
        if idx == nb:
            if not rxq.infinite:
                break
            idx = 0
        s = rxq.recs[idx].nseg
        if nseg + s > RX_MAX_SEGS:
            break
        nseg += s
        cum[k] = nseg
        k += 1
        idx += 1
    if k == 0:
        return 0
    # All segments in one bulk get; with a short pool, half the burst.
    while pktmbuf_alloc_bulk(rxq.mp, segs, cum[k - 1]) != 0:
        k >>= 1
        if k == 0:
            rxq.stats.nombuf += 1
            return 0
    j = 0
    for i in range(k):
        if rxq.next == nb:                  # only with infinite_rx (the plan says so)
            rxq.next = 0
            rxq.stats.errors += rxq.oversized
            rxq.passes += 1
        r = &rxq.recs[rxq.next]
        rxq.next += 1
        src = rxq.buf + r.off
        remain = r.len
        m = segs[j]
        m.pkt_len = r.len
        m.nb_segs = <uint16_t>r.nseg
        m.port = rxq.port
        m.queue = rxq.queue
        m.timestamp = r.ts_ns
        prev = NULL
        for s in range(r.nseg):
            take = remain if remain < rxq.room else rxq.room
            memcpy(mbuf_mtod(segs[j]), src, take)
            segs[j].data_len = <uint16_t>take
            if prev != NULL:
                prev.next = segs[j]
            prev = segs[j]
            src += take
            remain -= take
            j += 1
        pkts[i] = m
        nbytes += r.len
    rxq.stats.packets += k
    rxq.stats.bytes += nbytes
    return <uint16_t>k


# ---- tx --------------------------------------------------------------------

cdef int tx_flush(pcap_txq *txq) noexcept nogil:
    """Write the staged records to the file; 0, or -1 (counted) on error."""
    cdef size_t done = 0
    cdef ssize_t w
    while done < txq.used:
        w = write(txq.fd, txq.buf + done, txq.used - done)
        if w < 0:
            if errno == EINTR:
                continue
            txq.write_errors += 1
            txq.last_errno = errno
            txq.stats.errors += txq.pending
            txq.stats.packets -= txq.pending    # never written: oerrors, not opackets
            txq.stats.bytes -= txq.pending_bytes
            txq.used = 0
            txq.pending = 0
            txq.pending_bytes = 0
            return -1
        done += <size_t>w
    txq.used = 0
    txq.pending = 0
    txq.pending_bytes = 0
    return 0


cdef uint16_t pcap_tx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef pcap_txq *txq = <pcap_txq *>q
    cdef timespec ts
    cdef uint64_t now, nbytes = 0
    cdef uint32_t caplen, take, frac
    cdef uint16_t i
    cdef pd_mbuf *seg
    cdef char *dst
    if txq.fd < 0:                          # no tx_pcap: a sink
        for i in range(n):
            nbytes += pkts[i].pkt_len
        pktmbuf_free_bulk(pkts, n)
        txq.stats.packets += n
        txq.stats.bytes += nbytes
        return n
    clock_gettime(CLOCK_REALTIME, &ts)
    now = <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec
    frac = <uint32_t>ts.tv_nsec if txq.ns else <uint32_t>(ts.tv_nsec // 1000)
    for i in range(n):
        seg = pkts[i]
        caplen = seg.pkt_len if seg.pkt_len < txq.snaplen else txq.snaplen
        if txq.used + PCAP_REC_HDR_LEN + caplen > TX_BUF_SIZE:
            tx_flush(txq)
        dst = txq.buf + txq.used
        pcap_rec_hdr(dst, <uint32_t>ts.tv_sec, frac, caplen, seg.pkt_len)
        dst += PCAP_REC_HDR_LEN
        while seg != NULL and caplen:
            take = seg.data_len if seg.data_len < caplen else caplen
            memcpy(dst, mbuf_mtod(seg), take)
            dst += take
            caplen -= take
            seg = seg.next
        txq.used = <size_t>(dst - txq.buf)
        txq.pending += 1
        # Counted as staged, so a failed write can take them back out.
        txq.stats.packets += 1
        txq.stats.bytes += pkts[i].pkt_len
        txq.pending_bytes += pkts[i].pkt_len
    pktmbuf_free_bulk(pkts, n)
    if txq.used >= TX_FLUSH_BYTES or now - txq.last_flush_ns >= TX_FLUSH_NS:
        tx_flush(txq)
        txq.last_flush_ns = now
    return n


# Ports with a tx file, flushed at interpreter exit if nobody closed them, so
# a script that forgets close() still leaves a complete capture.
_writers = weakref.WeakSet()


@atexit.register
def _flush_at_exit():
    for port in list(_writers):
        try:
            port.flush()
        except Exception:
            pass


cdef class Port(EthDev):
    max_rx_queues = 1
    max_tx_queues = 1
    DRIVER = DRIVER

    cdef PcapIndex index
    cdef int tx_fd

    def __cinit__(self):
        self.tx_fd = -1
        self.drv_rx = pcap_rx
        self.drv_tx = pcap_tx

    cdef inline pcap_rxq *rxq(self):
        return <pcap_rxq *>self.fp.rxq[0]

    cdef inline pcap_txq *txq(self):
        return <pcap_txq *>self.fp.txq[0]

    def _dev_probe(self, dict args):
        name = self.name
        for k in ("rx_iface", "tx_iface", "iface"):
            if args[k] is not None:
                raise UsageError(f"{name}: {k}= (capture from a live interface) is not "
                                 "supported by net_pcap",
                                 f"use --vdev net_af_packet0,iface={args[k]}")
        if args["rx_pcap"] is None and args["tx_pcap"] is None:
            raise UsageError(f"{name}: neither rx_pcap nor tx_pcap is given",
                             f"add ,rx_pcap=FILE and/or ,tx_pcap=FILE")
        if not 64 <= args["snaplen"] <= 262144:
            raise UsageError(f"{name}: snaplen {args['snaplen']} is out of range",
                             "use snaplen=64..262144")
        if args["infinite_rx"] and args["rx_pcap"] is None:
            raise UsageError(f"{name}: infinite_rx=1 without rx_pcap",
                             "add ,rx_pcap=FILE or drop infinite_rx")
        if args["rx_pcap"] is not None:
            self.index = PcapIndex()
            self.index.load(args["rx_pcap"])
            if args["infinite_rx"] and self.index.ix.nb == 0:
                raise UsageError(f"{name}: rx_pcap={args['rx_pcap']} has no packets to "
                                 "replay forever", "give a capture with packets, or "
                                 "drop infinite_rx")
        if args["tx_pcap"] is not None:
            path = args["tx_pcap"]
            try:
                self.tx_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                     0o644)
                os.write(self.tx_fd, file_header(args["tx_pcap_ns"], args["snaplen"]))
            except FileNotFoundError:
                raise UsageError(f"tx_pcap={path}: the directory does not exist",
                                 "create it or give another path") from None
            except IsADirectoryError:
                raise UsageError(f"tx_pcap={path}: is a directory",
                                 "give tx_pcap a file name") from None
            except PermissionError:
                raise ResourceError(f"tx_pcap={path}: permission denied",
                                    "write somewhere you may, or run as root") from None
            except OSError as e:
                raise ResourceError(f"tx_pcap={path}: cannot write ({e.strerror})",
                                    "check the disk and the path") from None

    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        cdef uint32_t room = pool.data_room
        cdef uint64_t i, nb = 0
        cdef uint32_t nseg
        cdef pcap_rxq *rxq
        if room == 0:
            raise UsageError(f"{self.name}: pool {pool.name!r} has no data room",
                             "use a pool with data_room > 0")
        rxq = <pcap_rxq *>self.queue_alloc(True, q, sizeof(pcap_rxq))
        free(rxq.recs)
        memset(rxq, 0, sizeof(pcap_rxq))
        rxq.mp = pool.mp
        rxq.room = room
        rxq.port = self.port_id
        rxq.queue = q
        rxq.infinite = self.devargs["infinite_rx"]
        if self.index is not None and self.index.ix.nb:
            rxq.buf = self.index.buf
            rxq.recs = <pcap_rec *>malloc(self.index.ix.nb * sizeof(pcap_rec))
            if rxq.recs == NULL:
                raise MemoryError()
            for i in range(self.index.ix.nb):
                nseg = (self.index.ix.recs[i].len + room - 1) // room
                if nseg > RX_MAX_SEGS:
                    rxq.oversized += 1
                    continue
                rxq.recs[nb] = self.index.ix.recs[i]
                rxq.recs[nb].nseg = nseg
                nb += 1
            rxq.nb_recs = nb
            if rxq.infinite and nb == 0:
                raise UsageError(f"{self.name}: every packet of rx_pcap is longer than "
                                 f"{RX_MAX_SEGS} segments of {room} bytes",
                                 "use a pool with a bigger data_room")

    def _dev_tx_queue_setup(self, q, nb_desc):
        cdef pcap_txq *txq
        if self.txq() == NULL:
            txq = <pcap_txq *>self.queue_alloc(False, q, sizeof(pcap_txq))
            txq.fd = self.tx_fd
            txq.ns = self.devargs["tx_pcap_ns"]
            txq.snaplen = self.devargs["snaplen"]
            if self.tx_fd >= 0:
                txq.buf = <char *>malloc(TX_BUF_SIZE)
                if txq.buf == NULL:
                    raise MemoryError()
                _writers.add(self)

    def flush(self):
        """Write what tx has staged to tx_pcap now (stop and close do this too)."""
        cdef pcap_txq *txq = self.txq() if self.fp != NULL else NULL
        if txq != NULL and txq.fd >= 0 and txq.buf != NULL:
            with nogil:
                tx_flush(txq)

    def _dev_stop(self):
        self.flush()

    def _dev_close(self):
        self.flush()
        _writers.discard(self)
        if self.tx_fd >= 0:
            os.close(self.tx_fd)
            self.tx_fd = -1
        self.index = None           # the port is stopped: no rx reads its buffer

    def _dev_queue_release(self, rx, q):
        if rx:
            free(self.rxq().recs)
        else:
            free(self.txq().buf)

    def _dev_xstats(self):
        # Port-wide names: a net_pcap port has one queue each way.
        d = {}
        if self.rxq() != NULL:
            d["rx_pcap_passes"] = self.rxq().passes
            d["rx_oversized"] = self.rxq().oversized
        if self.txq() != NULL:
            d["tx_write_errors"] = self.txq().write_errors
            d["tx_errno"] = self.txq().last_errno
        return d

    def _dev_info(self):
        d = {"rx_pcap": self.devargs["rx_pcap"], "tx_pcap": self.devargs["tx_pcap"],
             "infinite_rx": bool(self.devargs["infinite_rx"])}
        if self.index is not None:
            d.update(rx_pcap_format=self.index.fmt, rx_pcap_packets=self.index.ix.nb,
                     rx_pcap_truncated=bool(self.index.ix.truncated),
                     rx_pcap_empty_records=self.index.ix.skipped_empty)
        return d
