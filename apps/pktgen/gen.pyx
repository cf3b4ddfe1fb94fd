"""pktgen's hot path: build, stamp and send bursts; receive, check and time them.

Setup (app.py, Python) builds one template frame (Ethernet, IPv4 or IPv6,
UDP or TCP SYN, payload) and its field offsets; `Gen.set_flows` turns it into
a table of per-flow fields computed once: the flow's source address (its low
32 bits) and source port, its IPv4 header checksum, and the ones' complement
sum of its pseudo-header, L4 header and payload with the checksum field and
the stamp left out.

tx (nogil, per burst): read CLOCK_MONOTONIC once, take `n` mbufs in one bulk
get, and for each: copy the template, patch the flow's address, port and IPv4
checksum, write the stamp (magic, sequence number, tx time), finish the L4
checksum by adding the stamp's 10 words to the flow's sum (RFC 1071
arithmetic: the sum is associative, so a precomputed part plus the new part
gives the same result as a full pass), then one tx_burst. Packets the queue
refused are freed and their sequence numbers reused, so the sequence has no
holes and `--count` means packets the port took. Flows take turns
(packet k belongs to flow k mod flows).

rx (nogil, per burst): rx_burst, then per packet look for the stamp at the
template's offset; a packet without it is counted as `rx_other`. A stamped
one gives a latency sample (rx clock - tx clock, both CLOCK_MONOTONIC, so
lcores on different cpus agree) and its sequence number: one below the
highest seen so far is counted `out_of_order`. Loss is what was sent and
never received, read after the run (the receiver waits up to `drain_ns`
after the last send for stragglers).

Pacing (`rate` > 0): the number of packets due is rate x elapsed time,
checked at each round; a burst sends at most what is due, so the average
rate is exact and bursts are at most `burst` packets.

One lcore can run both sides (`run_both`), or tx and rx run on two lcores
(`run_tx`, `run_rx`): the tx lcore publishes its final count with a release
store of `tx_done`, which the rx lcore reads with acquire.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, uint64_t, UINT64_MAX
from libc.stdlib cimport free
from libc.string cimport memcpy, memset
from pypdk.eal.timer cimport now_ns

from pypdk.worker.lcore_loop cimport (pd_lcore, LcoreWorker, lcore_loop, lcore_rx, conf_alloc,
                                      PD_ROUND_DONE)
from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free_bulk, pktmbuf_read,
                                 mbuf_mtod, PktMbufPool)
from pypdk.mempool.mempool cimport pd_mempool
from pd_compiler cimport pd_likely, pd_unlikely
from pypdk.net.byteorder cimport pd_ntohs
from pypdk.net.cksum cimport cksum_add, cksum_fold
from pypdk.pmd.ethdev cimport pd_eth_fp, eth_port_fp, fp_rx_burst, fp_tx_burst

from pypdk.errors import UsageError

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)
    void *calloc(size_t n, size_t size)

from pd_atomic cimport pd_load_relaxed_int, pd_load_acquire_int, pd_store_release_int

from pd_config cimport PD_MAX_BURST

cdef extern from *:
    """
    #define PG_MAGIC      0x50474b54u   /* "PGKT" as a little-endian u32 */
    #define PG_STAMP_LEN  20            /* magic u32, seq u64, tx time u64 (host order) */
    """
    enum:
        PG_STAMP_LEN
    uint32_t PG_MAGIC

STAMP_LEN = PG_STAMP_LEN
MAGIC = PG_MAGIC
MAX_BURST = PD_MAX_BURST


ctypedef struct pg_flow:
    uint8_t src[4]          # low 32 bits of the source address, wire order
    uint8_t sport[2]        # wire order
    uint8_t ip_csum[2]      # IPv4 header checksum, wire order (unused for IPv6)
    uint32_t l4_sum         # folded sum: pseudo-header + L4 header + payload, no stamp

ctypedef struct pg_tx_stats:
    uint64_t sent           # packets the tx queue took
    uint64_t bytes
    uint64_t refused        # offered to tx_burst and refused (regenerated later)
    uint64_t bursts
    uint64_t nombuf         # bursts skipped: the pool was empty
    uint64_t idle           # rounds with nothing due (pacing)

ctypedef struct pg_rx_stats:
    uint64_t received       # stamped packets
    uint64_t bytes
    uint64_t other          # packets without our stamp (freed)
    uint64_t out_of_order
    uint64_t lat_min
    uint64_t lat_max
    uint64_t lat_sum
    uint64_t max_seq_plus1  # highest sequence number seen + 1

ctypedef struct pg_conf:
    # written by the main lcore
    int quit
    # set up once
    pd_eth_fp *tx_fp
    pd_eth_fp *rx_fp        # NULL: no rx
    uint16_t tx_queue
    uint16_t rx_queue
    uint16_t burst
    uint16_t is_udp
    pd_mempool *mp
    char *tmpl
    uint32_t size
    uint32_t off_src
    uint32_t off_sport
    uint32_t off_ip_csum    # 0: IPv6, no header checksum
    uint32_t off_l4_csum
    uint32_t off_stamp
    pg_flow *flows
    uint32_t nb_flows
    uint64_t count          # 0: until stopped
    double rate_per_ns      # 0: as fast as possible
    uint64_t drain_ns
    # tx side (the tx lcore writes)
    char pad0[64]
    uint64_t seq
    uint32_t flow
    int tx_done             # release: `tx.sent` is final
    pg_tx_stats tx
    # rx side (the rx lcore writes)
    char pad1[64]
    pg_rx_stats rx


# The sums here are of 16-bit words read big-endian (so the flow's address
# and port words add as numbers). pypdk.net.cksum sums the bytes as stored;
# a ones' complement sum is byte-order independent (RFC 1071, 2.B), so its
# folded sum read big-endian is this one. Carries are folded later.
cdef inline uint32_t sum16(const uint8_t *p, uint32_t n, uint32_t s) noexcept nogil:
    return s + pd_ntohs(cksum_fold(cksum_add(p, n, 0)))

cdef inline uint32_t fold(uint32_t s) noexcept nogil:
    return cksum_fold(s)


# ---- tx ----------------------------------------------------------------------------

cdef inline void build(pg_conf *c, pd_mbuf *m, uint64_t t) noexcept nogil:
    cdef uint8_t *d = <uint8_t *>mbuf_mtod(m)
    cdef pg_flow *f = &c.flows[c.flow]
    cdef uint8_t *st = d + c.off_stamp
    cdef uint32_t magic = PG_MAGIC, cs
    memcpy(d, c.tmpl, c.size)
    m.data_len = <uint16_t>c.size
    m.pkt_len = c.size
    memcpy(d + c.off_src, f.src, 4)
    memcpy(d + c.off_sport, f.sport, 2)
    if c.off_ip_csum:
        memcpy(d + c.off_ip_csum, f.ip_csum, 2)
    memcpy(st, &magic, 4)
    memcpy(st + 4, &c.seq, 8)
    memcpy(st + 12, &t, 8)
    cs = (~fold(sum16(st, PG_STAMP_LEN, f.l4_sum))) & 0xffff
    if cs == 0 and c.is_udp:
        cs = 0xffff                     # UDP: 0 would mean "no checksum"
    d[c.off_l4_csum] = <uint8_t>(cs >> 8)
    d[c.off_l4_csum + 1] = <uint8_t>cs
    c.seq += 1
    c.flow += 1
    if c.flow == c.nb_flows:
        c.flow = 0

cdef inline uint16_t tx_round(pd_lcore *l, pg_conf *c, uint64_t t0) noexcept nogil:
    """Send what is due (at most one burst); the packets the port took.

    Counted in the lcore's counters as a poll (empty: nothing was due),
    tx, and tx_dropped for what the port refused (freed, regenerated).
    """
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    cdef uint64_t due = c.burst, t, left
    cdef uint16_t n, i, nb_tx
    if c.count:
        left = c.count - c.tx.sent
        if left < due:
            due = left
    t = now_ns()
    if c.rate_per_ns > 0:
        left = <uint64_t>(<double>(t - t0) * c.rate_per_ns)
        left = left - c.tx.sent if left > c.tx.sent else 0
        if left < due:
            due = left
    l.stats.polls += 1
    if due == 0:
        c.tx.idle += 1
        l.stats.empty_polls += 1
        return 0
    n = <uint16_t>due
    if pd_unlikely(pktmbuf_alloc_bulk(c.mp, pkts, n) != 0):
        c.tx.nombuf += 1
        return 0
    for i in range(n):
        build(c, pkts[i], t)
    nb_tx = fp_tx_burst(c.tx_fp, c.tx_queue, pkts, n)
    c.tx.bursts += 1
    c.tx.sent += nb_tx
    c.tx.bytes += <uint64_t>nb_tx * c.size
    l.stats.tx += nb_tx
    if pd_unlikely(nb_tx < n):
        pktmbuf_free_bulk(pkts + nb_tx, n - nb_tx)
        c.tx.refused += n - nb_tx
        l.stats.tx_dropped += n - nb_tx
        c.seq -= n - nb_tx              # the next burst reuses their numbers
        c.flow = <uint32_t>(c.seq % c.nb_flows)
    return nb_tx

cdef inline bint tx_finished(pg_conf *c) noexcept nogil:
    return c.count != 0 and c.tx.sent >= c.count


# ---- rx ----------------------------------------------------------------------------

cdef inline uint16_t rx_round(pd_lcore *l, pg_conf *c) noexcept nogil:
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    cdef uint16_t n, i
    cdef uint64_t t, seq, ts, lat
    cdef uint32_t magic
    cdef uint8_t buf[PG_STAMP_LEN]
    cdef const uint8_t *st
    cdef pd_mbuf *m
    n = lcore_rx(l, c.rx_fp, c.rx_queue, pkts, c.burst)    # polls, empty_polls, rx
    if n == 0:
        return 0
    t = now_ns()
    for i in range(n):
        m = pkts[i]
        if pd_unlikely(m.pkt_len < c.off_stamp + PG_STAMP_LEN):
            c.rx.other += 1
            continue
        if pd_likely(m.data_len >= c.off_stamp + PG_STAMP_LEN):
            st = <const uint8_t *>mbuf_mtod(m) + c.off_stamp
        else:
            pktmbuf_read(m, c.off_stamp, PG_STAMP_LEN, <char *>buf)
            st = buf
        memcpy(&magic, st, 4)
        if magic != PG_MAGIC:
            c.rx.other += 1
            continue
        memcpy(&seq, st + 4, 8)
        memcpy(&ts, st + 12, 8)
        lat = t - ts if t > ts else 0
        if lat < c.rx.lat_min:
            c.rx.lat_min = lat
        if lat > c.rx.lat_max:
            c.rx.lat_max = lat
        c.rx.lat_sum += lat
        if seq + 1 < c.rx.max_seq_plus1:
            c.rx.out_of_order += 1
        else:
            c.rx.max_seq_plus1 = seq + 1
        c.rx.received += 1
        c.rx.bytes += m.pkt_len
    pktmbuf_free_bulk(pkts, n)
    return n

cdef inline bint rx_finished(pg_conf *c, uint64_t done_at) noexcept nogil:
    """After tx is done: everything back, or the drain time is over."""
    cdef uint64_t sent = c.tx.sent      # final: read after tx_done (acquire)
    if c.rx.received >= sent:
        return True
    return now_ns() - done_at >= c.drain_ns


# ---- the loops: pypdk's lcore loop over pktgen's rounds ---------------------------
#
# Each lcore runs lcore_loop (pypdk/worker/lcore_loop.pxd) with one of the
# rounds below; its counters are the skeleton's. Stopping pktgen means "stop
# sending" (c.quit): the rounds end the loop themselves (PD_ROUND_DONE), the
# receiving side only after its drain, so the skeleton's own quit flag is
# not what ends them.

ctypedef struct pg_worker:
    pd_lcore lc
    pg_conf *c
    uint64_t t0             # when the loop started (pacing)
    uint64_t done_at        # when tx finished (0: not yet)

cdef inline void tx_finish(pg_worker *w) noexcept nogil:
    w.done_at = now_ns()
    # Release: pairs with pg_rx_round's acquire; tx.sent is final from here.
    pd_store_release_int(&w.c.tx_done, 1)

cdef int32_t pg_both_round(void *arg) noexcept nogil:
    """tx and (optionally) rx on one lcore."""
    cdef pg_worker *w = <pg_worker *>arg
    cdef pg_conf *c = w.c
    cdef int32_t n = 0
    if pd_unlikely(pd_load_relaxed_int(&c.quit)):
        if w.done_at == 0:
            tx_finish(w)
    elif w.done_at == 0:
        n = tx_round(&w.lc, c, w.t0)
        if tx_finished(c):
            tx_finish(w)
    if c.rx_fp != NULL:
        n += rx_round(&w.lc, c)
    if w.done_at and (c.rx_fp == NULL or rx_finished(c, w.done_at)):
        return PD_ROUND_DONE
    return n

cdef int32_t pg_tx_round(void *arg) noexcept nogil:
    cdef pg_worker *w = <pg_worker *>arg
    if pd_load_relaxed_int(&w.c.quit) or tx_finished(w.c):
        return PD_ROUND_DONE
    return tx_round(&w.lc, w.c, w.t0)

cdef int32_t pg_rx_round(void *arg) noexcept nogil:
    cdef pg_worker *w = <pg_worker *>arg
    cdef pg_conf *c = w.c
    cdef int32_t n = rx_round(&w.lc, c)
    if w.done_at == 0:
        # Acquire: pairs with tx_finish's release; tx.sent is final after it.
        # (quit too, in case the tx lcore never ran: the drain bounds the wait.)
        if pd_load_acquire_int(&c.tx_done) or pd_load_relaxed_int(&c.quit):
            w.done_at = now_ns()
    elif rx_finished(c, w.done_at):
        return PD_ROUND_DONE
    return n

cdef int run_both(void *arg) noexcept nogil:
    cdef pg_worker *w = <pg_worker *>arg
    w.t0 = now_ns()
    return lcore_loop(&w.lc, pg_both_round, w, NULL, NULL)

cdef int run_tx(void *arg) noexcept nogil:
    cdef pg_worker *w = <pg_worker *>arg
    w.t0 = now_ns()
    lcore_loop(&w.lc, pg_tx_round, w, NULL, NULL)
    if w.done_at == 0:
        tx_finish(w)
    return 0

cdef int run_rx(void *arg) noexcept nogil:
    cdef pg_worker *w = <pg_worker *>arg
    return lcore_loop(&w.lc, pg_rx_round, w, NULL, NULL)


# ---- Python face -------------------------------------------------------------------

def _fold(s):
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s


cdef class Gen:
    """One generator: its C conf, template and flow table (owned here).

    Args:
        pool: the PktMbufPool tx allocates from.
        tx_port, tx_queue: where packets leave.
        rx_port, rx_queue: where they come back (rx_port None: no rx).
        template: the frame (bytes), with the source address low 32 bits,
            source port, checksums and stamp area zeroed.
        offsets: dict with src, sport, ip_csum (0 for IPv6), l4_csum, stamp,
            l3 (start of the IP header), l4 (start of the L4 header), ipv6,
            udp (bool).
        src_low, sport: flow 0's source address low 32 bits and port;
            flow i adds i to both (address mod 2**32, port mod 2**16).
        flows, count, rate (packets/s, 0: as fast as possible), burst,
        drain (seconds rx waits for stragglers after the last send).
    """
    cdef pg_conf *c
    cdef bytes tmpl
    cdef readonly object pool
    cdef readonly dict offsets
    cdef dict _workers
    cdef readonly object tx_port_id
    cdef readonly object rx_port_id

    def __cinit__(self, *a, **kw):
        cdef void *mem = NULL
        if posix_memalign(&mem, 64, sizeof(pg_conf)) != 0:
            raise MemoryError()
        memset(mem, 0, sizeof(pg_conf))
        self.c = <pg_conf *>mem

    def __init__(self, PktMbufPool pool, tx_port, int tx_queue, rx_port, int rx_queue,
                 bytes template, dict offsets, uint32_t src_low, int sport, int flows=1,
                 uint64_t count=0, double rate=0, int burst=32, double drain=0.5):
        cdef pg_conf *c = self.c
        if not 1 <= burst <= PD_MAX_BURST:
            raise UsageError(f"burst {burst} is out of range", f"use 1..{PD_MAX_BURST}")
        if not 1 <= flows <= (1 << 24):
            raise UsageError(f"{flows} flows is out of range", "use 1..16777216")
        if len(template) > pool.data_room:
            raise UsageError(f"{len(template)}-byte frames do not fit the pool's "
                             f"{pool.data_room}-byte data room", "use a smaller --size")
        if offsets["stamp"] + PG_STAMP_LEN > len(template):
            raise UsageError("the template has no room for the stamp", "use a bigger --size")
        self.pool = pool
        self._workers = {}
        self.tx_port_id = tx_port
        self.rx_port_id = rx_port
        self.offsets = dict(offsets)
        self.tmpl = template
        c.mp = pool.mp
        c.tmpl = <char *>self.tmpl
        c.size = len(template)
        c.tx_fp = eth_port_fp(tx_port)
        c.tx_queue = tx_queue
        c.rx_fp = eth_port_fp(rx_port) if rx_port is not None else NULL
        c.rx_queue = rx_queue
        c.burst = burst
        c.is_udp = bool(offsets["udp"])
        c.off_src = offsets["src"]
        c.off_sport = offsets["sport"]
        c.off_ip_csum = offsets["ip_csum"]
        c.off_l4_csum = offsets["l4_csum"]
        c.off_stamp = offsets["stamp"]
        c.count = count
        c.rate_per_ns = rate / 1e9
        c.drain_ns = <uint64_t>(drain * 1e9)
        c.rx.lat_min = UINT64_MAX
        self._set_flows(src_low, sport, flows)

    def __dealloc__(self):
        if self.c != NULL:
            free(self.c.flows)
            free(self.c)
            self.c = NULL

    cdef _set_flows(self, uint32_t src_low, int sport, uint32_t n):
        cdef pg_conf *c = self.c
        cdef const uint8_t *t = <const uint8_t *>c.tmpl
        cdef uint32_t l3 = self.offsets["l3"], l4 = self.offsets["l4"]
        cdef uint32_t l4len = c.size - l4, ip_base = 0, l4_base, i, a, s, ipc
        cdef uint32_t ihl, proto
        cdef pg_flow *f
        # Sums of the fixed parts (the template has the varying fields zeroed).
        if c.off_ip_csum:
            ihl = (t[l3] & 0xf) * 4
            ip_base = sum16(t + l3, ihl, 0)
            proto = t[l3 + 9]
            l4len = ((<uint32_t>t[l3 + 2] << 8) | t[l3 + 3]) - ihl
            l4_base = sum16(t + l3 + 12, 8, 0)           # addresses (src low part zeroed)
        else:
            proto = t[l3 + 6]
            l4len = (<uint32_t>t[l3 + 4] << 8) | t[l3 + 5]
            l4_base = sum16(t + l3 + 8, 32, 0)
        l4_base += proto + (l4len >> 16) + (l4len & 0xffff)
        l4_base = sum16(t + l4, l4len, l4_base)          # L4 header + payload, stamp zeroed
        c.flows = <pg_flow *>calloc(n, sizeof(pg_flow))
        if c.flows == NULL:
            raise MemoryError()
        c.nb_flows = n
        with nogil:
            for i in range(n):
                f = &c.flows[i]
                a = src_low + i
                s = <uint16_t>(sport + i)
                f.src[0] = a >> 24
                f.src[1] = (a >> 16) & 0xff
                f.src[2] = (a >> 8) & 0xff
                f.src[3] = a & 0xff
                f.sport[0] = s >> 8
                f.sport[1] = s & 0xff
                if c.off_ip_csum:
                    ipc = (~fold(ip_base + (a >> 16) + (a & 0xffff))) & 0xffff
                    f.ip_csum[0] = ipc >> 8
                    f.ip_csum[1] = ipc & 0xff
                f.l4_sum = fold(l4_base + (a >> 16) + (a & 0xffff) + s)

    # -- launching and stopping ------------------------------------------------------
    def worker(self, str which="both"):
        """The GenWorker (an LcoreWorker) for one lcore: 'both', 'tx' or 'rx'."""
        if which not in ("both", "tx", "rx"):
            raise UsageError(f"pktgen has no {which!r} loop", "use 'both', 'tx' or 'rx'")
        w = self._workers.get(which)
        if w is None:
            w = self._workers[which] = GenWorker(self, which)
        return w

    def lcore_function(self, str which="both"):
        """The LcoreFunction for one lcore: 'both', 'tx' or 'rx' (see worker())."""
        return self.worker(which).lcore_function()

    def stop(self):
        """tx stops at once; rx keeps draining for at most `drain` seconds."""
        # Release: pairs with the loops' relaxed load; nothing else is published.
        pd_store_release_int(&self.c.quit, 1)

    # -- counters ----------------------------------------------------------------------
    def tx_stats(self):
        cdef dict d = self.c.tx
        return d

    def rx_stats(self):
        cdef dict d = self.c.rx
        if d["lat_min"] == UINT64_MAX:
            d["lat_min"] = 0
        return d

    @property
    def rx_enabled(self):
        return self.c.rx_fp != NULL

    @property
    def tx_done(self):
        return bool(pd_load_acquire_int(&self.c.tx_done))

    def report(self):
        """sent/received/lost/latency as the app shows them."""
        tx, rx = self.tx_stats(), self.rx_stats()
        d = {"sent": tx["sent"], "tx_bytes": tx["bytes"], "tx_refused": tx["refused"],
             "tx_nombuf": tx["nombuf"]}
        if self.c.rx_fp != NULL:
            n = rx["received"]
            d.update(received=n, rx_bytes=rx["bytes"], rx_other=rx["other"],
                     lost=max(tx["sent"] - n, 0), out_of_order=rx["out_of_order"],
                     latency_ns={"min": rx["lat_min"], "avg": rx["lat_sum"] // n if n else 0,
                                 "max": rx["lat_max"], "samples": n})
        return d

    # -- for tests: one frame of flow `flow` with sequence number `seq` ----------------
    def frame(self, uint64_t seq, uint64_t t=0):
        """The bytes tx would send as packet number `seq` at time t (ns)."""
        cdef pd_mbuf *m
        cdef uint64_t save_seq = self.c.seq
        cdef uint32_t save_flow = self.c.flow
        if pktmbuf_alloc_bulk(self.c.mp, &m, 1) != 0:
            raise MemoryError("pool empty")
        self.c.seq = seq
        self.c.flow = <uint32_t>(seq % self.c.nb_flows)
        build(self.c, m, t)
        out = bytes((<char *>mbuf_mtod(m))[:self.c.size])
        pktmbuf_free_bulk(&m, 1)
        self.c.seq = save_seq
        self.c.flow = save_flow
        return out


cdef class GenWorker(LcoreWorker):
    """What one pktgen lcore runs ('both', 'tx' or 'rx' of a Gen): made by Gen.worker().

    stats() are the lcore loop's counters (pypdk.stats.LCORE_COUNTERS: tx
    rounds and rx bursts are polls, a tx round with nothing due is empty,
    tx_dropped is what the port refused, freed and generated again), then
    tx_nombuf (tx rounds skipped, the pool was empty) on a sending lcore and
    rx_other (packets without the stamp) on a receiving one. stop() stops
    the generator (Gen.stop): tx at once, rx after its drain.
    """
    cdef pg_worker *w
    cdef readonly Gen gen
    cdef readonly str which

    def __cinit__(self, Gen gen, str which):
        self.w = <pg_worker *>conf_alloc(sizeof(pg_worker))
        self.w.c = gen.c
        self.gen = gen
        self.which = which
        self.set_conf(&self.w.lc, run_both if which == "both" else run_tx if which == "tx" else run_rx,
                      self.w)

    def __dealloc__(self):
        free(self.w)
        self.w = NULL

    def lcore_function(self):
        """The LcoreFunction to launch (clears the generator's stop)."""
        pd_store_release_int(&self.w.c.quit, 0)
        self.w.done_at = 0
        return LcoreWorker.lcore_function(self)

    def stop(self):
        """Stop sending; a receiving lcore returns after its drain."""
        self.gen.stop()

    def extra_stats(self):
        out = {}
        if self.which != "rx":
            out["tx_nombuf"] = self.w.c.tx.nombuf
        if self.which == "rx" or (self.which == "both" and self.w.c.rx_fp != NULL):
            out["rx_other"] = self.w.c.rx.other
        return out

    def port_stats(self):
        """{port id: {'rx', 'tx', 'dropped'}}: tx on the tx port, rx on the rx port."""
        cdef dict lc = self.w.lc.stats
        out = {}
        if self.which != "rx":
            out[self.gen.tx_port_id] = {"rx": 0, "tx": lc["tx"], "dropped": 0}
        if self.which == "rx" or (self.which == "both" and self.w.c.rx_fp != NULL):
            d = out.setdefault(self.gen.rx_port_id, {"rx": 0, "tx": 0, "dropped": 0})
            d["rx"] += lc["rx"]
        return out

    def __repr__(self):
        return f"<GenWorker {self.which}>"
