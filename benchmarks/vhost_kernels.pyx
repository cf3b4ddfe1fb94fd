"""Measurement loops for bench_vhost: the net_vhost datapath against a guest played in C.

The guest's side of each ring is prepared in Python (pypdk.testing.vhost_frontend);
these loops only post the prepared heads, `burst` per round, and call the
port's burst function, so the figure is the backend's cost per packet: the
ring walk, the translation, the copy and the used-ring update (plus the
mbuf alloc/free the direction needs). Timed with CLOCK_MONOTONIC around the
whole loop, without the GIL.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t

from pypdk.eal.timer cimport now_ns
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free_bulk
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_fp, fp_rx_burst, fp_tx_burst
from pypdk.pmd.vhost.virtq cimport vq_write16, vq_read16
from pd_atomic cimport pd_fence_release


cdef inline void post(uint8_t *avail, uint32_t mask, uint16_t *idx, uint32_t burst) noexcept nogil:
    cdef uint32_t i
    for i in range(burst):
        vq_write16(avail + 4 + 2 * ((idx[0] + i) & mask), <uint16_t>i)
    idx[0] = <uint16_t>(idx[0] + burst)
    pd_fence_release()          # ring entries before avail.idx, as a driver does
    vq_write16(avail + 2, idx[0])


def guest_tx(uintptr_t fp_addr, uintptr_t avail_addr, uint32_t size, uint32_t burst,
             uint64_t rounds):
    """Guest transmits (heads 0..burst-1 prepared), port rx_burst copies into
    mbufs, which are freed. Returns (ns per packet, packets)."""
    cdef pd_eth_fp *fp = <pd_eth_fp *>fp_addr
    cdef uint8_t *avail = <uint8_t *>avail_addr
    cdef pd_mbuf *pkts[256]
    cdef uint16_t idx = vq_read16(avail + 2), got
    cdef uint64_t r, total = 0, t0, t1
    with nogil:
        t0 = now_ns()
        for r in range(rounds):
            post(avail, size - 1, &idx, burst)
            got = fp_rx_burst(fp, 0, pkts, <uint16_t>burst)
            pktmbuf_free_bulk(pkts, got)
            total += got
        t1 = now_ns()
    return (t1 - t0) / <double>max(total, 1), total


def guest_rx(uintptr_t fp_addr, uintptr_t avail_addr, uintptr_t mp_addr, uint32_t size,
             uint32_t burst, uint32_t frame_len, uint64_t rounds):
    """Guest gives receive buffers (heads 0..burst-1 prepared), `burst` mbufs of
    frame_len bytes go through tx_burst (copied into the guest, freed).
    Returns (ns per packet, packets)."""
    cdef pd_eth_fp *fp = <pd_eth_fp *>fp_addr
    cdef uint8_t *avail = <uint8_t *>avail_addr
    cdef pd_mempool *mp = <pd_mempool *>mp_addr
    cdef pd_mbuf *pkts[256]
    cdef uint16_t idx = vq_read16(avail + 2), sent
    cdef uint32_t i
    cdef uint64_t r, total = 0, t0, t1
    with nogil:
        t0 = now_ns()
        for r in range(rounds):
            post(avail, size - 1, &idx, burst)
            if pktmbuf_alloc_bulk(mp, pkts, burst) != 0:
                break
            for i in range(burst):
                pkts[i].data_len = <uint16_t>frame_len
                pkts[i].pkt_len = frame_len
            sent = fp_tx_burst(fp, 0, pkts, <uint16_t>burst)
            pktmbuf_free_bulk(pkts + sent, burst - sent)
            total += sent
        t1 = now_ns()
    return (t1 - t0) / <double>max(total, 1), total
