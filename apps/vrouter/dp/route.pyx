"""The VRFs' route tables (route.pxd): the control side, one writer.

A VRF's LPM4/LPM6 is made at its first route and grows by rebuilding
(pypdk.net's lpm4_add_grow/lpm6_add_grow): when an add finds the rule set or
the tbl8 groups full, a bigger table is filled from the old one's rules, the
route added, and the new table published here in one pointer store; readers
finish their lookup in the old one, which the caller frees after a
synchronize.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.errno cimport ENOSPC, ENOMEM, ENOENT
from pypdk.net.lpm4 cimport (lpm4_create, lpm4_free, lpm4_add, lpm4_add_grow, lpm4_rebuild,
                             lpm4_delete, lpm4_reclaim)
from pypdk.net.lpm6 cimport lpm6_create, lpm6_free, lpm6_add, lpm6_add_grow, lpm6_delete, lpm6_reclaim


# ---- IPv4 ---------------------------------------------------------------------------

cdef int rt4_add(vr_router *r, uint16_t vrf, uint32_t ip, uint8_t plen, uint32_t value,
                 pd_lpm4 **retired) noexcept nogil:
    cdef pd_lpm4 *lpm = r.rt4[vrf]
    cdef pd_lpm4 *grown
    cdef int rc
    retired[0] = NULL
    if lpm == NULL:
        lpm = lpm4_create(RT_RULES0, RT4_TBL8_0)
        if lpm == NULL:
            return -ENOMEM
        rc = lpm4_add(lpm, ip, plen, value)
        if rc != 0:
            lpm4_free(lpm)
            return rc
        vr_store_lpm4(&r.rt4[vrf], lpm)         # filled before readers can see it
        return 0
    rc = lpm4_add_grow(lpm, ip, plen, value, &grown)
    if rc == 0 and grown != NULL:
        vr_store_lpm4(&r.rt4[vrf], grown)
        retired[0] = lpm
    return rc


cdef int rt4_reserve(vr_router *r, uint16_t vrf, uint32_t extra, pd_lpm4 **retired) noexcept nogil:
    cdef pd_lpm4 *lpm = r.rt4[vrf]
    cdef pd_lpm4 *new
    cdef uint64_t want = <uint64_t>extra + (lpm.nrules if lpm != NULL else 0)
    cdef uint64_t rules = lpm.max_rules if lpm != NULL else RT_RULES0
    cdef uint64_t groups = lpm.groups.number if lpm != NULL else RT4_TBL8_0
    retired[0] = NULL
    if want <= rules:
        return 0
    while rules < want:
        rules *= 2
    if rules > (1u << 30):
        return -ENOSPC
    # Routes longer than /24 want a group per /24 they fall in: room for one
    # group per 64 new rules up front, the rest grows on demand.
    while groups < want // 64 and groups < (1u << 24):
        groups *= 4
    new = lpm4_rebuild(lpm, <uint32_t>rules, <uint32_t>groups)
    if new == NULL:
        return -ENOMEM
    vr_store_lpm4(&r.rt4[vrf], new)
    retired[0] = lpm
    return 0


cdef int rt4_del(vr_router *r, uint16_t vrf, uint32_t ip, uint8_t plen, pd_lpm4 **retired) noexcept nogil:
    cdef pd_lpm4 *lpm = r.rt4[vrf]
    cdef int rc
    retired[0] = NULL
    if lpm == NULL:
        return -ENOENT
    rc = lpm4_delete(lpm, ip, plen)
    if rc == 0 and lpm.nrules == 0:
        vr_store_lpm4(&r.rt4[vrf], NULL)        # the VRF's last IPv4 route: the table goes
        retired[0] = lpm
    return rc


# ---- IPv6 ---------------------------------------------------------------------------

cdef int rt6_add(vr_router *r, uint16_t vrf, const uint8_t *ip, uint8_t plen, uint32_t value,
                 pd_lpm6 **retired) noexcept nogil:
    cdef pd_lpm6 *lpm = r.rt6[vrf]
    cdef pd_lpm6 *grown
    cdef int rc
    retired[0] = NULL
    if lpm == NULL:
        lpm = lpm6_create(RT_RULES0, RT6_TBL8_0)
        if lpm == NULL:
            return -ENOMEM
        rc = lpm6_add(lpm, ip, plen, value)
        if rc != 0:
            lpm6_free(lpm)
            return rc
        vr_store_lpm6(&r.rt6[vrf], lpm)
        return 0
    rc = lpm6_add_grow(lpm, ip, plen, value, &grown)
    if rc == 0 and grown != NULL:
        vr_store_lpm6(&r.rt6[vrf], grown)
        retired[0] = lpm
    return rc


cdef int rt6_del(vr_router *r, uint16_t vrf, const uint8_t *ip, uint8_t plen, pd_lpm6 **retired) noexcept nogil:
    cdef pd_lpm6 *lpm = r.rt6[vrf]
    cdef int rc
    retired[0] = NULL
    if lpm == NULL:
        return -ENOENT
    rc = lpm6_delete(lpm, ip, plen)
    if rc == 0 and lpm.nrules == 0:
        vr_store_lpm6(&r.rt6[vrf], NULL)
        retired[0] = lpm
    return rc


# ---- every VRF ---------------------------------------------------------------------

cdef void rt_reclaim(vr_router *r) noexcept nogil:
    cdef uint32_t v
    for v in range(VR_MAX_VRFS):
        if r.rt4[v] != NULL:
            lpm4_reclaim(r.rt4[v])
        if r.rt6[v] != NULL:
            lpm6_reclaim(r.rt6[v])


cdef void rt_free_all(vr_router *r) noexcept nogil:
    cdef uint32_t v
    for v in range(VR_MAX_VRFS):
        lpm4_free(r.rt4[v])
        lpm6_free(r.rt6[v])
        r.rt4[v] = NULL
        r.rt6[v] = NULL
