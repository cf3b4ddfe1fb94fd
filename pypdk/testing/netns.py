"""Network namespaces, veth pairs and tap devices for tests, with `ip` commands.

Tests use the real kernel as the peer: a port on a veth or tap end, the other
end in a namespace the test made, with addresses, routes and a ping. These
helpers run the same `ip` commands a person would type (via subprocess, so a
failure shows the command and its stderr) and always clean up after
themselves, failure or not.

Plain functions do one step; the context managers pair a step with its undo:

    with netns() as ns, veth_pair(queues=2) as (a, b):
        move_link(b, ns)
        ns_run(ns, "ip", "addr", "add", "10.9.0.1/24", "dev", b)
        ...

Names are unique per process and call (`pdns12345a`, `pdv12345b`), at most
15 bytes (IFNAMSIZ - 1), so parallel test runs do not collide. Everything
needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); without it the first command
fails with `ip`'s own error, which is what CI should see.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Iterator, Sequence

_seq = itertools.count()
_made_netns: set[str] = set()      # what this process made and has not deleted (see made())
_made_links: set[str] = set()


class CommandError(RuntimeError):
    """An `ip` (or other) command failed: the command line and its stderr."""


def made() -> tuple[set[str], set[str]]:
    """(namespaces, interfaces of this namespace) this process made here and has
    not deleted: `pypdk.testing.leaks` tells a test's leftovers from another
    process's objects by them."""
    return set(_made_netns), set(_made_links)


def unique_name(prefix: str) -> str:
    """A name no other process or call of this one uses: prefix + pid + counter.

    Kept to 15 bytes (interface names); the prefix should be <= 5 characters.
    """
    tag = f"{os.getpid() % 100000}{next(_seq):x}"
    return (prefix + tag)[-15:] if len(prefix) + len(tag) > 15 else prefix + tag


def run(*cmd: str, check: bool = True, timeout: float = 30,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command; CommandError with its stderr when it fails (check=True)."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise CommandError(f"{' '.join(map(str, cmd))}: exit {p.returncode}: "
                           f"{(p.stderr or p.stdout).strip()}")
    return p


def ns_run(ns: str | None, *cmd: str, check: bool = True, timeout: float = 30,
           input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command inside namespace `ns` (`ip netns exec`); ns=None: here."""
    if ns is None:
        return run(*cmd, check=check, timeout=timeout, input=input)
    return run("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout, input=input)


def ns_popen(ns: str | None, *cmd: str, **kw) -> subprocess.Popen:
    """Start a command inside `ns` in the background (stdout/stderr piped)."""
    argv = [str(c) for c in cmd] if ns is None else ["ip", "netns", "exec", ns, *map(str, cmd)]
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    return subprocess.Popen(argv, **kw)


# ---- namespaces ---------------------------------------------------------------

def list_netns() -> list[str]:
    """Names of the named network namespaces (`ip netns list`)."""
    out = run("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_netns(name: str | None = None, *, ipv6: bool = False) -> str:
    """Create a namespace (lo up); returns its name. ipv6=False turns IPv6 off
    in it, so the kernel sends no router solicitations or MLD reports to a
    port under test."""
    name = name or unique_name("pdns")
    run("ip", "netns", "add", name)
    _made_netns.add(name)
    try:
        ns_run(name, "ip", "link", "set", "lo", "up")
        if not ipv6:
            for key in ("all", "default"):
                ns_run(name, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
    except BaseException:
        del_netns(name)
        raise
    return name


def del_netns(name: str) -> None:
    """Delete a namespace (its virtual interfaces go with it); no error if absent."""
    if name in list_netns():
        run("ip", "netns", "del", name)
    _made_netns.discard(name)


@contextlib.contextmanager
def netns(name: str | None = None, *, ipv6: bool = False) -> Iterator[str]:
    """A fresh namespace for the `with` block, deleted after."""
    name = add_netns(name, ipv6=ipv6)
    try:
        yield name
    finally:
        del_netns(name)


# ---- links --------------------------------------------------------------------

def link_exists(ifname: str, ns: str | None = None) -> bool:
    """True if `ifname` exists in `ns` (None: this namespace)."""
    return ns_run(ns, "ip", "link", "show", "dev", ifname, check=False).returncode == 0


def link_info(ifname: str, ns: str | None = None) -> dict:
    """`ip -j -s -d link show dev IFNAME` as a dict (flags, operstate, mtu,
    address, stats64 {rx, tx}, linkinfo)."""
    return json.loads(ns_run(ns, "ip", "-j", "-s", "-d", "link", "show", "dev", ifname).stdout)[0]


def link_stats(ifname: str, ns: str | None = None) -> dict:
    """The kernel's counters: {'rx': {packets, bytes, dropped...}, 'tx': {...}}."""
    return link_info(ifname, ns)["stats64"]


def link_mac(ifname: str, ns: str | None = None) -> str:
    return link_info(ifname, ns)["address"]


def set_link(ifname: str, ns: str | None = None, *args: str) -> None:
    """`ip link set dev IFNAME ARGS...` in `ns`, e.g. set_link(a, ns, "up")."""
    ns_run(ns, "ip", "link", "set", "dev", ifname, *args)


def del_link(ifname: str, ns: str | None = None) -> None:
    """Delete an interface if it exists."""
    if link_exists(ifname, ns):
        ns_run(ns, "ip", "link", "del", "dev", ifname, check=False)
    if ns is None:
        _made_links.discard(ifname)


def move_link(ifname: str, ns: str, from_ns: str | None = None, *, ipv6: bool = False) -> None:
    """Move an interface into namespace `ns` (it arrives down). ipv6=False
    turns IPv6 off on it there (a moved interface keeps its own setting)."""
    ns_run(from_ns, "ip", "link", "set", "dev", ifname, "netns", ns)
    if not ipv6:
        disable_ipv6(ifname, ns)


def disable_ipv6(ifname: str, ns: str | None = None) -> None:
    """No IPv6 on this interface: no MLD reports or neighbour solicitations from it."""
    key = ifname.replace(".", "/")    # sysctl spells a dot in a name as a slash
    ns_run(ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")


def add_addr(ifname: str, cidr: str, ns: str | None = None, *, up: bool = True) -> None:
    """Give an interface an address (e.g. '10.9.0.1/24') and bring it up."""
    ns_run(ns, "ip", "addr", "add", cidr, "dev", ifname)
    if up:
        set_link(ifname, ns, "up")


def add_neigh(ifname: str, ip: str, mac: str, ns: str | None = None) -> None:
    """A permanent neighbour entry (no ARP needed to reach `ip`)."""
    ns_run(ns, "ip", "neigh", "replace", ip, "lladdr", mac, "dev", ifname, "nud", "permanent")


def add_veth(a: str | None = None, b: str | None = None, *, queues: int = 1,
             ns_b: str | None = None) -> tuple[str, str]:
    """Create a veth pair a <-> b (`queues` rx and tx queues each); b may be
    created straight into namespace `ns_b`. Both ends are left down."""
    a = a or unique_name("pdva")
    b = b or unique_name("pdvb")
    cmd = ["ip", "link", "add", a, "numtxqueues", str(queues), "numrxqueues", str(queues),
           "type", "veth", "peer", "name", b, "numtxqueues", str(queues),
           "numrxqueues", str(queues)]
    if ns_b:
        cmd += ["netns", ns_b]
    run(*cmd)
    _made_links.add(a)
    if not ns_b:
        _made_links.add(b)
    return a, b


@contextlib.contextmanager
def veth_pair(a: str | None = None, b: str | None = None, *, queues: int = 1,
              ns_b: str | None = None) -> Iterator[tuple[str, str]]:
    """A veth pair for the `with` block; deleting one end deletes both."""
    a, b = add_veth(a, b, queues=queues, ns_b=ns_b)
    try:
        yield a, b
    finally:
        del_link(a)
        if ns_b is None:
            del_link(b)
        elif ns_b in list_netns():
            del_link(b, ns_b)


def add_tap(name: str | None = None, *, multi_queue: bool = False) -> str:
    """A persistent tap made by the kernel tool (`ip tuntap add`), as an
    operator would before starting an app that attaches to it."""
    name = name or unique_name("pdtap")
    cmd = ["ip", "tuntap", "add", "dev", name, "mode", "tap"]
    if multi_queue:
        cmd.append("multi_queue")
    run(*cmd)
    _made_links.add(name)
    return name


@contextlib.contextmanager
def tap_device(name: str | None = None, *, multi_queue: bool = False) -> Iterator[str]:
    """A persistent tap for the `with` block, deleted after."""
    name = add_tap(name, multi_queue=multi_queue)
    try:
        yield name
    finally:
        del_link(name)


@dataclass(frozen=True)
class VethPeer:
    """A veth pair with end `a` here and end `b` in its own namespace `ns`."""
    ns: str
    a: str                  # our end: this namespace, no address
    b: str                  # the kernel's end, in ns, with ip_b
    a_mac: str
    b_mac: str
    ip_a: str               # not configured on `a` (a port takes it over)
    ip_b: str               # configured on `b`, /24
    queues: int = 1


@contextlib.contextmanager
def veth_peer(*, queues: int = 1, up: bool = True) -> Iterator[VethPeer]:
    """A fresh namespace with end b of a veth pair in it (10.x.y.2/24, a
    permanent neighbour entry for 10.x.y.1 at a's MAC), end a here (up unless
    up=False, no address); IPv6 off on both. Deleted after."""
    k = next(_seq)
    ip_a, ip_b = f"10.{200 + k % 50}.{k % 250}.1", f"10.{200 + k % 50}.{k % 250}.2"
    with netns() as ns:
        a, b = add_veth(queues=queues, ns_b=ns)
        try:
            disable_ipv6(a)
            disable_ipv6(b, ns)
            if up:
                set_link(a, None, "up")
            add_addr(b, f"{ip_b}/24", ns)
            a_mac, b_mac = link_mac(a), link_mac(b, ns)
            add_neigh(b, ip_a, a_mac, ns)
            yield VethPeer(ns, a, b, a_mac, b_mac, ip_a, ip_b, queues)
        finally:
            del_link(a)


def ping(ns: str | None, dst: str, *, count: int = 3, wait: float = 1,
         interval: float = 0.2, args: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """`ping -c COUNT` from `ns`; the CompletedProcess (returncode 0: replies)."""
    return ns_run(ns, "ping", "-n", "-c", str(count), "-W", str(wait), "-i", str(interval),
                  *args, dst, check=False, timeout=count * (wait + interval) + 30)
