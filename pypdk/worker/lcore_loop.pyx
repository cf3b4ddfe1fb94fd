"""The lcore loop skeleton every processing model runs on (lcore_loop.pxd).

A worker lcore polls what it owns in rounds until its quit flag is set:
each round reports the packets it received, the idle policy yields the cpu
after `yield_after` empty rounds, and an optional per-round callback marks
the lcore's quiescent point. Run-to-completion (rtc), the pipeline stages,
Python-per-burst workers, pktgen and the vRouter's forwarding lcores are
this loop with their own round; their counters are one struct,
`pd_lcore_stats`, whose names (LCORE_STAT_NAMES) are the per-lcore keys of
`--stats-json`.

`LcoreWorker` is their common Python face:

    w.lcore_function()   # the LcoreFunction to launch (clears the quit flag)
    w.stop()             # the loop returns at the end of its round
    w.stats()            # LCORE_STAT_NAMES, then the model's own counters
    w.port_stats()       # {port id: {'rx', 'tx', 'dropped'}} from its hops

The argument checks the models share (hops, burst, yield_after) live here
too, so every model words its errors the same way.
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memset

from pypdk.eal.lcore cimport lcore_function_new
from pypdk.pmd.ethdev cimport eth_port_fp

from pypdk.errors import UsageError
from pypdk.stats import LCORE_COUNTERS

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)

LCORE_STAT_NAMES = LCORE_COUNTERS
HOP_STAT_NAMES = ("rx", "tx", "tx_dropped", "app_dropped", "taken")
HOP_KEYS = ("rx_port", "rx_queue", "tx_port", "tx_queue")
MAX_HOPS = PD_LCORE_MAX_HOPS
MAX_BURST = PD_MAX_BURST
DEFAULT_BURST = PD_BURST
HOOK_TOOK = PD_HOOK_TOOK


def _struct_names():
    cdef pd_lcore_stats s
    cdef pd_hop_stats h
    memset(&s, 0, sizeof(s))
    memset(&h, 0, sizeof(h))
    return tuple((<dict>s).keys()), tuple((<dict>h).keys())

# The names are the struct's fields, in order: one list, checked at import.
assert _struct_names() == (LCORE_STAT_NAMES, HOP_STAT_NAMES), _struct_names()


cdef void *conf_alloc(size_t size) except NULL:
    cdef void *mem = NULL
    if posix_memalign(&mem, 64, size) != 0:
        raise MemoryError()
    memset(mem, 0, size)
    return mem


# ---- hooks ---------------------------------------------------------------------------------

cdef class BurstHook:
    """A per-burst C hook (`burst_hook_t`) with its context, for RtcWorker and Pipeline.

    Made in Cython with `burst_hook_new(fn, ctx, owner, name)`; built-ins:
    `pypdk.worker.macswap()`, `pypdk.worker.drop()`.
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


# ---- argument checks -----------------------------------------------------------------------

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


def check_burst(burst):
    """UsageError unless 1 <= burst <= PD_MAX_BURST."""
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= PD_MAX_BURST:
        raise UsageError(f"burst {burst!r} is out of range", f"use 1..{PD_MAX_BURST} (default {PD_BURST})")


def check_yield_after(yield_after):
    """UsageError unless yield_after is a count of empty rounds (0: never yield)."""
    if isinstance(yield_after, bool) or not isinstance(yield_after, int) or not 0 <= yield_after < 1 << 32:
        raise UsageError(f"yield_after {yield_after!r} is not a count of empty rounds",
                         "use 0 (never yield) or a positive count")


cdef list fill_hops(pd_hop *out, hops):
    """Check (rx port, rx queue, tx port, tx queue) hops and fill `out`; the hops as port ids."""
    cdef pd_hop *h
    hops = [tuple(x) for x in hops]
    if not hops:
        raise UsageError("a worker with no hops", "give at least one (rx port, rx queue, tx port, tx queue)")
    if len(hops) > PD_LCORE_MAX_HOPS:
        raise UsageError(f"{len(hops)} hops for one lcore", f"give one lcore at most {PD_LCORE_MAX_HOPS}")
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


cdef list hops_stats(pd_hop *hops, list ids):
    out = []
    for i in range(len(ids)):
        s = <dict>hops[i].stats         # struct -> dict (a copy)
        d = dict(zip(HOP_KEYS, ids[i]))
        d.update({k: s[k] for k in HOP_STAT_NAMES})
        out.append(d)
    return out


# ---- the Python face -----------------------------------------------------------------------

cdef class LcoreWorker:
    """What one lcore runs: the face every processing model shares.

    Not made directly: RtcWorker, PyBurstWorker, pipeline Stages, pktgen's
    and the vRouter's workers derive from it and point it at their conf
    (whose first field is the loop's `pd_lcore`).
    """

    def __init__(self, *a, **kw):
        if type(self) is LcoreWorker:
            raise TypeError("LcoreWorker is a base: use RtcWorker, Pipeline or PyBurstWorker")

    cdef void set_conf(self, pd_lcore *lc, lcore_function_t main, void *arg):
        self.lc = lc
        self.main = main
        self.arg = arg

    cdef void set_on_round(self, lcore_cb_t fn, void *ctx, object keep):
        self.lc.on_round = fn
        self.lc.on_round_ctx = ctx
        self._on_round_keep = keep

    cdef void set_main(self, lcore_function_t main, object keep):
        self.main = main
        self._keep_main = keep

    def lcore_function(self):
        """The LcoreFunction to launch (clears the quit flag: a stopped worker can run again)."""
        if self.lc == NULL:
            raise TypeError(f"{type(self).__name__} has no loop")
        pd_store_release_int(&self.lc.quit, 0)
        return lcore_function_new(self.main, self.arg, self)

    def stop(self):
        """Make the loop return (at the end of its current round)."""
        if self.lc != NULL:
            # Release: pairs with lcore_quit's relaxed load; nothing else is published.
            pd_store_release_int(&self.lc.quit, 1)

    @property
    def stopping(self):
        return self.lc != NULL and bool(pd_load_relaxed_int(&self.lc.quit))

    @property
    def yield_after(self):
        return self.lc.yield_after if self.lc != NULL else 0

    def stats(self):
        """The lcore's loop counters (LCORE_STAT_NAMES), then the model's own (extra_stats)."""
        if self.lc == NULL:
            return {}
        cdef dict d = self.lc.stats     # struct -> dict (a copy)
        out = {k: d[k] for k in LCORE_STAT_NAMES}
        out.update(self.extra_stats())
        return out

    def extra_stats(self):
        """The model's counters beyond LCORE_STAT_NAMES (none here)."""
        return {}

    def hop_stats(self):
        """Per hop: its ports/queues and its counters (HOP_STAT_NAMES); none here."""
        return []

    def port_stats(self):
        """{port id: {'rx', 'tx', 'dropped'}} from this lcore's hops (see pypdk.stats)."""
        from pypdk import stats
        return stats.port_counters_from_hops(self.hop_stats())
