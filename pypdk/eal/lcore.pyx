# cython: language_level=3
"""Worker lcores: one pinned native thread per worker lcore, launched DPDK-style.

At init the EAL starts one pthread per worker lcore (every lcore but the main
one). Each thread is created already pinned to its cpu (the affinity is set in
the thread attributes, so it never runs anywhere else), named ``lcore-N``, has
the asynchronous signals blocked (Python runs signal handlers on the main
thread anyway; this keeps EINTR out of the workers' system calls), sets its
thread-local lcore id and then sleeps on its slot's condition variable.

A slot moves WAIT -> RUNNING (remote_launch stores f/arg and signals) ->
FINISHED (the worker stores f's return value) -> WAIT (lcore_wait collects
it). remote_launch refuses a RUNNING lcore with -EBUSY; launching on a
FINISHED lcore drops the uncollected return value, as the newer DPDK does.
lcore_wait on a WAIT lcore returns 0 at once. Waking a worker costs a
condvar signal: launching is control path, the loop it starts is the hot path.

What runs:

- a nogil C function ``int f(void *arg)`` (an `LcoreFunction`, made in Cython
  with `lcore_function_new(f, arg, owner)`): runs with no GIL at full speed;
- a Python callable (slow path, for prototyping and tests): the worker takes
  the GIL around the call (``with gil``), so Python code on several lcores is
  serialised by the GIL like any Python threads; its return value (or the
  exception it raised) is handed to the Python caller of `wait_lcore`.

Stopping: `stop()` tells every worker to quit and joins it. A worker that is
still inside a function finishes that function first: nothing can safely
interrupt a C loop, so an app stops its loops itself, with a quit flag its
loop polls (``while not pd_load_relaxed(&conf.quit)``) set before the EAL closes.

The lcore id is a C ``static __thread`` in this module, so `lcore_id()` is a
TLS load; per-lcore tables elsewhere (mempool caches, stats) index by it.
"""
from libc.errno cimport EBUSY, EINVAL
from libc.stdio cimport snprintf
from libc.string cimport memset

import os
import threading

from pypdk.errors import ResourceError, StateError, UsageError

cdef extern from *:
    """
    #include <pthread.h>
    #include <sched.h>
    #include <signal.h>
    /* This thread's lcore id: set by each worker at start and by eal.init() on
       the main thread; every other thread reads PD_LCORE_ID_ANY. */
    static __thread unsigned pd_tls_lcore_id = 0xFFFFFFFFu;
    """
    unsigned pd_tls_lcore_id

cdef extern from "<sched.h>" nogil:
    ctypedef struct cpu_set_t:
        pass
    void CPU_ZERO(cpu_set_t *s)
    void CPU_SET(int cpu, cpu_set_t *s)

cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass
    int sigfillset(sigset_t *s)
    int sigdelset(sigset_t *s, int sig)
    enum:
        SIG_SETMASK
        SIGSEGV
        SIGBUS
        SIGFPE
        SIGILL
        SIGABRT
        SIGTRAP

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_attr_t:
        pass
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_create(pthread_t *t, const pthread_attr_t *attr,
                       void *(*start)(void *) noexcept nogil, void *arg)
    int pthread_join(pthread_t t, void **ret)
    int pthread_attr_init(pthread_attr_t *attr)
    int pthread_attr_destroy(pthread_attr_t *attr)
    int pthread_attr_setaffinity_np(pthread_attr_t *attr, size_t size, const cpu_set_t *cpus)
    int pthread_setname_np(pthread_t t, const char *name)
    int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
    int pthread_mutex_init(pthread_mutex_t *m, const void *attr)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    int pthread_cond_init(pthread_cond_t *c, const void *attr)
    int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
    int pthread_cond_broadcast(pthread_cond_t *c)


cdef enum:
    LCORE_WAIT = 0       # idle, ready for a launch
    LCORE_RUNNING = 1    # f(arg) is running
    LCORE_FINISHED = 2   # f returned; ret not yet collected by lcore_wait

_STATE_NAMES = ("WAIT", "RUNNING", "FINISHED")

# One slot per lcore id. `lock` guards every field after it; `cond` is
# broadcast on every state change (launch, finish, quit), and both the worker
# and waiters sleep on it.
cdef struct lcore_slot:
    pthread_mutex_t lock
    pthread_cond_t cond
    pthread_t thread
    lcore_function_t f
    void *arg
    int ret
    int state
    int cpu
    unsigned id
    bint worker      # a worker thread exists for this lcore
    bint quit        # the worker must exit once idle

cdef lcore_slot _slots[PD_MAX_LCORE]
cdef unsigned *_main_tls = NULL    # the main thread's pd_tls_lcore_id, reset at stop


cdef void _slots_init() noexcept nogil:
    cdef unsigned i
    memset(_slots, 0, sizeof(_slots))
    for i in range(<unsigned>PD_MAX_LCORE):
        pthread_mutex_init(&_slots[i].lock, NULL)
        pthread_cond_init(&_slots[i].cond, NULL)
        _slots[i].id = i

_slots_init()


# ---- C level: the contract of lcore.pxd ---------------------------------------------------

cdef unsigned lcore_id() noexcept nogil:
    return pd_tls_lcore_id


cdef int lcore_remote_launch(lcore_function_t f, void *arg, unsigned lcore) noexcept nogil:
    cdef lcore_slot *s
    if lcore >= PD_MAX_LCORE or f == NULL:
        return -EINVAL
    s = &_slots[lcore]
    pthread_mutex_lock(&s.lock)
    if not s.worker or s.quit:
        pthread_mutex_unlock(&s.lock)
        return -EINVAL
    if s.state == LCORE_RUNNING:
        pthread_mutex_unlock(&s.lock)
        return -EBUSY
    s.f = f
    s.arg = arg
    s.ret = 0
    s.state = LCORE_RUNNING
    pthread_cond_broadcast(&s.cond)
    pthread_mutex_unlock(&s.lock)
    return 0


cdef int lcore_wait(unsigned lcore) noexcept nogil:
    cdef lcore_slot *s
    cdef int ret = 0
    if lcore >= PD_MAX_LCORE:
        return 0
    s = &_slots[lcore]
    pthread_mutex_lock(&s.lock)
    while s.state == LCORE_RUNNING:
        pthread_cond_wait(&s.cond, &s.lock)
    if s.state == LCORE_FINISHED:
        ret = s.ret
        s.state = LCORE_WAIT
    pthread_mutex_unlock(&s.lock)
    return ret


cdef void *_worker_main(void *p) noexcept nogil:
    global pd_tls_lcore_id
    cdef lcore_slot *s = <lcore_slot *>p
    cdef lcore_function_t f
    cdef void *arg
    cdef int ret
    pd_tls_lcore_id = s.id
    pthread_mutex_lock(&s.lock)
    while True:
        while s.state != LCORE_RUNNING and not s.quit:
            pthread_cond_wait(&s.cond, &s.lock)
        if s.state != LCORE_RUNNING:
            break  # told to quit while idle (a running f is always finished first)
        f = s.f
        arg = s.arg
        pthread_mutex_unlock(&s.lock)
        ret = f(arg)
        pthread_mutex_lock(&s.lock)
        s.ret = ret
        s.state = LCORE_FINISHED
        pthread_cond_broadcast(&s.cond)
    pthread_mutex_unlock(&s.lock)
    return NULL


cdef int _start_worker(unsigned lcore, int cpu) noexcept nogil:
    """Create the pinned, named worker thread of `lcore`. 0 or -errno."""
    cdef lcore_slot *s = &_slots[lcore]
    cdef pthread_attr_t attr
    cdef cpu_set_t cpus
    cdef sigset_t block, old
    cdef char name[16]
    cdef int rc
    pthread_mutex_lock(&s.lock)
    s.cpu = cpu
    s.state = LCORE_WAIT
    s.ret = 0
    s.quit = False
    s.worker = True
    pthread_mutex_unlock(&s.lock)
    pthread_attr_init(&attr)
    CPU_ZERO(&cpus)
    CPU_SET(cpu, &cpus)
    rc = pthread_attr_setaffinity_np(&attr, sizeof(cpu_set_t), &cpus)
    if rc == 0:
        # The new thread inherits the creator's signal mask: block the
        # asynchronous signals around pthread_create so it starts with them
        # blocked (no window where it could take a SIGINT meant for Python).
        sigfillset(&block)
        sigdelset(&block, SIGSEGV)
        sigdelset(&block, SIGBUS)
        sigdelset(&block, SIGFPE)
        sigdelset(&block, SIGILL)
        sigdelset(&block, SIGABRT)
        sigdelset(&block, SIGTRAP)
        pthread_sigmask(SIG_SETMASK, &block, &old)
        rc = pthread_create(&s.thread, &attr, _worker_main, s)
        pthread_sigmask(SIG_SETMASK, &old, NULL)
    pthread_attr_destroy(&attr)
    if rc != 0:
        pthread_mutex_lock(&s.lock)
        s.worker = False
        pthread_mutex_unlock(&s.lock)
        return -rc
    snprintf(name, sizeof(name), "lcore-%u", lcore)
    pthread_setname_np(s.thread, name)
    return 0


cdef void _stop_worker(unsigned lcore) noexcept nogil:
    """Tell the worker to quit once its function (if any) returns, and join it."""
    cdef lcore_slot *s = &_slots[lcore]
    pthread_mutex_lock(&s.lock)
    if not s.worker:
        pthread_mutex_unlock(&s.lock)
        return
    s.quit = True
    pthread_cond_broadcast(&s.cond)
    pthread_mutex_unlock(&s.lock)
    pthread_join(s.thread, NULL)
    pthread_mutex_lock(&s.lock)
    s.worker = False
    s.quit = False
    s.state = LCORE_WAIT
    s.f = NULL
    s.arg = NULL
    pthread_mutex_unlock(&s.lock)


# ---- what can be launched ----------------------------------------------------------------

cdef class LcoreFunction:
    """A nogil C function and its argument, launchable with Eal.remote_launch().

    Made in Cython with `lcore_function_new(f, arg, owner)`; `owner` (the
    object whose memory `arg` points into) is kept alive as long as this is.
    """

    def __repr__(self):
        return f"<LcoreFunction 0x{<size_t>self.func:x}(0x{<size_t>self.arg:x})>"


cdef LcoreFunction lcore_function_new(lcore_function_t func, void *arg, object keep):
    cdef LcoreFunction lf = LcoreFunction.__new__(LcoreFunction)
    lf.func = func
    lf.arg = arg
    lf.keep = keep
    return lf


cdef class _PyJob:
    """A Python callable run on a worker lcore, and what came of it."""
    cdef object fn
    cdef object arg
    cdef bint has_arg
    cdef object result
    cdef object error

    cdef int run(self) noexcept:
        try:
            self.result = self.fn(self.arg) if self.has_arg else self.fn()
        except BaseException as e:
            self.error = e
            return -1
        return 0


cdef int _run_python(void *job) noexcept nogil:
    with gil:
        return (<_PyJob>job).run()


# ---- Python level (used by pypdk.eal.Eal) -------------------------------------------------

LCORE_ID_ANY = PD_LCORE_ID_ANY
MAX_LCORE = PD_MAX_LCORE

# Per lcore: (what was launched, f, arg) so wait_lcore can return a Python
# job's result and keep the job / LcoreFunction alive while it may run.
_launched = [None] * PD_MAX_LCORE
_main_ident = None


def current_lcore_id():
    """This thread's lcore id; LCORE_ID_ANY on a thread that is not an EAL lcore."""
    return pd_tls_lcore_id


def start(dict lcores, unsigned main_lcore):
    """Start a pinned worker thread for every lcore but `main_lcore`; set the main lcore id.

    Args:
        lcores: {lcore id: cpu} (from corelist.parse_lcores).
        main_lcore: the lcore id of the calling thread.

    Raises:
        StateError: workers are already running.
        ResourceError: a thread could not be created; none is left running.
    """
    global _main_tls, _main_ident, pd_tls_lcore_id
    cdef unsigned lc
    cdef int cpu, rc
    if any_workers():
        raise StateError("EAL worker lcores are already running", "call eal.close() first")
    started = []
    for lc_obj, cpu_obj in lcores.items():
        lc, cpu = lc_obj, cpu_obj
        if lc == main_lcore:
            continue
        with nogil:
            rc = _start_worker(lc, cpu)
        if rc != 0:
            for done in started:
                lc = done
                with nogil:
                    _stop_worker(lc)
            raise ResourceError(f"cannot start lcore {lc} on cpu {cpu}: {os.strerror(-rc)}",
                                "check the lcore list against the cpus this process may use (taskset)")
        started.append(lc)
    pd_tls_lcore_id = main_lcore
    _main_tls = &pd_tls_lcore_id
    _main_ident = threading.get_ident()


def stop():
    """Tell every worker to quit, join them (waiting for running functions), reset lcore ids."""
    global _main_tls, _main_ident, pd_tls_lcore_id
    cdef unsigned lc
    for lc in range(<unsigned>PD_MAX_LCORE):
        with nogil:
            _stop_worker(lc)
        _launched[lc] = None
    # Reset the main thread's id: directly when we are that thread, through the
    # saved pointer while that thread still lives (its TLS block is valid).
    if threading.get_ident() == _main_ident:
        pd_tls_lcore_id = PD_LCORE_ID_ANY
    elif _main_tls != NULL and _main_ident in {t.ident for t in threading.enumerate()}:
        _main_tls[0] = PD_LCORE_ID_ANY
    _main_tls = NULL
    _main_ident = None


def any_workers():
    """True while some worker lcore thread exists."""
    cdef unsigned lc
    for lc in range(<unsigned>PD_MAX_LCORE):
        if is_worker(lc):
            return True
    return False


def is_worker(unsigned lcore):
    """True when `lcore` has a worker thread."""
    cdef bint w
    if lcore >= PD_MAX_LCORE:
        return False
    pthread_mutex_lock(&_slots[lcore].lock)
    w = _slots[lcore].worker
    pthread_mutex_unlock(&_slots[lcore].lock)
    return w


def lcore_state(unsigned lcore):
    """'WAIT', 'RUNNING' or 'FINISHED' (returned, result not collected yet)."""
    cdef int st
    if lcore >= PD_MAX_LCORE:
        raise UsageError(f"lcore {lcore} is out of range (0-{PD_MAX_LCORE - 1})", "give an lcore of the EAL")
    pthread_mutex_lock(&_slots[lcore].lock)
    st = _slots[lcore].state
    pthread_mutex_unlock(&_slots[lcore].lock)
    return _STATE_NAMES[st]


def remote_launch(fn, unsigned lcore, arg=None):
    """Run `fn` on worker `lcore`: an LcoreFunction (nogil) or a Python callable.

    A Python callable is called as fn() when `arg` is None, else fn(arg).

    Raises:
        UsageError: `lcore` is not a worker lcore, `fn` is not launchable, or
            `arg` was given with an LcoreFunction (its arg is bound already).
        StateError: the lcore is busy (errno EBUSY): wait_lcore() it first.
    """
    cdef lcore_function_t f
    cdef void *a
    cdef _PyJob job
    cdef int rc
    if lcore >= PD_MAX_LCORE or not is_worker(lcore):
        raise UsageError(f"lcore {lcore} is not a worker lcore", "launch on one of eal.worker_lcores")
    if isinstance(fn, LcoreFunction):
        if arg is not None:
            raise UsageError("an LcoreFunction carries its own arg", "drop the arg argument")
        f = (<LcoreFunction>fn).func
        a = (<LcoreFunction>fn).arg
        if f == NULL:
            raise UsageError("this LcoreFunction has no function", "make it with lcore_function_new() in Cython")
        owner = fn
    elif callable(fn):
        job = _PyJob.__new__(_PyJob)
        job.fn = fn
        job.arg = arg
        job.has_arg = arg is not None
        f = _run_python
        a = <void *>job
        owner = job
    else:
        raise UsageError(f"cannot launch {fn!r}", "pass a Python callable or an LcoreFunction")
    previous = _launched[lcore]
    _launched[lcore] = (owner, <size_t>f, <size_t>a)  # alive before it can start
    with nogil:
        rc = lcore_remote_launch(f, a, lcore)
    if rc != 0:
        _launched[lcore] = previous
        if rc == -EBUSY:
            err = StateError(f"lcore {lcore} is busy (EBUSY): it is still running a function",
                             f"wait_lcore({lcore}) before launching again")
            err.errno = EBUSY
            raise err
        raise UsageError(f"lcore {lcore} is not a worker lcore", "launch on one of eal.worker_lcores")


def wait_lcore(unsigned lcore):
    """Wait for `lcore`'s function; return its value (0 when nothing was running).

    For a Python callable: its return value, or the exception it raised is
    raised here. For an LcoreFunction: the int it returned.
    """
    cdef int ret
    cdef size_t f, a
    if lcore >= PD_MAX_LCORE:
        raise UsageError(f"lcore {lcore} is out of range (0-{PD_MAX_LCORE - 1})", "give an lcore of the EAL")
    entry = _launched[lcore]
    with nogil:
        ret = lcore_wait(lcore)
    if entry is None:
        return ret
    pthread_mutex_lock(&_slots[lcore].lock)
    f = <size_t>_slots[lcore].f
    a = <size_t>_slots[lcore].arg
    pthread_mutex_unlock(&_slots[lcore].lock)
    if _launched[lcore] is entry:
        _launched[lcore] = None
    owner, ef, ea = entry
    if (ef, ea) != (f, a):
        return ret  # C code launched something else since: entry is stale
    if isinstance(owner, _PyJob):
        job = <_PyJob>owner
        if job.error is not None:
            error, job.error = job.error, None
            raise error
        return job.result
    return ret
