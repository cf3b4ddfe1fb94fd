"""Interim lookup tables for the vRouter datapath (see tables.pxd).

The route table builder is Python (control thread); the hash table is
nogil C, written by one writer at a time.
"""
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset
from libc.stdint cimport uintptr_t


cdef vr_hash *hash_create(uint32_t entries, uint32_t key_len) noexcept nogil:
    cdef vr_hash *h
    cdef uint32_t size = 16
    if key_len > HT_KEY_MAX or key_len % 4:
        return NULL
    while size < entries + entries // 4 + 1:
        size <<= 1
    h = <vr_hash *>calloc(1, sizeof(vr_hash))
    if h == NULL:
        return NULL
    h.size = size
    h.mask = size - 1
    h.key_len = key_len
    h.max_count = entries
    h.state = <uint32_t *>calloc(size, sizeof(uint32_t))
    h.sig = <uint32_t *>calloc(size, sizeof(uint32_t))
    h.keys = <uint8_t *>calloc(size, key_len)
    if h.state == NULL or h.sig == NULL or h.keys == NULL:
        hash_free(h)
        return NULL
    return h


cdef void hash_free(vr_hash *h) noexcept nogil:
    if h != NULL:
        free(h.state)
        free(h.sig)
        free(h.keys)
        free(h)


cdef int32_t hash_lookup(const vr_hash *h, const void *key, uint32_t sig) noexcept nogil:
    cdef uint32_t i = sig & h.mask, n = 0, st
    while n < h.size:
        # Pairs with the release store in hash_add: key and sig are visible.
        st = pd_load_acquire_u32(&h.state[i])
        if st == HT_EMPTY:
            return -1
        if st == HT_USED and h.sig[i] == sig and memcmp(h.keys + <size_t>i * h.key_len, key, h.key_len) == 0:
            return <int32_t>i
        i = (i + 1) & h.mask
        n += 1
    return -1


cdef int32_t hash_add(vr_hash *h, const void *key, uint32_t sig) noexcept nogil:
    cdef int32_t found = hash_lookup(h, key, sig)
    cdef uint32_t i = sig & h.mask, st
    if found >= 0:
        return found
    if h.count >= h.max_count:
        return -1
    while True:
        st = h.state[i]
        if st != HT_USED:
            memcpy(h.keys + <size_t>i * h.key_len, key, h.key_len)
            h.sig[i] = sig
            h.count += 1
            pd_store_release_u32(&h.state[i], HT_USED)
            return <int32_t>i
        i = (i + 1) & h.mask


cdef int32_t hash_del(vr_hash *h, const void *key, uint32_t sig) noexcept nogil:
    cdef int32_t i = hash_lookup(h, key, sig)
    if i < 0:
        return -1
    pd_store_release_u32(&h.state[i], HT_DELETED)
    h.count -= 1
    return i


def rt_build(int family, routes):
    """A new route table (its address as an int) from [(addr_bytes, plen, value)].

    The caller publishes it (datapath.Router) and frees the old one after a
    synchronize (rt_free).
    """
    cdef list items = sorted(routes, key=lambda r: -r[1])
    cdef size_t n = len(items)
    cdef vr_rt_table *t = <vr_rt_table *>calloc(1, sizeof(vr_rt_table) + max(n, 1) * sizeof(vr_rt_entry))
    cdef bytes a
    cdef uint32_t i
    if t == NULL:
        raise MemoryError()
    t.n = <uint32_t>n
    t.family = family
    for i, (addr, plen, value) in enumerate(items):
        a = bytes(addr)
        memcpy(t.e[i].addr, <const char *>a, len(a))
        t.e[i].plen = plen
        t.e[i].value = value
    return <uintptr_t>t


def rt_free(uintptr_t addr):
    free(<void *>addr)
