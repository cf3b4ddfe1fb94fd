# Capture files: the pcap and pcapng reader's record index and the pcap
# writer's record header (pcapfile.pyx says which formats and how). net_pcap
# cimports this; the file formats are libpcap's savefile (pcap-savefile(5))
# and pcapng (draft-ietf-opsawg-pcapng, sections 4.1-4.4).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

cdef extern from *:
    """
    #ifndef PCAP_MAGIC_US
    #define PCAP_MAX_RECORD    268435456u /* a longer record means a corrupt file */
    #define PCAP_MAX_IFACES    256        /* pcapng interfaces per section */
    /* Magic numbers as read in host order. */
    #define PCAP_MAGIC_US      0xa1b2c3d4u
    #define PCAP_MAGIC_NS      0xa1b23c4du
    #define PCAP_MAGIC_US_SWAP 0xd4c3b2a1u
    #define PCAP_MAGIC_NS_SWAP 0x4d3cb2a1u
    #define PCAPNG_SHB         0x0a0d0d0au /* reads the same in both byte orders */
    #define PCAPNG_BOM         0x1a2b3c4du
    #define PCAPNG_BOM_SWAP    0x4d3c2b1au
    #define PCAPNG_IDB 1u
    #define PCAPNG_PB  2u                 /* the obsolete Packet Block */
    #define PCAPNG_SPB 3u
    #define PCAPNG_EPB 6u
    #define LINKTYPE_ETHERNET 1u
    #define PCAP_REC_HDR_LEN 16           /* ts_sec, ts_frac, incl_len, orig_len */
    #endif
    """
    enum:
        MAX_IFACES "PCAP_MAX_IFACES"
        PCAP_REC_HDR_LEN
    uint32_t MAX_RECORD "PCAP_MAX_RECORD"
    uint32_t PCAP_MAGIC_US, PCAP_MAGIC_NS, PCAP_MAGIC_US_SWAP, PCAP_MAGIC_NS_SWAP
    uint32_t PCAPNG_SHB, PCAPNG_BOM, PCAPNG_BOM_SWAP
    uint32_t PCAPNG_IDB, PCAPNG_PB, PCAPNG_SPB, PCAPNG_EPB, LINKTYPE_ETHERNET

# One packet of a file being read.
ctypedef struct pcap_rec:
    uint64_t off        # into the file buffer
    uint64_t ts_ns      # capture time, ns since the epoch
    uint32_t len        # captured bytes
    uint32_t nseg       # segments it needs (set at rx queue setup)

ctypedef struct pcap_index:
    pcap_rec *recs
    uint64_t nb
    uint64_t cap
    uint64_t skipped_empty
    int truncated
    # error detail
    uint64_t err_off
    uint32_t err_val


cdef inline void pcap_put32(char *p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)

cdef inline void pcap_rec_hdr(char *dst, uint32_t sec, uint32_t frac, uint32_t caplen,
                              uint32_t origlen) noexcept nogil:
    """A classic pcap record header (host byte order, as the file header)."""
    pcap_put32(dst, sec)
    pcap_put32(dst + 4, frac)
    pcap_put32(dst + 8, caplen)
    pcap_put32(dst + 12, origlen)


cdef class PcapIndex:
    """A capture file in C memory and its record index."""
    cdef char *buf
    cdef uint64_t size
    cdef pcap_index ix
    cdef readonly str fmt
