"""The memory table of a vhost-user device (SET_MEM_TABLE), mapped and checked.

`MemTable.map(regions, fds)` validates what the frontend sent before it maps
anything, then maps each fd and closes it (the mapping keeps the memory):

- as many fds as regions, and 1..8 regions;
- no region of size 0, no `gpa + size`, `uva + size` or `mmap_offset + size`
  that overflows 64 bits, no two regions overlapping in guest-physical or in
  the frontend's virtual space;
- each fd a regular file (memfd, hugetlbfs, tmpfs) at least
  `mmap_offset + size` long: touching a page past the end of a file raises
  SIGBUS, so a short file is refused here. The file is sealed against
  shrinking where the frontend allows sealing (a memfd created with
  MFD_ALLOW_SEALING, as QEMU's memory-backend-memfd does); a frontend that
  truncates an unsealable file under a running ring can still make the
  process fault, as with DPDK's backend.

Each mapping sits between two inaccessible guard pages (PROT_NONE, of the
file's page size so hugetlbfs alignment holds): an access just past a region,
which the translations in mem.pxd never hand out, faults instead of reading
a neighbour's memory.

A refusal raises `MemError(reason, detail)`; the reason is one of
`MEM_REASONS`, the name the port counts it under.
"""
import os
import stat

from libc.stdint cimport uint8_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from posix.mman cimport (mmap, munmap, PROT_NONE, PROT_READ, PROT_WRITE, MAP_PRIVATE,
                         MAP_SHARED, MAP_FIXED, MAP_FAILED)

cdef extern from "<sys/mman.h>":
    enum:
        MAP_ANONYMOUS
        MAP_NORESERVE

cdef extern from "<fcntl.h>":
    enum:
        F_ADD_SEALS
        F_GET_SEALS
        F_SEAL_SHRINK

import fcntl as _fcntl

MEM_REASONS = ("fd_count", "region_count", "region_size", "region_overflow", "region_overlap",
               "region_fd", "region_map")
MAX_REGIONS = VHOST_MAX_REGIONS
_U64 = 1 << 64


class MemError(Exception):
    """A memory table the backend refuses; `reason` is one of MEM_REASONS."""

    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_layout(regions, nfds):
    """Refuse a bad table before anything is mapped (MemError)."""
    n = len(regions)
    if nfds != n:
        raise MemError("fd_count", f"{n} regions but {nfds} fds")
    if not 1 <= n <= VHOST_MAX_REGIONS:
        raise MemError("region_count", f"{n} regions (1..{VHOST_MAX_REGIONS})")
    for i, (gpa, size, uva, off) in enumerate(regions):
        if size == 0:
            raise MemError("region_size", f"region {i} has size 0")
        for what, base in (("guest_phys_addr", gpa), ("userspace_addr", uva), ("mmap_offset", off)):
            if base + size > _U64:
                raise MemError("region_overflow", f"region {i}: {what} {base:#x} + size {size:#x} "
                                                  "overflows")
    for i in range(n):
        for j in range(i + 1, n):
            a, b = regions[i], regions[j]
            for k, what in ((0, "guest-physical"), (2, "frontend-virtual")):
                if a[k] < b[k] + b[1] and b[k] < a[k] + a[1]:
                    raise MemError("region_overlap", f"regions {i} and {j} overlap in "
                                                     f"{what} space")


cdef int _map_one(vhost_region *r, int fd, uint64_t off, uint64_t size) except -1:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise MemError("region_fd", "a region's fd is not a regular file (memfd, hugetlbfs, tmpfs)")
    if st.st_size < off + size:
        raise MemError("region_fd", f"a region's file is {st.st_size} bytes, the region needs "
                                    f"{off + size}")
    try:
        _fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK)
    except OSError:
        pass                    # not sealable (hugetlbfs) or sealed already: see the module doc
    cdef size_t pg = max(int(st.st_blksize), 4096)
    cdef size_t flen = ((off + size + pg - 1) // pg) * pg
    cdef size_t rlen = flen + 3 * pg          # guard + file + guard, and pg of slack to align
    cdef void *res = mmap(NULL, rlen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if res == MAP_FAILED:
        raise MemError("region_map", f"no address space for {rlen} bytes")
    cdef uintptr_t start = ((<uintptr_t>res + pg + pg - 1) // pg) * pg
    cdef void *p = mmap(<void *>start, flen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0)
    if p == MAP_FAILED:
        munmap(res, rlen)
        raise MemError("region_map", "mmap of a region's fd failed")
    r.map_base = res
    r.map_len = rlen
    r.hva = <uint8_t *>p + off
    return 0


cdef class MemTable:
    """A mapped memory table; the datapath reads `m` (a vhost_mem)."""

    def __cinit__(self):
        self.m = <vhost_mem *>calloc(1, sizeof(vhost_mem))
        if self.m == NULL:
            raise MemoryError()
        self.layout = []

    @staticmethod
    def map(regions, fds):
        """Check and map a table; closes every fd (mapped or not). MemError on a refusal."""
        cdef MemTable t = MemTable()
        cdef vhost_region *r
        try:
            regions = [tuple(int(x) for x in reg) for reg in regions]
            check_layout(regions, len(fds))
            for i, (gpa, size, uva, off) in enumerate(regions):
                r = &t.m.regions[i]
                _map_one(r, fds[i], off, size)
                r.gpa = gpa
                r.size = size
                r.uva = uva
                t.m.nregions = i + 1
            t.layout = regions
        except BaseException:
            t.unmap()
            raise
        finally:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        return t

    def unmap(self):
        """Unmap every region (idempotent); the datapath must no longer hold `m`."""
        cdef uint32_t i
        if self.m == NULL:
            return
        for i in range(VHOST_MAX_REGIONS):
            if self.m.regions[i].map_base != NULL:
                munmap(self.m.regions[i].map_base, self.m.regions[i].map_len)
                self.m.regions[i].map_base = NULL
        self.m.nregions = 0

    @property
    def addr(self):
        """Address of the vhost_mem (for the port)."""
        return <uintptr_t>self.m

    def hva(self, uint64_t gpa, uint64_t length=1):
        """(our address, contiguous bytes) of a guest-physical address, or None (tests)."""
        cdef uint64_t chunk = 0
        cdef uint8_t *p = mem_gpa_to_hva(self.m, gpa, length, &chunk)
        return None if p == NULL else (<uintptr_t>p, chunk)

    def __dealloc__(self):
        if self.m != NULL:
            self.unmap()
            free(self.m)
            self.m = NULL
