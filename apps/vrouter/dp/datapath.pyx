"""The vRouter's burst loop (datapath.pxd): poll, dispatch by vif type, flush.

The packet paths live in the modules of their concern (vrouter.pxd lists
them); this is what a forwarding lcore runs around them. The loop is
pypdk's lcore skeleton (pypdk/worker/lcore_loop.pxd) compiled here around
the vRouter's round (`vr_worker_poll`) and its per-round callback (the
quiescent point), both constant, so the C compiler inlines them: the input
paths take every packet over (counted as `taken`), the idle policy and the
quit flag are the skeleton's.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, uint64_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.worker.lcore_loop cimport lcore_loop, lcore_rx
from pypdk.ring.ring cimport ring_sc_dequeue_burst, ring_mp_enqueue_burst
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.vif cimport drop, tx_enqueue, tx_flush
from apps.vrouter.dp.decap cimport fabric_input
from apps.vrouter.dp.vm cimport vm_input

from pd_compiler cimport pd_unlikely, pd_rdtsc
from pd_atomic cimport pd_store_release_int, pd_store_release_u64

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int nanosleep(const timespec *req, timespec *rem)


# ---- software distribution -------------------------------------------------------------
# TF's DPDK vRouter spreads traffic the NIC cannot (MPLSoGRE has no UDP
# source port for RSS; a single-queue VM has one queue): the lcore that
# receives a burst on a vif with `distribute` hashes each packet's (inner)
# IPv4 flow and hands it, over the target lcore's MP/SC ring, to the
# forwarding lcore the hash picks, which processes it as if it had polled
# it (same vif and queue, carried in udata64). Non-IPv4 frames stay. The
# cost is per packet but only on those vifs (off by default).

cdef inline uint32_t _dist_hash(pd_mbuf *m, uint16_t vtype) noexcept nogil:
    cdef const uint8_t *p = <const uint8_t *>m.buf_addr + m.data_off
    cdef uint32_t n = m.data_len, off = 14, ihl, h, inner
    if n < 34 or p[12] != 0x08 or p[13] != 0x00:
        return 0xffffffffu
    ihl = (p[14] & 15) * 4
    if vtype == VIF_FABRIC and p[23] == 47:
        inner = 14 + ihl + 4 + 4               # outer IPv4, GRE (no options), one MPLS label
        if n >= inner + 20 and (p[inner] >> 4) == 4:
            off = inner
            ihl = (p[inner] & 15) * 4
    h = ((<uint32_t>p[off + 12] << 24 | <uint32_t>p[off + 13] << 16 | <uint32_t>p[off + 14] << 8 | p[off + 15])
         ^ (<uint32_t>p[off + 16] << 24 | <uint32_t>p[off + 17] << 16 | <uint32_t>p[off + 18] << 8 | p[off + 19]))
    if (p[off + 9] == 6 or p[off + 9] == 17) and n >= off + ihl + 4:
        h ^= (<uint32_t>p[off + ihl] << 24 | <uint32_t>p[off + ihl + 1] << 16
              | <uint32_t>p[off + ihl + 2] << 8 | p[off + ihl + 3])
    h ^= p[off + 9]
    h *= 0x9e3779b1u                          # Fibonacci hashing: mix the high bits down
    return h >> 16


cdef uint32_t dist_split(vr_worker *w, vr_vif *vif, uint16_t queue, pd_mbuf **pkts,
                         uint32_t n) noexcept nogil:
    """Hand every packet whose flow hashes to another lcore to its ring; keep
    (compacted in pkts) those that hash here; how many were kept."""
    cdef vr_router *r = w.r
    cdef pd_mbuf *out[VR_MAX_WORKERS][64]
    cdef uint32_t cnt[VR_MAX_WORKERS]
    cdef uint32_t nd = r.nb_dist, i, t, keep = 0, sent, h
    for t in range(nd):
        cnt[t] = 0
    for i in range(n):
        h = _dist_hash(pkts[i], vif.type)
        if h == 0xffffffffu:
            t = w.txq
        else:
            t = h % nd
        if t == w.txq:
            pkts[keep] = pkts[i]
            keep += 1
        else:
            pkts[i].udata64 = vif.id | (<uint64_t>queue << 16)
            out[t][cnt[t]] = pkts[i]
            cnt[t] += 1
    for t in range(nd):
        if cnt[t]:
            sent = ring_mp_enqueue_burst(r.dist[t], <void **>out[t], cnt[t])
            w.st.distributed += sent
            for i in range(sent, cnt[t]):
                w.st.dist_ring_full += 1
                drop(w, out[t][i], vif.id, DROP_INTERFACE_DROP)
    return keep


# From the host (vhost): to the fabric, untouched.
cdef void vhost_input(vr_worker *w, uint16_t vif_id, pd_mbuf **pkts, uint32_t n) noexcept nogil:
    cdef uint32_t i
    cdef vr_router *r = w.r
    if r.fabric_vif != VR_NO_VIF and vr_load_vif(&r.vifs[r.fabric_vif]) != NULL:
        for i in range(n):
            tx_enqueue(w, r.fabric_vif, 0, pkts[i])
    else:
        for i in range(n):
            drop(w, pkts[i], vif_id, DROP_INVALID_IF)


# From the agent: m.port is the output vif.
cdef void agent_tx(vr_worker *w, pd_mbuf *m) noexcept nogil:
    cdef vr_vif *v = vr_load_vif(&w.r.vifs[m.port]) if m.port < VR_MAX_VIFS else NULL
    if v == NULL or v.type == VIF_AGENT:
        drop(w, m, VR_NO_VIF, DROP_INVALID_IF)
        return
    tx_enqueue(w, v.id, 0, m)


cdef void vr_process_burst(vr_worker *w, uint16_t vif_id, uint16_t queue, pd_mbuf **pkts,
                           uint32_t n) noexcept nogil:
    cdef vr_vif *vif = vr_load_vif(&w.r.vifs[vif_id])
    cdef uint32_t i, k
    cdef uint64_t bytes = 0
    cdef uint64_t *q = w.st.vifq[vif_id][queue]
    if pd_unlikely(vif == NULL):
        for i in range(n):
            drop(w, pkts[i], vif_id, DROP_INVALID_IF)
        return
    for i in range(n):
        bytes += pkts[i].pkt_len
    q[VIFQ_RX_PACKETS] += n
    q[VIFQ_RX_BYTES] += bytes
    if vif.type == VIF_VIRTUAL or vif.type == VIF_FABRIC:
        # The input paths keep per-packet state for at most VR_BURST_MAX packets.
        i = 0
        while i < n:
            k = n - i if n - i < VR_BURST_MAX else VR_BURST_MAX
            if vif.type == VIF_VIRTUAL:
                vm_input(w, vif, pkts + i, k)
            else:
                fabric_input(w, vif, pkts + i, k)
            i += k
    elif vif.type == VIF_VHOST:
        vhost_input(w, vif_id, pkts, n)
    else:
        for i in range(n):
            drop(w, pkts[i], vif_id, DROP_INVALID_IF)
    tx_flush(w)


cdef uint32_t vr_worker_poll(vr_worker *w) noexcept nogil:
    cdef vr_router *r = w.r
    cdef vr_pollset *ps = vr_load_ps(&w.ps)
    cdef pd_mbuf *pkts[64]
    cdef uint32_t i, j, nb, total = 0
    cdef uint64_t t0
    cdef vr_vif *vif
    for i in range(ps.n if ps != NULL else 0):
        vif = vr_load_vif(&r.vifs[ps.p[i].vif])
        if vif == NULL or vif.fp == NULL:
            continue
        nb = lcore_rx(&w.lc, vif.fp, ps.p[i].queue, pkts, <uint16_t>w.burst)
        if nb == 0:
            continue
        total += nb
        w.lc.stats.taken += nb         # the input paths consume every mbuf
        t0 = pd_rdtsc()
        if pd_unlikely(vif.distribute) and w.dist != NULL and r.nb_dist > 1:
            nb = dist_split(w, vif, ps.p[i].queue, pkts, nb)
        vr_process_burst(w, ps.p[i].vif, ps.p[i].queue, pkts, nb)
        w.st.vifq_cycles[ps.p[i].vif][ps.p[i].queue] += pd_rdtsc() - t0
    if w.dist != NULL and r.dist_on:
        # What the other lcores handed over: runs of one (vif, queue) at a time.
        nb = ring_sc_dequeue_burst(w.dist, <void **>pkts, 64)
        i = 0
        while i < nb:
            j = i + 1
            while j < nb and pkts[j].udata64 == pkts[i].udata64:
                j += 1
            t0 = pd_rdtsc()
            vr_process_burst(w, <uint16_t>(pkts[i].udata64 & 0xffff), <uint16_t>(pkts[i].udata64 >> 16),
                             pkts + i, j - i)
            w.st.vifq_cycles[pkts[i].udata64 & 0xffff][pkts[i].udata64 >> 16] += pd_rdtsc() - t0
            i = j
        total += nb
    if w.owns_inject and r.inject != NULL:
        # The inject ring is single-consumer: one worker (owns_inject) drains it.
        nb = ring_sc_dequeue_burst(r.inject, <void **>pkts, 32)
        for j in range(nb):
            agent_tx(w, pkts[j])
        if nb:
            tx_flush(w)
    return total


cdef int32_t vr_round(void *arg) noexcept nogil:
    cdef vr_worker *w = <vr_worker *>arg
    cdef uint32_t got = vr_worker_poll(w)
    cdef timespec ts
    if pd_unlikely(w.sleep_us != 0):
        # --idle-sleep: an idle lcore gives its cpu back (a guest's vCPU, a shared host).
        if got:
            w.empty_rounds = 0
        else:
            w.empty_rounds += 1
            if w.empty_rounds >= VR_IDLE_ROUNDS:
                ts.tv_sec = 0
                ts.tv_nsec = <long>w.sleep_us * 1000
                nanosleep(&ts, NULL)
    return <int32_t>got


cdef void vr_quiescent(void *arg) noexcept nogil:
    cdef vr_worker *w = <vr_worker *>arg
    # Quiescent point: nothing of the tables is held across it. Pairs
    # with the acquire load in Router.synchronize.
    pd_store_release_u64(&w.epoch, w.epoch + 1)
    w.now = pd_rdtsc()                  # the next round's clock


cdef int vr_worker_main(void *arg) noexcept nogil:
    cdef vr_worker *w = <vr_worker *>arg
    pd_store_release_int(&w.running, 1)
    w.now = pd_rdtsc()
    lcore_loop(&w.lc, vr_round, w, vr_quiescent, w)
    pd_store_release_int(&w.running, 0)
    return 0
