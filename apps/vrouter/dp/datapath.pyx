"""The vRouter's burst loop (datapath.pxd): poll, dispatch by vif type, flush.

The packet paths live in the modules of their concern (vrouter.pxd lists
them); this is what a forwarding lcore runs around them. The loop is
pypdk's lcore skeleton (pypdk/worker/lcore_loop.pxd) compiled here around
the vRouter's round (`vr_worker_poll`) and its per-round callback (the
quiescent point), both constant, so the C compiler inlines them: the input
paths take every packet over (counted as `taken`), the idle policy and the
quit flag are the skeleton's.
"""
from libc.stdint cimport uint16_t, uint32_t, int32_t, uint64_t
from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.worker.lcore_loop cimport lcore_loop, lcore_rx
from pypdk.ring.ring cimport ring_sc_dequeue_burst
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *
from apps.vrouter.dp.vif cimport drop, tx_enqueue, tx_flush
from apps.vrouter.dp.decap cimport fabric_input
from apps.vrouter.dp.vm cimport vm_input

from pd_compiler cimport pd_unlikely, pd_rdtsc
from pd_atomic cimport pd_store_release_int, pd_store_release_u64


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
        vr_process_burst(w, ps.p[i].vif, ps.p[i].queue, pkts, nb)
        w.st.vifq_cycles[ps.p[i].vif][ps.p[i].queue] += pd_rdtsc() - t0
    if w.owns_inject and r.inject != NULL:
        # The inject ring is single-consumer: one worker (owns_inject) drains it.
        nb = ring_sc_dequeue_burst(r.inject, <void **>pkts, 32)
        for j in range(nb):
            agent_tx(w, pkts[j])
        if nb:
            tx_flush(w)
    return total


cdef int32_t vr_round(void *arg) noexcept nogil:
    return <int32_t>vr_worker_poll(<vr_worker *>arg)


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
