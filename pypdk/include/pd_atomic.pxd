# pd_atomic.h, declared once: the typed atomic loads, stores, fences and
# read-modify-writes. Each acquire names the release it pairs with at its
# call site, not here.
# Cimport as `from pd_atomic cimport ...`: "include" is a Cython keyword, so
# pypdk.include cannot be spelled in a cimport; this directory is on the
# Cython include path instead (setup.py).

from libc.stdint cimport uint16_t, int16_t, uint32_t, uint64_t

cdef extern from "pd_atomic.h" nogil:
    void pd_fence_acquire()
    void pd_fence_release()
    void pd_fence_seq_cst()

    uint32_t pd_load_relaxed_u32(const uint32_t *p)
    uint32_t pd_load_acquire_u32(const uint32_t *p)
    void pd_store_relaxed_u32(uint32_t *p, uint32_t v)
    void pd_store_release_u32(uint32_t *p, uint32_t v)
    uint64_t pd_load_relaxed_u64(const uint64_t *p)
    uint64_t pd_load_acquire_u64(const uint64_t *p)
    void pd_store_relaxed_u64(uint64_t *p, uint64_t v)
    void pd_store_release_u64(uint64_t *p, uint64_t v)
    int pd_load_acquire_int(const int *p)
    int pd_load_relaxed_int(const int *p)
    void pd_store_release_int(int *p, int v)
    void pd_store_relaxed_int(int *p, int v)

    # Weak CAS: may fail spuriously, callers loop; on failure *expected is
    # refreshed with the current value.
    bint pd_cas_weak_u32(uint32_t *p, uint32_t *expected, uint32_t desired)
    uint16_t pd_add_fetch_u16(uint16_t *p, int16_t v)
    uint64_t pd_add_fetch_u64(uint64_t *p, uint64_t v)
