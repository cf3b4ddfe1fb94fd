"""nogil per-lcore jobs for benchmarks/bench_vrouter_lcores.py (the vRouter on N lcores).

A `Jobs` set holds one job per forwarding lcore of a VRouter. Each job runs
on its worker lcore with that lcore's `vr_worker` (the Router's tables are
shared, as on the vRouter's own lcores) and is one of:

  feed   bursts of mbufs allocated from the job's pool and filled with its
         frame (as a NIC would hand them over), a 32-bit flow word written
         per packet, then what vr_worker_poll does with an rx burst: the
         software distribution when the vif has `distribute` (dist_split),
         and vr_process_burst. Until told to stop, or a packet count.
  drain  the worker's own round (vr_worker_poll) until told to stop: what
         the other lcores handed it over its distribution ring. Only the
         rounds that brought packets count as busy cycles.

A feed job with `pace` waits, before each burst and outside its busy
cycles, until every other lcore's distribution ring has room for a whole
burst: it measures what a handover costs, not what a full ring drops.

Busy cycles: the TSC cycles of each burst (feed) or of each round that
brought packets (drain), summed, leaving out the bursts that took more than
8 times the cheapest one per packet: on a shared cpu (this 2-cpu machine, a
guest's vCPUs) such a burst was preempted, and its cycles are someone
else's. `busy / busy_pkts` is then the per-packet cost on a cpu, and
`cycles / pkts` (start to stop) what the lcore achieved with the cpu share
it got.

Every job waits for one start flag, so they start together; each records
its packets, TSC cycles from start to stop (pypdk.eal.timer.rdtsc), busy
cycles, the CPU time its thread got (CLOCK_THREAD_CPUTIME_ID: on a cpu
shared with another thread it is less than the wall time), the packets it
handed to other lcores and those it could not (their ring was full: dropped).
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_THREAD_CPUTIME_ID

from pypdk.eal.timer cimport rdtsc, now_ns
from pypdk.eal.lcore cimport LcoreFunction, lcore_function_new
from pypdk.mempool.mempool cimport Mempool, pd_mempool
from pypdk.mempool.mbuf cimport pd_mbuf, pktmbuf_alloc_bulk, mbuf_append
from pypdk.net.byteorder cimport pd_htonl
from pypdk.worker.lcore_loop cimport LcoreWorker
from apps.vrouter.dp.vrouter cimport vr_worker, vr_vif, vr_load_vif
from apps.vrouter.dp.datapath cimport vr_process_burst, vr_worker_poll, dist_split
from pypdk.ring.ring cimport ring_free_count
from pd_compiler cimport pd_pause
from pd_atomic cimport pd_load_relaxed_int, pd_load_acquire_int, pd_store_release_int

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef enum:
    JOB_FEED = 0
    JOB_DRAIN = 1
    MAX_JOBS = 16
    MAX_FRAME = 512

ctypedef struct lc_job:
    vr_worker *w
    pd_mempool *pool
    int mode
    int *go                     # the set's start flag
    int *stop                   # the set's stop flag for this kind of job
    uint16_t vif
    uint32_t flen, flow_off, nflows, base, burst
    bint scramble               # visit the flow words in a scrambled order (nflows a power of two)
    uint64_t max_pkts           # feed: stop after this many (0: when told)
    bint pace                   # feed: wait for room in the other lcores' distribution rings
    char frame[MAX_FRAME]
    # results
    uint64_t pkts, cycles, busy, busy_pkts, preempted, cpu_ns, wall_ns, handed, ring_full, nombuf


cdef uint64_t _cpu_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef inline void _account(lc_job *j, uint64_t d, uint32_t n, uint64_t *best) noexcept nogil:
    """Count a burst of n packets that took d cycles, unless it was preempted."""
    cdef uint64_t per = d / n
    if best[0] == 0 or per < best[0]:
        best[0] = per
    if per <= 8 * best[0]:
        j.busy += d
        j.busy_pkts += n
    else:
        j.preempted += 1


cdef inline void _wait_room(vr_worker *w, uint32_t burst) noexcept nogil:
    cdef uint32_t t
    for t in range(w.r.nb_dist):
        if t != w.txq:
            while ring_free_count(w.r.dist[t]) < burst:
                pd_pause()


cdef void _feed(lc_job *j) noexcept nogil:
    cdef pd_mbuf *pkts[64]
    cdef vr_worker *w = j.w
    cdef vr_vif *vif
    cdef uint32_t i, k = 0, v32, nb, burst = j.burst
    cdef uint64_t done = 0, handed0 = w.st.distributed, full0 = w.st.dist_ring_full, t0, best = 0
    cdef char *d
    while not pd_load_relaxed_int(j.stop) and (j.max_pkts == 0 or done < j.max_pkts):
        if j.pace:
            _wait_room(w, burst)
        t0 = rdtsc()
        if pktmbuf_alloc_bulk(j.pool, pkts, burst) != 0:
            j.nombuf += 1           # the other lcores still hold them (a distribution backlog)
            continue
        for i in range(burst):
            d = mbuf_append(pkts[i], <uint16_t>j.flen)
            memcpy(d, j.frame, j.flen)
            if j.nflows > 1:
                # An odd multiplier permutes 0..nflows-1 when nflows is a power of two.
                v32 = pd_htonl(j.base + (((k * <uint32_t>0x9E3779B1) & (j.nflows - 1)) if j.scramble else k))
                memcpy(d + j.flow_off, &v32, 4)
                k += 1
                if k == j.nflows:
                    k = 0
        # What vr_worker_poll does with a burst it received (datapath.pyx).
        w.now = t0
        w.lc.stats.rx += burst
        w.lc.stats.taken += burst
        nb = burst
        vif = vr_load_vif(&w.r.vifs[j.vif])
        if vif != NULL and vif.distribute and w.dist != NULL and w.r.nb_dist > 1:
            nb = dist_split(w, vif, 0, pkts, nb)
        vr_process_burst(w, j.vif, 0, pkts, nb)
        done += burst
        _account(j, rdtsc() - t0, burst, &best)
    j.pkts = done
    j.handed = w.st.distributed - handed0
    j.ring_full = w.st.dist_ring_full - full0


cdef void _drain(lc_job *j) noexcept nogil:
    cdef vr_worker *w = j.w
    cdef uint64_t t0, done = 0, best = 0
    cdef uint32_t got
    while True:
        t0 = rdtsc()
        w.now = t0
        got = vr_worker_poll(w)
        if got:
            _account(j, rdtsc() - t0, got, &best)
            done += got
        elif pd_load_acquire_int(j.stop):
            break
    j.pkts = done


cdef int _job_main(void *arg) noexcept nogil:
    cdef lc_job *j = <lc_job *>arg
    cdef uint64_t c0, t0, n0
    while not pd_load_acquire_int(j.go):
        sched_yield()           # the main lcore may share this cpu: let it set the flag
    c0 = _cpu_ns()
    n0 = now_ns()
    t0 = rdtsc()
    if j.mode == JOB_FEED:
        _feed(j)
    else:
        _drain(j)
    j.cycles = rdtsc() - t0
    j.wall_ns = now_ns() - n0
    j.cpu_ns = _cpu_ns() - c0
    return 0


cdef class Jobs:
    """One job per forwarding lcore, launched together on an EAL.

        jobs = Jobs()
        jobs.feed(lcore, worker, pool, vif, frame, flow_off, nflows, base)
        jobs.drain(lcore2, worker2)
        jobs.launch(eal); jobs.start(); ...; jobs.stop_feeders(eal); jobs.stop_drains(eal)
        jobs.results()      # [{"lcore", "mode", "pkts", "cycles", "busy", ...}]
    """
    cdef lc_job *jobs
    cdef int n
    cdef int go
    cdef int stop_feed
    cdef int stop_drain
    cdef list lcores
    cdef list keep

    def __cinit__(self):
        self.jobs = <lc_job *>calloc(MAX_JOBS, sizeof(lc_job))
        if self.jobs == NULL:
            raise MemoryError()
        self.lcores = []
        self.keep = []

    def __dealloc__(self):
        free(self.jobs)

    cdef lc_job *_add(self, int lcore, LcoreWorker worker, int mode) except NULL:
        cdef lc_job *j
        from apps.vrouter.dp.router import Worker
        if not isinstance(worker, Worker):
            raise TypeError(f"{type(worker).__name__} is not a vRouter Worker (apps.vrouter.dp.router)")
        if self.n >= MAX_JOBS:
            raise ValueError(f"more than {MAX_JOBS} jobs")
        if lcore in self.lcores:
            raise ValueError(f"lcore {lcore} has a job already")
        j = &self.jobs[self.n]
        self.n += 1
        j.w = <vr_worker *>worker.arg      # the Worker's conf (router.pyx: set_conf(&w.lc, ..., w))
        j.mode = mode
        j.go = &self.go
        j.stop = &self.stop_feed if mode == JOB_FEED else &self.stop_drain
        self.lcores.append(lcore)
        self.keep.append(worker)
        return j

    def feed(self, int lcore, LcoreWorker worker, Mempool pool, int vif, bytes frame, uint32_t flow_off=0,
             uint32_t nflows=1, uint32_t base=0, bint scramble=True, uint64_t max_pkts=0, uint32_t burst=32,
             bint pace=False):
        """A feed job on `lcore`: frames received on `vif` (queue 0) by `worker`
        (a dp.router.Worker), mbufs from `pool`; when nflows > 1 the 32-bit word
        at flow_off takes the values base + 0..nflows-1 (scrambled when asked
        and nflows is a power of two). max_pkts: stop after that many (0: at
        stop_feeders); pace: wait for room in the other lcores' distribution
        rings before each burst."""
        if len(frame) > MAX_FRAME:
            raise ValueError(f"frame of {len(frame)} bytes is above {MAX_FRAME}")
        if not 1 <= burst <= 64:
            raise ValueError(f"burst {burst} is not in 1..64")
        if nflows > 1 and flow_off + 4 > len(frame):
            raise ValueError(f"flow word at {flow_off} is past the frame's {len(frame)} bytes")
        cdef lc_job *j = self._add(lcore, worker, JOB_FEED)
        j.pool = pool.mp
        self.keep.append(pool)
        j.vif = vif
        j.flen = len(frame)
        memcpy(j.frame, <const char *>frame, j.flen)
        j.flow_off, j.nflows, j.base, j.burst = flow_off, nflows, base, burst
        j.scramble = scramble and nflows > 1 and (nflows & (nflows - 1)) == 0
        j.max_pkts = max_pkts
        j.pace = pace

    def drain(self, int lcore, LcoreWorker worker):
        """A drain job on `lcore`: `worker`'s own round until stop_drains."""
        self._add(lcore, worker, JOB_DRAIN)

    def launch(self, eal):
        """Launch every job on its lcore (they wait for start())."""
        cdef int i
        for i in range(self.n):
            eal.remote_launch(lcore_function_new(_job_main, &self.jobs[i], self), self.lcores[i])

    def start(self):
        pd_store_release_int(&self.go, 1)

    def _wait(self, eal, int mode):
        for i in range(self.n):
            if self.jobs[i].mode == mode:
                eal.wait_lcore(self.lcores[i])

    def stop_feeders(self, eal):
        """Stop the feed jobs (those with a packet count stop by themselves) and wait for them."""
        pd_store_release_int(&self.stop_feed, 1)
        self._wait(eal, JOB_FEED)

    def wait_feeders(self, eal):
        """Wait for feed jobs that stop by their packet count."""
        self._wait(eal, JOB_FEED)

    def stop_drains(self, eal):
        """Stop the drain jobs once their rings are empty, and wait for them."""
        pd_store_release_int(&self.stop_drain, 1)
        self._wait(eal, JOB_DRAIN)

    def results(self):
        cdef int i
        cdef lc_job *j
        out = []
        for i in range(self.n):
            j = &self.jobs[i]
            out.append({"lcore": self.lcores[i], "mode": "feed" if j.mode == JOB_FEED else "drain",
                        "pkts": j.pkts, "cycles": j.cycles, "busy": j.busy, "busy_pkts": j.busy_pkts,
                        "preempted": j.preempted, "cpu_ns": j.cpu_ns,
                        "wall_ns": j.wall_ns, "handed": j.handed, "ring_full": j.ring_full, "nombuf": j.nombuf})
        return out
