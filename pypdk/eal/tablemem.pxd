# Table memory: the big lookup tables' backing store (the LPM tbl24 and tbl8
# groups, the flow hash's buckets and records, the vRouter's flow entries).
#
# One anonymous private mapping per table: page-aligned (an entry never
# straddles a cache line the table's layout did not plan for), zeroed, and
# backed lazily (MAP_NORESERVE: a 64 MiB tbl24 holding a few routes touches a
# few pages). MADV_HUGEPAGE asks for transparent huge pages where the kernel
# has them: a random lookup in a big table should not also miss the TLB. The
# advice is advisory; without THP the table works on 4 KiB pages.
#
# These tables are process memory, not EAL memory: no device or VM reaches
# them, so they need neither hugetlbfs files nor an IOVA.

from posix.mman cimport (mmap, munmap, madvise, MAP_FAILED, PROT_READ, PROT_WRITE, MAP_PRIVATE,
                         MAP_ANONYMOUS, MAP_NORESERVE, MADV_HUGEPAGE)


# `size` zeroed bytes, page-aligned, backed on first touch; NULL (errno set)
# when the mapping fails.
cdef inline void *table_mem_map(size_t size) noexcept nogil:
    cdef void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if p == MAP_FAILED:
        return NULL
    madvise(p, size, MADV_HUGEPAGE)
    return p


# Give back what table_mem_map(size) returned; NULL is a no-op.
cdef inline void table_mem_unmap(void *p, size_t size) noexcept nogil:
    if p != NULL:
        munmap(p, size)
