"""The clocks: the time-stamp counter, CLOCK_MONOTONIC and the TSC's rate.

Cython code cimports the inline clocks from timer.pxd
(``from pypdk.eal.timer cimport rdtsc, now_ns``); Python reads the TSC with
``read_tsc()`` (CLOCK_MONOTONIC is ``time.monotonic_ns()``). ``tsc_hz()``
turns TSC ticks into seconds: it is measured once per process, the first
time it is asked for, and cached.
"""
from libc.stdint cimport uint64_t
from posix.time cimport nanosleep

# The measurement: TSC ticks across a sleep of _SPAN_NS, each end bracketed by
# two TSC reads around the CLOCK_MONOTONIC read, so a preemption between the
# two clocks is seen (a wide bracket) and that end is taken again.
cdef enum:
    _SPAN_NS = 100000000        # 100 ms: a relative error near 1e-6
    _BRACKET_TICKS = 20000      # a wider bracket means the thread was preempted
    _TRIES = 5

cdef double _hz = 0.0


cdef void _stamp(uint64_t *tsc, uint64_t *ns) noexcept nogil:
    cdef uint64_t a, b, t
    cdef int i
    for i in range(_TRIES):
        a = rdtsc()
        t = now_ns()
        b = rdtsc()
        if b - a < _BRACKET_TICKS:
            break
    tsc[0] = a + (b - a) // 2
    ns[0] = t


cdef double _measure() noexcept nogil:
    cdef uint64_t c0, t0, c1, t1
    cdef timespec req
    req.tv_sec = _SPAN_NS // 1000000000
    req.tv_nsec = _SPAN_NS % 1000000000
    _stamp(&c0, &t0)
    nanosleep(&req, NULL)
    _stamp(&c1, &t1)
    if t1 <= t0:
        return 0.0
    return (c1 - c0) * 1e9 / (t1 - t0)


def tsc_hz() -> float:
    """The rate of the time-stamp counter, in Hz (ticks per second).

    Measured against CLOCK_MONOTONIC over 100 ms the first time it is asked
    for in a process (the caller sleeps that long), then cached. 0.0 where
    there is no TSC (other than x86).
    """
    global _hz
    if _hz == 0.0 and rdtsc() != 0:
        with nogil:
            _hz = _measure()
    return _hz


def read_tsc() -> int:
    """The time-stamp counter now, in ticks (tsc_hz() of them per second).

    The clock of rdtsc() in timer.pxd. The clock of now_ns() is Python's
    time.monotonic_ns().
    """
    return rdtsc()
