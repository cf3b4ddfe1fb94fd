"""What a test leaves behind: namespaces, taps, XDP programs, hugepage files.

`snapshot()` records what exists now; `leftovers(before, after)` names what
appeared between two snapshots and belongs to this process: other processes
on the machine (another test run, a vRouter) make and remove such things too,
so a new object counts only when this process made it:

- a network namespace or a tap made through `pypdk.testing.netns` (which
  records what it made) or, for a tap, one whose /dev/net/tun file this
  process still holds (a tap port that was not closed);
- an XDP program attached to an interface this process made, or one whose
  program or link this process still holds (a port that was not closed);
- a file in a hugetlbfs mount that no process has open or mapped.

`clean(left)` removes the namespaces, taps and XDP programs of a leftovers
dict (hugepage files are only reported). The pytest plugin
(`pypdk.testing.plugin`) runs the three around every test.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
from dataclasses import dataclass

from pypdk.testing import netns as _nn

NETNS_DIR = "/run/netns"
SYS_NET = "/sys/class/net"
KINDS = ("namespace", "tap", "XDP program", "hugepage file")


@dataclass(frozen=True)
class Snapshot:
    netns: frozenset
    links: frozenset           # interface names in this namespace
    taps: frozenset            # the tun/tap ones among them
    xdp: frozenset             # (ifname, prog id) of attached XDP programs
    hugefiles: frozenset


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _xdp_programs() -> frozenset:
    try:
        p = subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True, text=True, timeout=10)
        links = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else []
    except (OSError, ValueError, subprocess.SubprocessError):
        return frozenset()
    out = set()
    for link in links:
        xdp = link.get("xdp")
        if not xdp:
            continue
        progs = [xdp["prog"]] if "prog" in xdp else [a["prog"] for a in xdp.get("attached", ()) if "prog" in a]
        for prog in progs:
            out.add((link["ifname"], prog.get("id")))
    return frozenset(out)


def _hugepage_files() -> frozenset:
    from pypdk.eal import hugepages
    files = set()
    for m in hugepages.mounts():
        for path in glob.glob(os.path.join(glob.escape(m.path), "*")):
            files.add(path)
    return frozenset(files)


def snapshot() -> Snapshot:
    links = _listdir(SYS_NET)
    taps = [n for n in links if os.path.exists(os.path.join(SYS_NET, n, "tun_flags"))]
    return Snapshot(frozenset(_listdir(NETNS_DIR)), frozenset(links), frozenset(taps),
                    _xdp_programs(), _hugepage_files())


def _taps_held_here() -> set[str]:
    """Taps whose /dev/net/tun file this process has open (fdinfo `iff:`)."""
    out = set()
    for fd in _listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "/dev/net/tun":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("iff:"):
                        out.add(line.split()[1])
        except OSError:
            continue
    return out


def _bpf_held_here() -> set[int]:
    """Ids of the BPF programs this process holds a program or link fd of."""
    out = set()
    for fd in _listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("anon_inode:bpf"):
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        out.add(int(line.split()[1]))
        except (OSError, ValueError):
            continue
    return out


def _in_use(paths: set[str]) -> set[str]:
    """The paths among `paths` some process has open or mapped."""
    used = set()
    for pid in _listdir("/proc"):
        if not pid.isdigit():
            continue
        for fd in _listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target in paths:
                used.add(target)
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    path = line.rstrip("\n").split(maxsplit=5)[5:] or [""]
                    if path[0] in paths:
                        used.add(path[0])
        except OSError:
            continue
    return used


def leftovers(before: Snapshot, after: Snapshot) -> dict[str, list[str]]:
    """{kind: [names]} of what appeared between the snapshots and is this process's."""
    made_ns, made_links = _nn.made()
    left = {}
    ns = sorted(n for n in after.netns - before.netns if n in made_ns)
    if ns:
        left["namespace"] = ns
    new_taps = after.taps - before.taps
    if new_taps:
        ours = (made_links | _taps_held_here())
        taps = sorted(t for t in new_taps if t in ours)
        if taps:
            left["tap"] = taps
    new_xdp = after.xdp - before.xdp
    if new_xdp:
        held = _bpf_held_here()
        xdp = sorted(f"{ifname} (prog id {pid})" for ifname, pid in new_xdp
                     if ifname in made_links or pid in held)
        if xdp:
            left["XDP program"] = xdp
    files = after.hugefiles - before.hugefiles
    if files:
        files = files - _in_use(set(files))
        if files:
            left["hugepage file"] = sorted(files)
    return left


def describe(left: dict[str, list[str]]) -> str:
    return "; ".join(f"{kind}{'s' if len(names) > 1 else ''} {', '.join(names)}"
                     for kind, names in left.items())


def clean(left: dict[str, list[str]]) -> None:
    """Remove the namespaces and taps of `left` and detach its XDP programs."""
    for name in left.get("namespace", ()):
        _nn.del_netns(name)
    for name in left.get("tap", ()):
        if name not in _taps_held_here():
            _nn.del_link(name)
    for item in left.get("XDP program", ()):
        ifname = item.split(" ", 1)[0]
        _nn.run("ip", "link", "set", "dev", ifname, "xdp", "off", check=False)
