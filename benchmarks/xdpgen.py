"""The kernel's XDP traffic generator: the veth rig's fastest source.

`xdpgen(ifname, frame)` sends copies of one frame out of an interface
through BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (kernel >= 5.18, what
xdp-trafficgen uses): no skb is built per frame, so on this machine it is
the only source that outruns a forwarder. `udp_frame()` makes the frame.
The rig runs it in a process of its own, pinned to the source's cpu
(veth_rig.Source):

    python -m benchmarks.xdpgen IFACE FRAME_HEX [SECONDS]    # prints "sent N" when it stops
"""
from __future__ import annotations

import os
import socket
import struct

BPF_PROG_TEST_RUN = 10
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_FUNC_REDIRECT = 23


def udp_frame(dst_mac: str, src_mac: str, src_ip: str = "198.18.0.1", dst_ip: str = "198.19.0.1",
              size: int = 64, sport: int = 1024, dport: int = 9) -> bytes:
    """An Ethernet/IPv4/UDP frame of `size` bytes (no FCS): valid IPv4 header
    checksum, UDP checksum 0 (none, allowed over IPv4), TTL 64."""
    import ipaddress
    ip_len = size - 14
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0, 64, 17, 0,
                               ipaddress.IPv4Address(src_ip).packed,
                               ipaddress.IPv4Address(dst_ip).packed))
    c = sum(struct.unpack("!10H", ip))
    c = (c & 0xffff) + (c >> 16)
    c = (c & 0xffff) + (c >> 16)
    ip[10:12] = struct.pack("!H", ~c & 0xffff)
    udp = struct.pack("!HHHH", sport, dport, ip_len - 20, 0)
    mac = lambda m: bytes.fromhex(m.replace(":", ""))     # noqa: E731
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + bytes(ip) + udp + bytes(ip_len - 28)


def xdpgen(ifname: str, frame: bytes, seconds: float = 0, batch: int = 64) -> int:
    """Send `frame` out of `ifname` as fast as one cpu can; returns the frames sent.

    The kernel's own XDP traffic generator (BPF_PROG_RUN with
    BPF_F_TEST_XDP_LIVE_FRAMES, kernel >= 5.18; what xdp-trafficgen uses):
    an XDP program `return bpf_redirect(ifindex, 0)` run 2^20 times per call
    on frames made from `frame`, each redirected to the interface's
    ndo_xdp_xmit. On a veth no skb is built: the xdp_frame goes straight to
    the peer's NAPI ring (the peer needs an XDP program or GRO on, or the
    frames are dropped). It cannot be paced: a call costs 20-30 ms here
    whatever its size (its page_pool is made and torn down), so small paced
    calls would top out near 3000 frames per second.

    Runs until a signal (the syscall returns EINTR; the count is then
    approximate), or with seconds > 0 until the first call that ends past
    that (the count is exact).
    """
    import ctypes
    import errno
    import time
    from pypdk.pmd.af_xdp import bpf
    insns = (struct.pack("<BBhi", 0xb7, 1, 0, socket.if_nametoindex(ifname))   # r1 = ifindex
             + struct.pack("<BBhi", 0xb7, 2, 0, 0)                              # r2 = 0
             + struct.pack("<BBhi", 0x85, 0, 0, BPF_FUNC_REDIRECT)              # call bpf_redirect
             + struct.pack("<BBhi", 0x95, 0, 0, 0))                             # exit
    prog = bpf.prog_load(insns, name="pypdk_xdpgen")
    repeat = 1 << 20
    data = ctypes.create_string_buffer(frame, len(frame))
    a = ctypes.create_string_buffer(bpf.ATTR_SIZE)
    struct.pack_into("=IIIIQQII", a, 0, prog, 0, len(frame), 0, ctypes.addressof(data), 0, repeat, 0)
    struct.pack_into("=III", a, 64, BPF_F_TEST_XDP_LIVE_FRAMES, 0, batch)
    sent = 0
    end = time.monotonic() + seconds if seconds > 0 else None
    try:
        while end is None or time.monotonic() < end:
            if bpf._libc.syscall(bpf.NR_BPF, ctypes.c_int(BPF_PROG_TEST_RUN), a, ctypes.c_uint(len(a))) < 0:
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    return sent
                raise bpf.BpfError(err, "bpf(PROG_TEST_RUN live frames)")
            sent += repeat
        return sent
    finally:
        os.close(prog)


def main(argv=None) -> int:
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        print("usage: python -m benchmarks.xdpgen IFACE FRAME_HEX [SECONDS]", file=sys.stderr)
        return 2
    seconds = float(argv[2]) if len(argv) > 2 else 0.0
    sent = xdpgen(argv[0], bytes.fromhex(argv[1]), seconds)
    print("sent", sent, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
