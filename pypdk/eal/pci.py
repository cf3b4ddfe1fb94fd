"""PCI devices as Linux shows them in sysfs: addresses, ids, drivers, IOMMU groups, NUMA nodes,
and binding a device to a driver (what `pypdk-devbind` does).

    dev = pci.device("0000:00:04.0")      # UsageError for a bad address, ResourceError if absent
    dev.vendor, dev.device, dev.driver, dev.iommu_group, dev.numa_node
    pci.bind(dev.bdf, "vfio-pci")         # unbinds the kernel driver, binds through driver_override
    pci.bind(dev.bdf, None)               # back to the kernel's own driver
    pci.set_num_vfs("0000:00:04.0", 2)    # an SR-IOV PF's VFs (dev.virtfns lists them)

The root is /sys/bus/pci (PYPDK_SYSFS_PCI, or `pci.SYSFS`, points it at a fake tree for tests).
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
from pathlib import Path

from pypdk.errors import ResourceError, UsageError

SYSFS = Path(os.environ.get("PYPDK_SYSFS_PCI", "/sys/bus/pci"))
_BDF = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$")
CLASS_NETWORK = 0x02


def parse_bdf(text: str) -> str:
    """`0000:00:04.0` or `00:04.0` -> the full, lower-case form. UsageError otherwise."""
    m = _BDF.match(str(text).strip())
    if not m:
        raise UsageError(f"'{text}' is not a PCI address",
                         "give domain:bus:device.function, e.g. 0000:00:04.0 (see pypdk-devbind --status)")
    dom, bus, dev, fn = m.groups()
    return f"{(dom or '0000').lower()}:{bus.lower()}:{dev.lower()}.{fn}"


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _int(path: Path) -> int:
    text = _read(path, "0")
    return int(text) if text.isdigit() else 0


@dataclasses.dataclass
class PciDevice:
    bdf: str
    vendor: int
    device: int
    class_code: int          # 24 bits: class, subclass, prog-if
    driver: str | None       # the bound driver's name, None when unbound
    iommu_group: int | None
    numa_node: int           # -1 when the platform does not say
    net: list                # kernel network interfaces (when a kernel driver has it)
    physfn: str | None       # an SR-IOV VF's PF
    virtfns: list            # an SR-IOV PF's VFs, in VF order (virtfn0, virtfn1, ...)
    sriov_totalvfs: int = 0  # the VFs an SR-IOV PF can have (0: not a PF)
    sriov_numvfs: int = 0    # the VFs it has now

    @property
    def path(self) -> Path:
        return SYSFS / "devices" / self.bdf

    @property
    def is_network(self) -> bool:
        return self.class_code >> 16 == CLASS_NETWORK

    def group_devices(self) -> list[str]:
        """Every device in this device's IOMMU group (itself included)."""
        if self.iommu_group is None:
            return [self.bdf]
        return sorted(p.name for p in (self.path / "iommu_group" / "devices").iterdir())


def device(bdf: str) -> PciDevice:
    bdf = parse_bdf(bdf)
    path = SYSFS / "devices" / bdf
    if not path.exists():
        raise ResourceError(f"no PCI device {bdf}", "list the devices with pypdk-devbind --status")
    drv = path / "driver"
    group = path / "iommu_group"
    numa = _read(path / "numa_node", "-1")
    virtfns = sorted((p for p in path.glob("virtfn*")), key=lambda p: int(p.name[6:]))
    return PciDevice(
        bdf=bdf,
        vendor=int(_read(path / "vendor", "0"), 16),
        device=int(_read(path / "device", "0"), 16),
        class_code=int(_read(path / "class", "0"), 16),
        driver=os.path.basename(os.readlink(drv)) if drv.exists() else None,
        iommu_group=int(os.path.basename(os.readlink(group))) if group.exists() else None,
        numa_node=int(numa) if numa.lstrip("-").isdigit() else -1,
        net=sorted(p.name for p in (path / "net").glob("*")) if (path / "net").exists() else [],
        physfn=os.path.basename(os.readlink(path / "physfn")) if (path / "physfn").exists() else None,
        virtfns=[os.path.basename(os.readlink(p)) for p in virtfns],
        sriov_totalvfs=_int(path / "sriov_totalvfs"),
        sriov_numvfs=_int(path / "sriov_numvfs"),
    )


def devices(network_only: bool = False) -> list[PciDevice]:
    root = SYSFS / "devices"
    if not root.exists():
        return []
    found = [device(p.name) for p in sorted(root.iterdir())]
    return [d for d in found if d.is_network] if network_only else found


def _write_raw(path: Path, value: str) -> None:
    """One sysfs write (the kernel acts on it; the tests' fake sysfs replaces this)."""
    with open(path, "w") as f:
        f.write(value)


def _write(path: Path, value: str) -> None:
    try:
        _write_raw(path, value)
    except PermissionError:
        raise ResourceError(f"cannot write {path}: permission denied", "run as root") from None
    except OSError as e:
        raise ResourceError(f"cannot write '{value}' to {path}: {e.strerror}",
                            "check the device and driver names (pypdk-devbind --status)") from None


def unbind(bdf: str) -> None:
    """Detach the device from its driver (nothing to do when it has none)."""
    dev = device(bdf)
    if dev.driver:
        _write(dev.path / "driver" / "unbind", dev.bdf)


def bind(bdf: str, driver: str | None) -> PciDevice:
    """Bind the device to `driver` (e.g. "vfio-pci"), or back to the kernel's own driver
    when `driver` is None. Loads the driver's module when it is not loaded."""
    dev = device(bdf)
    if driver is not None and dev.driver == driver:
        return dev
    if driver is not None and not (SYSFS / "drivers" / driver).exists():
        subprocess.run(["modprobe", driver.replace("-", "_")], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if not (SYSFS / "drivers" / driver).exists():
            raise ResourceError(f"the kernel has no '{driver}' driver",
                                f"load it (modprobe {driver}) or use a kernel that has it")
    unbind(dev.bdf)
    _write(dev.path / "driver_override", driver or "\n")
    _write(SYSFS / "drivers_probe", dev.bdf)
    for _ in range(50):
        now = device(dev.bdf)
        if driver is None or now.driver == driver:
            break
        time.sleep(0.02)
    if driver is not None and now.driver != driver:
        raise ResourceError(f"{dev.bdf} did not bind to {driver} (driver: {now.driver or 'none'})",
                            "see dmesg for the driver's reason")
    return now


def set_num_vfs(bdf: str, count: int) -> PciDevice:
    """Give an SR-IOV PF `count` VFs (0 removes them). The kernel refuses to change a nonzero
    count to another: 0 is written first then. The PF's driver creates them, so the PF must
    be bound to its kernel driver; whether they get a driver depends on its
    sriov_drivers_autoprobe."""
    dev = device(bdf)
    if dev.physfn:
        raise UsageError(f"{dev.bdf} is a VF (of {dev.physfn}), not an SR-IOV physical function",
                         f"give its PF: pypdk-devbind --sriov-numvfs {dev.physfn} {count}")
    if not (dev.path / "sriov_totalvfs").exists():
        raise UsageError(f"{dev.bdf} is not an SR-IOV physical function (no sriov_totalvfs)",
                         "give a PF's address (pypdk-devbind --status lists PFs with their VFs)")
    if not 0 <= count <= dev.sriov_totalvfs:
        raise UsageError(f"{dev.bdf} can have at most {dev.sriov_totalvfs} VFs (sriov_totalvfs), "
                         f"not {count}", f"ask for 0 to {dev.sriov_totalvfs}")
    if dev.sriov_numvfs == count:
        return dev
    if not dev.driver:
        raise ResourceError(f"{dev.bdf} has no driver, and a PF's driver creates its VFs",
                            f"bind it to its kernel driver: pypdk-devbind --bind kernel {dev.bdf}")
    numvfs = dev.path / "sriov_numvfs"
    try:
        if dev.sriov_numvfs:
            _write_raw(numvfs, "0")
        if count:
            _write_raw(numvfs, str(count))
    except PermissionError:
        raise ResourceError(f"cannot write {numvfs}: permission denied", "run as root") from None
    except OSError as e:
        raise ResourceError(f"{dev.driver} did not create {count} VFs on {dev.bdf}: {e.strerror}",
                            "see dmesg for the driver's reason (a PF driver without SR-IOV "
                            "support, or VFs still in use)") from None
    for _ in range(100):
        now = device(dev.bdf)
        if len(now.virtfns) == count:
            return now
        time.sleep(0.02)
    raise ResourceError(f"{dev.bdf} has {len(now.virtfns)} VFs after asking for {count}",
                        "see dmesg for the driver's reason")


def numa_node_of_netdev(ifname: str) -> int:
    """A Linux interface's NUMA node (-1 when unknown or not a PCI device)."""
    node = _read(Path("/sys/class/net") / ifname / "device" / "numa_node", "-1")
    return int(node) if node.lstrip("-").isdigit() else -1
