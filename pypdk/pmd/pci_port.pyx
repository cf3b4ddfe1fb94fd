"""PciPort: the base of the PCI drivers' ports (net_e1000, net_virtio).

It owns what they all have: the bus device, opened from the port's name (a
PCI address) through vfio unless a test hands in a stand-in with the same
face (info, regs(bar), capabilities(), config_read(), enable_bus_master(),
disable_bus_master(), close()), and the EAL zones of its rings, named
`<prefix><port id>_<what>` and reserved on the device's NUMA node. A driver
calls `_open_bus()` first in `_dev_probe`, reserves ring memory with
`_zone(what, size)`, gives it back with `_zone_close(what)`, stops the
device's DMA in its `_dev_close` with `_bus_quiesce()`, and releases its
register windows in `_release()`; `close()` then frees the zones and the bus.
"""
from pypdk.pmd.ethdev cimport EthDev


cdef class PciPort(EthDev):
    ZONE_PREFIX = "pci"

    def __cinit__(self):
        self.zones = []

    def __init__(self, str name, dict devargs, bus=None):
        self.bus = bus
        EthDev.__init__(self, name, devargs)

    def _open_bus(self):
        """The bus device (opened through vfio when none was given) and its PciDevice info."""
        if self.bus is None:
            from pypdk.eal import vfio
            self.bus = vfio.open_device(self.name)
        self.socket_id = self.bus.info.numa_node
        return self.bus.info

    def _zone_name(self, what):
        return f"{self.ZONE_PREFIX}{self.port_id}_{what}"

    def _zone(self, what, size):
        """An EAL zone of `size` bytes on the device's node, freed at close (or _zone_close)."""
        from pypdk import eal
        z = eal.current().memzone_reserve(self._zone_name(what), size, socket_id=self.socket_id)
        self.zones.append(z)
        return z

    def _zone_close(self, what):
        name = self._zone_name(what)
        for z in list(self.zones):
            if z.name == name:
                z.close()
                self.zones.remove(z)

    def _bus_quiesce(self):
        """No more DMA from the device (bus mastering off); errors of a gone device ignored."""
        if self.bus is not None:
            try:
                self.bus.disable_bus_master()
            except Exception:
                pass

    def _release(self):
        """The driver's register windows and other handles (after the base closed the port)."""

    def close(self):
        EthDev.close(self)
        self._release()
        for z in self.zones:
            z.close()
        self.zones = []
        if self.bus is not None:
            self.bus.close()
            self.bus = None
