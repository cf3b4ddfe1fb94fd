# net_igbvf: the Intel 82576 virtual function (8086:10ca), register and
# descriptor layouts. "DS" is Intel's "82576EB Gigabit Ethernet Controller
# Datasheet"; each name is the datasheet's register mnemonic, under the
# heading of the section that describes it: the VF register map ("Virtual
# Function Registers", whose queue registers follow the PF's receive and
# transmit registers of DS 8.10 and 8.12 at the VF's own offsets), the PF/VF
# mailbox ("PF-VF Mailbox" in the virtualization chapter) and the advanced
# descriptors ("Advanced Receive Descriptors", "Advanced Transmit Data
# Descriptor").

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_qstats

cdef enum:
    # Virtual Function Registers: the 16 KiB VF register window (BAR0)
    IGBVF_CTRL = 0x0000         # VF Control (VTCTRL): RST bit 26 resets the VF only
    IGBVF_STATUS = 0x0008       # VF Status (mirrors the PF's link)
    IGBVF_FRTIMER = 0x1048      # free running timer
    IGBVF_EICS = 0x1520         # extended interrupt cause set
    IGBVF_EIMS = 0x1524         # ... mask set
    IGBVF_EIMC = 0x1528         # ... mask clear
    IGBVF_EIAC = 0x152C         # ... auto clear
    IGBVF_EIAM = 0x1530         # ... auto mask
    IGBVF_EICR = 0x1580         # ... cause read
    IGBVF_VMBMEM = 0x0800       # PF-VF Mailbox: 16 dwords of mailbox memory
    IGBVF_V2PMAILBOX = 0x0C40   # VF-to-PF mailbox control

    # Per queue n (0, 1): receive at 0x2800 + 0x100 n, transmit at 0x3800 + 0x100 n
    IGBVF_QUEUE_STRIDE = 0x100
    IGBVF_RDBAL = 0x2800        # receive descriptor base low
    IGBVF_RDBAH = 0x2804        # ... high
    IGBVF_RDLEN = 0x2808        # ... ring length in bytes (a multiple of 128)
    IGBVF_SRRCTL = 0x280C       # split and replication receive control
    IGBVF_RDH = 0x2810          # receive descriptor head
    IGBVF_RDT = 0x2818          # ... tail
    IGBVF_RXDCTL = 0x2828       # receive descriptor control
    IGBVF_RQDPC = 0x2830        # receive queue drop packet count
    IGBVF_TDBAL = 0x3800
    IGBVF_TDBAH = 0x3804
    IGBVF_TDLEN = 0x3808
    IGBVF_TDH = 0x3810
    IGBVF_TDT = 0x3818
    IGBVF_TXDCTL = 0x3828

    # Virtual Function Registers: the VF's statistics (32 bits, not cleared by reading: they wrap)
    IGBVF_VFGPRC = 0x0F10       # good packets received
    IGBVF_VFGPTC = 0x0F14       # good packets transmitted
    IGBVF_VFGORC = 0x0F18       # good octets received
    IGBVF_VFGOTC = 0x0F34       # good octets transmitted
    IGBVF_VFMPRC = 0x0F3C       # multicast packets received
    IGBVF_VFGPRLBC = 0x0F40     # good packets received by loopback (VF to VF inside the NIC)
    IGBVF_VFGPTLBC = 0x0F44     # good packets transmitted by loopback
    IGBVF_VFGORLBC = 0x0F48     # good octets received by loopback
    IGBVF_VFGOTLBC = 0x0F50     # good octets transmitted by loopback

    IGBVF_CTRL_RST = 1 << 26
    IGBVF_STATUS_FD = 1 << 0
    IGBVF_STATUS_LU = 1 << 1

    # V2PMAILBOX bits (PF-VF Mailbox): the VF's requests, then the PF's answers.
    # PFSTS, PFACK and RSTD are cleared by reading, so a driver keeps what it read.
    IGBVF_MBX_REQ = 1 << 0      # VF: a message is in the mailbox memory
    IGBVF_MBX_ACK = 1 << 1      # VF: the PF's message is read
    IGBVF_MBX_VFU = 1 << 2      # VF owns the mailbox memory
    IGBVF_MBX_PFU = 1 << 3      # PF owns the mailbox memory
    IGBVF_MBX_PFSTS = 1 << 4    # PF wrote a message
    IGBVF_MBX_PFACK = 1 << 5    # PF read the VF's message
    IGBVF_MBX_RSTI = 1 << 6     # PF is resetting
    IGBVF_MBX_RSTD = 1 << 7     # PF reset done
    IGBVF_MBX_R2C = IGBVF_MBX_PFSTS | IGBVF_MBX_PFACK | IGBVF_MBX_RSTD
    IGBVF_MBX_WORDS = 16

    # SRRCTL (DS 8.10.2)
    IGBVF_SRRCTL_BSIZEPKT_SHIFT = 10         # BSIZEPKT (bits 6:0) is in KiB
    IGBVF_SRRCTL_BSIZEHDR_SHIFT = 2          # BSIZEHDR (bits 11:8) in 64-byte units
    IGBVF_SRRCTL_DESCTYPE_ADV_ONEBUF = 1 << 25
    IGBVF_SRRCTL_DROP_EN = 1 << 31          # a full ring drops (and counts in RQDPC), no head-of-line block
    # RXDCTL / TXDCTL
    IGBVF_XDCTL_ENABLE = 1 << 25

    # Advanced Receive Descriptors: the write-back format's, status/error dword
    IGBVF_RXD_STAT_DD = 1 << 0
    IGBVF_RXD_STAT_EOP = 1 << 1
    IGBVF_RXD_STAT_VP = 1 << 3              # a VLAN tag was stripped (vlan field)
    # RXE, SEQ/SE/CE (frame errors); TCPE and IPE are checksum results, not frame errors
    IGBVF_RXD_ERR_FRAME = (1u << 31) | (1 << 28) | (1 << 26) | (1 << 25) | (1 << 24)

    # Advanced Transmit Data Descriptor
    IGBVF_TXD_DTYP_DATA = 3 << 20
    IGBVF_TXD_CMD_EOP = 1 << 24
    IGBVF_TXD_CMD_IFCS = 1 << 25
    IGBVF_TXD_CMD_RS = 1 << 27
    IGBVF_TXD_CMD_DEXT = 1 << 29
    IGBVF_TXD_PAYLEN_SHIFT = 14
    IGBVF_TXD_STAT_DD = 1 << 0               # in olinfo_status on write-back

    IGBVF_MIN_DESC = 8                       # ring length a multiple of 128 bytes
    IGBVF_MAX_DESC = 4096
    IGBVF_TX_FREE_THRESH = 32
    IGBVF_TX_RS_THRESH = 32


# Advanced Receive Descriptors: 16 bytes. The driver writes the read
# format {pkt_addr, hdr_addr}; the device overwrites it with the write-back format,
# whose second quadword is {status_error: 32, length: 16, vlan: 16}. hdr_addr = 0
# clears DD.
ctypedef struct igbvf_rx_desc:
    uint64_t pkt_addr
    uint32_t status_error        # write-back; the low half of hdr_addr in the read format
    uint16_t length
    uint16_t vlan

# Advanced Transmit Data Descriptor: 16 bytes.
ctypedef struct igbvf_tx_desc:
    uint64_t buffer_addr
    uint32_t cmd_type_len
    uint32_t olinfo_status


ctypedef struct igbvf_rxq:
    pd_eth_qstats stats
    igbvf_rx_desc *ring         # device-visible (EAL memory, IOVA = VA)
    pd_mbuf **sw_ring
    uint8_t *bar
    pd_mempool *mp
    pd_mbuf *pkt_first          # a frame spanning descriptors, being assembled
    pd_mbuf *pkt_last
    uint32_t rdt                # this queue's RDT register offset
    uint16_t nb_desc
    uint16_t mask
    uint16_t next
    uint16_t port
    uint16_t queue
    uint16_t buf_kib            # SRRCTL.BSIZEPKT: the pool's data room in KiB
    uint64_t tail_writes
    uint64_t chained            # frames received in more than one buffer


ctypedef struct igbvf_txq:
    pd_eth_qstats stats
    igbvf_tx_desc *ring
    pd_mbuf **sw_ring
    uint8_t *bar
    uint32_t tdt                # this queue's TDT register offset
    uint16_t nb_desc
    uint16_t mask
    uint16_t tail
    uint16_t clean
    uint16_t nb_free
    uint16_t rs_mask
    uint64_t tail_writes
    uint64_t reclaims
