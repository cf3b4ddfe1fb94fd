"""Frames for tests: into mbufs and out of a namespace, and their checks (scapy, tshark).

    to_mbufs(pool, frames, seg=None)   frames (bytes or scapy packets) as mbufs,
                                       each a chain of seg-byte segments with `seg`
    ns_send_raw(ns, ifname, frames)    send frames back to back from a raw
                                       AF_PACKET socket inside a namespace
    mac_bytes("02:00:..")              the 6 bytes of a MAC address
    ip_cksum_ok(ip)                    the IPv4 header checksum is what scapy computes
    l4_cksum_ok(pkt)                   the TCP/UDP checksum over IPv4 or IPv6 is
    checksums_ok(frame)                both, for an Ethernet frame (bytes or scapy)
    tshark_check(path)                 tshark dissects a capture with no malformed,
                                       cut-short or error-level packet

scapy is imported when a check first needs it, so importing this module is cheap.
"""
from __future__ import annotations

import subprocess
import sys

from pypdk.net.addr import parse_mac as mac_bytes  # noqa: F401 (part of this module's face)


def to_mbufs(pool, frames, seg: int | None = None) -> list:
    """One mbuf per frame (a chain of `seg`-byte segments when seg is given)."""
    out = []
    for frame in frames:
        data = bytes(frame)
        step = seg or max(len(data), 1)
        head = None
        for off in range(0, max(len(data), 1), step):
            m = pool.alloc()
            m.append(data[off:off + step])
            if head is None:
                head = m
            else:
                head.chain(m)
        out.append(head)
    return out


_SENDER = ("import socket, sys\n"
           "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
           "s.bind((sys.argv[1], 0))\n"
           "for line in sys.stdin.read().split():\n"
           "    s.send(bytes.fromhex(line))\n")


def ns_send_raw(ns: str | None, ifname: str, frames, timeout: float = 30) -> None:
    """Send frames (bytes or scapy packets) on `ifname` in namespace `ns` (None:
    here) from a raw AF_PACKET socket, back to back."""
    from pypdk.testing import netns
    netns.ns_run(ns, sys.executable, "-c", _SENDER, ifname,
                 input="\n".join(bytes(f).hex() for f in frames), timeout=timeout)


def ip_cksum_ok(ip) -> bool:
    """The checksum of a scapy IP header is the one scapy computes afresh."""
    from scapy.all import IP
    ref = ip.copy()
    ref.chksum = None
    return IP(bytes(ref)).chksum == ip.chksum


def l4_cksum_ok(pkt) -> bool:
    """The TCP/UDP checksum of an IPv4 or IPv6 packet is what scapy computes."""
    from scapy.all import IP, IPv6
    l3 = pkt[IP] if IP in pkt else pkt[IPv6]
    l4 = l3.payload
    ref = l3.copy()
    ref.payload.chksum = None
    if IP in pkt:
        ref.chksum = None
    return type(l3)(bytes(ref))[type(l4)].chksum == l4.chksum


def checksums_ok(frame) -> bool:
    """An Ethernet frame's IPv4 header (if any) and TCP/UDP checksums are valid."""
    from scapy.all import Ether, IP
    f = Ether(bytes(frame))
    return (IP not in f or ip_cksum_ok(f[IP])) and l4_cksum_ok(f)


def tshark_check(path) -> None:
    """Assert tshark reads the capture and reports no malformed, cut-short or
    error-level packet."""
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-V"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    bad = [line for line in out.stdout.splitlines() if "Malformed" in line or "cut short" in line
           or "[Expert Info (Error" in line]
    assert not bad, f"tshark on {path}: {bad[:5]}"
