# A device register window (a mapped BAR, or memory standing in for one in
# tests) as Python and the drivers' slow paths see it.

from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef class Mmio:
    cdef uint8_t *base
    cdef readonly size_t size
    cdef object keep            # the mapping (or buffer) that backs `base`
    cdef int _check(self, uint32_t off, uint32_t width) except -1
    cpdef uint32_t read32(self, uint32_t off) except? 0xffffffff
    cpdef write32(self, uint32_t off, uint32_t value)
    cpdef uint16_t read16(self, uint32_t off) except? 0xffff
    cpdef write16(self, uint32_t off, uint16_t value)
    cpdef uint8_t read8(self, uint32_t off) except? 0xff
    cpdef write8(self, uint32_t off, uint8_t value)
