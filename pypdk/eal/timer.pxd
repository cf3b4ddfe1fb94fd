# The clocks, in one place: the time-stamp counter and CLOCK_MONOTONIC.
#
# rdtsc() is the cheapest clock there is (a few cycles, no system call): hot
# loops stamp packets and flows with it. It counts at a constant rate that is
# not a unit of time; tsc_hz() (timer.pyx) gives that rate, measured once
# against CLOCK_MONOTONIC and cached. On other than x86 pd_rdtsc() is 0.
#
# now_ns() is CLOCK_MONOTONIC in nanoseconds, through the vDSO (no system
# call, some tens of ns): for deadlines and timings in ns. A loop that only
# needs a deadline reads it every few thousand iterations, not per packet.

from libc.stdint cimport uint64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from pd_compiler cimport pd_rdtsc


cdef inline uint64_t rdtsc() noexcept nogil:
    return pd_rdtsc()


cdef inline uint64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec
