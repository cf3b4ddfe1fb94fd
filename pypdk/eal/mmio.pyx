"""Register windows: `Mmio(buffer)` over a mapped BAR (or any writable buffer).

Drivers bring a device up through `read32`/`write32` (bounds-checked, one
volatile access each) and hand `addr` to their nogil burst functions, which
write the tail registers with pd_mmio.h directly. A test's fake device
subclasses Mmio in Python and overrides read32/write32 to model the
registers' side effects (self-clearing reset bits, read-to-clear counters).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uintptr_t
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE, PyBUF_SIMPLE

from pd_mmio cimport (pd_mmio_read32, pd_mmio_write32, pd_mmio_read16, pd_mmio_write16,
                      pd_mmio_read8, pd_mmio_write8)

from pypdk.errors import UsageError


cdef class Mmio:
    def __cinit__(self, buffer, *args, **kwargs):
        cdef Py_buffer view
        PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE | PyBUF_SIMPLE)
        self.base = <uint8_t *>view.buf
        self.size = <size_t>view.len
        PyBuffer_Release(&view)
        self.keep = buffer

    cdef int _check(self, uint32_t off, uint32_t width) except -1:
        if off & (width - 1) or <size_t>off + width > self.size:
            raise UsageError(f"register offset {off:#x} is outside the {self.size:#x}-byte window "
                             f"or not {width}-byte aligned", "check the register table")
        return 0

    cpdef uint32_t read32(self, uint32_t off) except? 0xffffffff:
        self._check(off, 4)
        return pd_mmio_read32(self.base, off)

    cpdef write32(self, uint32_t off, uint32_t value):
        self._check(off, 4)
        pd_mmio_write32(self.base, off, value)

    cpdef uint16_t read16(self, uint32_t off) except? 0xffff:
        self._check(off, 2)
        return pd_mmio_read16(self.base, off)

    cpdef write16(self, uint32_t off, uint16_t value):
        self._check(off, 2)
        pd_mmio_write16(self.base, off, value)

    cpdef uint8_t read8(self, uint32_t off) except? 0xff:
        self._check(off, 1)
        return pd_mmio_read8(self.base, off)

    cpdef write8(self, uint32_t off, uint8_t value):
        self._check(off, 1)
        pd_mmio_write8(self.base, off, value)

    @property
    def addr(self):
        """The window's address, for a driver's burst functions."""
        return <uintptr_t>self.base

    def close(self):
        self.base = NULL
        self.size = 0
        self.keep = None
