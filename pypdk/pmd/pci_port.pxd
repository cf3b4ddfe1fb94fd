# The part every PCI driver's port shares: its bus device and the EAL zones
# that hold its rings (see pci_port.pyx).

from pypdk.pmd.ethdev cimport EthDev

cdef class PciPort(EthDev):
    cdef object bus             # a vfio.Device, or a test's stand-in with the same face
    cdef list zones             # EAL memzones the driver reserved (rings, tables)
