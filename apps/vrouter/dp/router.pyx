"""`Router` and `Worker`: the Python owners of the vRouter's datapath (control thread).

`Router` allocates the tables (vrouter.pxd's vr_router), publishes what the
control operations (ctl/ops.py) change, frees replaced entries after
`synchronize()` saw every forwarding lcore pass its quiescent point, and
sums the workers' counters. `Worker` is one forwarding context: a worker
lcore runs its loop (datapath.pyx), the Python-thread poller serves tests
and benchmarks (`poll`, `bench`).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from pypdk.mempool.mbuf cimport (pd_mbuf, PktMbufPool, pktmbuf_alloc, pktmbuf_free, pktmbuf_alloc_bulk,
                                 mbuf_append)
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport eth_port_fp, EthDev
from pypdk.ring.ring cimport pd_ring, ring_create, ring_free, ring_mp_enqueue_burst, ring_sc_dequeue_burst
from pypdk.eal.lcore cimport LcoreFunction, lcore_function_new
from pypdk.net.byteorder cimport pd_ntohs, pd_htonl
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.tables cimport vr_rt_table, vr_hash, hash_create, hash_free, hash_lookup, hash_add, hash_del, hash_key
from apps.vrouter.dp.flow cimport key_hash
from apps.vrouter.dp.datapath cimport vr_process_burst, vr_worker_poll, vr_worker_main

from apps.vrouter.dp.drop import DROP_NAMES

cdef extern from "pd_compiler.h" nogil:
    uint64_t pd_rdtsc()

cdef extern from "pd_atomic.h" nogil:
    int pd_load_acquire_int(const int *p)
    void pd_store_release_int(int *p, int v)
    uint64_t pd_load_acquire_u64(const uint64_t *p)
    void pd_store_release_u64(uint64_t *p, uint64_t v)

VRFS_NAMES = ("discards", "resolves", "receives", "ecmp", "l2_floods", "encaps", "l2_encaps",
              "udp_mpls_encaps", "gre_mpls_encaps", "vxlan_encaps", "udp_mpls_decaps",
              "gre_mpls_decaps", "vxlan_decaps", "arp_proxy", "nd_proxy", "translates")
VIFQ_NAMES = ("rx_packets", "rx_bytes", "rx_errors", "rx_drops",
              "tx_packets", "tx_bytes", "tx_errors", "tx_drops")
assert len(VRFS_NAMES) == VRFS_MAX and len(VIFQ_NAMES) == VIFQ_MAX

import time as _time
from pypdk.errors import ResourceError as _ResourceError
from apps.vrouter.dp import tables as _tables
from pypdk.ring.ring cimport PD_RING_F_SC_DEQ, PD_RING_F_SP_ENQ
from pypdk.mempool.mempool cimport Mempool

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int nanosleep(const timespec *req, timespec *rem)


cdef class Worker:
    """One forwarding context: its loop state, counters and tx buffers.

    `lcore_function()` runs the loop on a worker lcore; `Router.poll()` runs
    one round of the internal poller on the calling thread (tests).
    """
    cdef vr_worker *w
    cdef readonly Router router
    cdef readonly int lcore

    def __cinit__(self, Router router, int lcore=-1, int burst=32):
        self.w = <vr_worker *>calloc(1, sizeof(vr_worker))
        if self.w == NULL:
            raise MemoryError()
        self.w.st = <vr_stats *>calloc(1, sizeof(vr_stats))
        if self.w.st == NULL:
            raise MemoryError()
        self.w.r = router.r
        self.w.burst = min(max(burst, 1), 64)
        self.router = router
        self.lcore = lcore

    def __dealloc__(self):
        if self.w != NULL:
            free(<void *>self.w.ps)
            free(self.w.st)
            free(self.w)
            self.w = NULL

    def lcore_function(self):
        return lcore_function_new(vr_worker_main, self.w, self)

    def stop(self):
        pd_store_release_int(&self.w.quit, 1)

    def stats(self):
        return {"polls": self.w.polls, "empty_polls": self.w.empty_polls,
                "flows_created": self.w.st.flows_created, "traps": self.w.st.traps}

    @property
    def running(self):
        return bool(pd_load_acquire_int(&self.w.running))

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
    one control thread calls these (apps/vrouter/ctl/ops.py)."""
    cdef vr_router *r
    cdef readonly object pool
    cdef readonly list workers          # lcore workers
    cdef readonly Worker poller         # the Python-thread poller (tests, benchmarks)
    cdef list retired                   # addresses to free after the next synchronize
    cdef dict ports                     # vif id -> EthDev (to keep them alive)

    def __cinit__(self, PktMbufPool pool not None, uint32_t mpls_max=1 << 20, uint32_t flow_max=1 << 16,
                  uint32_t bridge_max=1 << 16, uint32_t vxlan_max=1 << 14, uint32_t fip_max=VR_MAX_FIPS,
                  uint32_t ring_size=1024):
        cdef uint32_t i
        self.r = <vr_router *>calloc(1, sizeof(vr_router))
        if self.r == NULL:
            raise MemoryError()
        self.r.fabric_vif = self.r.vhost_vif = self.r.agent_vif = VR_NO_VIF
        self.r.pool = (<Mempool>pool).mp
        self.r.mpls_max = mpls_max
        self.r.mpls = <uint32_t *>malloc(mpls_max * sizeof(uint32_t))
        self.r.flow_max = flow_max
        self.r.flows = <vr_flow *>calloc(flow_max * 2 + 64, sizeof(vr_flow))
        self.r.flow_h = hash_create(flow_max, sizeof(vr_flow_key))
        self.r.bridge = hash_create(bridge_max, 8)
        self.r.bridge_val = <uint64_t *>calloc(self.r.bridge.size if self.r.bridge else 1, 8)
        self.r.vxlan = hash_create(vxlan_max, 4)
        self.r.vxlan_vrf = <uint32_t *>calloc(self.r.vxlan.size if self.r.vxlan else 1, 4)
        self.r.fip = hash_create(fip_max, 4)
        self.r.fip_vif = <uint32_t *>calloc(self.r.fip.size if self.r.fip else 1, 4)
        self.r.trap = ring_create(b"vr_trap", ring_size, PD_RING_F_SC_DEQ)
        self.r.inject = ring_create(b"vr_inject", ring_size, PD_RING_F_SC_DEQ)
        if (self.r.mpls == NULL or self.r.flows == NULL or self.r.flow_h == NULL or self.r.bridge == NULL
                or self.r.vxlan == NULL or self.r.fip == NULL or self.r.trap == NULL or self.r.inject == NULL):
            self._free()
            raise MemoryError("vrouter tables")
        if self.r.flow_h.size > flow_max * 2 + 64:
            # flows[] is indexed by the hash slot.
            free(self.r.flows)
            self.r.flows = <vr_flow *>calloc(self.r.flow_h.size, sizeof(vr_flow))
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
        cdef pd_ring *rings[2]
        rings[0] = self.r.trap
        rings[1] = self.r.inject
        for i in range(2):
            if rings[i] != NULL:
                while ring_sc_dequeue_burst(rings[i], <void **>&m, 1) == 1:
                    pktmbuf_free(m)
                ring_free(rings[i])
        for i in range(VR_MAX_VIFS):
            free(self.r.vifs[i])
        for i in range(VR_MAX_NHS):
            free(self.r.nhs[i])
        for i in range(VR_MAX_VRFS):
            free(self.r.rt4[i])
            free(self.r.rt6[i])
        free(self.r.mpls)
        free(self.r.flows)
        hash_free(self.r.flow_h)
        hash_free(self.r.bridge)
        free(self.r.bridge_val)
        hash_free(self.r.vxlan)
        free(self.r.vxlan_vrf)
        hash_free(self.r.fip)
        free(self.r.fip_vif)
        free(self.r)
        self.r = NULL

    def close(self):
        """Free every table (after the lcores stopped); trapped mbufs go back to the pool."""
        self.synchronize()
        self._free()

    def __dealloc__(self):
        self._free()

    # ---- quiescence --------------------------------------------------------

    def _retire(self, uintptr_t addr):
        if addr:
            self.retired.append(addr)

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
        for a in retired:
            free(<void *><uintptr_t>a)

    # ---- workers -----------------------------------------------------------

    def add_worker(self, int lcore, int burst=32):
        cdef Worker wk = Worker(self, lcore, burst)
        self.workers.append(wk)
        self.r.tx_locking = len(self.workers) > 1
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
                bytes ip6, int mtu, int flags, int nb_txq, list rules):
        """Publish vif `vid` (rules: dicts from ops.policy_rule)."""
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
        memcpy(v.mac, <const char *>mac, 6)
        v.ip4 = ip4_be
        if ip6:
            memcpy(v.ip6, <const char *>ip6, 16)
            v.has_ip6 = 1
        if port is not None:
            v.fp = eth_port_fp(port.port_id)
            v.port_id = port.port_id
            self.ports[vid] = port
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

    def rt_publish(self, int vrf, int family, list routes):
        """Replace the route table of (vrf, family): [(addr bytes, plen, rtdata index)]."""
        cdef uintptr_t t = _tables.rt_build(family, routes) if routes else 0
        cdef vr_rt_table *old
        if family == 4:
            old = self.r.rt4[vrf]
            vr_store_rt(&self.r.rt4[vrf], <vr_rt_table *>t)
        else:
            old = self.r.rt6[vrf]
            vr_store_rt(&self.r.rt6[vrf], <vr_rt_table *>t)
        self._retire(<uintptr_t>old)

    def mpls_set(self, uint32_t label, nh):
        if label >= self.r.mpls_max:
            raise ValueError(f"label {label} >= {self.r.mpls_max}")
        pd_store_release_u32(&self.r.mpls[label], VR_NONE if nh is None else <uint32_t>nh)

    @property
    def mpls_max(self):
        return self.r.mpls_max

    def bridge_set(self, int vrf, bytes mac, uint32_t nh, vni):
        cdef uint32_t key[2]
        cdef int32_t i
        key[0] = vrf
        key[1] = 0
        memcpy((<uint8_t *>key) + 2, <const char *>mac, 6)
        i = hash_lookup(self.r.bridge, key, hash_key(key, 8))
        if i < 0:
            # Value first, then the key (hash_add publishes the slot).
            i = hash_add(self.r.bridge, key, hash_key(key, 8))
            if i < 0:
                raise _ResourceError("bridge table full", "delete entries or raise bridge_max")
        pd_store_release_u64(&self.r.bridge_val[i], <uint64_t>nh | (<uint64_t>(VR_NONE if vni is None else vni) << 32))

    def bridge_clear(self, int vrf, bytes mac):
        cdef uint32_t key[2]
        key[0] = vrf
        key[1] = 0
        memcpy((<uint8_t *>key) + 2, <const char *>mac, 6)
        hash_del(self.r.bridge, key, hash_key(key, 8))

    def vxlan_set(self, uint32_t vni, uint32_t vrf):
        cdef int32_t i = hash_lookup(self.r.vxlan, &vni, hash_key(&vni, 4))
        if i < 0:
            i = hash_add(self.r.vxlan, &vni, hash_key(&vni, 4))
            if i < 0:
                raise _ResourceError("VXLAN table full", "delete VNIs or raise vxlan_max")
        pd_store_release_u32(&self.r.vxlan_vrf[i], vrf)

    def vxlan_clear(self, uint32_t vni):
        hash_del(self.r.vxlan, &vni, hash_key(&vni, 4))

    def fip_set(self, uint32_t ip_be, uint32_t vif):
        cdef int32_t i = hash_lookup(self.r.fip, &ip_be, hash_key(&ip_be, 4))
        if i < 0:
            i = hash_add(self.r.fip, &ip_be, hash_key(&ip_be, 4))
            if i < 0:
                raise _ResourceError("floating IP table full", "delete floating IPs")
        pd_store_release_u32(&self.r.fip_vif[i], vif)

    def fip_clear(self, uint32_t ip_be):
        hash_del(self.r.fip, &ip_be, hash_key(&ip_be, 4))

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
        out = []
        for i in range(self.r.flow_h.size):
            if self.r.flow_h.state[i] != 1:
                continue
            f = &self.r.flows[i]
            fam = f.key.family
            n = 4 if fam == 4 else 16
            out.append({"index": i, "vrf": f.key.vrf, "family": fam, "proto": f.key.proto,
                        "src": bytes(f.key.src[:n]), "dst": bytes(f.key.dst[:n]),
                        "sport": pd_ntohs(f.key.sport), "dport": pd_ntohs(f.key.dport),
                        "action": f.action, "flags": f.flags, "mirror_vif": f.mirror_vif,
                        "nat_ip": f.nat_ip, "rflow": None if f.rflow == VR_NONE else f.rflow,
                        "packets": f.packets, "bytes": f.bytes})
        return out

    def flow_count(self):
        return self.r.flow_h.count

    def flow_age(self, bint all_=False):
        """Delete idle flows (closed TCP ones sooner); with all_, every flow.
        Runs under the flow lock. Returns how many entries went."""
        cdef uint64_t now = pd_rdtsc(), idle
        cdef uint32_t i, n = 0
        cdef vr_flow *f
        vr_lock(&self.r.flow_lock)
        for i in range(self.r.flow_h.size):
            if self.r.flow_h.state[i] != 1:
                continue
            f = &self.r.flows[i]
            idle = now - f.last_used if now > f.last_used else 0
            if all_ or idle > self.r.flow_timeout or ((f.flags & FLOW_F_TCP_CLOSED) and idle > self.r.flow_closed_timeout):
                hash_del(self.r.flow_h, &f.key, hash_key(&f.key, sizeof(vr_flow_key)))
                f.key.family = 0
                n += 1
        vr_unlock(&self.r.flow_lock)
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

    def bench(self, int vif, bytes frame, uint64_t n_pkts, uint32_t flow_off=0, uint32_t nflows=1,
              uint32_t burst=32):
        """Benchmark: process n_pkts copies of `frame` as if received on vif
        (the Python-thread poller's context). Each burst is allocated and
        filled like a NIC would; when nflows > 1 the 32-bit word at flow_off (the
        ports) takes nflows values (distinct flows). Returns (seconds, packets)."""
        cdef pd_mbuf *pkts[64]
        cdef uint64_t done = 0, t0, t1
        cdef uint32_t i, k = 0, flen = len(frame)
        cdef const char *f = frame
        cdef vr_worker *w = self.poller.w
        cdef char *d
        cdef uint32_t v32
        import time as _t
        burst = min(burst, 64)
        start = _t.perf_counter()
        with nogil:
            while done < n_pkts:
                if pktmbuf_alloc_bulk(self.r.pool, pkts, burst) != 0:
                    break
                for i in range(burst):
                    d = mbuf_append(pkts[i], <uint16_t>flen)
                    memcpy(d, f, flen)
                    if nflows > 1:
                        v32 = pd_htonl(k % nflows)
                        memcpy(d + flow_off, &v32, 4)
                        k += 1
                w.now = pd_rdtsc()
                vr_process_burst(w, <uint16_t>vif, 0, pkts, burst)
                done += burst
        return _t.perf_counter() - start, done

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


def rdtsc():
    """The time-stamp counter (the flow clock)."""
    return pd_rdtsc()
