"""Ports: the ethdev layer and the poll-mode drivers.

`open("net_tap0,iface=tap0")` (the same string as `--vdev`) finds the driver
by the device name's prefix, checks the keys against the driver's table and
returns a probed port (an `EthDev`). Keyword arguments are extra keys:
`open("net_tap0", iface="tap0")`.

A driver module defines `DRIVER` (its name), `KEYS` (a tuple of
`devargs.Key`), `HELP` (one line) and `Port` (an `EthDev` subclass whose
constructor takes the device name and the resolved devargs; what it
provides and in what order the base calls it is the template at the top of
ethdev.pxd). `netdev` holds the Linux interface control shared by the
drivers on a kernel interface.
"""
from __future__ import annotations

import importlib

from pypdk.errors import UsageError
from pypdk.pmd import devargs
from pypdk.pmd.ethdev import EthDev, ports, get_port, mac_str, STAT_NAMES, LINK_KEYS, INFO_KEYS

# driver name -> module (imported on first use)
DRIVERS = {
    "net_null": "pypdk.pmd.null",
    "net_ring": "pypdk.pmd.ring_pmd",
    "net_pcap": "pypdk.pmd.pcap",
    "net_tap": "pypdk.pmd.tap",
    "net_af_packet": "pypdk.pmd.af_packet",
    "net_af_xdp": "pypdk.pmd.af_xdp",
    "net_vhost": "pypdk.pmd.vhost",
}


def driver_module(driver: str):
    """The module of a driver name (UsageError naming the known ones)."""
    mod = DRIVERS.get(driver)
    if mod is None:
        raise UsageError(f"unknown driver {driver!r}",
                         f"known drivers: {', '.join(sorted(DRIVERS))}")
    try:
        return importlib.import_module(mod)
    except ModuleNotFoundError as e:
        raise UsageError(f"driver {driver!r} is not available in this build ({e.name})",
                         "rebuild pypdk (pip install -e .)") from None


def open(spec: str, **keys) -> EthDev:
    """Probe a device from a --vdev string plus keyword keys; returns the port.

    Raises UsageError for a bad name, an unknown or bad key; ResourceError when
    the device cannot be reached (missing interface, no permission).
    """
    name, driver, raw = devargs.split_spec(spec)
    for k, v in keys.items():
        if k in raw:
            raise UsageError(f"{name}: key {k!r} given twice", "give each key once")
        raw[k] = v
    mod = driver_module(driver)
    args = devargs.resolve(name, mod.KEYS, raw)
    return mod.Port(name, args)


# PCI drivers, opened by address (`-a/--allow BDF`) and chosen by vendor/device id
# (each module's PCI_IDS).
PCI_DRIVERS = ("pypdk.pmd.e1000", "pypdk.pmd.virtio", "pypdk.pmd.igbvf")


def pci_driver(vendor: int, device: int):
    """The driver module for a PCI id, or None."""
    for name in PCI_DRIVERS:
        mod = importlib.import_module(name)
        if (vendor, device) in mod.PCI_IDS:
            return mod
    return None


def open_pci(bdf: str, bus=None, **keys) -> EthDev:
    """Probe a PCI device bound to vfio-pci (`bus`: a stand-in device, for tests)."""
    from pypdk.eal import pci
    bdf = pci.parse_bdf(bdf)
    info = bus.info if bus is not None else pci.device(bdf)
    mod = pci_driver(info.vendor, info.device)
    if mod is None:
        known = ", ".join(f"{v:04x}:{d:04x}" for name in PCI_DRIVERS
                          for v, d in importlib.import_module(name).PCI_IDS)
        raise UsageError(f"{bdf}: no driver for PCI device {info.vendor:04x}:{info.device:04x}",
                         f"pypdk drives {known}")
    args = devargs.resolve(bdf, mod.KEYS, {k: str(v) for k, v in keys.items()})
    return mod.Port(bdf, args, bus=bus)


def close_all():
    """Close every open port (stops them first)."""
    for p in ports():
        p.close()


__all__ = ["open", "open_pci", "pci_driver", "close_all", "ports", "get_port", "EthDev", "DRIVERS", "STAT_NAMES",
           "LINK_KEYS", "INFO_KEYS", "mac_str", "driver_module"]
