"""MAC addresses as people write them and as headers hold them.

A MAC address is 6 bytes in a header and `xx:xx:xx:xx:xx:xx` (two hex
digits per byte, lower case when printed) everywhere a person reads or
writes one: options, config files, control requests, stats. These are the
one spelling and the one parser of the tree.
"""
from __future__ import annotations

from pypdk.errors import UsageError


def mac_str(mac) -> str:
    """6 bytes as "02:00:00:00:01:03"."""
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(value, what: str = "mac") -> bytes:
    """A MAC address as 6 bytes.

    Args:
        value: text like "02:00:00:00:01:03", or 6 bytes (returned as they are).
        what: the name of the value, for the error.
    Returns:
        bytes: the 6 address bytes, in header order.
    Raises:
        UsageError: value is not a MAC address.
    """
    if isinstance(value, (bytes, bytearray)) and len(value) == 6:
        return bytes(value)
    parts = str(value).split(":")
    try:
        if len(parts) != 6 or not all(len(p) == 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a MAC address",
                         "write it as xx:xx:xx:xx:xx:xx, e.g. 02:00:00:00:01:03") from None
