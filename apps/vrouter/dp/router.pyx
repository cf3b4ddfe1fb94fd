"""`Router` and `Worker`: the Python owners of the vRouter's datapath (control thread).

`Router` allocates the tables (vrouter.pxd's vr_router), publishes what the
control operations (the model, apps/vrouter/vrouter.py) change, frees
replaced entries after `synchronize()` saw every forwarding lcore pass its
quiescent point, and sums the workers' counters. `Worker` is one forwarding context: a worker
lcore runs its loop (datapath.pyx), the Python-thread poller serves tests
and benchmarks (`poll`; `poller_addr` for the kernels in benchmarks/).

The enums of vrouter.pxd and vif.pxd that the control plane speaks of are
exported here by name (`VIF_TYPES`, `NH_TYPES`, `ENCAPS`, `LIMITS`...), so
the model and the tools never copy a number.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from pypdk.mempool.mbuf cimport pd_mbuf, PktMbufPool, pktmbuf_alloc, pktmbuf_free, mbuf_append
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport eth_port_fp, EthDev
from pypdk.ring.ring cimport pd_ring, ring_create, ring_free, ring_mp_enqueue_burst, ring_sc_dequeue_burst
from pypdk.eal.lcore cimport LcoreFunction, lcore_function_new
from pypdk.net.byteorder cimport pd_ntohs
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from libc.errno cimport ENOMEM, ENOENT, ENOSPC, EINVAL
from pypdk.net.lpm4 cimport pd_lpm4, lpm4_free, lpm4_add
from pypdk.net.lpm6 cimport pd_lpm6, lpm6_free
from pypdk.net.flow_hash cimport (pd_flow_hash, pd_flow_key, flow_hash_create, flow_hash_free, flow_hash_add,
                                  flow_hash_delete, flow_hash_lookup, _fh_rec)
from apps.vrouter.dp.route cimport (rt4_add, rt4_del, rt6_add, rt6_del, rt4_reserve, rt_reclaim, rt_free_all,
                                    route_lookup4, route_lookup6)
from apps.vrouter.dp.flow cimport flow_table_create, flow_table_free, flow_age, flow_reclaim
from apps.vrouter.dp.bridge cimport BRIDGE_KEY_LEN, bridge_set, bridge_clear
from apps.vrouter.dp.decap cimport vxlan_set, vxlan_clear, fip_set, fip_clear
from apps.vrouter.dp.datapath cimport vr_worker_poll, vr_worker_main
from pypdk.worker.lcore_loop cimport LcoreWorker
from pypdk.worker.lcore_loop import check_burst, check_yield_after
from apps.vrouter.dp.vif cimport TRAP_ARP, TRAP_RESOLVE, TRAP_PACKET

from apps.vrouter.dp.drop import DROP_NAMES

from pd_compiler cimport pd_rdtsc

from pd_atomic cimport (pd_load_acquire_int, pd_store_release_int, pd_load_acquire_u64,
                        pd_store_release_u64)

VRFS_NAMES = ("discards", "resolves", "receives", "ecmp", "l2_floods", "encaps", "l2_encaps",
              "udp_mpls_encaps", "gre_mpls_encaps", "vxlan_encaps", "udp_mpls_decaps",
              "gre_mpls_decaps", "vxlan_decaps", "arp_proxy", "nd_proxy", "translates")
VIFQ_NAMES = ("rx_packets", "rx_bytes", "rx_errors", "rx_drops",
              "tx_packets", "tx_bytes", "tx_errors", "tx_drops")
assert len(VRFS_NAMES) == VRFS_MAX and len(VIFQ_NAMES) == VIFQ_MAX

# The enums by the names the control plane uses (vrouter.py, config, tools);
# dict order is the order error messages list them in.
VIF_TYPES = {"fabric": VIF_FABRIC, "vhost": VIF_VHOST, "virtual": VIF_VIRTUAL, "agent": VIF_AGENT}
VIF_MODES = {"l3": VIF_F_L3, "l2": VIF_F_L2, "l2l3": VIF_F_L3 | VIF_F_L2}
VIF_FLAGS = {"policy": VIF_F_POLICY, "l3": VIF_F_L3, "l2": VIF_F_L2, "proxy_arp": VIF_F_PROXY_ARP}
NH_TYPES = {"discard": NH_DISCARD, "receive": NH_RECEIVE, "encap": NH_ENCAP, "tunnel": NH_TUNNEL,
            "ecmp": NH_ECMP, "resolve": NH_RESOLVE, "composite": NH_COMPOSITE}
NH_FLAGS = {"valid": NH_F_VALID}
ENCAPS = {"mplsoudp": TUN_MPLSOUDP, "mplsogre": TUN_MPLSOGRE, "vxlan": TUN_VXLAN}
# A policy rule's action, and a flow's action as the flow table shows it.
RULE_ACTIONS = {"allow": FLOW_ALLOW, "drop": FLOW_DROP, "mirror": FLOW_MIRROR}
FLOW_ACTION_NAMES = {FLOW_ALLOW: "forward", FLOW_DROP: "drop", FLOW_MIRROR: "mirror", FLOW_NAT: "nat"}
# Why a packet was trapped to the agent (vif.pxd; trap_dequeue's reason).
TRAP_REASONS = {"arp": TRAP_ARP, "resolve": TRAP_RESOLVE, "packet": TRAP_PACKET}
# Table sizes fixed at build time.
LIMITS = {"vifs": VR_MAX_VIFS, "nhs": VR_MAX_NHS, "vrfs": VR_MAX_VRFS, "queues": VR_MAX_QUEUES,
          "workers": VR_MAX_WORKERS, "members": VR_MAX_MEMBERS, "rules": VR_MAX_POLICY,
          "rtdata": VR_MAX_RTDATA, "poll": VR_MAX_POLL, "burst": VR_BURST_MAX, "fips": VR_MAX_FIPS}

import time as _time
from pypdk.errors import ResourceError as _ResourceError
from pypdk.eal import tablemem as _tablemem
import os as _os
import numpy as _np
from pypdk.ring.ring cimport PD_RING_F_SC_DEQ, PD_RING_F_SP_ENQ
from pypdk.mempool.mempool cimport Mempool

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int nanosleep(const timespec *req, timespec *rem)


cdef class Worker(LcoreWorker):
    """One forwarding context: its loop state, counters and tx buffers.

    An LcoreWorker (pypdk.worker): `lcore_function()` runs the loop on a
    worker lcore, `stop()`, `stats()`; `Router.poll()` runs one round of
    the internal poller on the calling thread (tests).

    Raises:
        UsageError: burst out of 1..64, a negative yield_after.
    """
    cdef vr_worker *w
    cdef readonly Router router
    cdef readonly int lcore

    def __cinit__(self, Router router, int lcore=-1, burst=32, yield_after=0, sleep_us=0):
        check_burst(burst)
        check_yield_after(yield_after)
        if not 0 <= sleep_us <= 1_000_000:
            from pypdk.errors import UsageError
            raise UsageError(f"idle sleep {sleep_us} us is out of 0..1000000", "give microseconds, e.g. 100")
        self.w = <vr_worker *>calloc(1, sizeof(vr_worker))
        if self.w == NULL:
            raise MemoryError()
        self.w.st = <vr_stats *>calloc(1, sizeof(vr_stats))
        if self.w.st == NULL:
            raise MemoryError()
        self.w.r = router.r
        self.w.burst = burst
        self.w.lc.yield_after = yield_after
        self.w.sleep_us = sleep_us
        self.set_conf(&self.w.lc, vr_worker_main, self.w)
        self.router = router
        self.lcore = lcore

    def __dealloc__(self):
        if self.w != NULL:
            free(<void *>self.w.ps)
            free(self.w.st)
            free(self.w)
            self.w = NULL

    def extra_stats(self):
        """The vRouter's own, after pypdk.stats' lcore counters (stats()):
        dropped (every drop reason summed), flows_created, traps."""
        cdef uint64_t dropped = 0
        cdef int i
        for i in range(DROP_MAX):
            dropped += self.w.st.drop[i]
        return {"dropped": dropped, "flows_created": self.w.st.flows_created,
                "traps": self.w.st.traps, "distributed": self.w.st.distributed,
                "dist_ring_full": self.w.st.dist_ring_full}

    @property
    def running(self):
        return bool(pd_load_acquire_int(&self.w.running))

    def pollset_pairs(self):
        """The (vif, queue) pairs it polls."""
        cdef vr_pollset *ps = self.w.ps
        cdef uint32_t i
        return [] if ps == NULL else [(ps.p[i].vif, ps.p[i].queue) for i in range(ps.n)]

    @property
    def txq(self):
        """Its tx queue on vifs with a tx queue per lcore."""
        return self.w.txq

    cdef void set_pollset(self, list pairs):
        cdef vr_pollset *ps = <vr_pollset *>calloc(1, sizeof(vr_pollset))
        cdef vr_pollset *old
        cdef uint32_t i = 0
        for vif, q in pairs[:VR_MAX_POLL]:
            ps.p[i].vif = vif
            ps.p[i].queue = q
            i += 1
        ps.n = i
        old = self.w.ps
        vr_store_ps(&self.w.ps, ps)
        self.router._retire(<uintptr_t>old)


cdef class Router:
    """The forwarding state (vr_router) and its writers. Not thread-safe:
    one control thread calls these (the model, apps/vrouter/vrouter.py)."""
    cdef vr_router *r
    cdef readonly object pool
    cdef readonly list workers          # lcore workers
    cdef readonly Worker poller         # the Python-thread poller (tests, benchmarks)
    cdef list retired                   # (kind, address) to free after the next synchronize
    cdef dict ports                     # vif id -> EthDev (to keep them alive)

    def __cinit__(self, PktMbufPool pool not None, uint32_t mpls_max=1 << 20, uint32_t flow_max=1 << 16,
                  uint32_t bridge_max=1 << 16, uint32_t vxlan_max=1 << 14, uint32_t fip_max=VR_MAX_FIPS,
                  uint32_t ring_size=1024):
        cdef uint32_t i
        cdef int rc
        self.r = <vr_router *>calloc(1, sizeof(vr_router))
        if self.r == NULL:
            raise MemoryError()
        _tablemem.mark()        # a hugepage shortage names what all the tables need
        self.r.fabric_vif = self.r.vhost_vif = self.r.agent_vif = VR_NO_VIF
        self.r.pool = (<Mempool>pool).mp
        self.r.mpls_max = mpls_max
        self.r.mpls = <uint32_t *>malloc(mpls_max * sizeof(uint32_t))
        # Flow positions are reused only after a synchronize (flow.pxd); the
        # small tables' readers copy the data word out, so theirs are free at once.
        rc = flow_table_create(self.r, flow_max, _seed())
        self.r.bridge = flow_hash_create(bridge_max, BRIDGE_KEY_LEN, 0, _seed(), 0)
        self.r.vxlan = flow_hash_create(vxlan_max, 4, 0, _seed(), 0)
        self.r.fip = flow_hash_create(fip_max, 4, 0, _seed(), 0)
        self.r.trap = ring_create(b"vr_trap", ring_size, PD_RING_F_SC_DEQ)
        self.r.inject = ring_create(b"vr_inject", ring_size, PD_RING_F_SC_DEQ)
        if (rc != 0 or self.r.mpls == NULL or self.r.bridge == NULL or self.r.vxlan == NULL
                or self.r.fip == NULL or self.r.trap == NULL or self.r.inject == NULL):
            self._free()
            # On the EAL's hugepages (tablemem placement) a shortage names the node and the fix.
            raise _tablemem.take_failure("the vRouter's tables") or MemoryError("vrouter tables")
        if not _hash_consistent(self.r.fip):
            self._free()
            raise _ResourceError("pypdk.net.flow_hash and apps.vrouter were built from different "
                                 "pypdk/net/hash.pxd versions (lookups would miss every key)",
                                 "rebuild both: python setup.py build_ext --inplace")
        for i in range(mpls_max):
            self.r.mpls[i] = VR_NONE
        self.r.flow_timeout = 30 * 3_000_000_000
        self.r.flow_closed_timeout = 3_000_000_000
        self.pool = pool
        self.workers = []
        self.retired = []
        self.ports = {}
        self.poller = Worker(self)
        self.poller.w.owns_inject = 1

    cdef _free(self):
        cdef uint32_t i
        cdef pd_mbuf *m
        if self.r == NULL:
            return
        cdef pd_ring *rings[2 + VR_MAX_WORKERS]
        rings[0] = self.r.trap
        rings[1] = self.r.inject
        for i in range(VR_MAX_WORKERS):
            rings[2 + i] = self.r.dist[i]
        for i in range(2 + VR_MAX_WORKERS):
            if rings[i] != NULL:
                while ring_sc_dequeue_burst(rings[i], <void **>&m, 1) == 1:
                    pktmbuf_free(m)
                ring_free(rings[i])
        for i in range(VR_MAX_VIFS):
            free(self.r.vifs[i])
        for i in range(VR_MAX_NHS):
            free(self.r.nhs[i])
        rt_free_all(self.r)
        free(self.r.mpls)
        flow_table_free(self.r)
        flow_hash_free(self.r.bridge)
        flow_hash_free(self.r.vxlan)
        flow_hash_free(self.r.fip)
        free(self.r)
        self.r = NULL

    def close(self):
        """Free every table (after the lcores stopped); trapped mbufs go back to the pool."""
        self.synchronize()
        self._free()

    def __dealloc__(self):
        self._free()

    # ---- quiescence --------------------------------------------------------

    def _retire(self, uintptr_t addr, int kind=RETIRE_FREE):
        if addr:
            self.retired.append((kind, addr))

    def synchronize(self, double timeout=5.0):
        """Wait until every running lcore worker passed a quiescent point, then
        free what was retired before the call."""
        cdef Worker wk
        cdef list pending = [(wk, pd_load_acquire_u64(&wk.w.epoch)) for wk in self.workers]
        cdef double end = _time.monotonic() + timeout
        cdef timespec ts
        ts.tv_sec = 0
        ts.tv_nsec = 20000
        retired, self.retired = self.retired, []
        while pending:
            pending = [(wk, e) for wk, e in pending
                       if pd_load_acquire_int(&wk.w.running) and pd_load_acquire_u64(&wk.w.epoch) == e]
            if pending:
                if _time.monotonic() > end:
                    self.retired = retired + self.retired
                    raise _ResourceError("a forwarding lcore did not pass a quiescent point in "
                                         f"{timeout:g} s", "is it stuck? stop the app")
                with nogil:
                    nanosleep(&ts, NULL)
        for kind, a in retired:
            _retired_free(kind, a)
        # Every reader passed a quiescent point since the deletes made so far
        # (this thread is their one writer): what they freed is reusable.
        rt_reclaim(self.r)
        flow_reclaim(self.r)

    # ---- workers -----------------------------------------------------------

    def add_worker(self, int lcore, burst=32, yield_after=0, sleep_us=0):
        """A forwarding context for lcore (yield_after: see app.py --yield-after).

        Its tx queue on `lcore_txq` vifs is its index among the workers; a
        vif whose port has fewer tx queues than there are workers now goes
        back to the shared queues and their lock (add the workers first).
        """
        cdef Worker wk = Worker(self, lcore, burst, yield_after, sleep_us)
        cdef vr_vif *v
        cdef uint32_t idx = len(self.workers)
        if idx >= VR_MAX_WORKERS:
            raise _ResourceError(f"more than {VR_MAX_WORKERS} forwarding lcores", "give fewer lcores")
        # Its distribution ring: every other lcore may hand it packets (MP), it alone takes them (SC).
        self.r.dist[idx] = ring_create(b"vr_dist", 1024, PD_RING_F_SC_DEQ)
        if self.r.dist[idx] == NULL:
            raise MemoryError("vrouter distribution ring")
        wk.w.dist = self.r.dist[idx]
        self.r.nb_dist = idx + 1
        wk.w.txq = idx
        self.workers.append(wk)
        self.r.tx_locking = len(self.workers) > 1
        for i in range(VR_MAX_VIFS):
            v = self.r.vifs[i]
            if v != NULL and v.lcore_txq and v.fp.nb_txq < len(self.workers):
                v.lcore_txq = 0
        (<Worker>self.workers[0]).w.owns_inject = 1
        self.poller.w.owns_inject = 0
        return wk

    def rebalance(self):
        """Deal every vif's rx queues to the lcore workers round-robin (the
        Python poller polls them all); publish the poll sets."""
        cdef Worker wk
        cdef vr_vif *v
        pairs = []
        for i in range(VR_MAX_VIFS):
            v = self.r.vifs[i]
            if v != NULL and v.fp != NULL:
                for q in range(v.fp.nb_rxq):
                    pairs.append((i, q))
        self.poller.set_pollset(pairs)
        n = len(self.workers)
        for k, wk in enumerate(self.workers):
            wk.set_pollset(pairs[k::n])
        self.synchronize()
        return {wk.lcore: pairs[k::n] for k, wk in enumerate(self.workers)}

    def assign(self, dict pollsets):
        """Publish {lcore: [(vif, queue), ...]} as the lcore workers' poll sets
        (the Python poller polls every pair of them).

        A queue that moves between lcores is never polled by two at once:
        each worker first drops what it loses, and only after every worker
        passed a quiescent point (synchronize) does any take what it gains.
        """
        cdef Worker wk
        cdef list pairs = []
        for lc in sorted(pollsets):
            pairs.extend(pollsets[lc])
        self.poller.set_pollset(sorted(pairs))
        old = {wk.lcore: list(wk.pollset_pairs()) for wk in self.workers}
        for wk in self.workers:
            new = set(pollsets.get(wk.lcore, ()))
            wk.set_pollset([p for p in old[wk.lcore] if p in new])
        self.synchronize()
        for wk in self.workers:
            wk.set_pollset(list(pollsets.get(wk.lcore, ())))
        self.synchronize()
        return {wk.lcore: list(pollsets.get(wk.lcore, ())) for wk in self.workers}

    def rxq_cycles(self):
        """{(vif, queue): TSC cycles spent on its bursts, summed over every
        forwarding context} for the pairs that have any."""
        cdef Worker wk
        cdef int v, q
        out = {}
        for wk in self._all_workers():
            for v in range(VR_MAX_VIFS):
                for q in range(VR_MAX_QUEUES):
                    if wk.w.st.vifq_cycles[v][q]:
                        out[(v, q)] = out.get((v, q), 0) + wk.w.st.vifq_cycles[v][q]
        return out

    def vif_lcore_txq(self, int vid):
        """True when every forwarding lcore sends on vif vid through a tx queue of its own."""
        cdef vr_vif *v = self.r.vifs[vid] if 0 <= vid < VR_MAX_VIFS else NULL
        return v != NULL and bool(v.lcore_txq)

    def poll(self, int rounds=1):
        """Run `rounds` rounds of the Python-thread poller; packets received."""
        cdef uint64_t total = 0
        cdef int i
        cdef vr_worker *w = self.poller.w
        with nogil:
            for i in range(rounds):
                w.now = pd_rdtsc()
                total += vr_worker_poll(w)
        return total

    def poll_until_idle(self, int idle_rounds=3, int max_rounds=1000000):
        """Poll until `idle_rounds` rounds in a row bring nothing; packets received."""
        total = idle = 0
        for _ in range(max_rounds):
            got = self.poll()
            total += got
            idle = 0 if got else idle + 1
            if idle >= idle_rounds:
                break
        return total

    # ---- the vRouter itself ---------------------------------------------------

    def set_router(self, bytes mac, uint32_t underlay_be, uint32_t icmp_src_be):
        memcpy(self.r.mac, <const char *>mac, 6)
        self.r.underlay_ip = underlay_be
        self.r.icmp_src = icmp_src_be

    def set_special(self, int fabric, int vhost, int agent):
        self.r.fabric_vif = fabric if fabric >= 0 else VR_NO_VIF
        self.r.vhost_vif = vhost if vhost >= 0 else VR_NO_VIF
        self.r.agent_vif = agent if agent >= 0 else VR_NO_VIF

    def set_flow_timeouts(self, double idle_s, double closed_s, double tsc_hz):
        self.r.flow_timeout = <uint64_t>(idle_s * tsc_hz)
        self.r.flow_closed_timeout = <uint64_t>(closed_s * tsc_hz)

    # ---- vifs ----------------------------------------------------------------

    def vif_set(self, int vid, int vtype, EthDev port, int vrf, bytes mac, uint32_t ip4_be,
                bytes ip6, int mtu, int flags, int nb_txq, list rules, bint distribute=False):
        """Publish vif `vid` (rules: the "dp" dicts of VRouter.policy_add)."""
        cdef vr_vif *v = <vr_vif *>calloc(1, sizeof(vr_vif))
        cdef vr_vif *old
        cdef vr_policy_rule *rl
        cdef bytes b
        if v == NULL:
            raise MemoryError()
        v.id = vid
        v.type = vtype
        v.vrf = vrf
        v.flags = flags
        v.mtu = mtu
        v.nb_txq = max(nb_txq, 1)
        v.distribute = distribute
        if distribute:
            self.r.dist_on = 1
        memcpy(v.mac, <const char *>mac, 6)
        v.ip4 = ip4_be
        if ip6:
            memcpy(v.ip6, <const char *>ip6, 16)
            v.has_ip6 = 1
        if port is not None:
            v.fp = eth_port_fp(port.port_id)
            v.port_id = port.port_id
            self.ports[vid] = port
            # A tx queue per forwarding lcore when the vif is single-queue (a
            # multi-queue vif's queue is the flow's) and the port has enough.
            v.lcore_txq = (len(self.workers) > 1 and nb_txq <= 1
                           and v.fp.nb_txq >= len(self.workers))
        else:
            self.ports.pop(vid, None)
        v.nb_rules = min(len(rules), VR_MAX_POLICY)
        for i in range(v.nb_rules):
            d = rules[i]
            rl = &v.rules[i]
            rl.family = d["family"]
            rl.proto = d["proto"]
            rl.action = d["action"]
            rl.mirror_vif = d["mirror_vif"]
            rl.src_plen = d["src_plen"]
            rl.dst_plen = d["dst_plen"]
            b = d["src"]
            memcpy(rl.src, <const char *>b, len(b))
            b = d["dst"]
            memcpy(rl.dst, <const char *>b, len(b))
            rl.sport_lo, rl.sport_hi = d["sport"]
            rl.dport_lo, rl.dport_hi = d["dport"]
        old = self.r.vifs[vid]
        vr_store_vif(&self.r.vifs[vid], v)
        self._retire(<uintptr_t>old)

    def vif_clear(self, int vid):
        old = <uintptr_t>self.r.vifs[vid]
        vr_store_vif(&self.r.vifs[vid], NULL)
        self._retire(old)
        self.ports.pop(vid, None)

    # ---- nexthops ------------------------------------------------------------

    def nh_set(self, uint32_t nid, int ntype, int flags, int vif, int encap, uint32_t sip_be,
               uint32_t dip_be, bytes dmac, list members, list vnis):
        cdef vr_nh *n = <vr_nh *>calloc(1, sizeof(vr_nh))
        cdef vr_nh *old
        if n == NULL:
            raise MemoryError()
        n.id = nid
        n.type = ntype
        n.flags = flags
        n.vif = vif if vif >= 0 else VR_NO_VIF
        n.encap = encap
        n.sip = sip_be
        n.dip = dip_be
        if dmac:
            memcpy(n.dmac, <const char *>dmac, 6)
        n.nb_members = min(len(members), VR_MAX_MEMBERS)
        for i in range(n.nb_members):
            n.members[i] = members[i]
            n.vnis[i] = vnis[i] if i < len(vnis) and vnis[i] is not None else VR_NONE
        old = self.r.nhs[nid]
        vr_store_nh(&self.r.nhs[nid], n)
        self._retire(<uintptr_t>old)

    def nh_clear(self, uint32_t nid):
        old = <uintptr_t>self.r.nhs[nid]
        vr_store_nh(&self.r.nhs[nid], NULL)
        self._retire(old)

    # ---- routes, labels, bridge, VNIs, floating IPs ----------------------------

    def rtdata_set(self, uint32_t idx, uint32_t nh, uint32_t label):
        pd_store_release_u64(&self.r.rtdata[idx], <uint64_t>nh | (<uint64_t>label << 32))

    def rt_add(self, int vrf, int family, bytes addr, int plen, uint32_t idx):
        """Add (or repoint) the route addr/plen in (vrf, family) -> rtdata index idx.

        A table outgrown is replaced by a bigger one; the old one is freed at
        the next synchronize."""
        cdef int rc
        cdef pd_lpm4 *old4 = NULL
        cdef pd_lpm6 *old6 = NULL
        if family == 4:
            rc = rt4_add(self.r, vrf, _ip4_host(addr), plen, idx, &old4)
            self._retire(<uintptr_t>old4, RETIRE_LPM4)
        else:
            rc = rt6_add(self.r, vrf, <const uint8_t *><const char *>addr, plen, idx, &old6)
            self._retire(<uintptr_t>old6, RETIRE_LPM6)
        _rt_check(rc, vrf, addr, plen)

    def rt_del(self, int vrf, int family, bytes addr, int plen):
        """Delete the route addr/plen of (vrf, family); KeyError if there is none."""
        cdef int rc
        cdef pd_lpm4 *old4 = NULL
        cdef pd_lpm6 *old6 = NULL
        if family == 4:
            rc = rt4_del(self.r, vrf, _ip4_host(addr), plen, &old4)
            self._retire(<uintptr_t>old4, RETIRE_LPM4)
        else:
            rc = rt6_del(self.r, vrf, <const uint8_t *><const char *>addr, plen, &old6)
            self._retire(<uintptr_t>old6, RETIRE_LPM6)
        _rt_check(rc, vrf, addr, plen)

    def rt_add_bulk(self, int vrf, prefixes, plens, uint32_t idx):
        """Add many IPv4 routes to vrf, all -> rtdata index idx (benchmarks, bulk loads).

        Args:
            prefixes: host-order IPv4 networks (a uint32 array).
            plens: their prefix lengths (a uint8 array of the same length).
        Returns:
            int: the routes added. The table is sized once for all of them.
        """
        cdef const uint32_t[::1] p = _np.ascontiguousarray(prefixes, dtype=_np.uint32)
        cdef const uint8_t[::1] d = _np.ascontiguousarray(plens, dtype=_np.uint8)
        cdef Py_ssize_t i, n = p.shape[0]
        cdef pd_lpm4 *old = NULL
        cdef int rc = 0
        if d.shape[0] != n:
            raise ValueError("prefixes and plens differ in length")
        rc = rt4_reserve(self.r, vrf, <uint32_t>n, &old)
        self._retire(<uintptr_t>old, RETIRE_LPM4)
        if rc == 0:
            with nogil:
                for i in range(n):
                    rc = rt4_add(self.r, vrf, p[i], d[i], idx, &old)
                    if rc != 0:
                        break
                    if old != NULL:
                        with gil:
                            self._retire(<uintptr_t>old, RETIRE_LPM4)
        if rc != 0:
            err = _tablemem.take_failure(f"the routes of vrf {vrf}") if rc == -ENOMEM else None
            raise err or _ResourceError(f"bulk route add in vrf {vrf} failed at index {i} ({_errname(rc)})",
                                        "fewer routes, or more memory")
        return n

    def rt_lookup(self, int vrf, int family, bytes addr):
        """The datapath's longest-prefix match of addr (4 or 16 bytes) in vrf: (nh, label or None), or None."""
        cdef uint32_t nh, label
        cdef int rc
        if family == 4:
            rc = route_lookup4(self.r, vrf, (<const uint32_t *><const char *>addr)[0], &nh, &label)
        else:
            rc = route_lookup6(self.r, vrf, <const uint8_t *><const char *>addr, &nh, &label)
        if rc != 0:
            return None
        return nh, None if label == VR_NONE else label

    def rt_tables(self, int vrf):
        """{'rt4': {...}, 'rt6': {...}} sizes of vrf's tables (None when it has none)."""
        cdef pd_lpm4 *a = self.r.rt4[vrf]
        cdef pd_lpm6 *b = self.r.rt6[vrf]
        out = {"rt4": None, "rt6": None}
        if a != NULL:
            out["rt4"] = {"rules": a.nrules, "max_rules": a.max_rules, "tbl8_groups": a.groups.number,
                          "tbl8_free": a.groups.nfree, "tbl8_pending": a.groups.npending}
        if b != NULL:
            out["rt6"] = {"rules": b.nrules, "max_rules": b.max_rules, "tbl8_groups": b.groups.number,
                          "tbl8_free": b.groups.nfree, "tbl8_pending": b.groups.npending}
        return out

    def mpls_set(self, uint32_t label, nh):
        if label >= self.r.mpls_max:
            raise ValueError(f"label {label} >= {self.r.mpls_max}")
        pd_store_release_u32(&self.r.mpls[label], VR_NONE if nh is None else <uint32_t>nh)

    @property
    def mpls_max(self):
        return self.r.mpls_max

    def bridge_set(self, int vrf, bytes mac, uint32_t idx):
        """Add or change the bridge entry (vrf, mac) -> rtdata index idx (nh | vni << 32)."""
        if bridge_set(self.r, vrf, <const uint8_t *><const char *>mac, idx) != 0:
            raise _ResourceError("bridge table full", "delete entries or raise bridge_max")

    def bridge_clear(self, int vrf, bytes mac):
        bridge_clear(self.r, vrf, <const uint8_t *><const char *>mac)

    def vxlan_set(self, uint32_t vni, uint32_t vrf):
        if vxlan_set(self.r, vni, vrf) != 0:
            raise _ResourceError("VXLAN table full", "delete VNIs or raise vxlan_max")

    def vxlan_clear(self, uint32_t vni):
        vxlan_clear(self.r, vni)

    def fip_set(self, uint32_t ip_be, uint32_t vif):
        if fip_set(self.r, ip_be, vif) != 0:
            raise _ResourceError("floating IP table full", "delete floating IPs")

    def fip_clear(self, uint32_t ip_be):
        fip_clear(self.r, ip_be)

    # ---- counters ------------------------------------------------------------

    cdef list _all_workers(self):
        return [self.poller] + self.workers

    def dropstats(self, vif=None):
        """{reason: count}, all vifs or one."""
        cdef Worker wk
        cdef int i
        out = [0] * DROP_MAX
        for wk in self._all_workers():
            for i in range(DROP_MAX):
                out[i] += wk.w.st.drop[i] if vif is None else wk.w.st.vif_drop[<int>vif][i]
        return dict(zip(DROP_NAMES, out))

    def vif_queue_stats(self, int vid, int nb_queues):
        """[{counter: value} per queue] of vif vid."""
        cdef Worker wk
        cdef int q, i
        out = []
        for q in range(nb_queues):
            c = [0] * VIFQ_MAX
            for wk in self._all_workers():
                for i in range(VIFQ_MAX):
                    c[i] += wk.w.st.vifq[vid][q][i]
            out.append(dict(zip(VIFQ_NAMES, c)))
        return out

    def vrf_stats(self, int vrf):
        cdef Worker wk
        cdef int i
        c = [0] * VRFS_MAX
        for wk in self._all_workers():
            for i in range(VRFS_MAX):
                c[i] += wk.w.st.vrf[vrf][i]
        return dict(zip(VRFS_NAMES, c))

    def totals(self):
        cdef Worker wk
        t = {"flows_created": 0, "traps": 0}
        for wk in self._all_workers():
            t["flows_created"] += wk.w.st.flows_created
            t["traps"] += wk.w.st.traps
        return t

    # ---- flows ---------------------------------------------------------------

    def flow_list(self):
        cdef uint32_t i
        cdef vr_flow *f
        cdef const pd_flow_key *k
        out = []
        for i in range(self.r.flow_max):
            f = &self.r.flows[i]
            if f.state != VR_FLOW_VALID:
                continue
            k = <const pd_flow_key *>(_fh_rec(self.r.flow_h, i) + 8)
            fam = k.family
            n = 4 if fam == 4 else 16
            out.append({"index": i, "vrf": k.vrf, "family": fam, "proto": k.proto,
                        "src": bytes(k.src[:n]), "dst": bytes(k.dst[:n]),
                        "sport": pd_ntohs(k.sport), "dport": pd_ntohs(k.dport),
                        "action": f.action, "flags": f.flags, "mirror_vif": f.mirror_vif,
                        "nat_ip": f.nat_ip, "rflow": None if f.rflow == VR_NONE else f.rflow,
                        "packets": f.packets, "bytes": f.bytes})
        return out

    def flow_count(self):
        return self.r.flow_h.count

    @property
    def flow_max(self):
        return self.r.flow_max

    def flow_age(self, bint all_=False, now=None):
        """Delete idle flows (closed TCP ones sooner), both entries of a flow
        together; with all_, every flow. now: the flow clock (rdtsc ticks;
        default: read it), for tests that drive it. Runs under the flow lock;
        then synchronizes, so the positions are reusable when it returns.
        Returns how many entries went."""
        cdef uint32_t n
        cdef uint64_t t = pd_rdtsc() if now is None else <uint64_t>now
        with nogil:
            n = flow_age(self.r, t, all_)
        if n:
            self.synchronize()
        return n

    # ---- agent ---------------------------------------------------------------

    def trap_dequeue(self, int n=64):
        """Packets trapped to the agent: [(reason, in vif, frame bytes)] (mbufs freed)."""
        cdef pd_mbuf *pkts[64]
        cdef uint32_t got, i
        out = []
        got = ring_sc_dequeue_burst(self.r.trap, <void **>pkts, min(n, 64))
        for i in range(got):
            m = pkts[i]
            out.append((m.udata64 & 0xffff, (m.udata64 >> 16) & 0xffff,
                        (<char *>m.buf_addr + m.data_off)[:m.data_len]))
            pktmbuf_free(m)
        return out

    @property
    def poller_addr(self):
        """The address of the Python-thread poller's vr_worker, for Cython
        kernels that drive the datapath on the calling thread (benchmarks/)."""
        return <uintptr_t>self.poller.w

    def inject(self, int vif, bytes frame):
        """Send a frame out of vif from the agent (through the inject ring)."""
        cdef pd_mbuf *m = pktmbuf_alloc(self.r.pool)
        cdef char *d
        if m == NULL:
            raise _ResourceError("no mbuf for an injected frame", "raise the pool size")
        d = mbuf_append(m, len(frame))
        if d == NULL:
            pktmbuf_free(m)
            raise ValueError("frame too long")
        memcpy(d, <const char *>frame, len(frame))
        m.port = vif
        if ring_mp_enqueue_burst(self.r.inject, <void **>&m, 1) != 1:
            pktmbuf_free(m)
            raise _ResourceError("inject ring full", "retry later")


# ---- helpers -------------------------------------------------------------------------

cdef enum:
    RETIRE_FREE = 0             # malloc'd (vifs, nhs, poll sets)
    RETIRE_LPM4 = 4
    RETIRE_LPM6 = 6


cdef void _retired_free(int kind, uintptr_t a) noexcept:
    if kind == RETIRE_LPM4:
        lpm4_free(<pd_lpm4 *>a)
    elif kind == RETIRE_LPM6:
        lpm6_free(<pd_lpm6 *>a)
    else:
        free(<void *>a)


cdef uint64_t _seed():
    return int.from_bytes(_os.urandom(8), "little")


cdef uint32_t _ip4_host(bytes addr):
    return int.from_bytes(addr, "big")


cdef bint _hash_consistent(pd_flow_hash *scratch):
    """A key added by pypdk.net.flow_hash (compiled there) is found by the
    inline lookup compiled here: both hash with the same hash.pxd."""
    cdef uint32_t key = 0x5eed1e55, data = 0
    cdef bint ok
    if flow_hash_add(scratch, &key, 7) < 0:
        return False
    ok = flow_hash_lookup(scratch, &key, &data) >= 0 and data == 7
    flow_hash_delete(scratch, &key)
    return ok


def _errname(int rc):
    return {-ENOMEM: "out of memory", -ENOENT: "no such route", -ENOSPC: "table full",
            -EINVAL: "bad prefix length"}.get(rc, f"error {rc}")


cdef _rt_check(int rc, int vrf, bytes addr, int plen):
    import ipaddress
    if rc == 0:
        return
    what = f"{ipaddress.ip_address(addr)}/{plen} in vrf {vrf}"
    if rc == -ENOENT:
        raise KeyError(f"no route {what}")
    if rc == -ENOMEM:
        raise (_tablemem.take_failure(f"route {what}")
               or MemoryError(f"route {what}: out of memory for the VRF's table"))
    raise _ResourceError(f"route {what}: {_errname(rc)}", "check the prefix length; free memory")


def rdtsc():
    """The time-stamp counter (the flow clock)."""
    return pd_rdtsc()
