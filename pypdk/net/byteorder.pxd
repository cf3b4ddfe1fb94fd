# Byte-order helpers: the one place they are spelled (inline C in pd_net.h).
#
# Header fields are network order (big-endian) as stored; convert a field
# with pd_ntohs/pd_ntohl to compare or compute, or compare it against
# PD_BE16(CONST)/PD_BE32(CONST), which the C compiler folds at build time.
# pd_load_u16/32/64 and pd_store_* move native-order words to and from any
# (unaligned) address.

from libc.stdint cimport uint16_t, uint32_t, uint64_t

from pd_net cimport (PD_BIG_ENDIAN, pd_bswap16, pd_bswap32, pd_bswap64, pd_ntohs, pd_htons,
                     pd_ntohl, pd_htonl, pd_ntohll, pd_htonll, PD_BE16, PD_BE32,
                     pd_load_u16, pd_load_u32, pd_load_u64, pd_store_u16, pd_store_u32,
                     pd_store_u64)
