"""Run-to-completion: one lcore polls its queues, processes and transmits each burst.

The model DPDK's l2fwd and testpmd use. An `RtcWorker` is the C struct one
lcore runs (`pd_rtc_conf`): a list of hops, each an rx queue and the tx queue
its packets leave by, a burst size, an optional C hook run on every burst
and the lcore's counters. Its loop (`rtc_loop`, inline in rtc.pxd) is
allocation-free, keeps the burst on the stack and never touches Python; the
quit flag is the only thing another thread writes.

    w = RtcWorker([(0, 0, 1, 0), (1, 0, 0, 0)], hook=macswap())
    eal.remote_launch(w.lcore_function(), 1)
    ...
    w.stop(); eal.wait_lcore(1)
    w.stats()        # {'polls': ..., 'rx': ..., 'tx': ..., 'tx_dropped': ...}

An app with its own per-packet code writes a `burst_hook_t` in Cython and
either hands it over as a `BurstHook` (one indirect call per burst), or
compiles `rtc_loop` around it in its own module and installs that function
with `RtcWorker.set_main` (the compiler then inlines the hook; l2fwd does
this).

Each hop's rx queue must be polled by one lcore only and each tx queue fed by
one lcore only: drivers' queues are single-threaded, as in DPDK.
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memset

from pypdk.eal.lcore cimport LcoreFunction, lcore_function_new
from pypdk.pmd.ethdev cimport eth_port_fp

from pypdk.errors import UsageError, StateError

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)

LCORE_STAT_NAMES = ("polls", "empty_polls", "rx", "tx", "tx_dropped", "app_dropped",
                    "ring_full", "no_route", "idle_yields")
HOP_STAT_NAMES = ("rx", "tx", "tx_dropped", "app_dropped")
MAX_HOPS = PD_RTC_MAX_HOPS
MAX_BURST = PD_MAX_BURST
DEFAULT_BURST = PD_BURST


cdef int rtc_main(void *arg) noexcept nogil:
    cdef pd_rtc_conf *c = <pd_rtc_conf *>arg
    return rtc_loop(c, c.hook, c.hook_ctx)


# ---- built-in hooks ----------------------------------------------------------------------

cdef uint16_t _macswap(void *ctx, pd_hop *hop, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    # testpmd's macswap: send each frame back with source and destination
    # exchanged. A frame shorter than the two addresses is malformed: it goes
    # to the tail (freed and counted by the loop).
    cdef uint16_t i, keep = 0
    cdef unsigned char tmp[6]
    cdef unsigned char *eth
    cdef pd_mbuf *m
    for i in range(n):
        m = pkts[i]
        if pd_unlikely(m.data_len < 12):
            continue
        eth = <unsigned char *>m.buf_addr + m.data_off
        memcpy(tmp, eth, 6)
        memcpy(eth, eth + 6, 6)
        memcpy(eth + 6, tmp, 6)
        pkts[i] = pkts[keep]
        pkts[keep] = m
        keep += 1
    return keep


cdef uint16_t _drop(void *ctx, pd_hop *hop, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    return 0


cdef class BurstHook:
    """A per-burst C hook (`burst_hook_t`) with its context, for RtcWorker and Pipeline.

    Made in Cython with `burst_hook_new(fn, ctx, owner, name)`; built-ins:
    `macswap()`, `drop()`.
    """

    def __init__(self, *a, **kw):
        raise TypeError("BurstHook is made in Cython (burst_hook_new) or by macswap()/drop()")

    def __repr__(self):
        return f"<BurstHook {self.name}>"


cdef BurstHook burst_hook_new(burst_hook_t fn, void *ctx, object keep, str name):
    cdef BurstHook h = BurstHook.__new__(BurstHook)
    h.fn = fn
    h.ctx = ctx
    h.keep = keep
    h.name = name
    return h


def macswap():
    """A hook that swaps each frame's source and destination MAC (testpmd's macswap)."""
    return burst_hook_new(_macswap, NULL, None, "macswap")


def drop():
    """A hook that drops every packet (a sink; counted as app_dropped)."""
    return burst_hook_new(_drop, NULL, None, "drop")


# ---- Python owner ------------------------------------------------------------------------

def _port_of(p):
    """A port id from an int or an EthDev, checked to be open."""
    from pypdk.pmd import get_port
    pid = p if isinstance(p, int) else getattr(p, "port_id", None)
    if not isinstance(pid, int):
        raise UsageError(f"{p!r} is not a port", "give a port id or an EthDev")
    return get_port(pid)


def check_queue(port, queue, rx):
    """UsageError unless `queue` is a configured rx (or tx) queue of `port`."""
    n = port.nb_rx_queues if rx else port.nb_tx_queues
    what = "rx" if rx else "tx"
    if not isinstance(queue, int) or not 0 <= queue < n:
        raise UsageError(f"{port.name}: {what} queue {queue!r} is not configured ({n} {what} queues)",
                         f"configure the port first and use {what} queues 0..{max(n - 1, 0)}")


cdef list fill_hops(pd_hop *out, hops):
    """Check (rx port, rx queue, tx port, tx queue) hops and fill `out`; the hops as port ids."""
    cdef pd_hop *h
    hops = [tuple(x) for x in hops]
    if not hops:
        raise UsageError("a worker with no hops", "give at least one (rx port, rx queue, tx port, tx queue)")
    if len(hops) > PD_RTC_MAX_HOPS:
        raise UsageError(f"{len(hops)} hops for one lcore", f"give one lcore at most {PD_RTC_MAX_HOPS}")
    done = []
    for i, hop in enumerate(hops):
        if len(hop) != 4:
            raise UsageError(f"hop {hop!r} is not (rx_port, rx_queue, tx_port, tx_queue)",
                             "give four numbers per hop")
        rxp, rxq, txp, txq = _port_of(hop[0]), hop[1], _port_of(hop[2]), hop[3]
        check_queue(rxp, rxq, True)
        check_queue(txp, txq, False)
        h = &out[i]
        h.rx_port, h.rx_queue, h.tx_port, h.tx_queue = rxp.port_id, rxq, txp.port_id, txq
        h.rx_fp = eth_port_fp(rxp.port_id)
        h.tx_fp = eth_port_fp(txp.port_id)
        done.append((rxp.port_id, rxq, txp.port_id, txq))
    return done


def check_burst(burst):
    if not isinstance(burst, int) or not 1 <= burst <= PD_MAX_BURST:
        raise UsageError(f"burst {burst!r} is out of range", f"use 1..{PD_MAX_BURST} (default {PD_BURST})")


def check_yield_after(yield_after):
    if not isinstance(yield_after, int) or yield_after < 0:
        raise UsageError(f"yield_after {yield_after!r} is not a count of empty rounds",
                         "use 0 (never yield) or a positive count")


cdef class RtcWorker:
    """What one lcore runs in the run-to-completion model.

    Args:
        hops: list of (rx_port, rx_queue, tx_port, tx_queue); ports are ids
            or EthDevs, already configured (queues exist). At most 64.
        burst: packets per rx burst (1..64, default 32).
        hook: a BurstHook run on every burst, or None to forward as is.
        yield_after: 0 (default) to spin; n > 0 to sched_yield() after n
            rounds with nothing received (for lcores sharing a cpu).

    Raises:
        UsageError: no hops, too many, a port or queue that does not exist,
            a bad burst.
    """

    def __cinit__(self, *a, **kw):
        cdef void *mem = NULL
        if posix_memalign(&mem, 64, sizeof(pd_rtc_conf)) != 0:
            raise MemoryError()
        memset(mem, 0, sizeof(pd_rtc_conf))
        self.c = <pd_rtc_conf *>mem
        self.main = rtc_main

    def __init__(self, hops, burst=PD_BURST, BurstHook hook=None, yield_after=0):
        cdef pd_hop *h
        check_burst(burst)
        check_yield_after(yield_after)
        self.hops = fill_hops(self.c.hops, hops)
        self.c.nb_hops = len(self.hops)
        self.c.burst = burst
        self.c.yield_after = yield_after
        self.hook = hook
        if hook is not None:
            self.c.hook = hook.fn
            self.c.hook_ctx = hook.ctx

    def __dealloc__(self):
        free(self.c)
        self.c = NULL

    cdef void set_main(self, lcore_function_t main, object keep):
        self.main = main
        self._keep_main = keep

    def lcore_function(self):
        """The LcoreFunction to launch (clears the quit flag: a stopped worker can run again)."""
        pd_store_release_int(&self.c.quit, 0)
        return lcore_function_new(self.main, self.c, self)

    def stop(self):
        """Make the loop return (at the end of its current round)."""
        # Release: pairs with the loop's relaxed load; nothing else is published.
        pd_store_release_int(&self.c.quit, 1)

    @property
    def stopping(self):
        return bool(pd_load_relaxed_int(&self.c.quit))

    @property
    def burst(self):
        return self.c.burst

    def stats(self):
        """The lcore's loop counters (LCORE_STAT_NAMES)."""
        cdef dict d = self.c.stats      # struct -> dict (a copy)
        return {k: d[k] for k in LCORE_STAT_NAMES}

    def hop_stats(self):
        """Per hop: its ports/queues and its counters (HOP_STAT_NAMES)."""
        out = []
        for i in range(self.c.nb_hops):
            s = <dict>self.c.hops[i].stats      # struct -> dict (a copy)
            d = dict(zip(("rx_port", "rx_queue", "tx_port", "tx_queue"), self.hops[i]))
            d.update({k: s[k] for k in HOP_STAT_NAMES})
            out.append(d)
        return out

    def port_stats(self):
        """{port id: {'rx', 'tx', 'dropped'}} from this lcore's hops (see pypdk.stats)."""
        from pypdk import stats
        return stats.port_counters_from_hops(self.hop_stats())

    def __repr__(self):
        hook = self.hook.name if self.hook is not None else "none"
        return f"<RtcWorker hops={self.hops} burst={self.c.burst} hook={hook}>"
