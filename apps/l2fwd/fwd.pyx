"""l2fwd's hot path: rewrite each frame's Ethernet addresses for the port it leaves by.

The loop is pypdk's run-to-completion loop (`rtc_round` and `rtc_loop`,
inline in pypdk/worker/rtc.pxd over the skeleton of lcore_loop.pxd)
compiled here around `l2fwd_rewrite`, so the C compiler sees a constant
hook and inlines it: per burst, one rx_burst, the rewrite, one tx_burst;
per packet, one 12-byte copy.

For the tx port P the frame gets destination 02:00:00:00:00:P and P's own
MAC as source; both are precomputed per port in `hdr[P]` (12 bytes), so
the per-packet work is a single fixed-size memcpy. A frame shorter than an
Ethernet header is malformed: it is dropped (the loop frees it and counts
it as app_dropped), never rewritten.
"""
from libc.stdint cimport uint16_t, int32_t, uint64_t
from libc.string cimport memcpy, memset

from pypdk.mempool.mbuf cimport pd_mbuf
from pd_compiler cimport pd_unlikely
from pd_config cimport PD_MAX_ETHPORTS
from pypdk.worker.lcore_loop cimport BurstHook, burst_hook_new, pd_hop
from pypdk.worker.rtc cimport RtcWorker, pd_rtc_conf, rtc_round, rtc_loop

from pd_compiler cimport pd_prefetch0
from pypdk.net.ether cimport PD_ETHER_HDR_LEN, PD_ETHER_ADDR_LEN

ctypedef struct l2fwd_ctx:
    unsigned char hdr[PD_MAX_ETHPORTS][2 * PD_ETHER_ADDR_LEN]   # per tx port: dst MAC then src MAC


cdef inline uint16_t l2fwd_rewrite(void *ctx, pd_hop *hop, pd_mbuf **pkts,
                                   uint16_t n) noexcept nogil:
    cdef const unsigned char *hdr = (<l2fwd_ctx *>ctx).hdr[hop.tx_port]
    cdef uint16_t i, keep = 0
    cdef pd_mbuf *m
    for i in range(n):
        m = pkts[i]
        if i + 1 < n:
            pd_prefetch0(<char *>pkts[i + 1].buf_addr + pkts[i + 1].data_off)
        if pd_unlikely(m.data_len < PD_ETHER_HDR_LEN):
            continue                            # left in the tail: freed and counted
        memcpy(<char *>m.buf_addr + m.data_off, hdr, 2 * PD_ETHER_ADDR_LEN)
        if keep != i:
            pkts[i] = pkts[keep]
            pkts[keep] = m
        keep += 1
    return keep


cdef inline int32_t l2fwd_round(void *arg) noexcept nogil:
    cdef pd_rtc_conf *c = <pd_rtc_conf *>arg
    return rtc_round(c, l2fwd_rewrite, c.hook_ctx)


cdef int l2fwd_main(void *arg) noexcept nogil:
    return rtc_loop(<pd_rtc_conf *>arg, l2fwd_round)


cdef class MacTable:
    """The per-port header bytes l2fwd_rewrite writes (owned by the workers using it)."""
    cdef l2fwd_ctx ctx

    def __cinit__(self):
        memset(&self.ctx, 0, sizeof(l2fwd_ctx))

    def set_port(self, int port_id, bytes mac):
        """Frames leaving by port_id get dst 02:00:00:00:00:<port_id> and src `mac`."""
        if not 0 <= port_id < PD_MAX_ETHPORTS or len(mac) != 6:
            raise ValueError(f"bad port {port_id} or MAC {mac!r}")
        dst = bytes([0x02, 0, 0, 0, 0, port_id & 0xff])
        memcpy(self.ctx.hdr[port_id], <const char *>dst, 6)
        memcpy(&self.ctx.hdr[port_id][6], <const char *>mac, 6)

    def header(self, int port_id):
        return bytes(self.ctx.hdr[port_id][:2 * PD_ETHER_ADDR_LEN])

    def hook(self):
        return burst_hook_new(l2fwd_rewrite, &self.ctx, self, "l2fwd_rewrite")


def make_worker(hops, MacTable macs=None, burst=32, yield_after=0):
    """An RtcWorker forwarding along `hops`; with `macs`, running l2fwd's rewrite loop.

    Without `macs` (--no-mac-updating) frames leave untouched through the
    generic loop.
    """
    cdef RtcWorker w
    if macs is None:
        return RtcWorker(hops, burst=burst, yield_after=yield_after)
    w = RtcWorker(hops, burst=burst, hook=macs.hook(), yield_after=yield_after)
    w.set_main(l2fwd_main, macs)
    return w
