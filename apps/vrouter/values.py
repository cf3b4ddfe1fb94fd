"""The vRouter's value parsers: what a user writes, checked and converted.

Every control operation (`vrouter.VRouter`), the startup file (`config.py`)
and the tools take values as the user spells them ("10.1.2.0/24",
"02:00:00:00:01:03", "mplsoudp", "5000-5010"). These functions are the one
place they are read: each returns the value in the form the model keeps, or
raises `pypdk.errors.UsageError` whose problem names the value (`what`, the
field's name) and whose fix shows how to write it. No parser has a side
effect, so an operation can check all its arguments before it applies any.
"""
from __future__ import annotations

import ipaddress
import struct

from pypdk.errors import UsageError
from pypdk.net.addr import mac_str, parse_mac  # noqa: F401 (MACs: pypdk.net.addr)


def parse_ip4(value, what="ip") -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise UsageError(f"{what} {value!r} is not an IPv4 address", "write it as 192.168.50.2") from None


def parse_ip6(value, what="ip6") -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(str(value))
    except ValueError:
        raise UsageError(f"{what} {value!r} is not an IPv6 address", "write it as fd00::3") from None


def parse_prefix(value, what="prefix"):
    """An IPv4 or IPv6 network with its host bits zero (an ipaddress network)."""
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError as e:
        raise UsageError(f"{what} {value!r} is not a prefix ({e})",
                         "write it as 10.1.2.0/24 or fd00:2::/64 with the host bits zero") from None


def be32(ip4: ipaddress.IPv4Address) -> int:
    """The address as the native-order int whose memory is the network-order bytes."""
    return struct.unpack("=I", ip4.packed)[0]


def check_int(value, lo, hi, what):
    """An int (not a bool) in lo..hi, returned unchanged."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{what} {value!r} is not an integer in {lo}..{hi}", f"give {what} in {lo}..{hi}")
    return value


def check_bool(value, what):
    if not isinstance(value, bool):
        raise UsageError(f"{what} {value!r} is not true or false", f"write {what} = true")
    return value


def parse_ports(value, what):
    """An L4 port (5001) or range ("5000-5010") as (lo, hi); None is every port."""
    if value is None:
        return (0, 65535)
    if isinstance(value, int) and not isinstance(value, bool):
        check_int(value, 0, 65535, what)
        return (value, value)
    text = str(value)
    lo, sep, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi if sep else lo)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a port or a range", 'write 5001 or "5000-5010"') from None
    if not (0 <= a <= b <= 65535):
        raise UsageError(f"{what} {value!r} is not a port range in 0..65535", 'write 5001 or "5000-5010"')
    return (a, b)


def choice(value, table, what):
    """table[value] for a name of table (a dict), else a UsageError listing the names."""
    if value not in table:
        raise UsageError(f"{what} {value!r} is unknown", f"use one of: {', '.join(table)}")
    return table[value]
