# Worker lcores: one pinned native thread per worker lcore, DPDK launch semantics.
#
# The C-level contract used by hot code and by other Cython modules. The
# Python surface (Eal.remote_launch, Eal.wait_lcore, ...) lives in lcore.pyx
# and pypdk/eal/__init__.py.

from pd_config cimport PD_MAX_LCORE, PD_LCORE_ID_ANY

# What an lcore runs: a nogil C function; its int return value is collected
# by wait_lcore (like DPDK's lcore_function_t).
ctypedef int (*lcore_function_t)(void *arg) noexcept nogil

# This thread's lcore id: the worker's id inside a worker thread, the main
# lcore's id on the thread that called eal.init(), PD_LCORE_ID_ANY elsewhere.
cdef unsigned lcore_id() noexcept nogil

# Start f(arg) on a waiting worker lcore. 0 on success, -EBUSY when that lcore
# is running something, -EINVAL when it is not a worker lcore.
# (A lcore whose function returned but was not waited for may be launched
# again; its uncollected return value is dropped.)
cdef int lcore_remote_launch(lcore_function_t f, void *arg, unsigned lcore) noexcept nogil

# Wait for the lcore's function to return, and give its return value (0 when
# it was not running).
cdef int lcore_wait(unsigned lcore) noexcept nogil

# A launchable nogil function for Eal.remote_launch(): f(arg) runs on the
# worker without the GIL; `keep` is any Python object that owns what arg
# points to (a cdef class holding the struct), kept alive while it may run.
cdef class LcoreFunction:
    cdef lcore_function_t func
    cdef void *arg
    cdef object keep

# The factory Cython modules use:
#     eal.remote_launch(lcore_function_new(fwd_loop, &self.conf, self), 1)
cdef LcoreFunction lcore_function_new(lcore_function_t func, void *arg, object keep)
