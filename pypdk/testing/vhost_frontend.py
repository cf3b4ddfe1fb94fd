"""A vhost-user frontend and virtio-net driver in Python, good or hostile, for tests and benchmarks.

It plays QEMU and the guest at once: guest memory is memfds laid out by the
test (`GuestMemory`), the protocol goes over AF_UNIX with SCM_RIGHTS
(`Frontend`: typed helpers for a well-behaved session, `send()` for any
bytes and fds), and `Virtq` / `VirtioNet` are the driver side of split
virtqueues: post frames to send, give receive buffers, read what came back.
Every field of every ring is reachable, so a test can write what no real
driver would. Independent of the backend's code: it shares only the
constants of pypdk.pmd.vhost.protocol.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import socket
import struct
import time

from pypdk.pmd.vhost import protocol as P

MB = 1 << 20
UVA_BASE = 0x7f00_0000_0000        # where the "frontend" pretends guest memory is mapped

DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT = 1, 2, 4
AVAIL_F_NO_INTERRUPT = 1

GOOD_FEATURES = (P.bit(P.VIRTIO_F_VERSION_1) | P.bit(P.VIRTIO_NET_F_MRG_RXBUF)
                 | P.bit(P.VHOST_USER_F_PROTOCOL_FEATURES))


class Region:
    def __init__(self, gpa, size, fd, offset=0, uva=None):
        self.gpa, self.size, self.fd, self.offset = gpa, size, fd, offset
        self.uva = UVA_BASE + gpa if uva is None else uva
        self.mm = mmap.mmap(fd, offset + size)

    def msg(self):
        return (self.gpa, self.size, self.uva, self.offset)


class GuestMemory:
    """Guest-physical memory made of memfd regions (adjacent by default: a
    buffer may cross from one into the next)."""

    def __init__(self, sizes=(2 * MB, 2 * MB), base=0x100000, offsets=None):
        self.regions = []
        gpa = base
        for i, size in enumerate(sizes):
            off = offsets[i] if offsets else 0
            fd = os.memfd_create(f"guest{i}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            os.ftruncate(fd, off + size)
            self.regions.append(Region(gpa, size, fd, off))
            gpa += size
        self.end = gpa
        self.next = base
        self._pins = []

    def close(self):
        self._pins = []
        for r in self.regions:
            r.mm.close()
            os.close(r.fd)
        self.regions = []

    def table(self):
        return [r.msg() for r in self.regions]

    def fds(self):
        return [r.fd for r in self.regions]

    def _find(self, gpa):
        for r in self.regions:
            if r.gpa <= gpa < r.gpa + r.size:
                return r
        raise IndexError(f"gpa {gpa:#x} is outside guest memory")

    def write(self, gpa, data):
        data = bytes(data)
        while data:
            r = self._find(gpa)
            off = gpa - r.gpa
            n = min(len(data), r.size - off)
            r.mm[r.offset + off:r.offset + off + n] = data[:n]
            data, gpa = data[n:], gpa + n

    def read(self, gpa, n):
        out = b""
        while n:
            r = self._find(gpa)
            off = gpa - r.gpa
            k = min(n, r.size - off)
            out += r.mm[r.offset + off:r.offset + off + k]
            n, gpa = n - k, gpa + k
        return out

    def host_addr(self, gpa):
        """Our own address of `gpa` (for Cython code playing the guest, e.g. benchmarks)."""
        r = self._find(gpa)
        pin = ctypes.c_char.from_buffer(r.mm, r.offset + gpa - r.gpa)
        self._pins.append(pin)
        return ctypes.addressof(pin)

    def u16(self, gpa):
        return struct.unpack("<H", self.read(gpa, 2))[0]

    def u32(self, gpa):
        return struct.unpack("<I", self.read(gpa, 4))[0]

    def uva(self, gpa):
        return self._find(gpa).uva + gpa - self._find(gpa).gpa

    def alloc(self, size, align=16):
        """Bump allocation (never freed: tests are short)."""
        gpa = (self.next + align - 1) // align * align
        if gpa + size > self.end:
            raise MemoryError("guest memory exhausted")
        self.next = gpa + size
        return gpa


class Frontend:
    """The vhost-user frontend side of a socket."""

    def __init__(self, sock: socket.socket, timeout=5.0):
        self.sock = sock
        self.sock.settimeout(timeout)

    @classmethod
    def connect(cls, path, timeout=5.0):
        end = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return cls(s)
            except OSError:
                s.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.02)

    def close(self):
        self.sock.close()

    # -- raw
    def send(self, req, payload=b"", fds=(), flags=P.VERSION, size=None):
        """Send one message; `size` overrides the header's size field."""
        hdr = P.HDR.pack(req, flags, len(payload) if size is None else size)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
        self.sock.sendmsg([hdr + payload], anc)

    def send_raw(self, data, fds=()):
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
        self.sock.sendmsg([data], anc)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            d = self.sock.recv(n - len(buf))
            if not d:
                raise ConnectionError("the backend closed the connection")
            buf += d
        return buf

    def reply(self, req):
        r, fl, size = P.HDR.unpack(self.recv_exact(P.HDR_SIZE))
        assert r == req and fl & P.FLAG_REPLY, (r, fl)
        return self.recv_exact(size)

    def closed_by_peer(self, timeout=2.0):
        """True once the backend has closed the connection (within timeout)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(4096)
                if not d:
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(5.0)

    # -- typed (each set message asks for a REPLY_ACK once it is negotiated)
    ack = False

    def request(self, req, payload=b"", fds=()):
        if self.ack:
            self.send(req, payload, fds, flags=P.VERSION | P.FLAG_NEED_REPLY)
            (rc,) = P.U64.unpack(self.reply(req))
            return rc
        self.send(req, payload, fds)
        return 0

    def get_u64(self, req):
        self.send(req)
        return P.U64.unpack(self.reply(req))[0]

    def set_u64(self, req, v, fds=()):
        return self.request(req, P.U64.pack(v), fds)

    def vring_state(self, req, idx, num):
        return self.request(req, P.VRING_STATE.pack(idx, num))

    def get_vring_base(self, idx):
        self.send(P.GET_VRING_BASE, P.VRING_STATE.pack(idx, 0))
        return P.VRING_STATE.unpack(self.reply(P.GET_VRING_BASE))

    def set_vring_addr(self, idx, desc, used, avail, flags=0):
        return self.request(P.SET_VRING_ADDR, P.VRING_ADDR.pack(idx, flags, desc, used, avail, 0))

    def set_mem_table(self, mem: GuestMemory, regions=None, fds=None):
        regions = mem.table() if regions is None else regions
        return self.request(P.SET_MEM_TABLE, P.pack_mem_table(regions),
                            mem.fds() if fds is None else fds)

    def handshake(self, features=GOOD_FEATURES, protocol=None):
        """GET/SET features and protocol features, SET_OWNER; returns what was offered."""
        offered = self.get_u64(P.GET_FEATURES)
        pf = self.get_u64(P.GET_PROTOCOL_FEATURES)
        want = pf & (P.bit(P.PROTOCOL_F_MQ) | P.bit(P.PROTOCOL_F_REPLY_ACK)) if protocol is None else protocol
        self.set_u64(P.SET_PROTOCOL_FEATURES, want)
        self.ack = bool(want & P.bit(P.PROTOCOL_F_REPLY_ACK))
        self.request(P.SET_OWNER)
        self.set_u64(P.SET_FEATURES, features & offered)
        return offered, pf


class Virtq:
    """The driver side of one split virtqueue in guest memory."""

    def __init__(self, mem: GuestMemory, idx, size=256):
        self.mem, self.idx, self.size = mem, idx, size
        self.desc = mem.alloc(16 * size, 16)
        self.avail = mem.alloc(6 + 2 * size, 2)
        self.used = mem.alloc(6 + 8 * size, 4)
        mem.write(self.desc, bytes(16 * size))
        mem.write(self.avail, bytes(6 + 2 * size))
        mem.write(self.used, bytes(6 + 8 * size))
        self.avail_idx = 0
        self.used_seen = 0
        self.free = list(range(size))
        self.kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def close(self):
        for fd in (self.kick, self.call):
            try:
                os.close(fd)
            except OSError:
                pass

    def set_desc(self, i, addr, length, flags=0, nxt=0):
        self.mem.write(self.desc + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def post(self, head):
        self.mem.write(self.avail + 4 + 2 * (self.avail_idx % self.size), struct.pack("<H", head))
        self.avail_idx = (self.avail_idx + 1) & 0xffff
        self.mem.write(self.avail + 2, struct.pack("<H", self.avail_idx))

    def set_avail_idx(self, v):
        self.avail_idx = v & 0xffff
        self.mem.write(self.avail + 2, struct.pack("<H", self.avail_idx))

    def set_avail_flags(self, flags):
        self.mem.write(self.avail, struct.pack("<H", flags))

    def set_used_event(self, v):
        self.mem.write(self.avail + 4 + 2 * self.size, struct.pack("<H", v & 0xffff))

    def used_idx(self):
        return self.mem.u16(self.used + 2)

    def take_used(self):
        """[(id, len)] published since the last call."""
        out = []
        end = self.used_idx()
        while self.used_seen != end:
            e = self.used + 4 + 8 * (self.used_seen % self.size)
            out.append((self.mem.u32(e), self.mem.u32(e + 4)))
            self.used_seen = (self.used_seen + 1) & 0xffff
        return out

    def calls(self):
        """Interrupts written since the last call (the eventfd's count)."""
        try:
            return os.eventfd_read(self.call)
        except BlockingIOError:
            return 0

    def chain(self, bufs, write=False):
        """Put a chain of (gpa, len) buffers in free descriptors; its head."""
        ids = [self.free.pop(0) for _ in bufs]
        for k, (gpa, n) in enumerate(bufs):
            last = k == len(bufs) - 1
            self.set_desc(ids[k], gpa, n, (0 if last else DESC_F_NEXT) | (DESC_F_WRITE if write else 0),
                          0 if last else ids[k + 1])
        self.chains = getattr(self, "chains", {})
        self.chains[ids[0]] = ids
        return ids[0]

    def release(self, head):
        self.free.extend(self.chains.pop(head))


class VirtioNet:
    """A virtio-net device as a guest driver sees it, set up over a Frontend."""

    def __init__(self, fe: Frontend, mem: GuestMemory, queues=1, size=256,
                 features=GOOD_FEATURES, call=True, enable=True):
        self.fe, self.mem = fe, mem
        self.offered, self.pf = fe.handshake(features)
        self.features = features & self.offered
        self.hdr_len = 12 if self.features & (P.bit(P.VIRTIO_F_VERSION_1)
                                              | P.bit(P.VIRTIO_NET_F_MRG_RXBUF)) else 10
        self.mrg = bool(self.features & P.bit(P.VIRTIO_NET_F_MRG_RXBUF))
        fe.set_mem_table(mem)
        self.vqs = []
        for i in range(2 * queues):
            vq = Virtq(mem, i, size)
            self.vqs.append(vq)
            fe.vring_state(P.SET_VRING_NUM, i, size)
            fe.vring_state(P.SET_VRING_BASE, i, 0)
            fe.set_vring_addr(i, mem.uva(vq.desc), mem.uva(vq.used), mem.uva(vq.avail))
            fe.set_u64(P.SET_VRING_KICK, i, [vq.kick])
            if call:
                fe.set_u64(P.SET_VRING_CALL, i, [vq.call])
            if enable and self.features & P.bit(P.VHOST_USER_F_PROTOCOL_FEATURES):
                fe.vring_state(P.SET_VRING_ENABLE, i, 1)
        self.rx_pending = {q: [] for q in range(queues)}   # posted receive heads, in order

    def close(self):
        for vq in self.vqs:
            vq.close()

    def rxq(self, q=0):
        return self.vqs[2 * q]

    def txq(self, q=0):
        return self.vqs[2 * q + 1]

    def header(self, flags=0, gso=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
        return P.NET_HDR.pack(flags, gso, hdr_len, gso_size, csum_start, csum_offset, 0)[:self.hdr_len]

    def send(self, frame, q=0, split=None, hdr=None, post=True):
        """Post one frame on transmitq q; `split`: the chain's buffer sizes
        (header included), e.g. (4, 4, 4, rest) puts the header in three."""
        data = (self.header() if hdr is None else hdr) + bytes(frame)
        sizes = list(split) if split else [len(data)]
        if sum(sizes) < len(data):
            sizes.append(len(data) - sum(sizes))
        bufs, off = [], 0
        for n in sizes:
            gpa = self.mem.alloc(max(n, 1))
            self.mem.write(gpa, data[off:off + n])
            bufs.append((gpa, n))
            off += n
        vq = self.txq(q)
        head = vq.chain(bufs)
        if post:
            vq.post(head)
        return head

    def tx_reclaim(self, q=0):
        vq = self.txq(q)
        done = vq.take_used()
        for head, _ in done:
            vq.release(head)
        return done

    def give_rx(self, count, size=2048, q=0, gpa=None):
        """Post `count` receive buffers of `size` bytes on receiveq q."""
        vq = self.rxq(q)
        for _ in range(count):
            g = self.mem.alloc(size) if gpa is None else gpa
            head = vq.chain([(g, size)], write=True)
            self.rx_pending[q].append((head, g))
            vq.post(head)

    def recv(self, q=0):
        """Frames delivered on receiveq q: [(header bytes, frame bytes)]."""
        vq = self.rxq(q)
        used = vq.take_used()
        out = []
        i = 0
        while i < len(used):
            head, n = used[i]
            pos = [k for k, (h, _) in enumerate(self.rx_pending[q]) if h == head][0]
            _, gpa = self.rx_pending[q].pop(pos)
            data = self.mem.read(gpa, n)
            hdr, body = data[:self.hdr_len], data[self.hdr_len:]
            nbufs = struct.unpack_from("<H", hdr, 10)[0] if self.hdr_len == 12 else 1
            vq.release(head)
            for k in range(1, nbufs):
                h2, n2 = used[i + k]
                pos = [j for j, (h, _) in enumerate(self.rx_pending[q]) if h == h2][0]
                _, g2 = self.rx_pending[q].pop(pos)
                body += self.mem.read(g2, n2)
                vq.release(h2)
            out.append((hdr, body))
            i += max(nbufs, 1)
        return out


def frame(n=64, seed=0):
    """An Ethernet frame of n bytes with a recognisable payload."""
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    body = bytes((seed + i) & 0xff for i in range(n - len(eth)))
    return eth + body
