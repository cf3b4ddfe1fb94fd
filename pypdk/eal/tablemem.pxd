# Table memory: the big lookup tables' backing store (the LPM tbl24 and tbl8
# groups, the flow hash's buckets and records, the vRouter's flow entries).
# The implementation and the Python side (placement, accounting, errors):
# tablemem.pyx.
#
# Every table is its own page-aligned, zeroed mapping. Where its pages come
# from is one process-wide placement:
#
# - default (no EAL, or an EAL that was not asked): an anonymous private
#   mapping backed lazily (MAP_NORESERVE: a 64 MiB tbl24 holding a few
#   routes touches a few pages), with MADV_HUGEPAGE (transparent huge pages
#   where the kernel has them; without THP the table works on 4 KiB pages);
# - hugepages on node N (`Eal.place_tables(N)`): anonymous MAP_HUGETLB
#   memory of 2 MiB pages, reserved when it is mapped (a shortage is a clean
#   failure here, never a SIGBUS at first touch), bound to N (mbind) and
#   faulted in before anyone reads it, counted in the EAL's memory of node N
#   (eal.layout(), --stats-json) and against -m/--socket-mem. A table smaller
#   than half a page stays on ordinary pages (a 64 KiB table would waste
#   most of a 2 MiB page and fits in a few TLB entries anyway).
#
# A sparse table (table_mem_map_sparse: the tbl24) on hugepages is address
# space at first: it reads as zeros and gets its pages one 2 MiB chunk at a
# time, when the writer calls table_mem_back() for a range before storing
# into it. So a VRF whose routes fall in one /5 costs one page, not 32; a
# million routes spread over the address space back all of it.
#
# All of it may run without the GIL (table creation, grow-by-rebuild); the
# bookkeeping of hugepage tables is under one mutex (control path only; the
# lookups never call in here). The tables are process memory: no device or
# VM reaches them, so they need no file and no IOVA, and a crashed process
# leaves nothing behind.

# `size` zeroed bytes, page-aligned; NULL (errno ENOMEM) when the mapping
# fails (for hugepages: a shortage on the node, or over the EAL's memory
# option; tablemem.take_failure() says which).
cdef void *table_mem_map(size_t size) noexcept nogil

# The same for a table written sparsely: call table_mem_back() for a range
# before the first store into it (reads need nothing).
cdef void *table_mem_map_sparse(size_t size) noexcept nogil

# Make bytes [off, off + len) of a sparse table writable without a fault
# that could fail: 0, or -ENOMEM with nothing changed. A no-op for tables on
# ordinary pages.
cdef int table_mem_back(void *p, size_t off, size_t len) noexcept nogil

# Give back what table_mem_map*(size) returned; NULL is a no-op.
cdef void table_mem_unmap(void *p, size_t size) noexcept nogil

# memzone.pyx tells of every zone mapped (+bytes) and freed (-bytes), so the
# -m/--socket-mem check here counts zones and tables together.
cdef void table_mem_zone_account(int node, long delta) noexcept nogil
