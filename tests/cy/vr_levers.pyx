# cython: language_level=3
"""Test levers on a running vRouter: hold its flow lock from the test's thread.

A forwarding lcore that must create a flow while the test holds the lock
waits inside its burst, between two quiescent points: what the quiescence
tests need to show that `Router.synchronize` waits for every lcore.
"""
from pypdk.worker.lcore_loop cimport LcoreWorker
from apps.vrouter.dp.vrouter cimport vr_worker, vr_lock, vr_unlock


def hold_flow_lock(LcoreWorker wk):
    """Take the flow lock of the router `wk` (a vRouter Worker) forwards for."""
    cdef vr_worker *w = <vr_worker *>wk.arg
    with nogil:
        vr_lock(&w.r.flow_lock)


def release_flow_lock(LcoreWorker wk):
    cdef vr_worker *w = <vr_worker *>wk.arg
    vr_unlock(&w.r.flow_lock)
