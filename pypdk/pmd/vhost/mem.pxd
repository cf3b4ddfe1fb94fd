# The guest's memory as the backend sees it: up to 8 regions mapped from the
# frontend's fds, and the two translations the datapath needs.
#
# A region is known by three addresses: the guest-physical one (`gpa`, what
# descriptors carry), the frontend's own virtual one (`uva`, what
# SET_VRING_ADDR carries) and ours (`hva`, where we mapped it). Every
# translation checks the whole range it hands out, so nothing the guest
# writes can make the datapath touch memory outside a region; a range that
# crosses from one region into the next (adjacent in guest-physical space)
# comes back one contiguous chunk at a time.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from *:
    """
    #define VHOST_MAX_REGIONS 8   /* VHOST_MEMORY_MAX_NREGIONS in the spec and QEMU */
    """
    enum:
        VHOST_MAX_REGIONS

ctypedef struct vhost_region:
    uint64_t gpa            # guest-physical start
    uint64_t size           # bytes (gpa + size and uva + size do not overflow: checked at set-up)
    uint64_t uva            # the frontend's virtual address of the region
    uint8_t *hva            # where the region starts in our mapping
    void *map_base          # our reservation (guard page, file mapping, guard page)
    size_t map_len

ctypedef struct vhost_mem:
    uint32_t nregions
    vhost_region regions[VHOST_MAX_REGIONS]


cdef inline uint8_t *mem_gpa_to_hva(vhost_mem *m, uint64_t gpa, uint64_t length,
                                    uint64_t *chunk) noexcept nogil:
    """Our address of `gpa`, and in *chunk how many of the `length` bytes from
    it lie in the same region (1..length); NULL when gpa is in no region."""
    cdef uint32_t i
    cdef uint64_t off, room
    cdef vhost_region *r
    for i in range(m.nregions):
        r = &m.regions[i]
        off = gpa - r.gpa            # wraps to a huge value below the region: one compare
        if off < r.size:
            room = r.size - off
            chunk[0] = length if length < room else room
            return r.hva + off
    return NULL


cdef inline uint8_t *mem_uva_to_hva(vhost_mem *m, uint64_t uva, uint64_t length) noexcept nogil:
    """Our address of the frontend's [uva, uva + length), which must lie in one
    region whole (vring parts); NULL otherwise."""
    cdef uint32_t i
    cdef uint64_t off
    cdef vhost_region *r
    for i in range(m.nregions):
        r = &m.regions[i]
        off = uva - r.uva
        if off < r.size and length <= r.size - off:
            return r.hva + off
    return NULL


cdef class MemTable:
    cdef vhost_mem *m
    cdef readonly list layout        # [(gpa, size, uva, mmap_offset)] as given
