"""A register-level stand-in for an 82576 VF and its PF (register names as in pypdk/pmd/igbvf.pxd).

`FakeVF` is the VF's 16 KiB register window in host memory with the side effects the
driver relies on: CTRL.RST clears itself and the queue enables; RXDCTL/TXDCTL.ENABLE
stick only once the PF has enabled the VF (after VF_RESET); V2PMAILBOX behaves as the
datasheet's mailbox: VFU is granted when the PF does not hold the memory, REQ hands the
message to the PF and releases VFU, ACK tells the PF its message was read, and the
PFSTS/PFACK/RSTD bits clear when read. `FakePF` answers the messages: VF_RESET with the
MAC, SET_MAC_ADDR with a NACK when its MAC was set by the PF's administrator, and so on;
a PF that is down answers nothing. Registers the burst path writes (RDT, TDT) are plain
memory; `Wire` plays the device's DMA on the advanced descriptors.
"""
import ctypes
import mmap
import struct
from types import SimpleNamespace

from pypdk.eal.mmio import Mmio

CTRL, STATUS, EIMC = 0x0000, 0x0008, 0x1528
VMBMEM, V2PMAILBOX = 0x0800, 0x0C40
REQ, ACK, VFU, PFU, PFSTS, PFACK, RSTI, RSTD = (1 << b for b in range(8))
R2C = PFSTS | PFACK | RSTD
RDBAL, RDBAH, RDLEN, SRRCTL, RDH, RDT, RXDCTL, RQDPC = (0x2800, 0x2804, 0x2808, 0x280C, 0x2810,
                                                         0x2818, 0x2828, 0x2830)
TDBAL, TDBAH, TDLEN, TDH, TDT, TXDCTL = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818, 0x3828
VFGPRC, VFGPTC, VFGORC, VFGOTC = 0x0F10, 0x0F14, 0x0F18, 0x0F34
ENABLE = 1 << 25
CTRL_RST = 1 << 26
VF_RESET, SET_MAC_ADDR, SET_MULTICAST, SET_LPE, SET_PROMISC = 1, 2, 3, 5, 6
MSG_ACK, MSG_NACK, MSG_CTS = 0x80000000, 0x40000000, 0x20000000
PF_CONTROL = 0x0100


def q(reg, n):
    return reg + 0x100 * n


class FakePF:
    """The PF's side of the mailbox: it reads what the VF sent and answers."""

    def __init__(self, mac=b"\x02\x00\x00\x00\x00\x10", admin_mac=True, up=True, control_first=False):
        self.mac, self.admin_mac, self.up = mac, admin_mac, up
        self.control_first = control_first      # a PF control message before the first answer
        self.messages = []                      # [words] the VF sent, in order
        self.vf_enabled = False
        self.lpe = None

    def answer(self, words):
        kind = words[0] & 0xFFFF
        self.messages.append(words)
        if kind == VF_RESET:
            self.vf_enabled = True
            return [VF_RESET | MSG_ACK | MSG_CTS, int.from_bytes(self.mac[:4], "little"),
                    int.from_bytes(self.mac[4:], "little")]
        if kind == SET_MAC_ADDR:
            asked = (words[1] | (words[2] << 32)).to_bytes(8, "little")[:6]
            if self.admin_mac:
                return [SET_MAC_ADDR | MSG_NACK | MSG_CTS]
            self.mac = asked
            return [SET_MAC_ADDR | MSG_ACK | MSG_CTS]
        if kind == SET_LPE:
            if words[1] > 9216:
                return [SET_LPE | MSG_NACK | MSG_CTS]
            self.lpe = words[1]
            return [SET_LPE | MSG_ACK | MSG_CTS]
        if kind == SET_MULTICAST:
            return [SET_MULTICAST | MSG_ACK | MSG_CTS]
        return [kind | MSG_NACK | MSG_CTS]      # SET_PROMISC (unicast) and the rest: refused


class FakeVF(Mmio):
    def __init__(self, buffer, pf: FakePF):
        self.mem = buffer
        self.pf = pf
        self.writes = []
        self.reads_of_mailbox = 0
        self.poke(STATUS, 0x800C8483)           # link up, 1000 full duplex (QEMU's PF mirror)
        if pf.up:
            self.poke(V2PMAILBOX, RSTD)         # the PF came up after the VFs were made

    def peek(self, off):
        return struct.unpack_from("<I", self.mem, off)[0]

    def poke(self, off, value):
        struct.pack_into("<I", self.mem, off, value & 0xFFFFFFFF)

    def read32(self, off):
        v = self.peek(off)
        if off == V2PMAILBOX:
            self.reads_of_mailbox += 1
            self.poke(off, v & ~R2C)
        elif off == RQDPC or off == q(RQDPC, 1):
            self.poke(off, 0)
        return v

    def _post(self, words):
        for i, w in enumerate(words):
            self.poke(VMBMEM + 4 * i, w)

    def write32(self, off, value):
        self.writes.append((off, value))
        if off == V2PMAILBOX:
            self._mailbox(value)
            return
        if off == CTRL and value & CTRL_RST:
            value &= ~CTRL_RST
            for n in (0, 1):
                for reg in (RXDCTL, TXDCTL):
                    self.poke(q(reg, n), self.peek(q(reg, n)) & ~ENABLE)
            self.pf.vf_enabled = False
        if off in (q(RXDCTL, 0), q(RXDCTL, 1), q(TXDCTL, 0), q(TXDCTL, 1)) and not self.pf.vf_enabled:
            value &= ~ENABLE                    # the PF has not enabled this VF's queues
        self.poke(off, value)

    def _mailbox(self, value):
        mbx = self.peek(V2PMAILBOX)
        if value & VFU and not mbx & PFU:
            mbx |= VFU
        if not value & VFU:
            mbx &= ~VFU
        if value & REQ and self.pf.up:
            words = [self.peek(VMBMEM + 4 * i) for i in range(16)]
            answer = self.pf.answer(words)
            if self.pf.control_first:
                self.pf.control_first = False
                self.pending = answer
                answer = [PF_CONTROL | MSG_CTS]
            self._post(answer)
            mbx |= PFACK | PFSTS                # read and answered at once: both in one read
        elif value & ACK and getattr(self, "pending", None):
            self._post(self.pending)
            self.pending = None
            mbx |= PFSTS
        self.poke(V2PMAILBOX, mbx)

    def writes_to(self, off):
        return [v for o, v in self.writes if o == off]

    def messages(self):
        return [w[0] & 0xFFFF for w in self.pf.messages]


class FakeBus:
    """What the driver asks of its PCI device (pypdk.eal.vfio.Device's face)."""

    def __init__(self, vendor=0x8086, device=0x10CA, numa_node=-1, physfn="0000:00:04.0", **pf):
        self.map = mmap.mmap(-1, 0x4000)
        self.pf = FakePF(**pf)
        self.model = FakeVF(memoryview(self.map), self.pf)
        self.info = SimpleNamespace(vendor=vendor, device=device, numa_node=numa_node, physfn=physfn)
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


RXD_READ = struct.Struct("<QQ")          # {pkt_addr, hdr_addr}
RXD_WB = struct.Struct("<QIHH")          # {info/rss, status_error, length, vlan}
TXD = struct.Struct("<QII")              # {buffer_addr, cmd_type_len, olinfo_status}
DD, EOP = 1 << 0, 1 << 1
TX_EOP, TX_RS, TX_DEXT, TX_DTYP = 1 << 24, 1 << 27, 1 << 29, 3 << 20


def _desc(base, index):
    return (ctypes.c_char * 16).from_address(base + 16 * index)


class Wire:
    """The device's side of queue `n`'s rings, driven by the registers the driver wrote."""

    def __init__(self, regs: FakeVF, n=0):
        self.r, self.n = regs, n
        self.no_buffer = 0

    def _reg(self, reg):
        return self.r.peek(q(reg, self.n))

    def _setreg(self, reg, v):
        self.r.poke(q(reg, self.n), v)

    def buf_size(self):
        return (self._reg(SRRCTL) & 0x7F) * 1024

    def deliver(self, frame: bytes, errors=0) -> bool:
        """Write `frame` into as many receive buffers as it needs (EOP on the last)."""
        size = self.buf_size()
        pieces = [frame[i:i + size] for i in range(0, len(frame), size)] or [b""]
        n = self._reg(RDLEN) // 16
        base = self._reg(RDBAL) | (self._reg(RDBAH) << 32)
        h = self._reg(RDH)
        free = (self._reg(RDT) - h) % n
        if free < len(pieces):
            self.no_buffer += 1
            return False
        for k, piece in enumerate(pieces):
            d = _desc(base, h)
            addr, _hdr = RXD_READ.unpack(bytes(d))
            ctypes.memmove(addr, piece, len(piece))
            last = k == len(pieces) - 1
            d[:] = RXD_WB.pack(0, DD | (EOP | errors if last else 0), len(piece), 0)
            h = (h + 1) % n
        self._setreg(RDH, h)
        return True

    def transmit(self):
        """Every descriptor from TDH to TDT: frames out, DD written back where RS asks.
        Returns [(frame, paylen of its first descriptor)]."""
        n = self._reg(TDLEN) // 16
        base = self._reg(TDBAL) | (self._reg(TDBAH) << 32)
        h, t = self._reg(TDH), self._reg(TDT)
        out, cur, paylen = [], b"", None
        while h != t:
            d = _desc(base, h)
            addr, ctl, olinfo = TXD.unpack(bytes(d))
            assert ctl & TX_DEXT and ctl & (0xF << 20) == TX_DTYP, hex(ctl)
            if paylen is None:
                paylen = olinfo >> 14
            cur += ctypes.string_at(addr, ctl & 0xFFFF)
            if ctl & TX_EOP:
                out.append((cur, paylen))
                cur, paylen = b"", None
            if ctl & TX_RS:
                d[:] = TXD.pack(addr, ctl, olinfo | DD)
            h = (h + 1) % n
        self._setreg(TDH, h)
        return out
