"""A register-level stand-in for an 8254x (SDM section numbers as in pypdk/pmd/e1000.pxd).

`FakeE1000` is the BAR0 register window in host memory with the side effects the
driver's bring-up relies on (CTRL.RST clears itself, CTRL.SLU brings STATUS.LU,
EERD reads the EEPROM, ICR and the statistics are read-to-clear). Registers the burst
path writes directly (RDT, TDT) are plain memory: the test's device model reads them.
`Wire` plays the device's DMA: it delivers frames into the receive ring and takes
frames off the transmit ring, as the descriptors and registers say.
"""
import ctypes
import mmap
import struct
from types import SimpleNamespace

from pypdk.eal.mmio import Mmio

CTRL, STATUS, EERD, ICR, IMC = 0x0000, 0x0008, 0x0014, 0x00C0, 0x00D8
RCTL, TCTL = 0x0100, 0x0400
RDBAL, RDBAH, RDLEN, RDH, RDT = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818
TDBAL, TDBAH, TDLEN, TDH, TDT = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818
RAL0, RAH0 = 0x5400, 0x5404
GPRC, GPTC, MPC = 0x4074, 0x4080, 0x4010
CTRL_RST, CTRL_SLU = 1 << 26, 1 << 6
STATUS_LU = 1 << 1
RCTL_EN, RCTL_UPE, RCTL_BAM, RCTL_SECRC = 1 << 1, 1 << 3, 1 << 15, 1 << 26
TCTL_EN = 1 << 1
STATS = set(range(0x4000, 0x4100, 4))


class FakeE1000(Mmio):
    def __init__(self, buffer, mac=b"\x52\x54\x00\x12\x34\x56", eeprom_only=False, stuck_reset=False):
        self.mem = buffer
        self.writes = []                  # (offset, value) of every slow-path write
        self.eeprom = [int.from_bytes(mac[i:i + 2], "little") for i in (0, 2, 4)]
        self.stuck_reset = stuck_reset
        self.mac = mac
        if not eeprom_only:
            self.poke(RAL0, int.from_bytes(mac[:4], "little"))
            self.poke(RAH0, int.from_bytes(mac[4:], "little") | (1 << 31))

    def peek(self, off):
        return struct.unpack_from("<I", self.mem, off)[0]

    def poke(self, off, value):
        struct.pack_into("<I", self.mem, off, value & 0xFFFFFFFF)

    def read32(self, off):
        v = self.peek(off)
        if off == ICR or off in STATS:
            self.poke(off, 0)
        return v

    def write32(self, off, value):
        self.writes.append((off, value))
        if off == CTRL:
            if value & CTRL_RST and not self.stuck_reset:
                value &= ~CTRL_RST
                for reg in (RCTL, TCTL, RDH, RDT, TDH, TDT):
                    self.poke(reg, 0)
            if value & CTRL_SLU:
                self.poke(STATUS, self.peek(STATUS) | STATUS_LU | 1 | (2 << 6))
        elif off == EERD and value & 1:
            value = ((self.eeprom[(value >> 8) & 0xFF] if (value >> 8) < 3 else 0) << 16) | (1 << 4)
        self.poke(off, value)

    def writes_to(self, off):
        return [v for o, v in self.writes if o == off]


class FakeBus:
    """What the driver asks of its PCI device (pypdk.eal.vfio.Device's face)."""

    def __init__(self, vendor=0x8086, device=0x100E, numa_node=-1, **model):
        self.map = mmap.mmap(-1, 0x20000)
        self.model = FakeE1000(memoryview(self.map), **model)
        self.info = SimpleNamespace(vendor=vendor, device=device, numa_node=numa_node)
        self.bus_master = False
        self.closed = False

    def regs(self, index, min_size=0):
        assert index == 0 and min_size <= len(self.map)
        return self.model

    def enable_bus_master(self):
        self.bus_master = True

    def disable_bus_master(self):
        self.bus_master = False

    def close(self):
        self.closed = True


RXD = struct.Struct("<QHHBBH")     # SDM 3.2.3
TXD = struct.Struct("<QHBBBBH")    # SDM 3.3.3


def _desc_view(base, index):
    return (ctypes.c_char * 16).from_address(base + 16 * index)


class Wire:
    """The device's side of the rings, driven by the registers the driver wrote."""

    def __init__(self, regs: FakeE1000):
        self.r = regs
        self.no_buffer = 0

    def rx_base(self):
        return self.r.peek(RDBAL) | (self.r.peek(RDBAH) << 32)

    def tx_base(self):
        return self.r.peek(TDBAL) | (self.r.peek(TDBAH) << 32)

    def deliver(self, frame: bytes, status=0x3, errors=0) -> bool:
        """Write `frame` into the next receive descriptor's buffer (DD|EOP), move RDH.
        False, as the hardware, when RDH == RDT: no buffer."""
        n = self.r.peek(RDLEN) // 16
        h = self.r.peek(RDH)
        if h == self.r.peek(RDT):
            self.no_buffer += 1
            return False
        d = _desc_view(self.rx_base(), h)
        addr, _l, _c, _s, _e, _sp = RXD.unpack(bytes(d))
        ctypes.memmove(addr, frame, len(frame))
        d[:] = RXD.pack(addr, len(frame), 0, status, errors, 0)
        self.r.poke(RDH, (h + 1) % n)
        return True

    def transmit(self) -> list[bytes]:
        """Take every descriptor from TDH to TDT: frames out, DD written back."""
        n = self.r.peek(TDLEN) // 16
        h, t = self.r.peek(TDH), self.r.peek(TDT)
        frames, cur = [], b""
        while h != t:
            d = _desc_view(self.tx_base(), h)
            addr, length, cso, cmd, status, css, special = TXD.unpack(bytes(d))
            cur += ctypes.string_at(addr, length)
            if cmd & 1:                    # EOP
                frames.append(cur)
                cur = b""
            if cmd & (1 << 3):             # RS: report status
                d[:] = TXD.pack(addr, length, cso, cmd, status | 1, css, special)
            h = (h + 1) % n
        self.r.poke(TDH, h)
        return frames
