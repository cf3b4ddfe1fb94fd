"""Lockless bounded rings of pointers, made for passing mbufs between lcores.

The protocol (head/tail per side, CAS only for multi-producer/consumer, the
acquire/release pairs) is in ring.pxd, inline, so hot loops in other modules
cimport it and pay no call. This module creates and frees rings and gives
Python a slow-path view for scripts and tests.

A ring holds at most `capacity` pointers: size - 1 for a power-of-two size
(the classic layout, where one slot tells full from empty), or exactly the
count asked for with `exact_size=True` (slots rounded up to a power of two).
Counters are free-running uint32, so a ring never needs resetting.
"""
from libc.stdint cimport uint32_t, uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset, strncpy
from libc.errno cimport errno, EINVAL, ENOMEM
from cpython.mem cimport PyMem_Malloc, PyMem_Free

from pypdk.errors import UsageError, ResourceError, StateError

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)

from pd_config cimport PD_NAME_SIZE

DEF_MAX_COUNT = 0x80000000  # the largest ring: 2^31 slots


cdef inline bint _is_pow2(uint32_t x) noexcept nogil:
    return x != 0 and (x & (x - 1)) == 0

cdef inline uint32_t _align_pow2(uint32_t x) noexcept nogil:
    x -= 1
    x |= x >> 1
    x |= x >> 2
    x |= x >> 4
    x |= x >> 8
    x |= x >> 16
    return x + 1


cdef pd_ring *ring_create(const char *name, uint32_t count, uint32_t flags) noexcept nogil:
    global errno
    cdef uint32_t size, capacity
    cdef void *mem = NULL
    cdef pd_ring *r
    if flags & PD_RING_F_EXACT_SZ:
        if count == 0 or count >= 0x80000000u:
            errno = EINVAL
            return NULL
        size = _align_pow2(count + 1)
        capacity = count
    else:
        if not _is_pow2(count) or count > 0x80000000u or count < 2:
            errno = EINVAL
            return NULL
        size = count
        capacity = count - 1
    if posix_memalign(&mem, 64, sizeof(pd_ring) + <size_t>size * sizeof(void *)) != 0:
        errno = ENOMEM
        return NULL
    memset(mem, 0, sizeof(pd_ring))
    r = <pd_ring *>mem
    r.mem = mem
    strncpy(r.name, name, PD_NAME_SIZE - 1)
    r.flags = flags
    r.size = size
    r.mask = size - 1
    r.capacity = capacity
    r.prod.single = 1 if flags & PD_RING_F_SP_ENQ else 0
    r.cons.single = 1 if flags & PD_RING_F_SC_DEQ else 0
    return r


cdef void ring_free(pd_ring *r) noexcept nogil:
    if r != NULL:
        free(r.mem)


cdef uintptr_t _as_pointer(obj) except? 0:
    if isinstance(obj, int):
        return <uintptr_t>obj
    return <uintptr_t>obj.addr


cdef class Ring:
    """A ring of pointers (Python view for the slow path and tests).

    Args:
        name: a name for stats and errors (at most 31 bytes).
        size: number of slots, a power of two (capacity size - 1); with
            exact_size=True, any count, and capacity is exactly that.
        sp: single producer (no CAS on enqueue); only one thread enqueues.
        sc: single consumer; only one thread dequeues.
        exact_size: capacity = size rather than size - 1.

    Objects are pointers: ints, or anything with an `addr` (an Mbuf).
    Dequeue returns ints. `close()` (or leaving a ``with`` block) frees the
    ring; no lcore may still be using it then.
    """

    def __cinit__(self, str name, size, bint sp=False, bint sc=False, *,
                  bint exact_size=False):
        cdef uint32_t flags = 0
        bname = name.encode()
        if len(bname) >= PD_NAME_SIZE:
            raise UsageError(f"ring name {name!r} is longer than {PD_NAME_SIZE - 1} bytes",
                             "use a shorter name")
        if not isinstance(size, int) or size < 1 or size > 0x80000000:
            raise UsageError(f"ring {name!r}: size {size!r} is out of range",
                             "give a size from 2 to 2^31")
        if not exact_size and not _is_pow2(<uint32_t>size):
            raise UsageError(f"ring {name!r}: size {size} is not a power of two",
                             f"use {_align_pow2(<uint32_t>size)} or exact_size=True")
        if sp:
            flags |= PD_RING_F_SP_ENQ
        if sc:
            flags |= PD_RING_F_SC_DEQ
        if exact_size:
            flags |= PD_RING_F_EXACT_SZ
        self.r = ring_create(bname, <uint32_t>size, flags)
        if self.r == NULL:
            if errno == ENOMEM:
                raise ResourceError(f"ring {name!r}: no memory for {size} slots",
                                    "use a smaller ring")
            raise UsageError(f"ring {name!r}: size {size} is not valid",
                             "give a power of two of at least 2, or exact_size=True")
        self.name = name

    def __dealloc__(self):
        ring_free(self.r)
        self.r = NULL

    def close(self):
        """Free the ring's memory; idempotent. Objects still in it are not freed."""
        ring_free(self.r)
        self.r = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    cdef int _check(self) except -1:
        if self.r == NULL:
            raise StateError(f"ring {self.name!r} was closed", "create a new ring")
        return 0

    @property
    def addr(self):
        """Address of the pd_ring, for Cython code that takes a ring pointer (0 once closed)."""
        return <uintptr_t>self.r

    @property
    def size(self):
        self._check()
        return self.r.size

    @property
    def capacity(self):
        self._check()
        return self.r.capacity

    @property
    def count(self):
        """Objects in the ring now."""
        self._check()
        return ring_count(self.r)

    @property
    def free_count(self):
        """Free slots now."""
        self._check()
        return ring_free_count(self.r)

    @property
    def sp(self):
        self._check()
        return bool(self.r.prod.single)

    @property
    def sc(self):
        self._check()
        return bool(self.r.cons.single)

    def empty(self):
        self._check()
        return ring_count(self.r) == 0

    def full(self):
        self._check()
        return ring_free_count(self.r) == 0

    def __len__(self):
        self._check()
        return ring_count(self.r)

    def __repr__(self):
        if self.r == NULL:
            return f"Ring({self.name!r}, closed)"
        return (f"Ring({self.name!r}, size={self.r.size}, capacity={self.r.capacity}, "
                f"count={ring_count(self.r)}, sp={self.sp}, sc={self.sc})")

    cdef long _enqueue(self, objs, bint fixed) except -1:
        self._check()
        cdef Py_ssize_t n = len(objs), i
        cdef void **tbl = <void **>PyMem_Malloc(max(n, 1) * sizeof(void *))
        cdef uint32_t done
        if tbl == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                tbl[i] = <void *>_as_pointer(objs[i])
            with nogil:
                if fixed:
                    done = ring_enqueue_bulk(self.r, tbl, <uint32_t>n)
                else:
                    done = ring_enqueue_burst(self.r, tbl, <uint32_t>n)
        finally:
            PyMem_Free(tbl)
        return done

    cdef list _dequeue(self, n, bint fixed):
        self._check()
        if n < 0:
            raise UsageError(f"ring {self.name!r}: cannot dequeue {n} objects",
                             "ask for a count >= 0")
        cdef uint32_t want = min(<uint32_t>n, self.r.capacity), done, i
        cdef bint possible = want == n
        cdef void **tbl = <void **>PyMem_Malloc(max(want, 1) * sizeof(void *))
        if tbl == NULL:
            raise MemoryError()
        try:
            with nogil:
                if fixed:
                    done = ring_dequeue_bulk(self.r, tbl, want) if possible else 0
                else:
                    done = ring_dequeue_burst(self.r, tbl, want)
            return [<uintptr_t>tbl[i] for i in range(done)]
        finally:
            PyMem_Free(tbl)

    def enqueue_bulk(self, objs):
        """Enqueue all of objs or none; returns how many (len(objs) or 0)."""
        return self._enqueue(objs, True)

    def enqueue_burst(self, objs):
        """Enqueue as many of objs as fit, in order; returns how many."""
        return self._enqueue(objs, False)

    def enqueue(self, obj):
        """Enqueue one object; False when the ring is full."""
        return self._enqueue((obj,), True) == 1

    def dequeue_bulk(self, n):
        """Dequeue exactly n objects, or none (an empty list)."""
        return self._dequeue(n, True)

    def dequeue_burst(self, n):
        """Dequeue up to n objects."""
        return self._dequeue(n, False)

    def dequeue(self):
        """Dequeue one object, or None when empty."""
        got = self._dequeue(1, True)
        return got[0] if got else None
