# pd_compiler.h, declared once: branch hints, cache-line size, prefetch, the
# spin pause and the time-stamp counter. Cimport from here, e.g.
# `from pd_compiler cimport pd_likely, pd_unlikely`.

from libc.stdint cimport uint64_t

cdef extern from "pd_compiler.h" nogil:
    enum: PD_CACHE_LINE
    bint pd_likely(bint)
    bint pd_unlikely(bint)
    void pd_prefetch0(const void *p)
    void pd_prefetchw(const void *p)
    void pd_pause()
    uint64_t pd_rdtsc()
