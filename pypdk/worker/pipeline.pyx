"""Pipeline: a packet's work split into stages, one lcore each, joined by rings.

    rx lcore             worker lcore(s)                 tx lcore
    rx queues --ring0--> hook --ring1--> hook ... --ringN--> tx queues (by m.port)

Why this shape: the rx and tx stages stay tiny and predictable, and heavy
per-packet work (lookups, rewrites) gets cores of its own; rings decouple
their speeds. Each ring has exactly one producer and one consumer, so the
SP/SC ring functions are used (no CAS). A full ring means the next stage is
behind: the producing stage frees what did not fit and counts it as
`ring_full` (back-pressure made visible, never a stall).

The tx stage sends each packet by its `m.port` through the route table
`route = {key port: (out port, out queue)}`: the rx driver sets m.port to
the input port, so a plain forwarder routes {0: (1, 0), 1: (0, 0)}; a hook
that decides the output itself writes m.port and routes with identity keys.
A packet whose m.port has no route is freed and counted as `no_route`.

    pipe = Pipeline(rx=[(0, 0), (1, 0)], route={0: (1, 0), 1: (0, 0)}, hooks=[macswap()])
    tasks = pipe.workers([1, 2, 3])      # {1: rx stage, 2: worker, 3: tx stage}
    ...
    pipe.stop(); eal.mp_wait_lcore(); pipe.close()   # close frees what rings still hold

or, as a context manager, `with Pipeline(...) as pipe:` closes it on the way out
(after the lcores returned).

Each stage is the lcore loop skeleton (lcore_loop.pxd: quit flag, idle
policy, counters) over its own round (`_rx_round`, `_work_round`,
`_tx_round`): `noexcept nogil`, bursts on the stack, no allocation.
"""
from libc.stdint cimport uint16_t, uint32_t, int32_t, uint64_t
from libc.stdlib cimport free

from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_free, pktmbuf_free_bulk
from pypdk.ring.ring cimport (Ring, ring_sp_enqueue_burst, ring_sc_dequeue_burst,
                              ring_mc_dequeue_burst)
from pypdk.pmd.ethdev cimport eth_port_fp, fp_tx_burst
from pd_compiler cimport pd_likely, pd_unlikely
from pd_config cimport PD_MAX_BURST, PD_BURST
from pypdk.worker.lcore_loop cimport (BurstHook, lcore_loop, lcore_rx, hook_result, conf_alloc,
                                      PD_PORT_NONE)

from pypdk.errors import UsageError, StateError
from pypdk.worker.lcore_loop import _port_of, check_queue, check_burst, check_yield_after


# ---- the stage rounds (lcore_loop runs them) ------------------------------------------------

cdef int32_t _rx_round(void *arg) noexcept nogil:
    cdef pd_stage *s = <pd_stage *>arg
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    cdef uint16_t nb_rx, nb_enq, h
    cdef int32_t got = 0
    cdef pd_hop *hop
    for h in range(s.nb_hops):
        hop = &s.hops[h]
        nb_rx = lcore_rx(&s.lc, hop.rx_fp, hop.rx_queue, pkts, s.burst)
        if nb_rx == 0:
            continue
        hop.stats.rx += nb_rx
        nb_enq = <uint16_t>ring_sp_enqueue_burst(s.out_ring, <void **>pkts, nb_rx)
        hop.stats.tx += nb_enq
        s.lc.stats.tx += nb_enq
        # Progress is what reached the ring: a round that only dropped
        # (ring full) counts as idle, so an rx stage sharing a cpu with
        # the next stage (yield_after > 0) lets it run instead of filling
        # its whole time slice with drops.
        got += nb_enq
        if pd_unlikely(nb_enq < nb_rx):
            pktmbuf_free_bulk(&pkts[nb_enq], nb_rx - nb_enq)
            hop.stats.tx_dropped += nb_rx - nb_enq
            s.lc.stats.ring_full += nb_rx - nb_enq
    return got


cdef inline uint16_t _dequeue(pd_stage *s, pd_mbuf **pkts) noexcept nogil:
    """One burst from the stage's input ring, counted like an rx burst."""
    cdef uint16_t nb = <uint16_t>ring_sc_dequeue_burst(s.in_ring, <void **>pkts, s.burst)
    s.lc.stats.polls += 1
    if nb == 0:
        s.lc.stats.empty_polls += 1
    s.lc.stats.rx += nb
    return nb


cdef int32_t _work_round(void *arg) noexcept nogil:
    cdef pd_stage *s = <pd_stage *>arg
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    cdef uint16_t nb, nb_keep, nb_enq
    nb = _dequeue(s, pkts)
    if nb == 0:
        return 0
    nb_keep = nb
    if s.hook != NULL:
        nb_keep = s.hook(s.hook_ctx, &s.hop, pkts, nb)
        if pd_unlikely(nb_keep != nb):
            nb_keep = hook_result(&s.lc, &s.hop, pkts, nb_keep, nb)
    if nb_keep == 0:
        return nb
    nb_enq = <uint16_t>ring_sp_enqueue_burst(s.out_ring, <void **>pkts, nb_keep)
    s.lc.stats.tx += nb_enq
    if pd_unlikely(nb_enq < nb_keep):
        pktmbuf_free_bulk(&pkts[nb_enq], nb_keep - nb_enq)
        s.lc.stats.ring_full += nb_keep - nb_enq
    return nb


cdef int32_t _tx_round(void *arg) noexcept nogil:
    cdef pd_stage *s = <pd_stage *>arg
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    # One bucket per route key, so each tx queue gets one burst per dequeue.
    cdef pd_mbuf *bucket[PD_MAX_ETHPORTS][PD_MAX_BURST]
    cdef uint16_t used[PD_MAX_ETHPORTS]
    cdef uint16_t *count = s.tx_count
    cdef uint16_t nb, nb_used, i, key, nb_tx
    cdef pd_mbuf *m
    cdef pd_route *r
    nb = _dequeue(s, pkts)
    if nb == 0:
        return 0
    nb_used = 0
    for i in range(nb):
        m = pkts[i]
        key = m.port
        if pd_unlikely(key >= PD_MAX_ETHPORTS or not s.routes[key].valid):
            pktmbuf_free(m)
            s.lc.stats.no_route += 1
            continue
        if count[key] == 0:
            used[nb_used] = key
            nb_used += 1
        bucket[key][count[key]] = m
        count[key] += 1
    for i in range(nb_used):
        key = used[i]
        r = &s.routes[key]
        nb_tx = fp_tx_burst(r.fp, r.queue, bucket[key], count[key])
        r.tx += nb_tx
        s.lc.stats.tx += nb_tx
        if pd_unlikely(nb_tx < count[key]):
            pktmbuf_free_bulk(&bucket[key][nb_tx], count[key] - nb_tx)
            r.tx_dropped += count[key] - nb_tx
            s.lc.stats.tx_dropped += count[key] - nb_tx
        count[key] = 0
    return nb


cdef int stage_main(void *arg) noexcept nogil:
    cdef pd_stage *s = <pd_stage *>arg
    if s.kind == PD_STAGE_RX:
        return lcore_loop(&s.lc, _rx_round, s, s.lc.on_round, s.lc.on_round_ctx)
    if s.kind == PD_STAGE_WORK:
        return lcore_loop(&s.lc, _work_round, s, s.lc.on_round, s.lc.on_round_ctx)
    return lcore_loop(&s.lc, _tx_round, s, s.lc.on_round, s.lc.on_round_ctx)


cdef uint64_t _drain(pd_ring *r) noexcept nogil:
    """Free every mbuf left in a ring (after the stages stopped); how many."""
    cdef pd_mbuf *pkts[PD_MAX_BURST]
    cdef uint32_t n
    cdef uint64_t total = 0
    while True:
        n = ring_mc_dequeue_burst(r, <void **>pkts, PD_MAX_BURST)
        if n == 0:
            return total
        pktmbuf_free_bulk(pkts, n)
        total += n


# ---- Python owners -----------------------------------------------------------------------

_KIND_NAMES = {PD_STAGE_RX: "rx", PD_STAGE_WORK: "worker", PD_STAGE_TX: "tx"}


cdef class Stage(LcoreWorker):
    """One pipeline stage: what one lcore runs. Made by `Pipeline`."""

    def __cinit__(self, *a, **kw):
        self.s = <pd_stage *>conf_alloc(sizeof(pd_stage))
        self.set_conf(&self.s.lc, stage_main, self.s)

    def __init__(self, str name, int kind, int burst, int yield_after):
        self.name = name
        self.kind = _KIND_NAMES[kind]
        self.s.kind = kind
        self.s.burst = burst
        self.s.lc.yield_after = yield_after
        self.s.hop.rx_port = self.s.hop.tx_port = PD_PORT_NONE
        self.keep = []

    def __dealloc__(self):
        free(self.s)
        self.s = NULL

    def lcore_function(self):
        """The LcoreFunction to launch (clears the quit flag).

        Raises:
            StateError: the pipeline was closed.
        """
        if self.closed:
            raise StateError(f"stage {self.name} belongs to a closed pipeline",
                             "make a new Pipeline to run again")
        return LcoreWorker.lcore_function(self)

    def port_stats(self):
        """{port id: {'rx', 'tx', 'dropped'}}: rx by the rx stage, tx by the tx stage."""
        from pypdk import stats
        cdef pd_hop *h
        cdef pd_route *r
        hops = []
        for i in range(self.s.nb_hops):
            h = &self.s.hops[i]
            # The rx stage's "tx" goes to a ring, not a port: only rx counts here.
            hops.append({"rx_port": h.rx_port, "rx": h.stats.rx})
        for key in range(PD_MAX_ETHPORTS):
            r = &self.s.routes[key]
            if r.valid:
                hops.append({"tx_port": r.port, "tx": r.tx, "tx_dropped": r.tx_dropped})
        return stats.port_counters_from_hops(hops)

    def __repr__(self):
        return f"<Stage {self.name} ({self.kind})>"


cdef _set_rx(Stage st, list rx):
    cdef pd_hop *h
    if len(rx) > PD_LCORE_MAX_HOPS:
        raise UsageError(f"{len(rx)} rx queues for one rx stage", f"give at most {PD_LCORE_MAX_HOPS}")
    for i, (p, q) in enumerate(rx):
        port = _port_of(p)
        check_queue(port, q, True)
        h = &st.s.hops[i]
        h.rx_port = port.port_id
        h.rx_queue = q
        h.rx_fp = eth_port_fp(port.port_id)
        h.tx_port = PD_PORT_NONE
    st.s.nb_hops = len(rx)


cdef _set_routes(Stage st, dict route):
    cdef pd_route *r
    for key, dst in route.items():
        if not isinstance(key, int) or not 0 <= key < PD_MAX_ETHPORTS:
            raise UsageError(f"route key {key!r} is not a port id", f"use 0..{PD_MAX_ETHPORTS - 1}")
        if isinstance(dst, tuple):
            p, q = dst
        else:
            p, q = dst, 0
        port = _port_of(p)
        check_queue(port, q, False)
        r = &st.s.routes[key]
        r.valid = 1
        r.port = port.port_id
        r.queue = q
        r.fp = eth_port_fp(port.port_id)


cdef void _set_rings(Stage st, Ring rin, Ring rout):
    st.s.in_ring = rin.r if rin is not None else NULL
    st.s.out_ring = rout.r if rout is not None else NULL


cdef _keep(Stage st, obj):
    st.keep.append(obj)


cdef void _set_hook(Stage st, BurstHook hook):
    if hook is not None:
        st.s.hook = hook.fn
        st.s.hook_ctx = hook.ctx


class Pipeline:
    """An rx stage, worker stages and a tx stage joined by rings.

    Args:
        rx: list of (port, rx queue) the rx stage polls (ports: ids or EthDevs).
        route: {key: (out port, out queue)} or {key: out port} (queue 0):
            the tx stage sends a packet by its m.port (the input port unless
            a hook changed it).
        hooks: one entry per worker stage: a BurstHook, or None to pass
            packets through. Empty: the rx stage feeds the tx stage directly.
        ring_size: slots per ring (a power of two; capacity ring_size - 1).
        burst: packets per burst in every stage (1..64).
        yield_after: see RtcWorker (0: spin).
        name: prefix of the ring and stage names.

    Raises:
        UsageError: bad ports, queues, routes, sizes.
    """

    def __init__(self, rx, route, hooks=(), ring_size=1024, burst=PD_BURST, yield_after=0,
                 name="pipe"):
        rx = [tuple(x) for x in rx]
        hooks = list(hooks)
        if not rx:
            raise UsageError("a pipeline with no rx queue", "give rx=[(port, queue), ...]")
        if not isinstance(route, dict) or not route:
            raise UsageError("a pipeline with no route", "give route={in port: (out port, queue)}")
        check_burst(burst)
        check_yield_after(yield_after)
        for h in hooks:
            if h is not None and not isinstance(h, BurstHook):
                raise UsageError(f"pipeline hook {h!r} is not a BurstHook",
                                 "give BurstHooks (or None to pass packets through)")
        self.name = name
        self.rings = [Ring(f"{name}_r{i}", ring_size, sp=True, sc=True) for i in range(len(hooks) + 1)]
        rx_st = Stage(f"{name}_rx", PD_STAGE_RX, burst, yield_after)
        _set_rx(rx_st, rx)
        _set_rings(rx_st, None, self.rings[0])
        self.stages = [rx_st]
        for i, h in enumerate(hooks):
            st = Stage(f"{name}_w{i}", PD_STAGE_WORK, burst, yield_after)
            _set_rings(st, self.rings[i], self.rings[i + 1])
            _set_hook(st, h)
            _keep(st, h)
            self.stages.append(st)
        tx_st = Stage(f"{name}_tx", PD_STAGE_TX, burst, yield_after)
        _set_routes(tx_st, route)
        _set_rings(tx_st, self.rings[len(self.rings) - 1], None)
        self.stages.append(tx_st)
        for st in self.stages:
            _keep(st, self.rings)           # rings outlive every stage that touches them
        self.drained = 0

    def workers(self, lcores):
        """{lcore: Stage}, the stages in order (rx, workers..., tx) on these lcores.

        Raises:
            UsageError: not one lcore per stage.
            StateError: the pipeline was closed.
        """
        if not self.rings:
            raise StateError(f"pipeline {self.name!r} is closed", "make a new Pipeline")
        lcores = list(lcores)
        if len(lcores) != len(self.stages) or len(set(lcores)) != len(lcores):
            raise UsageError(f"pipeline {self.name!r} has {len(self.stages)} stages "
                             f"({', '.join(s.kind for s in self.stages)}) but lcores {lcores} were given",
                             f"give {len(self.stages)} different worker lcores, e.g. --lcores '0,(1-{len(self.stages)})@1'")
        return dict(zip(lcores, self.stages))

    def stop(self):
        for st in self.stages:
            st.stop()

    def stats(self):
        """{stage name: loop counters}."""
        return {st.name: st.stats() for st in self.stages}

    def port_stats(self):
        from pypdk import stats
        return stats.merge_port_counters([st.port_stats() for st in self.stages])

    def close(self):
        """Free what the rings still hold and release the rings; how many mbufs were freed.

        Call it after every stage returned (stop(), then wait for the
        lcores). The stages cannot be launched again; a second close() frees
        nothing and returns 0.
        """
        cdef Ring r
        cdef Stage st
        cdef uint64_t n = 0
        for r in self.rings:
            with nogil:
                n += _drain(r.r)
        self.drained += n
        for st in self.stages:
            st.closed = True
            st.s.in_ring = st.s.out_ring = NULL
            st.keep = []
        for r in self.rings:
            release = getattr(r, "close", None)
            if release is not None:
                release()
        self.rings = []
        return n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """close() (leave the block after the stages' lcores returned)."""
        self.close()
        return False

    def __repr__(self):
        return f"<Pipeline {self.name} {' -> '.join(s.kind for s in self.stages)}>"
