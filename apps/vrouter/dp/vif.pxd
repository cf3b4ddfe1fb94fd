# vif output: what every packet path ends in.
#
# A burst's packets are not sent one by one: each goes to a per-burst tx
# buffer of its (vif, queue) (`vr_worker.slots`, at most VR_TX_SLOTS
# distinct outputs, 64 packets each), and `tx_flush` hands every buffer to
# its port with one tx_burst at the end of the burst (the agent vif's
# buffer goes to the trap ring). A packet the datapath does not forward is
# freed by `drop`, which counts it under its reason (drop.pxd) globally and
# for the input vif. `trap` sends a packet to the agent with a reason.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_free
from pypdk.net.ether cimport pd_ether_hdr, PD_ETHER_HDR_LEN
from apps.vrouter.dp.drop cimport *
from apps.vrouter.dp.vrouter cimport *

from pd_compiler cimport pd_likely, pd_unlikely

cdef enum:
    ETH_LEN = PD_ETHER_HDR_LEN
    # Why a packet went to the agent (mbuf udata64: reason | in_vif << 16).
    TRAP_ARP = 1
    TRAP_RESOLVE = 2
    TRAP_PACKET = 3

# Count m under `reason` (globally and for in_vif) and free it.
cdef inline void drop(vr_worker *w, pd_mbuf *m, uint16_t in_vif, int reason) noexcept nogil:
    w.st.drop[reason] += 1
    if in_vif < VR_MAX_VIFS:
        w.st.vif_drop[in_vif][reason] += 1
    pktmbuf_free(m)

# Write an Ethernet header at p (type_be: network order).
cdef inline void eth_write(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint16_t type_be) noexcept nogil:
    cdef pd_ether_hdr *eh = <pd_ether_hdr *>p
    memcpy(eh.dst_addr.addr_bytes, dst, 6)
    memcpy(eh.src_addr.addr_bytes, src, 6)
    eh.ether_type = type_be

# Send one buffer now (full, or the end of the burst) / every buffer (vif.pyx).
cdef void slot_flush(vr_worker *w, vr_txslot *s) noexcept nogil
cdef void tx_flush(vr_worker *w) noexcept nogil
# A private copy (flood, mirror): a fresh mbuf holding the same bytes, or NULL.
cdef pd_mbuf *pkt_copy(vr_worker *w, pd_mbuf *m) noexcept nogil

# Queue m for (vif, queue); sent at the end of the burst.
cdef inline void tx_enqueue(vr_worker *w, uint16_t vif, uint16_t queue, pd_mbuf *m) noexcept nogil:
    cdef uint32_t i
    cdef vr_txslot *s
    for i in range(w.nslots):
        s = &w.slots[i]
        if s.vif == vif and s.queue == queue:
            if pd_unlikely(s.n == 64):
                slot_flush(w, s)
            s.pkts[s.n] = m
            s.n += 1
            return
    if pd_unlikely(w.nslots == VR_TX_SLOTS):
        tx_flush(w)
    s = &w.slots[w.nslots]
    w.nslots += 1
    s.vif = vif
    s.queue = queue
    s.pkts[0] = m
    s.n = 1

# To a vif: the tx queue from the flow hash on a multi-queue vif.
cdef inline void vif_tx(vr_worker *w, vr_vif *vif, pd_mbuf *m, uint32_t hash) noexcept nogil:
    cdef uint16_t q = 0
    if vif.nb_txq > 1:
        q = <uint16_t>(hash % vif.nb_txq)
    tx_enqueue(w, vif.id, q, m)

# A copy of m to the mirror vif of its flow (mirror: a vif id, any one, 0
# too; VR_NO_VIF: no mirror). The copy is what m is now; m goes on its way.
cdef inline void mirror_tx(vr_worker *w, uint16_t mirror, pd_mbuf *m, uint32_t hash) noexcept nogil:
    cdef vr_vif *out
    cdef pd_mbuf *c
    if pd_likely(mirror >= VR_MAX_VIFS):
        return
    out = vr_load_vif(&w.r.vifs[mirror])
    if out == NULL:
        return
    c = pkt_copy(w, m)
    if c != NULL:
        vif_tx(w, out, c, hash)

# To the agent (through the trap ring), with a reason (TRAP_*).
cdef inline void trap(vr_worker *w, pd_mbuf *m, uint16_t in_vif, uint32_t reason) noexcept nogil:
    cdef vr_router *r = w.r
    if r.agent_vif == VR_NO_VIF or r.trap == NULL:
        drop(w, m, in_vif, DROP_TRAP_NO_IF)
        return
    m.udata64 = reason | (<uint64_t>in_vif << 16)
    tx_enqueue(w, r.agent_vif, 0, m)
