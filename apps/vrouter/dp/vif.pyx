"""vif output (vif.pxd): the per-burst flush of the tx buffers, and packet copies."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_alloc, pktmbuf_free, pktmbuf_free_bulk, mbuf_append
from pypdk.pmd.ethdev cimport fp_tx_burst
from pypdk.ring.ring cimport ring_mp_enqueue_burst


cdef void slot_flush(vr_worker *w, vr_txslot *s) noexcept nogil:
    cdef vr_router *r = w.r
    cdef vr_vif *vif = vr_load_vif(&r.vifs[s.vif])
    cdef uint32_t n = s.n, sent = 0, i
    cdef uint64_t bytes = 0
    cdef uint64_t *q
    s.n = 0
    if n == 0:
        return
    for i in range(n):
        bytes += s.pkts[i].pkt_len
    q = w.st.vifq[s.vif][s.queue]
    if pd_unlikely(vif == NULL or vif.fp == NULL):
        if vif != NULL and vif.type == VIF_AGENT and r.trap != NULL:
            sent = ring_mp_enqueue_burst(r.trap, <void **>s.pkts, n)
            w.st.traps += sent
    elif vif.lcore_txq:
        # Every forwarding lcore has a tx queue of its own on this port.
        sent = fp_tx_burst(vif.fp, w.txq, s.pkts, <uint16_t>n)
    elif r.tx_locking:
        vr_lock(&r.txlock[s.vif][s.queue])
        sent = fp_tx_burst(vif.fp, s.queue, s.pkts, <uint16_t>n)
        vr_unlock(&r.txlock[s.vif][s.queue])
    else:
        sent = fp_tx_burst(vif.fp, s.queue, s.pkts, <uint16_t>n)
    if pd_unlikely(sent < n):
        for i in range(sent, n):
            bytes -= s.pkts[i].pkt_len
        q[VIFQ_TX_DROPS] += n - sent
        w.st.drop[DROP_INTERFACE_DROP] += n - sent
        w.st.vif_drop[s.vif][DROP_INTERFACE_DROP] += n - sent
        pktmbuf_free_bulk(&s.pkts[sent], n - sent)
        w.lc.stats.tx_dropped += n - sent
    q[VIFQ_TX_PACKETS] += sent
    q[VIFQ_TX_BYTES] += bytes
    w.lc.stats.tx += sent


cdef void tx_flush(vr_worker *w) noexcept nogil:
    cdef uint32_t i
    for i in range(w.nslots):
        slot_flush(w, &w.slots[i])
    w.nslots = 0


cdef pd_mbuf *pkt_copy(vr_worker *w, pd_mbuf *m) noexcept nogil:
    cdef pd_mbuf *c = pktmbuf_alloc(w.r.pool)
    cdef char *d
    if c == NULL:
        return NULL
    if m.data_len > c.buf_len - c.data_off:
        pktmbuf_free(c)
        return NULL
    d = mbuf_append(c, m.data_len)
    memcpy(d, <char *>m.buf_addr + m.data_off, m.data_len)
    c.port = m.port
    return c
