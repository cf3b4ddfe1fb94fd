"""The vhost-user wire protocol: message numbers, feature bits, payload codecs.

A message is a 12-byte header (request u32, flags u32, size u32, host byte
order) and `size` bytes of payload; file descriptors travel beside it as
SCM_RIGHTS ancillary data. Flags: bits 0-1 the version (1), bit 2 "this is a
reply", bit 3 "the sender wants a REPLY_ACK". The payload layouts are the
spec's (QEMU's docs/interop/vhost-user.rst): a u64, a vring state
{index u32, num u32}, a vring address {index, flags, desc, used, avail, log}
or a memory table {nregions u32, padding u32, regions[nregions] of
{guest_phys_addr, memory_size, userspace_addr, mmap_offset}}.

This module is pure data: both the backend (`port.pyx`) and the test
frontends use its names; each side does its own checking.
"""
from __future__ import annotations

import struct

HDR = struct.Struct("=III")
HDR_SIZE = HDR.size                  # 12
VERSION = 0x1
FLAG_VERSION_MASK = 0x3
FLAG_REPLY = 1 << 2
FLAG_NEED_REPLY = 1 << 3
MAX_PAYLOAD = 4096                   # larger than any request we know (the memory table is 264)
MAX_FDS = 8                          # VHOST_MEMORY_MAX_NREGIONS: no request carries more

# Requests (front-end -> back-end).
GET_FEATURES = 1
SET_FEATURES = 2
SET_OWNER = 3
RESET_OWNER = 4
SET_MEM_TABLE = 5
SET_LOG_BASE = 6
SET_LOG_FD = 7
SET_VRING_NUM = 8
SET_VRING_ADDR = 9
SET_VRING_BASE = 10
GET_VRING_BASE = 11
SET_VRING_KICK = 12
SET_VRING_CALL = 13
SET_VRING_ERR = 14
GET_PROTOCOL_FEATURES = 15
SET_PROTOCOL_FEATURES = 16
GET_QUEUE_NUM = 17
SET_VRING_ENABLE = 18
SEND_RARP = 19
NET_SET_MTU = 20
SET_BACKEND_REQ_FD = 21
IOTLB_MSG = 22
SET_VRING_ENDIAN = 23
GET_CONFIG = 24
SET_CONFIG = 25

REQUEST_NAMES = {v: k for k, v in dict(globals()).items()
                 if k.isupper() and isinstance(v, int) and k.startswith(("GET_", "SET_", "RESET_",
                                                                         "SEND_", "NET_", "IOTLB"))}

# Virtio feature bits (virtio 1.x spec, 5.1.3 and 6).
VIRTIO_NET_F_CSUM = 0
VIRTIO_NET_F_GUEST_CSUM = 1
VIRTIO_NET_F_MAC = 5
VIRTIO_NET_F_GUEST_TSO4 = 7
VIRTIO_NET_F_HOST_TSO4 = 11
VIRTIO_NET_F_MRG_RXBUF = 15
VIRTIO_NET_F_STATUS = 16
VIRTIO_NET_F_CTRL_VQ = 17
VIRTIO_NET_F_MQ = 22
VIRTIO_F_NOTIFY_ON_EMPTY = 24
VHOST_F_LOG_ALL = 26
VIRTIO_RING_F_INDIRECT_DESC = 28
VIRTIO_RING_F_EVENT_IDX = 29
VHOST_USER_F_PROTOCOL_FEATURES = 30
VIRTIO_F_VERSION_1 = 32

# Protocol feature bits (GET/SET_PROTOCOL_FEATURES).
PROTOCOL_F_MQ = 0
PROTOCOL_F_LOG_SHMFD = 1
PROTOCOL_F_RARP = 2
PROTOCOL_F_REPLY_ACK = 3
PROTOCOL_F_MTU = 4
PROTOCOL_F_BACKEND_REQ = 5
PROTOCOL_F_CONFIG = 9

# SET_VRING_KICK/CALL/ERR payload: vring index in bits 0-7, bit 8 "no fd".
VRING_IDX_MASK = 0xff
VRING_NOFD_MASK = 1 << 8

MAX_REGIONS = 8
REGION = struct.Struct("=QQQQ")      # guest_phys_addr, memory_size, userspace_addr, mmap_offset
MEM_HDR = struct.Struct("=II")       # nregions, padding
U64 = struct.Struct("=Q")
VRING_STATE = struct.Struct("=II")   # index, num
VRING_ADDR = struct.Struct("=IIQQQQ")  # index, flags, desc, used, avail, log

# Virtio-net header (5.1.6): flags, gso_type, hdr_len, gso_size, csum_start,
# csum_offset, and num_buffers with VERSION_1 or MRG_RXBUF.
NET_HDR = struct.Struct("=BBHHHHH")
NET_HDR_F_NEEDS_CSUM = 1
NET_HDR_GSO_NONE = 0
NET_HDR_GSO_TCPV4 = 1


def bit(n: int) -> int:
    return 1 << n


def pack_msg(request: int, payload: bytes = b"", flags: int = VERSION) -> bytes:
    """Header + payload (size taken from the payload)."""
    return HDR.pack(request, flags, len(payload)) + payload


def pack_mem_table(regions) -> bytes:
    """regions: iterable of (guest_phys_addr, memory_size, userspace_addr, mmap_offset)."""
    regions = list(regions)
    return MEM_HDR.pack(len(regions), 0) + b"".join(REGION.pack(*r) for r in regions)


def request_name(req: int) -> str:
    return REQUEST_NAMES.get(req, f"request {req}")
