/* pd_mmio.h: device register access (memory-mapped I/O).
 *
 * A register is read and written with exactly one access of its width,
 * through a volatile pointer, so the compiler neither merges, splits, caches
 * nor drops it. Ordering against ordinary memory (descriptor rings the
 * device reads by DMA) is the caller's: a pd_fence_release() (pd_atomic.h)
 * before the tail-register write that hands descriptors to the device, which
 * pairs with the device's own read of the ring after it sees the new tail. */
#ifndef PD_MMIO_H
#define PD_MMIO_H

#include <stdint.h>

static inline uint32_t pd_mmio_read32(const void *base, uint32_t off)
{
    return *(const volatile uint32_t *)((const char *)base + off);
}

static inline void pd_mmio_write32(void *base, uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)((char *)base + off) = v;
}

static inline uint16_t pd_mmio_read16(const void *base, uint32_t off)
{
    return *(const volatile uint16_t *)((const char *)base + off);
}

static inline void pd_mmio_write16(void *base, uint32_t off, uint16_t v)
{
    *(volatile uint16_t *)((char *)base + off) = v;
}

static inline uint8_t pd_mmio_read8(const void *base, uint32_t off)
{
    return *(const volatile uint8_t *)((const char *)base + off);
}

static inline void pd_mmio_write8(void *base, uint32_t off, uint8_t v)
{
    *(volatile uint8_t *)((char *)base + off) = v;
}

#endif
