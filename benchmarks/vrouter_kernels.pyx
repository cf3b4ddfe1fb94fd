"""nogil measurement loop for benchmarks/bench_vrouter.py (the vRouter's datapath).

`datapath_run` feeds the datapath of a `Router` (apps/vrouter/dp/router.pyx)
bursts of mbufs made from one frame, as a NIC would hand them over, on the
calling thread: it allocates each burst from the router's pool, copies the
frame in, optionally writes a per-flow word, and calls `vr_process_burst`
in the context of the router's Python-thread poller (`Router.poller_addr`),
so the vifs' ports (net_null in the benchmark) free what is sent. Nothing
else may poll that router meanwhile.
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy

import time

from pd_compiler cimport pd_rdtsc
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_alloc_bulk, mbuf_append
from pypdk.net.byteorder cimport pd_htonl
from pypdk.net.ipv4 cimport pd_ipv4_hdr
from pypdk.net.cksum cimport ipv4_hdr_cksum
from apps.vrouter.dp.vrouter cimport vr_worker
from apps.vrouter.dp.datapath cimport vr_process_burst


# n packets (rounded up to whole bursts) made from frame, as a NIC would
# hand them over, through the datapath of vif; returns how many went.
cdef uint64_t _run(vr_worker *w, int vif, const char *frame, uint32_t flen, uint64_t n,
                   uint32_t flow_off, uint32_t nflows, uint32_t base, bint scramble,
                   uint32_t ip_off, uint32_t burst) noexcept nogil:
    cdef pd_mbuf *pkts[64]
    cdef uint64_t done = 0
    cdef uint32_t i, k = 0, v32
    cdef char *d
    while done < n:
        if pktmbuf_alloc_bulk(w.r.pool, pkts, burst) != 0:
            break
        for i in range(burst):
            d = mbuf_append(pkts[i], <uint16_t>flen)
            memcpy(d, frame, flen)
            if nflows > 1:
                # An odd multiplier permutes 0..nflows-1 when nflows is a power of two.
                v32 = pd_htonl(base + (((k * <uint32_t>0x9E3779B1) & (nflows - 1)) if scramble else k))
                memcpy(d + flow_off, &v32, 4)
                if ip_off:
                    (<pd_ipv4_hdr *>(d + ip_off)).hdr_checksum = ipv4_hdr_cksum(<pd_ipv4_hdr *>(d + ip_off))
                k += 1
                if k == nflows:
                    k = 0
        w.now = pd_rdtsc()
        vr_process_burst(w, <uint16_t>vif, 0, pkts, burst)
        done += burst
    return done


def datapath_run(uintptr_t worker, int vif, bytes frame, uint64_t n_pkts, uint32_t flow_off=0,
                 uint32_t nflows=1, uint32_t burst=32, bint warmup=True, uint32_t base=0, uint32_t ip_off=0):
    """Process n_pkts copies of `frame` as if received on vif.

    Args:
        worker: `Router.poller_addr` of the router under test.
        vif: the input vif (queue 0).
        frame: the packet, at most one mbuf's data room.
        n_pkts: packets in the timed pass (rounded up to whole bursts).
        flow_off, nflows, base: when nflows > 1 the 32-bit word at flow_off
            (the ports, or an address) takes the nflows values base + i
            (distinct flows).
        burst: packets per burst, 1..64.
        warmup: first one untimed pass over the values in order (it creates
            the flows); the timed pass visits them in a scrambled order when
            nflows is a power of two (no help from the prefetcher: table
            entries made one after the other sit one after the other).
        ip_off: the offset of an IPv4 header whose checksum the word
            changes (it is recomputed), 0 for none.

    Returns:
        (seconds, packets) of the timed pass.
    """
    cdef vr_worker *w = <vr_worker *>worker
    cdef uint64_t done
    cdef uint32_t flen = len(frame)
    cdef const char *f = frame
    cdef bint scramble = nflows > 1 and (nflows & (nflows - 1)) == 0
    if not 1 <= burst <= 64:
        raise ValueError(f"burst {burst} is not in 1..64")
    if warmup:
        with nogil:
            _run(w, vif, f, flen, nflows if nflows > 1 else burst, flow_off, nflows, base, False, ip_off, burst)
    start = time.perf_counter()
    with nogil:
        done = _run(w, vif, f, flen, n_pkts, flow_off, nflows, base, scramble, ip_off, burst)
    return time.perf_counter() - start, done
