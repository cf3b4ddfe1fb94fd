"""Linux interface control for the drivers on a kernel interface (tap, af_packet, af_xdp).

Slow path only: each call is an ioctl on a datagram socket (`struct ifreq`,
<linux/if.h>, <linux/sockios.h>) or a read of /sys/class/net/IFACE, made
when a port is probed, started, stopped or asked for its link. The caller
owns the control socket (`control_socket()`): a socket keeps the network
namespace it was made in, so a driver whose interface lives in another
namespace (a tap moved with `ip link set ... netns`) passes a socket made
there; sysfs shows only the caller's own namespace (`in_this_netns=False`
makes `link()` use the ioctl flags alone).

`link()` returns the dict every port's `link` has (`ethdev.LINK_KEYS`):
`up` (administratively up and running, i.e. IFF_UP and IFF_RUNNING),
`speed_mbps` (sysfs `speed`; virtual interfaces have none), `duplex`,
`operstate` (RFC 2863, sysfs `operstate`), `admin_up` (IFF_UP).
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct

IFNAMSIZ = 16                   # <net/if.h>, with the NUL
# <linux/sockios.h>: stable ABI numbers
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
SIOCGIFHWADDR = 0x8927
# <linux/if.h> interface flags
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_PROMISC = 0x100
# <linux/if_arp.h> hardware types with Ethernet framing
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772

# struct ifreq (40 bytes): the name, then the union as each request reads it
_IFR_FLAGS = "16sH22x"          # ifr_flags (short)
_IFR_INT = "16si20x"            # ifr_mtu (int)
_IFR_HWADDR = "16sH6s16x"       # ifr_hwaddr (struct sockaddr: family, data)


def valid_name(iface: str) -> bool:
    """Whether `iface` can name an interface (1..15 bytes, no '/', ':', '%', space)."""
    return (isinstance(iface, str) and 1 <= len(iface.encode()) < IFNAMSIZ
            and not any(c in iface for c in "/ :%") and iface not in (".", ".."))


def control_socket() -> socket.socket:
    """A socket for the interface ioctls, in the caller's network namespace."""
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)


def ifreq(sock, req: int, iface: str, fmt: str, *values) -> tuple:
    """One SIOC[GS]IF* ioctl: struct ifreq packed with `fmt` (name first); the
    unpacked reply. Raises OSError as the kernel says."""
    ifr = struct.pack(fmt, iface.encode(), *values)
    return struct.unpack(fmt, fcntl.ioctl(sock, req, ifr))


def get_flags(sock, iface: str) -> int:
    """The interface's flags (IFF_UP, IFF_RUNNING, ...)."""
    return ifreq(sock, SIOCGIFFLAGS, iface, _IFR_FLAGS, 0)[1] & 0xffff


def set_up(sock, iface: str, up: bool) -> bool:
    """Bring the interface up or down; whether that changed anything."""
    flags = get_flags(sock, iface)
    new = (flags | IFF_UP) if up else (flags & ~IFF_UP)
    if new == flags:
        return False
    ifreq(sock, SIOCSIFFLAGS, iface, _IFR_FLAGS, new)
    return True


def is_up(sock, iface: str) -> bool:
    """Whether the interface is administratively up (IFF_UP)."""
    return bool(get_flags(sock, iface) & IFF_UP)


def get_mtu(sock, iface: str) -> int:
    return ifreq(sock, SIOCGIFMTU, iface, _IFR_INT, 0)[1]


def set_mtu(sock, iface: str, mtu: int) -> None:
    """Set the MTU; OSError (EINVAL: out of the device's range) as the kernel says."""
    ifreq(sock, SIOCSIFMTU, iface, _IFR_INT, mtu)


def hwaddr(sock, iface: str) -> tuple[int, bytes]:
    """(hardware type, MAC): ARPHRD_ETHER (1) and 6 bytes for an Ethernet interface."""
    r = ifreq(sock, SIOCGIFHWADDR, iface, _IFR_HWADDR, 0, b"")
    return r[1], r[2]


def ifindex(iface: str) -> int:
    """The interface's index in the caller's namespace, 0 when there is none."""
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        return 0


def sysfs(iface: str, leaf: str, default=None):
    """/sys/class/net/IFACE/LEAF stripped, or `default` when it cannot be read."""
    try:
        with open(f"/sys/class/net/{iface}/{leaf}") as f:
            return f.read().strip()
    except OSError:
        return default


def exists(iface: str) -> bool:
    """Whether the interface exists in the caller's namespace."""
    return os.path.exists(f"/sys/class/net/{iface}")


def queue_count(iface: str, kind: str = "rx") -> int | None:
    """The interface's rx (or tx) queues per sysfs, None when sysfs cannot tell."""
    try:
        return sum(1 for e in os.listdir(f"/sys/class/net/{iface}/queues")
                   if e.startswith(f"{kind}-"))
    except OSError:
        return None


def numa_node(iface: str) -> int:
    """The NUMA node of the interface's device (sysfs device/numa_node); -1
    when it has none (virtual interfaces) or the machine has one node."""
    try:
        return max(int(sysfs(iface, "device/numa_node", "-1")), -1)
    except ValueError:
        return -1


def veth_peer(iface: str) -> str | None:
    """The other end of a veth in the caller's namespace (each end's sysfs
    `iflink` is the other's `ifindex`); None when `iface` is not a veth or its
    peer lives in another namespace."""
    own, link_ = sysfs(iface, "ifindex"), sysfs(iface, "iflink")
    if own is None or link_ is None or link_ == own:
        return None
    try:
        peer = socket.if_indextoname(int(link_))
    except (OSError, ValueError):
        return None
    return peer if sysfs(peer, "iflink") == own else None


def link(sock, iface: str, *, in_this_netns: bool = True, speed_mbps: int = 0) -> dict:
    """The link dict of `iface` (the keys of ethdev.LINK_KEYS).

    Args:
        sock: a control socket in the interface's namespace.
        in_this_netns: False when the interface lives in another namespace:
            sysfs cannot be read, the ioctl flags stand for operstate.
        speed_mbps: what to report when sysfs has no speed (virtual devices).
    Returns:
        {'up', 'speed_mbps', 'duplex', 'operstate', 'admin_up'}; an interface
        that went away is down with operstate 'gone'.
    """
    try:
        flags = get_flags(sock, iface)
    except OSError:
        return {"up": False, "speed_mbps": 0, "duplex": "unknown", "operstate": "gone",
                "admin_up": False}
    attrs = {k: sysfs(iface, k) if in_this_netns else None
             for k in ("operstate", "speed", "duplex")}
    try:
        speed = int(attrs["speed"])
    except (TypeError, ValueError):
        speed = -1
    if speed <= 0:
        speed = speed_mbps
    return {"up": bool(flags & IFF_UP) and bool(flags & IFF_RUNNING),
            "speed_mbps": speed, "duplex": attrs["duplex"] or "full",
            "operstate": attrs["operstate"] or ("up" if flags & IFF_RUNNING else "down"),
            "admin_up": bool(flags & IFF_UP)}
