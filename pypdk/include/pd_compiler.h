/* pd_compiler.h: branch hints, cache-line size, prefetch and the spin pause.
 *
 * Kept tiny on purpose: anything with logic belongs in a .pxd/.pyx. */
#ifndef PD_COMPILER_H
#define PD_COMPILER_H

#include <stdint.h>
#include <assert.h>

#define PD_CACHE_LINE 64
#define pd_likely(x)   __builtin_expect(!!(x), 1)
#define pd_unlikely(x) __builtin_expect(!!(x), 0)
#define pd_prefetch0(p) __builtin_prefetch((const void *)(p), 0, 3)
#define pd_prefetchw(p) __builtin_prefetch((const void *)(p), 1, 3)
#define pd_cache_aligned __attribute__((aligned(PD_CACHE_LINE)))

/* Busy-wait hint: lets the sibling hyperthread run and saves power while a
 * multi-producer waits for an earlier producer to publish its tail. */
static inline void pd_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#endif
}

/* Time-stamp counter for perf loops (not a wall clock). */
static inline uint64_t pd_rdtsc(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_ia32_rdtsc();
#else
    return 0;
#endif
}

#endif
