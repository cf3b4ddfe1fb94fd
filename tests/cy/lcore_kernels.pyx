# cython: language_level=3
"""nogil kernels for the EAL tests, launched on worker lcores through lcore.pxd.

- `SpinTest`: n participants (lcores or the main thread) each bump their own
  counter in a tight nogil loop and watch the others'. A participant is
  satisfied once every other counter advanced by `target` while it was itself
  spinning; all keep spinning until all are satisfied, so none starves the
  others' check. It proves the loops really run at the same time (without
  the GIL), which a Python-level test cannot see. A deadline only guards
  against a hang (returns -1), it is not a timing assertion.
- `Gate`: a function that spins until the test opens the gate, then returns a
  chosen value: keeps an lcore busy on demand (EBUSY, wait's return value).
- `lcore_id_function()`: returns the C-level lcore id as seen on the worker.
"""
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free

from pypdk.eal.lcore cimport LcoreFunction, lcore_function_new, lcore_id

from pd_atomic cimport (pd_load_relaxed_u64, pd_store_relaxed_u64, pd_load_acquire_int,
                        pd_load_relaxed_int, pd_store_release_int)

from pd_compiler cimport pd_pause
from pypdk.eal.timer cimport now_ns

cdef enum:
    MAXP = 4

cdef struct Counter:
    uint64_t count
    char pad[56]       # one cache line per counter: no false sharing

cdef struct SpinShared:
    Counter counter[MAXP]
    int done[MAXP]     # participant i saw every other advance by target
    int n
    int quit
    uint64_t target
    double timeout

cdef struct SpinArg:
    SpinShared *sh
    int me
    uint64_t seen[MAXP]   # how far each other counter advanced while `me` spun


cdef inline double _now() noexcept nogil:
    return now_ns() * 1e-9


cdef int spin_participant(void *p) noexcept nogil:
    cdef SpinArg *a = <SpinArg *>p
    cdef SpinShared *sh = a.sh
    cdef uint64_t start[MAXP]
    cdef uint64_t mine = pd_load_relaxed_u64(&sh.counter[a.me].count)
    cdef double deadline = _now() + sh.timeout
    cdef int j, all_done, satisfied
    for j in range(sh.n):
        start[j] = pd_load_relaxed_u64(&sh.counter[j].count)
    while True:
        mine += 1
        pd_store_relaxed_u64(&sh.counter[a.me].count, mine)
        if mine & 1023:
            continue
        satisfied = 1
        all_done = 1
        for j in range(sh.n):
            if j == a.me:
                continue
            a.seen[j] = pd_load_relaxed_u64(&sh.counter[j].count) - start[j]
            if a.seen[j] < sh.target:
                satisfied = 0
        if satisfied:
            pd_store_release_int(&sh.done[a.me], 1)  # pairs with the acquire below
        for j in range(sh.n):
            if not pd_load_acquire_int(&sh.done[j]):
                all_done = 0
        if all_done:
            return 0
        if pd_load_relaxed_int(&sh.quit) or _now() > deadline:
            return -1


cdef class SpinTest:
    """Shared counters for `n` spinning participants (see the module doc)."""
    cdef SpinShared *sh
    cdef SpinArg args[MAXP]

    def __cinit__(self, int n, uint64_t target=200000, double timeout=30.0):
        if not 2 <= n <= MAXP:
            raise ValueError(f"2..{MAXP} participants")
        self.sh = <SpinShared *>calloc(1, sizeof(SpinShared))
        if self.sh == NULL:
            raise MemoryError()
        self.sh.n = n
        self.sh.target = target
        self.sh.timeout = timeout
        for i in range(n):
            self.args[i].sh = self.sh
            self.args[i].me = i

    def __dealloc__(self):
        free(self.sh)

    def function(self, int i):
        """An LcoreFunction running participant i (keeps this object alive)."""
        return lcore_function_new(spin_participant, &self.args[i], self)

    def run_here(self, int i):
        """Run participant i on the calling thread with the GIL released; 0 or -1."""
        cdef int ret
        cdef SpinArg *a = &self.args[i]
        with nogil:
            ret = spin_participant(a)
        return ret

    def stop(self):
        pd_store_release_int(&self.sh.quit, 1)

    def counts(self):
        return [pd_load_relaxed_u64(&self.sh.counter[i].count) for i in range(self.sh.n)]

    def seen(self, int i):
        """How far each other participant advanced while participant i spun."""
        return {j: self.args[i].seen[j] for j in range(self.sh.n) if j != i}


cdef struct GateArg:
    int open
    int entered
    int ret


cdef int gate_wait(void *p) noexcept nogil:
    cdef GateArg *g = <GateArg *>p
    pd_store_release_int(&g.entered, 1)
    while not pd_load_acquire_int(&g.open):
        pd_pause()
    return g.ret


cdef class Gate:
    """An lcore function that spins until open() and then returns `ret`."""
    cdef GateArg g

    def __cinit__(self, int ret=0):
        self.g.ret = ret

    def function(self):
        return lcore_function_new(gate_wait, &self.g, self)

    def open(self):
        pd_store_release_int(&self.g.open, 1)

    @property
    def entered(self):
        return bool(pd_load_acquire_int(&self.g.entered))


cdef int _return_lcore_id(void *arg) noexcept nogil:
    return <int>lcore_id()


def lcore_id_function():
    """An LcoreFunction returning the C-level lcore id of the thread it runs on."""
    return lcore_function_new(_return_lcore_id, NULL, None)


def c_lcore_id():
    """lcore_id() read through the cimported C function on the calling thread."""
    return lcore_id()
