"""Device arguments: `--vdev net_tap0,iface=tap0,queues=2` parsed and checked.

Each driver keeps a table of `Key`s at its top (name, type, default, help,
required). `parse()` splits a spec into the device name, the driver name and
the raw key=value pairs; `resolve()` checks them against the driver's table,
converts the types and fills in defaults. Every error names the device, the
key and what would be accepted, in one line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from pypdk.errors import UsageError

_NAME = re.compile(r"^(net_[a-z_]+?)(\d+)$")


@dataclass(frozen=True)
class Key:
    """One device argument a driver accepts."""
    name: str
    type: Callable[[str], Any] | type = str
    default: Any = None
    help: str = ""
    required: bool = False
    choices: tuple = ()


def parse_bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("1", "y", "yes", "true", "on"):
        return True
    if t in ("0", "n", "no", "false", "off"):
        return False
    raise ValueError(f"{text!r} is not 0/1")


def parse_size(text: str) -> int:
    """An integer, with an optional K/M/G suffix (powers of 1024)."""
    t = str(text).strip().upper()
    mult = 1
    if t and t[-1] in "KMG":
        mult = 1024 ** ("KMG".index(t[-1]) + 1)
        t = t[:-1]
    return int(t, 0) * mult


def split_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """'net_tap0,iface=tap0' -> ('net_tap0', 'net_tap', {'iface': 'tap0'})."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("empty --vdev", "give a device such as net_null0 or net_tap0,iface=tap0")
    parts = [p.strip() for p in spec.split(",")]
    name = parts[0]
    m = _NAME.match(name)
    if not m:
        raise UsageError(f"--vdev {spec!r}: {name!r} is not a device name",
                         "name it driver + number, e.g. net_tap0, net_pcap1, net_af_xdp0")
    raw: dict[str, str] = {}
    for p in parts[1:]:
        if not p:
            continue
        key, eq, value = p.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--vdev {spec!r}: {p!r} is not key=value",
                             f"write it as {name},key=value")
        if key in raw:
            raise UsageError(f"--vdev {spec!r}: key {key!r} is given twice", "give each key once")
        raw[key] = value.strip()
    return name, m.group(1), raw


def resolve(name: str, keys: tuple[Key, ...], raw: dict[str, Any]) -> dict[str, Any]:
    """Check raw values against a driver's key table; typed values with defaults filled."""
    table = {k.name: k for k in keys}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        k = table.get(key)
        if k is None:
            valid = ", ".join(sorted(table)) or "none"
            raise UsageError(f"{name}: unknown key {key!r}", f"valid keys: {valid}")
        if isinstance(value, str) or k.type is str:
            try:
                value = k.type(value) if not isinstance(value, bool) else value
            except (ValueError, TypeError) as e:
                raise UsageError(f"{name}: bad value {value!r} for key {key!r} ({e})",
                                 f"{key}: {k.help}" if k.help else f"check {key}") from None
        if k.choices and value not in k.choices:
            raise UsageError(f"{name}: bad value {value!r} for key {key!r}",
                             f"use one of {', '.join(map(str, k.choices))}")
        out[key] = value
    for k in keys:
        if k.name not in out:
            if k.required:
                raise UsageError(f"{name}: key {k.name!r} is required",
                                 f"add ,{k.name}=... ({k.help})" if k.help else f"add ,{k.name}=...")
            out[k.name] = k.default
    return out


def describe(keys: tuple[Key, ...]) -> str:
    """Human help for a key table (used by --help and READMEs)."""
    lines = []
    for k in keys:
        req = "required" if k.required else f"default {k.default!r}"
        lines.append(f"  {k.name:<14} {req:<20} {k.help}")
    return "\n".join(lines)
