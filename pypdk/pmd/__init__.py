"""Ports: the ethdev layer and the poll-mode drivers.

`open("net_tap0,iface=tap0")` (the same string as `--vdev`) finds the driver
by the device name's prefix, checks the keys against the driver's table and
returns a probed port (an `EthDev`). Keyword arguments are extra keys:
`open("net_tap0", iface="tap0")`.

A driver module defines `DRIVER` (its name), `KEYS` (a tuple of
`devargs.Key`), `HELP` (one line) and `Port` (an `EthDev` subclass whose
constructor takes the device name and the resolved devargs).
"""
from __future__ import annotations

import importlib

from pypdk.errors import UsageError
from pypdk.pmd import devargs
from pypdk.pmd.ethdev import EthDev, ports, get_port, STAT_NAMES

# driver name -> module (imported on first use)
DRIVERS = {
    "net_null": "pypdk.pmd.null",
    "net_ring": "pypdk.pmd.ring_pmd",
    "net_pcap": "pypdk.pmd.pcap",
    "net_tap": "pypdk.pmd.tap",
    "net_af_packet": "pypdk.pmd.af_packet",
    "net_af_xdp": "pypdk.pmd.af_xdp",
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


def close_all():
    """Close every open port (stops them first)."""
    for p in ports():
        p.close()


__all__ = ["open", "close_all", "ports", "get_port", "EthDev", "DRIVERS", "STAT_NAMES",
           "driver_module"]
