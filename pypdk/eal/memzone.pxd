# Memzones: named, contiguous, page-aligned regions of EAL memory.
#
# Each zone is backed by its own file (memfd_create with MFD_HUGETLB, a file
# in a hugetlbfs mount, or an ordinary memfd under --no-huge), so the same
# pages can be registered with the kernel (AF_XDP UMEM), mapped for DMA
# (vfio, IOVA = VA) or shared with a VM (vhost-user) by passing `fd`.

from libc.stdint cimport uint64_t, uint32_t

from pd_config cimport PD_NAME_SIZE

ctypedef struct pd_memzone:
    char name[PD_NAME_SIZE]
    void *addr          # start of the mapping, page aligned
    uint64_t iova       # DMA address of addr (IOVA = VA)
    size_t len          # bytes usable (the mapping may be longer: page rounded)
    size_t map_len      # bytes mapped (a multiple of page_size)
    size_t page_size    # 4096, 2 MiB or 1 GiB
    int socket_id       # NUMA node of the pages (where they landed when any node was asked)
    int fd              # the backing file; stays open until the zone is freed
    uint32_t flags

# pd_memzone.flags
cdef enum:
    PD_MEMZONE_F_HUGE = 0x1         # backed by hugepages (memfd or hugetlbfs)
    PD_MEMZONE_F_HUGETLBFS = 0x2    # backed by a file in a hugetlbfs mount (path)

cdef class Memzone:
    cdef pd_memzone mz
    cdef readonly bint freed    # True once close() ran (Python sees .freed)
    cdef readonly object path   # hugetlbfs file path to unlink, or None (memfd)
    cdef object __weakref__
    cdef Py_ssize_t exports   # live buffer views from view(); unmapping waits for them
    cdef void *unmap_later    # mapping to drop when the last view is released
    cpdef close(self)
