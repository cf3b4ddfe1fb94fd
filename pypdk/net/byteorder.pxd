# Byte-order helpers: the one place they are spelled (inline C in pd_net.h).
#
# Header fields are network order (big-endian) as stored; convert a field
# with pd_ntohs/pd_ntohl to compare or compute, or compare it against
# PD_BE16(CONST)/PD_BE32(CONST), which the C compiler folds at build time.
# pd_load_u16/32/64 and pd_store_* move native-order words to and from any
# (unaligned) address.

from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from "pd_net.h" nogil:
    enum: PD_BIG_ENDIAN
    uint16_t pd_bswap16(uint16_t x)
    uint32_t pd_bswap32(uint32_t x)
    uint64_t pd_bswap64(uint64_t x)
    uint16_t pd_ntohs(uint16_t x)
    uint16_t pd_htons(uint16_t x)
    uint32_t pd_ntohl(uint32_t x)
    uint32_t pd_htonl(uint32_t x)
    uint64_t pd_ntohll(uint64_t x)
    uint64_t pd_htonll(uint64_t x)
    uint16_t PD_BE16(uint16_t x)
    uint32_t PD_BE32(uint32_t x)
    uint16_t pd_load_u16(const void *p)
    uint32_t pd_load_u32(const void *p)
    uint64_t pd_load_u64(const void *p)
    void pd_store_u16(void *p, uint16_t v)
    void pd_store_u32(void *p, uint32_t v)
    void pd_store_u64(void *p, uint64_t v)
