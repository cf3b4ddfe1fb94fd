"""Capture files: read pcap and pcapng, write pcap (used by net_pcap).

Reading. `PcapIndex.load(path)` reads the whole file into one malloc'ed
buffer and indexes it: a C array of (offset, length, timestamp) records
over that buffer (`pcap_rec`, see pcapfile.pxd), built by nogil C loops. A
bad file (not pcap/pcapng, a link type other than Ethernet, a record that
claims an impossible length) is a UsageError naming the file and the key
it was given for. Understood formats: classic pcap (magic a1b2c3d4
microseconds, a1b23c4d nanoseconds) in either byte order, and pcapng
(Section Header, Interface Description with if_tsresol/if_tsoffset,
Enhanced, Simple and the obsolete Packet Block; other blocks are skipped;
several sections and interfaces are fine). The link type must be Ethernet
(1). A capture that ends in the middle of a record (tcpdump still running,
a copy cut short) is read up to the last whole record (`ix.truncated`).
Zero-length records are left out (`ix.skipped_empty`).

Writing. `file_header(ns, snaplen)` is the 24-byte global header of a
classic pcap file in host byte order, version 2.4, link type 1,
microsecond (or nanosecond) timestamps; `pcap_rec_hdr()` (inline, nogil)
writes each 16-byte record header before the packet's bytes.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset

import struct

from pypdk.errors import UsageError, ResourceError

cdef extern from *:
    uint16_t __builtin_bswap16(uint16_t) nogil
    uint32_t __builtin_bswap32(uint32_t) nogil
    uint64_t __builtin_bswap64(uint64_t) nogil


# What index_*() return; PcapIndex.load turns them into UsageError text.
cdef enum:
    E_OK = 0
    E_NOMEM
    E_LINKTYPE
    E_RECLEN
    E_BLOCKLEN
    E_IFACE
    E_TOO_MANY_IFACES


cdef inline uint16_t rd16(const uint8_t *p, bint swap) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return __builtin_bswap16(v) if swap else v

cdef inline uint32_t rd32(const uint8_t *p, bint swap) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return __builtin_bswap32(v) if swap else v

cdef inline uint64_t rd64(const uint8_t *p, bint swap) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return __builtin_bswap64(v) if swap else v


cdef int index_add(pcap_index *ix, uint64_t off, uint32_t length, uint64_t ts) noexcept nogil:
    cdef pcap_rec *grown
    if length == 0:
        ix.skipped_empty += 1
        return E_OK
    if ix.nb == ix.cap:
        ix.cap = ix.cap * 2 if ix.cap else 1024
        grown = <pcap_rec *>realloc(ix.recs, ix.cap * sizeof(pcap_rec))
        if grown == NULL:
            return E_NOMEM
        ix.recs = grown
    ix.recs[ix.nb].off = off
    ix.recs[ix.nb].len = length
    ix.recs[ix.nb].ts_ns = ts
    ix.recs[ix.nb].nseg = 0
    ix.nb += 1
    return E_OK


cdef int index_pcap(const uint8_t *p, uint64_t size, pcap_index *ix) noexcept nogil:
    """Classic pcap: 24-byte global header, then 16-byte record headers."""
    cdef uint32_t magic = rd32(p, False)
    cdef bint swap = magic == PCAP_MAGIC_US_SWAP or magic == PCAP_MAGIC_NS_SWAP
    cdef bint ns = magic == PCAP_MAGIC_NS or magic == PCAP_MAGIC_NS_SWAP
    cdef uint32_t linktype = rd32(p + 20, swap) & 0xffff   # upper bits: FCS info
    cdef uint64_t pos = 24, sec, frac
    cdef uint32_t caplen
    cdef int rc
    if linktype != LINKTYPE_ETHERNET:
        ix.err_val = linktype
        ix.err_off = 20
        return E_LINKTYPE
    while pos + 16 <= size:
        sec = rd32(p + pos, swap)
        frac = rd32(p + pos + 4, swap)
        caplen = rd32(p + pos + 8, swap)
        if caplen > MAX_RECORD:
            ix.err_off = pos
            ix.err_val = caplen
            return E_RECLEN
        if pos + 16 + caplen > size:
            break
        rc = index_add(ix, pos + 16, caplen, sec * 1000000000ULL + (frac if ns else frac * 1000))
        if rc:
            return rc
        pos += 16 + caplen
    ix.truncated = pos != size
    return E_OK


ctypedef struct ng_iface:
    uint64_t tsoffset_ns
    uint32_t snaplen
    uint8_t tsresol


cdef uint64_t ng_ts_ns(ng_iface *itf, uint64_t t) noexcept nogil:
    """A pcapng timestamp in the interface's units (if_tsresol) to ns."""
    cdef uint32_t e = itf.tsresol & 0x7f
    cdef uint64_t sec, scale = 1
    cdef uint32_t i
    if itf.tsresol & 0x80:                  # 2^-e seconds
        if e == 0:
            return t * 1000000000ULL + itf.tsoffset_ns
        if e >= 64:
            return itf.tsoffset_ns
        sec = t >> e
        return (sec * 1000000000ULL
                + <uint64_t>(<double>(t & ((1ULL << e) - 1)) * 1e9 / <double>(1ULL << e))
                + itf.tsoffset_ns)
    if e <= 9:                              # 10^-e seconds
        for i in range(9 - e):
            scale *= 10
        return t * scale + itf.tsoffset_ns
    if e > 19:
        return itf.tsoffset_ns
    for i in range(e - 9):
        scale *= 10
    return t // scale + itf.tsoffset_ns


cdef int ng_idb(const uint8_t *body, uint32_t blen, bint swap, ng_iface *itf,
                pcap_index *ix, uint64_t pos) noexcept nogil:
    """Interface Description Block body: linktype, snaplen, options."""
    cdef uint16_t linktype = rd16(body, swap), code, olen
    cdef uint32_t o = 8, end = blen - 12
    if linktype != LINKTYPE_ETHERNET:
        ix.err_val = linktype
        ix.err_off = pos
        return E_LINKTYPE
    itf.snaplen = rd32(body + 4, swap)
    itf.tsresol = 6
    itf.tsoffset_ns = 0
    while o + 4 <= end:
        code = rd16(body + o, swap)
        olen = rd16(body + o + 2, swap)
        if code == 0 or o + 4 + olen > end:
            break
        if code == 9 and olen >= 1:         # if_tsresol
            itf.tsresol = body[o + 4]
        elif code == 14 and olen >= 8:      # if_tsoffset, seconds
            itf.tsoffset_ns = <uint64_t>(<int64_t>rd64(body + o + 4, swap) * 1000000000LL)
        o += 4 + ((olen + 3u) & ~3u)
    return E_OK


cdef int index_pcapng(const uint8_t *p, uint64_t size, pcap_index *ix) noexcept nogil:
    """pcapng: a sequence of blocks (type, total length, body, total length)."""
    cdef ng_iface ifaces[MAX_IFACES]
    cdef uint32_t nifaces = 0, btype, blen, bom, ifid, caplen, origlen
    cdef uint64_t pos = 0, ts
    cdef bint swap = False
    cdef const uint8_t *body
    cdef int rc
    while pos + 12 <= size:
        btype = rd32(p + pos, False)        # SHB's type reads the same either way
        if btype == PCAPNG_SHB:
            bom = rd32(p + pos + 8, False)
            if bom != PCAPNG_BOM and bom != PCAPNG_BOM_SWAP:
                ix.err_off = pos
                ix.err_val = bom
                return E_BLOCKLEN
            swap = bom == PCAPNG_BOM_SWAP
            nifaces = 0                     # interfaces are per section
        else:
            btype = rd32(p + pos, swap)
        blen = rd32(p + pos + 4, swap)
        if blen < 12 or blen & 3 or blen > MAX_RECORD:
            ix.err_off = pos
            ix.err_val = blen
            return E_BLOCKLEN
        if pos + blen > size:
            break                           # cut short: keep what is whole
        if rd32(p + pos + blen - 4, swap) != blen:
            ix.err_off = pos
            ix.err_val = blen
            return E_BLOCKLEN
        body = p + pos + 8
        if btype == PCAPNG_IDB:
            if blen < 20:
                ix.err_off = pos
                ix.err_val = blen
                return E_BLOCKLEN
            if nifaces == MAX_IFACES:
                ix.err_off = pos
                return E_TOO_MANY_IFACES
            rc = ng_idb(body, blen, swap, &ifaces[nifaces], ix, pos)
            if rc:
                return rc
            nifaces += 1
        elif btype == PCAPNG_EPB or btype == PCAPNG_PB:
            if blen < 32:
                ix.err_off = pos
                ix.err_val = blen
                return E_BLOCKLEN
            ifid = rd32(body, swap) if btype == PCAPNG_EPB else rd16(body, swap)
            caplen = rd32(body + 12, swap)
            if ifid >= nifaces:
                ix.err_off = pos
                ix.err_val = ifid
                return E_IFACE
            if caplen > blen - 32:
                ix.err_off = pos
                ix.err_val = caplen
                return E_RECLEN
            ts = (<uint64_t>rd32(body + 4, swap) << 32) | rd32(body + 8, swap)
            rc = index_add(ix, pos + 28, caplen, ng_ts_ns(&ifaces[ifid], ts))
            if rc:
                return rc
        elif btype == PCAPNG_SPB:
            if blen < 16:
                ix.err_off = pos
                ix.err_val = blen
                return E_BLOCKLEN
            if nifaces == 0:
                ix.err_off = pos
                ix.err_val = 0
                return E_IFACE
            origlen = rd32(body, swap)
            caplen = blen - 16
            if origlen < caplen:
                caplen = origlen
            if ifaces[0].snaplen and ifaces[0].snaplen < caplen:
                caplen = ifaces[0].snaplen
            rc = index_add(ix, pos + 12, caplen, 0)   # an SPB has no timestamp
            if rc:
                return rc
        pos += blen
    ix.truncated = pos != size
    return E_OK


def read_file(str path, str key):
    """The file's bytes, or a UsageError/ResourceError naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise UsageError(f"{key}={path}: no such file", f"check the path given to {key}") from None
    except IsADirectoryError:
        raise UsageError(f"{key}={path}: is a directory", f"give {key} a capture file") from None
    except PermissionError:
        raise ResourceError(f"{key}={path}: permission denied",
                            "make the file readable, or run as its owner") from None


cdef class PcapIndex:
    """A capture file in C memory and its record index (`load` fills it)."""

    def __cinit__(self):
        self.buf = NULL
        memset(&self.ix, 0, sizeof(pcap_index))

    def __dealloc__(self):
        free(self.buf)
        free(self.ix.recs)

    def __len__(self):
        return self.ix.nb

    @property
    def truncated(self):
        """The file ends in the middle of a record (read up to the last whole one)."""
        return bool(self.ix.truncated)

    @property
    def skipped_empty(self):
        """Zero-length records left out."""
        return self.ix.skipped_empty

    def packet(self, uint64_t i):
        """Record i: (capture time in ns since the epoch, the captured bytes)."""
        if i >= self.ix.nb:
            raise IndexError(f"record {i} of {self.ix.nb}")
        cdef pcap_rec *r = &self.ix.recs[i]
        return r.ts_ns, self.buf[r.off:r.off + r.len]

    def load(self, str path, str key="rx_pcap"):
        """Read and index the file; UsageError/ResourceError naming `key`=path."""
        cdef bytes data = read_file(path, key)
        cdef const uint8_t *p
        cdef uint32_t magic
        cdef int rc
        self.size = len(data)
        if self.size < 24:
            raise UsageError(f"{key}={path}: not a pcap or pcapng file "
                             f"({self.size} bytes, too short for a header)",
                             "give a capture written by tcpdump, tshark or scapy")
        self.buf = <char *>malloc(self.size)
        if self.buf == NULL:
            raise MemoryError()
        memcpy(self.buf, <char *>data, self.size)
        del data
        p = <const uint8_t *>self.buf
        magic = rd32(p, False)
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS, PCAP_MAGIC_US_SWAP, PCAP_MAGIC_NS_SWAP):
            self.fmt = "pcap-ns" if magic in (PCAP_MAGIC_NS, PCAP_MAGIC_NS_SWAP) else "pcap"
            with nogil:
                rc = index_pcap(p, self.size, &self.ix)
        elif magic == PCAPNG_SHB:
            self.fmt = "pcapng"
            with nogil:
                rc = index_pcapng(p, self.size, &self.ix)
        else:
            raise UsageError(f"{key}={path}: not a pcap or pcapng file "
                             f"(starts with {bytes(self.buf[:4]).hex()})",
                             "give a capture written by tcpdump, tshark or scapy")
        if rc == E_OK:
            return
        where = f"at byte {self.ix.err_off}"
        if rc == E_NOMEM:
            raise MemoryError()
        if rc == E_LINKTYPE:
            raise UsageError(f"{key}={path}: link type {self.ix.err_val} is not Ethernet (1)",
                             "give a capture of Ethernet frames (e.g. tcpdump -i on an "
                             "Ethernet/veth/tap interface, not 'any' or a tun)")
        if rc == E_RECLEN:
            raise UsageError(f"{key}={path}: corrupt file, a record {where} claims "
                             f"{self.ix.err_val} bytes", "the file is damaged; capture again")
        if rc == E_IFACE:
            raise UsageError(f"{key}={path}: corrupt pcapng, a packet {where} names "
                             f"interface {self.ix.err_val}, which is not described",
                             "the file is damaged; capture again")
        if rc == E_TOO_MANY_IFACES:
            raise UsageError(f"{key}={path}: more than {MAX_IFACES} interfaces in one "
                             "section", "split the capture (editcap) or convert it to pcap")
        raise UsageError(f"{key}={path}: corrupt pcapng, bad block {where} "
                         f"(length or byte-order field {self.ix.err_val:#x})",
                         "the file is damaged; capture again")


def file_header(bint ns, uint32_t snaplen):
    """The global header of a classic pcap file of Ethernet frames."""
    # Host byte order: readers tell it from the magic.
    return struct.pack("=IHHiIII", PCAP_MAGIC_NS if ns else PCAP_MAGIC_US, 2, 4, 0, 0,
                       snaplen, LINKTYPE_ETHERNET)
