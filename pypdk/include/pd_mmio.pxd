# pd_mmio.h, declared once: one access of the register's width, volatile.
# Cimport as `from pd_mmio cimport pd_mmio_read32, pd_mmio_write32`.

from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef extern from "pd_mmio.h" nogil:
    uint32_t pd_mmio_read32(const void *base, uint32_t off)
    void pd_mmio_write32(void *base, uint32_t off, uint32_t v)
    uint16_t pd_mmio_read16(const void *base, uint32_t off)
    void pd_mmio_write16(void *base, uint32_t off, uint16_t v)
    uint8_t pd_mmio_read8(const void *base, uint32_t off)
    void pd_mmio_write8(void *base, uint32_t off, uint8_t v)
