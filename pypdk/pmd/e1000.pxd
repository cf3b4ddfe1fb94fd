# net_e1000: the Intel 8254x family (82540EM "e1000" and its kin), register
# and descriptor layouts. Sections are those of Intel's "PCI/PCI-X Family of
# Gigabit Ethernet Controllers Software Developer's Manual" (8254x SDM).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from pypdk.mempool.mbuf cimport pd_mbuf
from pypdk.mempool.mempool cimport pd_mempool
from pypdk.pmd.ethdev cimport pd_eth_qstats

cdef enum:
    # 13.4: general registers
    E1000_CTRL = 0x0000         # 13.4.1 Device Control
    E1000_STATUS = 0x0008       # 13.4.2 Device Status
    E1000_EERD = 0x0014         # 13.4.4 EEPROM Read (82540EM: START bit 0, DONE bit 4)
    E1000_ICR = 0x00C0          # 13.4.17 Interrupt Cause Read (read to clear)
    E1000_IMS = 0x00D0          # 13.4.20 Interrupt Mask Set
    E1000_IMC = 0x00D8          # 13.4.21 Interrupt Mask Clear
    E1000_RCTL = 0x0100         # 13.4.22 Receive Control
    E1000_TCTL = 0x0400         # 13.4.33 Transmit Control
    E1000_TIPG = 0x0410         # 13.4.34 Transmit IPG
    E1000_RDBAL = 0x2800        # 13.4.27 Receive Descriptor Base Low
    E1000_RDBAH = 0x2804        # 13.4.28 ... High
    E1000_RDLEN = 0x2808        # 13.4.29 ... Length (bytes, a multiple of 128)
    E1000_RDH = 0x2810          # 13.4.30 ... Head
    E1000_RDT = 0x2818          # 13.4.31 ... Tail
    E1000_RDTR = 0x2820         # 13.4.32 Receive Delay Timer
    E1000_TDBAL = 0x3800        # 13.4.36 Transmit Descriptor Base Low
    E1000_TDBAH = 0x3804        # 13.4.37 ... High
    E1000_TDLEN = 0x3808        # 13.4.38 ... Length (bytes, a multiple of 128)
    E1000_TDH = 0x3810          # 13.4.39 ... Head
    E1000_TDT = 0x3818          # 13.4.40 ... Tail
    E1000_TIDV = 0x3820         # 13.4.41 Transmit Interrupt Delay Value
    E1000_MTA = 0x5200          # 13.4.55 Multicast Table Array, 128 dwords
    E1000_RAL0 = 0x5400         # 13.4.56 Receive Address Low (entry 0)
    E1000_RAH0 = 0x5404         # 13.4.56 Receive Address High (AV: bit 31)

    # 13.4.1 CTRL bits
    E1000_CTRL_FD = 1 << 0
    E1000_CTRL_LRST = 1 << 3
    E1000_CTRL_ASDE = 1 << 5
    E1000_CTRL_SLU = 1 << 6
    E1000_CTRL_ILOS = 1 << 7
    E1000_CTRL_RST = 1 << 26
    E1000_CTRL_VME = 1 << 30
    E1000_CTRL_PHY_RST = 1 << 31
    # 13.4.2 STATUS bits
    E1000_STATUS_FD = 1 << 0
    E1000_STATUS_LU = 1 << 1
    # 13.4.22 RCTL bits
    E1000_RCTL_EN = 1 << 1
    E1000_RCTL_SBP = 1 << 2
    E1000_RCTL_UPE = 1 << 3
    E1000_RCTL_MPE = 1 << 4
    E1000_RCTL_LPE = 1 << 5
    E1000_RCTL_BAM = 1 << 15
    E1000_RCTL_BSIZE_2048 = 0 << 16
    E1000_RCTL_BSIZE_1024 = 1 << 16
    E1000_RCTL_BSIZE_512 = 2 << 16
    E1000_RCTL_BSIZE_256 = 3 << 16
    E1000_RCTL_SECRC = 1 << 26
    # 13.4.33 TCTL bits
    E1000_TCTL_EN = 1 << 1
    E1000_TCTL_PSP = 1 << 3
    E1000_TCTL_CT_SHIFT = 4
    E1000_TCTL_COLD_SHIFT = 12
    # 13.4.34: IPGT 10, IPGR1 8, IPGR2 6 (the manual's values for copper)
    E1000_TIPG_COPPER = 10 | (8 << 10) | (6 << 20)

    # 3.2.3.1 receive descriptor status / 3.3.3.2 transmit descriptor bits
    E1000_RXD_STAT_DD = 1 << 0
    E1000_RXD_STAT_EOP = 1 << 1
    E1000_TXD_CMD_EOP = 1 << 0
    E1000_TXD_CMD_IFCS = 1 << 1
    E1000_TXD_CMD_RS = 1 << 3
    E1000_TXD_STAT_DD = 1 << 0

    E1000_RING_ALIGN = 128      # 3.2.6 / 3.4: ring length a multiple of 128 bytes (8 descriptors)
    E1000_MIN_DESC = 8
    E1000_MAX_DESC = 4096
    E1000_TX_FREE_THRESH = 32   # reclaim completed tx descriptors when fewer are free
    E1000_TX_RS_THRESH = 32     # RS (a status write-back) on every 32nd descriptor only


# 3.2.3 legacy receive descriptor (16 bytes)
ctypedef struct e1000_rx_desc:
    uint64_t buffer_addr
    uint16_t length
    uint16_t csum
    uint8_t status
    uint8_t errors
    uint16_t special

# 3.3.3 legacy transmit descriptor (16 bytes)
ctypedef struct e1000_tx_desc:
    uint64_t buffer_addr
    uint16_t length
    uint8_t cso
    uint8_t cmd
    uint8_t status
    uint8_t css
    uint16_t special


ctypedef struct e1000_rxq:
    pd_eth_qstats stats
    e1000_rx_desc *ring         # device-visible (EAL memory, IOVA = VA)
    pd_mbuf **sw_ring           # the mbuf each descriptor's buffer belongs to
    uint8_t *bar
    pd_mempool *mp
    uint16_t nb_desc
    uint16_t mask
    uint16_t next               # the next descriptor to look at
    uint16_t port
    uint16_t queue
    uint16_t buf_size           # RCTL.BSIZE in bytes
    uint8_t discard             # inside a frame that spans descriptors: drop to its EOP
    uint64_t tail_writes        # RDT writes (one per burst that received)
    uint64_t multi_desc         # frames longer than one buffer, dropped


ctypedef struct e1000_txq:
    pd_eth_qstats stats
    e1000_tx_desc *ring
    pd_mbuf **sw_ring           # set on a packet's last descriptor: freed when done
    uint8_t *bar
    uint16_t nb_desc
    uint16_t mask
    uint16_t tail               # the next descriptor to fill
    uint16_t clean              # the oldest descriptor not yet reclaimed
    uint16_t nb_free
    uint16_t rs_mask            # RS on the descriptors i with (i & rs_mask) == rs_mask
    uint64_t tail_writes        # TDT writes (one per burst that sent)
    uint64_t reclaims           # batches of completed descriptors given back
