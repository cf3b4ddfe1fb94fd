"""VFIO: a PCI device's registers and DMA from user space, behind the IOMMU.

One container per process holds the IOMMU context (type 1); a device's IOMMU group joins it,
and the device fd gives its regions: the BARs (mmap where the kernel allows it, pread/pwrite
otherwise, as for I/O port BARs) and the PCI config space. DMA addresses are virtual
addresses (IOVA = VA): every EAL memzone is mapped into the container, those made after the
device was opened as well (the container watches `memzone`'s zones).

    with vfio.open_device("0000:00:04.0") as dev:     # bound to vfio-pci (pypdk-devbind)
        bar0 = dev.map_bar(0)                          # a writable memoryview over the registers
        dev.enable_bus_master()

The kernel's interface is <linux/vfio.h>; the ioctl numbers are _IO(';', 100 + n) and the
structures below are packed as that header lays them out.
"""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
import threading
import weakref
from pathlib import Path

from pypdk.errors import ResourceError, UsageError
from pypdk.eal import memzone, pci

_T, _B = ord(";"), 100


def _io(nr: int) -> int:
    return (_T << 8) | (_B + nr)


GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU = _io(0), _io(1), _io(2)
GROUP_GET_STATUS, GROUP_SET_CONTAINER, GROUP_UNSET_CONTAINER = _io(3), _io(4), _io(5)
GROUP_GET_DEVICE_FD, DEVICE_GET_INFO, DEVICE_GET_REGION_INFO = _io(6), _io(7), _io(8)
DEVICE_GET_IRQ_INFO, DEVICE_RESET = _io(9), _io(11)
IOMMU_GET_INFO, IOMMU_MAP_DMA, IOMMU_UNMAP_DMA = _io(12), _io(13), _io(14)

API_VERSION = 0
TYPE1_IOMMU, TYPE1v2_IOMMU = 1, 3
GROUP_FLAGS_VIABLE = 1
DEVICE_FLAGS_RESET, DEVICE_FLAGS_PCI = 1, 2
REGION_READ, REGION_WRITE, REGION_MMAP = 1, 2, 4
IOMMU_INFO_CAPS = 2
IOMMU_CAP_IOVA_RANGE = 1
DMA_READ, DMA_WRITE = 1, 2
PCI_CONFIG_REGION = 7
PCI_COMMAND = 0x04
PCI_COMMAND_IO, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER = 0x1, 0x2, 0x4

DEV_VFIO = Path(os.environ.get("PYPDK_DEV_VFIO", "/dev/vfio"))


def _ioctl(fd: int, req: int, fmt: str, *vals) -> tuple:
    buf = bytearray(struct.pack(fmt, *vals))
    fcntl.ioctl(fd, req, buf, True)
    return struct.unpack(fmt, buf)


class Container:
    """The process's IOMMU context: groups join it, memory is mapped into it once."""

    def __init__(self):
        path = DEV_VFIO / "vfio"
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ResourceError("no /dev/vfio/vfio: this kernel has no VFIO",
                                "load vfio-pci (modprobe vfio-pci) on a kernel with an IOMMU "
                                "(intel_iommu=on), or run in a VM with a virtual IOMMU") from None
        except PermissionError:
            raise ResourceError("cannot open /dev/vfio/vfio: permission denied", "run as root") from None
        if fcntl.ioctl(self.fd, GET_API_VERSION) != API_VERSION:
            os.close(self.fd)
            raise ResourceError("unknown VFIO API version", "use a kernel with VFIO API 0")
        if not fcntl.ioctl(self.fd, CHECK_EXTENSION, TYPE1v2_IOMMU):
            os.close(self.fd)
            raise ResourceError("the IOMMU does not support VFIO type 1 v2",
                                "boot with intel_iommu=on (or amd_iommu=on) iommu=pt")
        self.groups: dict[int, int] = {}
        self.iommu_set = False
        self.iova_ranges: list[tuple[int, int]] = []
        self.mapped: dict[int, int] = {}           # vaddr -> size
        self.lock = threading.Lock()

    def add_group(self, group: int, bdf: str) -> int:
        if group in self.groups:
            return self.groups[group]
        path = DEV_VFIO / str(group)
        try:
            gfd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ResourceError(f"{bdf}: no {path} (IOMMU group {group})",
                                f"bind the device to vfio-pci: pypdk-devbind --bind vfio-pci {bdf}") from None
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise ResourceError(f"{bdf}: IOMMU group {group} is in use by another process",
                                    "stop the other user of the device") from None
            raise
        _, flags = _ioctl(gfd, GROUP_GET_STATUS, "II", 8, 0)
        if not flags & GROUP_FLAGS_VIABLE:
            others = [d for d in pci.device(bdf).group_devices()
                      if d != bdf and pci.device(d).driver not in (None, "vfio-pci")]
            os.close(gfd)
            raise ResourceError(f"{bdf}: IOMMU group {group} is not viable: "
                                f"{', '.join(others) or 'another device'} still bound to a kernel driver",
                                "bind every device of the group to vfio-pci (pypdk-devbind --status shows the groups)")
        fcntl.ioctl(gfd, GROUP_SET_CONTAINER, struct.pack("i", self.fd))
        if not self.iommu_set:
            fcntl.ioctl(self.fd, SET_IOMMU, TYPE1v2_IOMMU)
            self.iommu_set = True
            self.iova_ranges = self._iova_ranges()
        self.groups[group] = gfd
        return gfd

    def _iova_ranges(self) -> list[tuple[int, int]]:
        """The IOVA windows the IOMMU can translate (from the info capability chain)."""
        size = 4096
        buf = bytearray(size)
        struct.pack_into("II", buf, 0, size, 0)
        fcntl.ioctl(self.fd, IOMMU_GET_INFO, buf, True)
        _, flags, _pgsizes, cap_off = struct.unpack_from("IIQI", buf, 0)
        ranges = []
        while flags & IOMMU_INFO_CAPS and cap_off:
            cid, _ver, nxt = struct.unpack_from("HHI", buf, cap_off)
            if cid == IOMMU_CAP_IOVA_RANGE:
                n, = struct.unpack_from("I", buf, cap_off + 8)
                for i in range(n):
                    ranges.append(struct.unpack_from("QQ", buf, cap_off + 16 + 16 * i))
            cap_off = nxt
        return ranges or [(0, (1 << 64) - 1)]

    def _check_width(self, vaddr: int, size: int) -> None:
        end = vaddr + size - 1
        if not any(lo <= vaddr and end <= hi for lo, hi in self.iova_ranges):
            top = max(hi for _, hi in self.iova_ranges)
            raise ResourceError(
                f"the IOMMU translates addresses up to {top:#x} ({top.bit_length()} bits), "
                f"but memory at {vaddr:#x} must be reached (IOVA = VA)",
                "give the IOMMU 48 address bits (QEMU: -device intel-iommu,aw-bits=48)")

    def map(self, vaddr: int, size: int) -> None:
        """Map [vaddr, vaddr+size) for device reads and writes at IOVA = vaddr (idempotent)."""
        with self.lock:
            if self.mapped.get(vaddr) == size or not self.iommu_set:
                return
            self._check_width(vaddr, size)
            try:
                fcntl.ioctl(self.fd, IOMMU_MAP_DMA,
                            struct.pack("IIQQQ", 32, DMA_READ | DMA_WRITE, vaddr, vaddr, size))
            except OSError as e:
                raise ResourceError(f"VFIO DMA map of {size} bytes at {vaddr:#x} failed: {e.strerror}",
                                    "raise the locked-memory limit (ulimit -l unlimited) or check dmesg") from None
            self.mapped[vaddr] = size

    def unmap(self, vaddr: int) -> None:
        with self.lock:
            size = self.mapped.pop(vaddr, None)
            if size is None:
                return
            try:
                fcntl.ioctl(self.fd, IOMMU_UNMAP_DMA, struct.pack("IIQQ", 24, 0, vaddr, size))
            except OSError:
                pass

    def close(self) -> None:
        for vaddr in list(self.mapped):
            self.unmap(vaddr)
        for gfd in self.groups.values():
            try:
                fcntl.ioctl(gfd, GROUP_UNSET_CONTAINER)
            except OSError:
                pass
            os.close(gfd)
        self.groups.clear()
        os.close(self.fd)
        self.fd = -1


_container: Container | None = None
_devices: "weakref.WeakSet[Device]" = weakref.WeakSet()


class _ZoneMapper:
    """Keeps the container's DMA maps equal to the EAL's memzones."""

    def zone_created(self, vaddr: int, length: int) -> None:
        if _container is not None:
            _container.map(vaddr, length)

    def zone_freed(self, vaddr: int) -> None:
        if _container is not None:
            _container.unmap(vaddr)


_mapper = _ZoneMapper()


def dma_mapped() -> dict[int, int]:
    """What the container maps now (vaddr -> size); empty without devices."""
    return dict(_container.mapped) if _container is not None else {}


class Region:
    __slots__ = ("index", "flags", "size", "offset")

    def __init__(self, index, flags, size, offset):
        self.index, self.flags, self.size, self.offset = index, flags, size, offset


class Device:
    """One vfio-pci device: its regions, config space and reset."""

    def __init__(self, bdf: str):
        global _container
        self.bdf = pci.parse_bdf(bdf)
        info = pci.device(self.bdf)
        self.info = info
        if info.driver != "vfio-pci":
            raise ResourceError(f"{self.bdf} is bound to {info.driver or 'no driver'}, not vfio-pci",
                                f"pypdk-devbind --bind vfio-pci {self.bdf}")
        if info.iommu_group is None:
            raise ResourceError(f"{self.bdf} has no IOMMU group",
                                "enable the IOMMU (intel_iommu=on; in QEMU -device intel-iommu)")
        if _container is None:
            _container = Container()
        self.container = _container
        gfd = self.container.add_group(info.iommu_group, self.bdf)
        self.fd = fcntl.ioctl(gfd, GROUP_GET_DEVICE_FD, bytearray(self.bdf.encode() + b"\0"), True)
        _, self.flags, nreg, self.num_irqs = _ioctl(self.fd, DEVICE_GET_INFO, "IIII", 16, 0, 0, 0)
        self.regions: dict[int, Region] = {}
        for i in range(min(nreg, PCI_CONFIG_REGION + 1)):
            try:
                _, fl, idx, _cap, size, off = _ioctl(self.fd, DEVICE_GET_REGION_INFO, "IIIIQQ",
                                                      32, 0, i, 0, 0, 0)
            except OSError:
                continue
            self.regions[i] = Region(idx, fl, size, off)
        self.maps: list[mmap.mmap] = []
        _devices.add(self)
        memzone.watch_zones(_mapper)        # every zone now, and those made later

    # -- config space
    def config_read(self, off: int, size: int) -> int:
        data = os.pread(self.fd, size, self.regions[PCI_CONFIG_REGION].offset + off)
        return int.from_bytes(data, "little")

    def config_write(self, off: int, size: int, value: int) -> None:
        os.pwrite(self.fd, value.to_bytes(size, "little"), self.regions[PCI_CONFIG_REGION].offset + off)

    @property
    def vendor_id(self) -> int:
        return self.config_read(0, 2)

    @property
    def device_id(self) -> int:
        return self.config_read(2, 2)

    def enable_bus_master(self) -> None:
        cmd = self.config_read(PCI_COMMAND, 2)
        self.config_write(PCI_COMMAND, 2, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER)

    def disable_bus_master(self) -> None:
        cmd = self.config_read(PCI_COMMAND, 2)
        self.config_write(PCI_COMMAND, 2, cmd & ~PCI_COMMAND_MASTER)

    def capabilities(self) -> list[tuple[int, int]]:
        """The PCI capability list: (id, offset) pairs, bounded by config space."""
        if not self.config_read(0x06, 2) & 0x10:
            return []
        caps, off, seen = [], self.config_read(0x34, 1) & ~3, set()
        while off and off < 256 and off not in seen:
            seen.add(off)
            caps.append((self.config_read(off, 1), off))
            off = self.config_read(off + 1, 1) & ~3
        return caps

    # -- BARs
    def bar(self, index: int) -> Region:
        r = self.regions.get(index)
        if r is None or r.size == 0:
            raise ResourceError(f"{self.bdf} has no BAR{index}", "check the device's id (pypdk-devbind --status)")
        return r

    def map_bar(self, index: int, min_size: int = 0) -> memoryview | None:
        """The BAR mapped read-write (a memoryview), or None when it cannot be mapped
        (use bar_read/bar_write). ResourceError when it is smaller than min_size."""
        r = self.bar(index)
        if r.size < min_size:
            raise ResourceError(f"{self.bdf}: BAR{index} is {r.size} bytes, the driver needs {min_size}",
                                "check the device model")
        if not r.flags & REGION_MMAP:
            return None
        m = mmap.mmap(self.fd, r.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=r.offset)
        self.maps.append(m)
        return memoryview(m)

    def regs(self, index: int, min_size: int = 0):
        """The BAR as a register window: an `Mmio` (with `addr` for burst functions)
        when it can be mapped, else a `RegionIo` (pread/pwrite, slow path only)."""
        view = self.map_bar(index, min_size)
        if view is None:
            return RegionIo(self, index)
        from pypdk.eal.mmio import Mmio
        return Mmio(view)

    def bar_read(self, index: int, off: int, size: int = 4) -> int:
        r = self.bar(index)
        return int.from_bytes(os.pread(self.fd, size, r.offset + off), "little")

    def bar_write(self, index: int, off: int, value: int, size: int = 4) -> None:
        r = self.bar(index)
        os.pwrite(self.fd, value.to_bytes(size, "little"), r.offset + off)

    def reset(self) -> bool:
        """A function-level reset when the device supports one; False otherwise."""
        if not self.flags & DEVICE_FLAGS_RESET:
            return False
        try:
            fcntl.ioctl(self.fd, DEVICE_RESET)
        except OSError:
            return False
        return True

    def close(self) -> None:
        global _container
        if self.fd < 0:
            return
        for m in self.maps:
            try:
                m.close()
            except BufferError:        # a view still exported: the mapping goes with it
                pass
        self.maps.clear()
        os.close(self.fd)
        self.fd = -1
        _devices.discard(self)
        if not any(d.fd >= 0 for d in _devices) and _container is not None:
            memzone.unwatch_zones(_mapper)
            _container.close()
            _container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RegionIo:
    """A region that cannot be mapped (an I/O port BAR): read32/write32 by pread/pwrite."""

    addr = None

    def __init__(self, dev: Device, index: int):
        self.dev, self.index = dev, index
        self.size = dev.bar(index).size

    def read32(self, off: int) -> int:
        return self.dev.bar_read(self.index, off, 4)

    def write32(self, off: int, value: int) -> None:
        self.dev.bar_write(self.index, off, value, 4)

    def close(self) -> None:
        pass


def open_device(bdf: str) -> Device:
    return Device(bdf)


def check_allow(bdf: str) -> str:
    """-a/--allow: a well-formed address of a device that exists (UsageError/ResourceError)."""
    b = pci.parse_bdf(bdf)
    pci.device(b)
    return b


__all__ = ["Container", "Device", "open_device", "dma_mapped", "check_allow"]
