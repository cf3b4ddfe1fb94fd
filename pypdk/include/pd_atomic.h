/* pd_atomic.h: the only place memory ordering is spelled.
 *
 * Wrappers over the GCC/Clang __atomic builtins (the C11 memory model) on
 * plain integer fields, so the struct layouts stay ordinary C that Cython
 * can declare. Every acquire names the release it pairs with at its call
 * site (see ring.pxd, pd_mbuf.h, lcore.pyx). */
#ifndef PD_ATOMIC_H
#define PD_ATOMIC_H

#include <stdint.h>

#define pd_load_relaxed(p)      __atomic_load_n((p), __ATOMIC_RELAXED)
#define pd_load_acquire(p)      __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define pd_store_relaxed(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define pd_store_release(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define pd_fence_acquire()      __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define pd_fence_release()      __atomic_thread_fence(__ATOMIC_RELEASE)
#define pd_fence_seq_cst()      __atomic_thread_fence(__ATOMIC_SEQ_CST)

/* Typed wrappers: Cython needs concrete signatures. */
static inline uint32_t pd_load_relaxed_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint32_t pd_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void pd_store_relaxed_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void pd_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t pd_load_relaxed_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint64_t pd_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void pd_store_relaxed_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void pd_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int pd_load_acquire_int(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline int pd_load_relaxed_int(const int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void pd_store_release_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void pd_store_relaxed_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

/* Weak CAS: may fail spuriously, callers loop. On failure *expected is
 * refreshed with the current value. */
static inline int pd_cas_weak_u32(uint32_t *p, uint32_t *expected, uint32_t desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, 1,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static inline uint16_t pd_add_fetch_u16(uint16_t *p, int16_t v)
{
    return __atomic_add_fetch(p, (uint16_t)v, __ATOMIC_ACQ_REL);
}
static inline uint64_t pd_add_fetch_u64(uint64_t *p, uint64_t v)
{
    return __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

#endif
