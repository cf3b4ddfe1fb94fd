"""net_vhost: a vhost-user backend port, the guest's virtio-net device served by pypdk.

A VM's virtio-net device can be implemented outside QEMU: QEMU (the
frontend) hands the backend the guest's memory (fds over a Unix socket) and
each virtqueue's place in it, and the backend moves packets by reading and
writing the rings directly. This port is that backend, with its own
implementation of the protocol (QEMU's docs/interop/vhost-user.rst) and of
the split virtqueue (virtq.pyx).

Shape
-----
- Socket: server mode by default (we listen on `iface`, QEMU connects with
  `-chardev socket,path=PATH`); `client=1` connects to a QEMU started with
  `server=on`, and with `reconnect=1` keeps retrying (every second) at open
  and whenever the connection goes, so a restarted QEMU finds the port
  again. One frontend at a time; a second connection is closed and counted.
- Control: one thread per port (`pypdk-vhost-<name>`) polls the socket and
  handles every message. It is a thread, not the runner's control loop,
  because a frontend waits for replies (QEMU's boot stalls on GET_FEATURES)
  and the port must answer whether it runs under pypdk-run, in a test or in
  a script; the thread takes the GIL only for messages and meets the
  lcores only through each vring's lock (virtq.pxd), so an lcore never
  blocks on it and never waits for a message.
- Datapath: queue pair q is vrings 2q (the guest's receiveq, the port's tx
  queue q) and 2q+1 (the guest's transmitq, the port's rx queue q), each
  polled by the lcore the app gives the queue to. `queues=N` pairs are
  offered (GET_QUEUE_NUM); the port may be configured with fewer.
- Link: up while a frontend is connected and both vrings of pair 0 are
  started (SET_VRING_KICK), enabled and mapped; down otherwise.

Features offered: VERSION_1, MRG_RXBUF, MQ, INDIRECT_DESC, EVENT_IDX and
PROTOCOL_FEATURES; protocol features MQ and REPLY_ACK. No checksum or GSO
offload is offered (CSUM, GUEST_CSUM, TSO/UFO), so a guest finishes its own
checksums and never sends a frame longer than its MTU; a header that asks
for an offload anyway is dropped and counted. Not offered either: dirty
logging (LOG_ALL, no live migration), IOTLB, CONFIG, the packed ring. The
control virtqueue (CTRL_VQ) stays in QEMU, which serves it and turns the
guest's multi-queue choice into SET_VRING_ENABLE messages.

The frontend is not trusted. Every message is checked before it changes
anything: its header (version, size at most 4096), its payload size, its fd
count, the memory table (mem.pyx), vring indices (< 2 * queues), sizes (a
power of two, 1..32768), bases, ring addresses (aligned, each part wholly
inside one region), order (SET_OWNER before the device is set up; a
started ring is not reconfigured before GET_VRING_BASE stops it) and feature
bits (a subset of what was offered). A violation stops the port: the
connection is closed, every ring stops, the guest's memory is unmapped, the
link goes down and `stop_<reason>` counts it in xstats; a datapath fault
(virtq.pyx) is handled the same way. The port keeps listening (or
reconnecting), so a frontend that starts over gets a fresh device. Nothing
a frontend sends raises out of the control thread.

Keys:
  iface      PATH   the vhost-user socket (required)
  queues     N      queue pairs offered, 1..16 (default 1)
  client     0/1    1: connect to the frontend's socket instead of listening (default 0)
  reconnect  0/1    client mode: retry the connection while it is down (default 0)
"""
import os
import select
import socket
import stat
import struct
import threading
import time

from libc.stdint cimport uint8_t, uint64_t, uintptr_t

from pypdk.mempool.mbuf cimport PktMbufPool
from pypdk.pmd.ethdev cimport EthDev
from pypdk.pmd.vhost.mem cimport MemTable, mem_uva_to_hva
from pypdk.pmd.vhost.virtq cimport (vhost_vq, vhost_dev, vhost_rx_burst, vhost_tx_burst, vq_lock,
                                    vq_unlock, vq_write16, VQ_USED_F_NO_NOTIFY, VQ_MAX_SIZE,
                                    VQ_DROP_MAX)

from pypdk.errors import UsageError, ResourceError
from pypdk.pmd.devargs import Key, parse_bool
from pypdk.pmd.vhost import protocol as P
from pypdk.pmd.vhost.mem import MemError, MEM_REASONS
from pypdk.pmd.vhost.virtq import FAULT_NAMES, DROP_NAMES

DRIVER = "net_vhost"
HELP = "a vhost-user backend: a VM's virtio-net device over a Unix socket"
KEYS = (
    Key("iface", str, None, "path of the vhost-user Unix socket", required=True),
    Key("queues", int, 1, "queue pairs offered to the guest, 1..16"),
    Key("client", parse_bool, False, "1: connect to the frontend's socket (QEMU server=on)"),
    Key("reconnect", parse_bool, False, "client mode: keep retrying while disconnected"),
)

RECONNECT_INTERVAL = 1.0        # seconds between client-mode connection attempts
MAX_QUEUE_PAIRS = 16

FEATURES = (P.bit(P.VIRTIO_F_VERSION_1) | P.bit(P.VIRTIO_NET_F_MRG_RXBUF) | P.bit(P.VIRTIO_NET_F_MQ)
            | P.bit(P.VIRTIO_RING_F_INDIRECT_DESC) | P.bit(P.VIRTIO_RING_F_EVENT_IDX)
            | P.bit(P.VHOST_USER_F_PROTOCOL_FEATURES))
PROTOCOL_FEATURES = P.bit(P.PROTOCOL_F_MQ) | P.bit(P.PROTOCOL_F_REPLY_ACK)

# Why a port was stopped (xstats `stop_<name>`): the frontend's messages, then the ring faults.
STOP_REASONS = (("header", "payload_size", "fd_count", "unknown_request", "not_negotiated",
                 "features", "out_of_order", "ring_index", "ring_size", "ring_base", "ring_addr",
                 "internal")
                + tuple(r for r in MEM_REASONS if r != "fd_count") + FAULT_NAMES[1:])

# Requests that need a feature we never offer.
_NOT_OFFERED = {P.SET_LOG_BASE, P.SET_LOG_FD, P.SEND_RARP, P.NET_SET_MTU, P.SET_BACKEND_REQ_FD,
                P.IOTLB_MSG, P.SET_VRING_ENDIAN, P.GET_CONFIG, P.SET_CONFIG}


class Violation(Exception):
    """A frontend message the port refuses; stops the port (reason in STOP_REASONS)."""

    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Vring:
    """The protocol's view of one vring (the datapath's is its vhost_vq)."""
    __slots__ = ("num", "base", "addr", "kickfd", "callfd", "errfd", "started", "enabled", "fresh")

    def __init__(self):
        self.num = 0
        self.base = 0
        self.addr = None        # (desc, used, avail) in the frontend's address space
        self.kickfd = -1
        self.callfd = -1
        self.errfd = -1
        self.started = False
        self.enabled = False
        self.fresh = False      # started, indices not yet given to the datapath


def _close_fds(fds):
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


cdef class Port(EthDev):
    cdef int nvq
    cdef object plock               # protocol state: the control thread vs queue set-up and close
    cdef vhost_dev dev
    cdef object mem                 # MemTable or None
    cdef list rings                 # _Vring per vring
    cdef readonly str iface
    cdef readonly bint client
    cdef readonly bint reconnect
    cdef readonly int queues
    cdef bint created_socket
    cdef object lsock
    cdef object conn
    cdef object thread
    cdef int wake_r, wake_w
    cdef bint quit
    cdef bint owner
    cdef uint64_t features
    cdef uint64_t protocol_features
    cdef object rbuf                # bytes of the message being read
    cdef object rhdr                # its (request, flags, size) once the header is in
    cdef list rfds
    cdef dict stops
    cdef dict events
    cdef readonly str last_stop

    DRIVER = DRIVER

    def __cinit__(self):
        self.drv_rx = vhost_rx_burst
        self.drv_tx = vhost_tx_burst
        self.wake_r = self.wake_w = -1
        self.dev.notify_fd = -1
        self.plock = threading.RLock()
        self.mem = None
        self.lsock = self.conn = self.thread = None
        self.rings = []
        self.stops = {r: 0 for r in STOP_REASONS}
        self.events = {"connections": 0, "disconnects": 0, "closed_mid_message": 0,
                       "refused_connections": 0, "messages": 0}
        self.last_stop = ""
        self.rfds = []
        self._reset_reader()

    # ---- probe -------------------------------------------------------------
    def _dev_probe(self, dict args):
        self.iface = args["iface"]
        self.queues = args["queues"]
        self.client = args["client"]
        self.reconnect = args["reconnect"]
        if not self.iface:
            raise UsageError(f"{self.name}: iface is empty", "give the socket path: iface=/run/vm0.sock")
        if not 1 <= self.queues <= MAX_QUEUE_PAIRS:
            raise UsageError(f"{self.name}: queues={self.queues} is out of range",
                             f"use queues=1..{MAX_QUEUE_PAIRS}")
        if self.reconnect and not self.client:
            raise UsageError(f"{self.name}: reconnect=1 is for client mode",
                             "add client=1, or drop reconnect (a server keeps listening anyway)")
        self.nvq = 2 * self.queues
        self.rings = [_Vring() for _ in range(self.nvq)]
        self.dev.notify_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.client:
            try:
                self._connect()
            except OSError as e:
                if not self.reconnect:
                    raise ResourceError(f"{self.name}: cannot connect to {self.iface} ({e.strerror})",
                                        "start the frontend first (QEMU -chardev socket,server=on), "
                                        "or add reconnect=1") from None
        else:
            self._listen()
        self.thread = threading.Thread(target=self._run, name=f"pypdk-vhost-{self.name}", daemon=True)
        self.thread.start()

    def _listen(self):
        path = self.iface
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise ResourceError(f"{self.name}: {path} exists and is not a socket",
                                    "remove it or choose another iface path")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)             # a stale socket: nobody listens on it
            else:
                raise ResourceError(f"{self.name}: {path} is in use (something listens on it)",
                                    "stop the other backend or choose another iface path")
            finally:
                probe.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.bind(path)
        except OSError as e:
            s.close()
            raise ResourceError(f"{self.name}: cannot listen on {path} ({e.strerror})",
                                "check that the directory exists and is writable") from None
        s.listen(4)
        s.setblocking(False)
        self.lsock = s
        self.created_socket = True

    def _connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.connect(self.iface)
        except OSError:
            s.close()
            raise
        self._attach(s)

    def _attach(self, s):
        s.setblocking(False)
        self.conn = s
        self.events["connections"] += 1
        self._reset_reader()

    # ---- the control thread ---------------------------------------------------
    def _run(self):
        next_try = 0.0
        while not self.quit:
            try:
                if self.conn is None and self.client:
                    if not self.reconnect:
                        self._wait([], None)
                        continue
                    now = time.monotonic()
                    if now >= next_try:
                        try:
                            with self.plock:
                                self._connect()
                            continue
                        except OSError:
                            next_try = now + RECONNECT_INTERVAL
                    self._wait([], max(next_try - now, 0.0))
                    continue
                socks = [self.dev.notify_fd]
                if self.conn is not None:
                    socks.append(self.conn)
                if self.lsock is not None:
                    socks.append(self.lsock)
                ready = self._wait(socks, 1.0)
                if self.dev.notify_fd in ready:
                    try:
                        os.eventfd_read(self.dev.notify_fd)
                    except BlockingIOError:
                        pass
                with self.plock:
                    self._check_faults()
                    if self.conn is not None and self.conn in ready:
                        self._read()        # first: a frontend that left frees the port for the next
                    if self.lsock is not None and self.lsock in ready:
                        self._accept()
            except Exception as e:          # a bug of ours: drop the frontend, keep the thread
                with self.plock:
                    self._stop("internal", f"{type(e).__name__}: {e}")

    def _wait(self, socks, timeout):
        r, _, _ = select.select(socks + [self.wake_r], [], [], timeout)
        if self.wake_r in r:
            try:
                os.read(self.wake_r, 64)
            except BlockingIOError:
                pass
        return r

    def _accept(self):
        try:
            s, _ = self.lsock.accept()
        except (BlockingIOError, InterruptedError):
            return
        if self.conn is not None:
            self.events["refused_connections"] += 1
            s.close()
            return
        self._attach(s)

    def _reset_reader(self):
        self.rbuf = b""
        self.rhdr = None
        _close_fds(self.rfds or [])
        self.rfds = []

    def _read(self):
        """Read what the socket has, a message at a time (exact sizes, so the
        fds that arrive belong to the message being read)."""
        cdef int n, budget = 256       # messages per wake: a flood still lets faults be seen
        while self.conn is not None and budget > 0:
            need = (P.HDR_SIZE if self.rhdr is None else self.rhdr[2]) - len(self.rbuf)
            if need > 0:
                try:
                    data, anc, flags, _ = self.conn.recvmsg(
                        need, socket.CMSG_SPACE(P.MAX_FDS * 4))
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:
                    self._disconnect(mid=bool(self.rbuf or self.rhdr))
                    return
                for level, typ, blob in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        n = len(blob) // 4
                        self.rfds.extend(struct.unpack(f"={n}i", blob[:4 * n]))
                if flags & socket.MSG_CTRUNC:
                    self._stop("fd_count", "more fds than any message carries")
                    return
                if not data:
                    self._disconnect(mid=bool(self.rbuf or self.rhdr))
                    return
                self.rbuf += data
                if len(data) < need:
                    continue
            if self.rhdr is None:
                req, fl, size = P.HDR.unpack(self.rbuf)
                if fl & P.FLAG_VERSION_MASK != P.VERSION or fl & P.FLAG_REPLY:
                    self._stop("header", f"{P.request_name(req)}: flags {fl:#x} (version 1, "
                                         "not a reply)")
                    return
                if size > P.MAX_PAYLOAD:
                    self._stop("payload_size", f"{P.request_name(req)}: {size} bytes of payload")
                    return
                self.rhdr = (req, fl, size)
                self.rbuf = b""
                if size:
                    continue
            req, fl, size = self.rhdr
            payload, fds = self.rbuf, self.rfds
            self.rbuf, self.rhdr, self.rfds = b"", None, []
            self._dispatch(req, fl, payload, fds)
            budget -= 1

    def _send(self, req, payload):
        try:
            self.conn.sendall(P.HDR.pack(req, P.VERSION | P.FLAG_REPLY, len(payload)) + payload)
        except OSError:
            self._disconnect(mid=False)

    def _dispatch(self, req, fl, payload, fds):
        self.events["messages"] += 1
        try:
            reply = self._handle(req, payload, fds)
        except Violation as v:
            _close_fds(fds)
            self._stop(v.reason, f"{P.request_name(req)}: {v.detail}")
            return
        except MemError as e:
            _close_fds(fds)
            self._stop(e.reason, f"SET_MEM_TABLE: {e.detail}")
            return
        _close_fds(fds)                     # handlers take the fds they keep out of the list
        if self.conn is None:
            return
        if reply is not None:
            self._send(req, reply)
        elif fl & P.FLAG_NEED_REPLY and self.protocol_features & P.bit(P.PROTOCOL_F_REPLY_ACK):
            self._send(req, P.U64.pack(0))

    # ---- message handlers -------------------------------------------------------
    def _payload(self, payload, codec, what):
        if len(payload) != codec.size:
            raise Violation("payload_size", f"{len(payload)} bytes, {what} is {codec.size}")
        return codec.unpack(payload)

    def _no_fds(self, fds):
        if fds:
            raise Violation("fd_count", f"{len(fds)} fds on a message that takes none")

    def _ring(self, idx):
        if not 0 <= idx < self.nvq:
            raise Violation("ring_index", f"vring {idx} (this port has {self.nvq}: queues={self.queues})")
        return self.rings[idx]

    def _need_owner(self):
        if not self.owner:
            raise Violation("out_of_order", "the device is set up before SET_OWNER")

    def _stopped(self, idx, r):
        if r.started:
            raise Violation("out_of_order", f"vring {idx} is running (stop it with GET_VRING_BASE first)")

    def _handle(self, req, payload, fds):
        if req == P.GET_FEATURES:
            self._no_fds(fds)
            return P.U64.pack(FEATURES)
        if req == P.GET_PROTOCOL_FEATURES:
            self._no_fds(fds)
            return P.U64.pack(PROTOCOL_FEATURES)
        if req == P.SET_PROTOCOL_FEATURES:
            self._no_fds(fds)
            (f,) = self._payload(payload, P.U64, "a u64")
            if f & ~PROTOCOL_FEATURES:
                raise Violation("features", f"protocol features {f:#x} were not all offered "
                                            f"({PROTOCOL_FEATURES:#x})")
            self.protocol_features = f
            return None
        if req == P.GET_QUEUE_NUM:
            self._no_fds(fds)
            return P.U64.pack(self.queues)
        if req == P.SET_OWNER:
            self._no_fds(fds)
            self.owner = True
            return None
        if req == P.RESET_OWNER:
            self._no_fds(fds)
            self._reset_device()
            return None
        if req == P.SET_FEATURES:
            self._no_fds(fds)
            (f,) = self._payload(payload, P.U64, "a u64")
            if f & ~FEATURES:
                raise Violation("features", f"features {f:#x} were not all offered ({FEATURES:#x})")
            self._set_features(f)
            return None
        if req == P.SET_MEM_TABLE:
            return self._set_mem_table(payload, fds)
        if req in (P.SET_VRING_NUM, P.SET_VRING_BASE, P.GET_VRING_BASE, P.SET_VRING_ENABLE):
            self._no_fds(fds)
            idx, num = self._payload(payload, P.VRING_STATE, "a vring state")
            r = self._ring(idx)
            if req == P.GET_VRING_BASE:
                return P.VRING_STATE.pack(idx, self._stop_ring(idx))
            if req == P.SET_VRING_ENABLE:
                # QEMU enables queue pairs as soon as the protocol features are
                # agreed, before SET_FEATURES: PROTOCOL_FEATURES offered is enough.
                if num not in (0, 1):
                    raise Violation("payload_size", f"enable {num} (0 or 1)")
                r.enabled = bool(num)
                self._sync(idx)
                return None
            self._need_owner()
            self._stopped(idx, r)
            if req == P.SET_VRING_NUM:
                if not 1 <= num <= VQ_MAX_SIZE or num & (num - 1):
                    raise Violation("ring_size", f"vring {idx}: size {num} (a power of two, "
                                                 f"1..{VQ_MAX_SIZE})")
                r.num = num
            else:
                if num > 0xffff:
                    raise Violation("ring_base", f"vring {idx}: base {num} (a split ring's is 16 bits)")
                r.base = num
            return None
        if req == P.SET_VRING_ADDR:
            self._no_fds(fds)
            idx, flags, desc, used, avail, log = self._payload(payload, P.VRING_ADDR, "a vring address")
            r = self._ring(idx)
            self._need_owner()
            self._stopped(idx, r)
            if flags & 1:
                raise Violation("not_negotiated", "dirty logging (VHOST_VRING_F_LOG) was not offered")
            if desc % 16 or avail % 2 or used % 4:
                raise Violation("ring_addr", f"vring {idx}: misaligned parts (desc {desc:#x} /16, "
                                             f"avail {avail:#x} /2, used {used:#x} /4)")
            r.addr = (desc, used, avail)
            if self.mem is not None and r.num:
                self._translate(idx)        # refuse now what could never start
            return None
        if req in (P.SET_VRING_KICK, P.SET_VRING_CALL, P.SET_VRING_ERR):
            (v,) = self._payload(payload, P.U64, "a u64")
            idx = v & P.VRING_IDX_MASK
            if v & ~(P.VRING_IDX_MASK | P.VRING_NOFD_MASK):
                raise Violation("payload_size", f"{v:#x}: bits other than the index and NOFD")
            r = self._ring(idx)
            want = 0 if v & P.VRING_NOFD_MASK else 1
            if len(fds) != want:
                raise Violation("fd_count", f"vring {idx}: {len(fds)} fds, {want} expected")
            fd = fds.pop() if want else -1
            if req == P.SET_VRING_CALL:
                self._set_call(idx, fd)
            elif req == P.SET_VRING_ERR:
                _close_fds([r.errfd])
                r.errfd = fd
            else:
                self._need_owner_fd(fd)
                _close_fds([r.kickfd])
                r.kickfd = fd
                self._start_ring(idx)
            return None
        if req in _NOT_OFFERED:
            raise Violation("not_negotiated", "its feature was not offered")
        raise Violation("unknown_request", f"request {req}")

    def _need_owner_fd(self, fd):
        if not self.owner:
            _close_fds([fd])
            self._need_owner()

    def _set_mem_table(self, payload, fds):
        self._need_owner()
        if len(payload) < P.MEM_HDR.size:
            raise Violation("payload_size", f"{len(payload)} bytes, less than the table header")
        nregions, _pad = P.MEM_HDR.unpack_from(payload)
        if nregions > P.MAX_REGIONS or len(payload) != P.MEM_HDR.size + nregions * P.REGION.size:
            if nregions > P.MAX_REGIONS:
                raise MemError("region_count", f"{nregions} regions (1..{P.MAX_REGIONS})")
            raise Violation("payload_size", f"{len(payload)} bytes for {nregions} regions")
        regions = [P.REGION.unpack_from(payload, P.MEM_HDR.size + i * P.REGION.size)
                   for i in range(nregions)]
        taken = list(fds)
        fds.clear()                          # MemTable.map closes them, mapped or not
        new = MemTable.map(regions, taken)
        old = self.mem
        self.mem = new
        try:                                 # where the running rings are in the new mapping
            moved = {i: self._translate(i) for i in range(self.nvq) if self._ring_live(i)}
        except Violation:
            self.mem = old
            new.unmap()
            raise
        self._swap_mem(new, moved)
        if old is not None:
            old.unmap()                      # no burst holds it: every vq was locked for the swap
        return None

    # ---- the datapath's copy of the protocol state -------------------------------
    cdef vhost_vq *_vq(self, int i):
        """The port queue struct of vring i, NULL while that queue is not set up."""
        cdef int q = i // 2
        if i & 1:
            return <vhost_vq *>self.fp.rxq[q] if q < self.fp.nb_rxq else NULL
        return <vhost_vq *>self.fp.txq[q] if q < self.fp.nb_txq else NULL

    def _set_features(self, uint64_t f):
        cdef int i
        self.features = f
        for i in range(self.nvq):
            self._sync(i)

    def _lock_all(self):
        cdef int i
        cdef vhost_vq *vq
        for i in range(self.nvq):
            vq = self._vq(i)
            if vq != NULL:
                with nogil:
                    vq_lock(vq)

    def _unlock_all(self):
        cdef int i
        cdef vhost_vq *vq
        for i in range(self.nvq):
            vq = self._vq(i)
            if vq != NULL:
                vq_unlock(vq)

    def _swap_mem(self, new, dict moved):
        """Install a memory table, and the running rings' addresses in it, under
        every vq lock at once: a burst sees the old mapping or the new one."""
        cdef int i
        cdef MemTable t
        cdef vhost_vq *vq
        self._lock_all()
        try:
            if new is None:
                self.dev.mem = NULL
            else:
                t = new
                self.dev.mem = t.m
            self.mem = new
            for i in range(self.nvq):
                vq = self._vq(i)
                if vq == NULL:
                    continue
                parts = moved.get(i)
                if parts is None:
                    vq.ready = 0
                else:
                    vq.desc = <uint8_t *><uintptr_t>parts[0]
                    vq.avail = <uint8_t *><uintptr_t>parts[1]
                    vq.used = <uint8_t *><uintptr_t>parts[2]
        finally:
            self._unlock_all()

    def _translate(self, int idx):
        """Our addresses of vring idx's parts (Violation ring_addr if any is outside)."""
        cdef MemTable t = self.mem
        cdef uint64_t n = self.rings[idx].num
        cdef uintptr_t p
        desc, used, avail = self.rings[idx].addr
        # used_event / avail_event are always counted in: a guest may use them.
        sizes = ((desc, 16 * n, "descriptor table"), (avail, 4 + 2 * n + 2, "avail ring"),
                 (used, 4 + 8 * n + 2, "used ring"))
        out = []
        for uva, size, what in sizes:
            p = <uintptr_t>mem_uva_to_hva(t.m, uva, size)
            if p == 0:
                raise Violation("ring_addr", f"vring {idx}: the {what} at {uva:#x} (+{size}) is not "
                                             "inside one memory region")
            out.append(p)
        return out

    def _start_ring(self, int idx):
        r = self.rings[idx]
        if not self.features & P.bit(P.VHOST_USER_F_PROTOCOL_FEATURES):
            r.enabled = True                # without protocol features a ring starts enabled
        if self.mem is None or not r.num or r.addr is None:
            raise Violation("out_of_order", f"vring {idx} kicked before its "
                            + ("memory table" if self.mem is None else
                               "size" if not r.num else "addresses"))
        if not r.started:                   # a new kick fd for a running ring keeps its place
            r.started = True
            r.fresh = True
        self._sync(idx)

    def _ring_live(self, int idx):
        r = self.rings[idx]
        return (self.conn is not None and self.mem is not None and r.started and bool(r.num)
                and r.addr is not None)

    def _sync(self, int idx):
        """Copy vring idx's state into its port queue struct (under the vq lock)."""
        cdef vhost_vq *vq = self._vq(idx)
        cdef uint64_t f = self.features
        r = self.rings[idx]
        parts = self._translate(idx) if self._ring_live(idx) else None
        if vq == NULL:
            return
        with nogil:
            vq_lock(vq)
        try:
            if vq.dev == NULL:              # a new struct: the ring's indices start from its base
                vq.dev = &self.dev
                r.fresh = True
            vq.port = self.port_id
            vq.queue = idx // 2
            vq.callfd = r.callfd
            vq.hdr_len = 12 if f & (P.bit(P.VIRTIO_F_VERSION_1) | P.bit(P.VIRTIO_NET_F_MRG_RXBUF)) else 10
            vq.mrg_rxbuf = (f >> P.VIRTIO_NET_F_MRG_RXBUF) & 1
            vq.event_idx = (f >> P.VIRTIO_RING_F_EVENT_IDX) & 1
            vq.indirect = (f >> P.VIRTIO_RING_F_INDIRECT_DESC) & 1
            if parts is None:
                vq.ready = 0
                return
            vq.desc = <uint8_t *><uintptr_t>parts[0]
            vq.avail = <uint8_t *><uintptr_t>parts[1]
            vq.used = <uint8_t *><uintptr_t>parts[2]
            vq.size = r.num
            vq.mask = r.num - 1
            if r.fresh:
                vq.last_avail = r.base
                vq.last_used = r.base
                vq_write16(vq.used, VQ_USED_F_NO_NOTIFY)   # we poll: the guest need not kick
                r.fresh = False
            vq.ready = 1 if (r.enabled and (idx % 2 == 0 or vq.mp != NULL)) else 0
        finally:
            vq_unlock(vq)

    def _stop_ring(self, int idx):
        """GET_VRING_BASE: stop the ring; the next avail index to use."""
        cdef vhost_vq *vq = self._vq(idx)
        r = self.rings[idx]
        base = r.base
        if vq != NULL:
            with nogil:
                vq_lock(vq)
            vq.ready = 0
            if r.started and not r.fresh:
                base = vq.last_avail
            vq_unlock(vq)
        r.started = False
        r.base = base
        _close_fds([r.kickfd])
        r.kickfd = -1
        return base

    def _set_call(self, int idx, int fd):
        r = self.rings[idx]
        old = r.callfd
        r.callfd = fd
        self._sync(idx)
        _close_fds([old])

    def _check_faults(self):
        cdef int i, f
        cdef vhost_vq *vq
        for i in range(self.nvq):
            vq = self._vq(i)
            if vq == NULL or vq.fault == 0:
                continue
            with nogil:
                vq_lock(vq)
            f = vq.fault
            vq.fault = 0
            vq_unlock(vq)
            if f:
                self._stop(FAULT_NAMES[f], f"vring {i}: the guest broke the ring")
                return

    # ---- stopping, disconnecting, resetting ---------------------------------------
    def _stop(self, reason, detail):
        """A violation or fault: count it, then drop the frontend and its memory."""
        self.stops[reason] = self.stops.get(reason, 0) + 1
        self.last_stop = f"{reason}: {detail}"
        self._disconnect(mid=False)

    def _disconnect(self, bint mid):
        if mid:
            self.events["closed_mid_message"] += 1
        if self.conn is not None:
            c, self.conn = self.conn, None      # down before the peer can see the close
            try:
                c.close()
            except OSError:
                pass
            self.events["disconnects"] += 1
        self._reset_reader()
        self._reset_device()
        self.owner = False
        self.protocol_features = 0

    def _reset_device(self):
        cdef int i
        cdef vhost_vq *vq
        self._lock_all()
        try:
            for i in range(self.nvq):
                vq = self._vq(i)
                if vq != NULL:
                    vq.ready = 0
                    vq.callfd = -1
                    vq.fault = 0
                    vq.desc = vq.avail = vq.used = NULL
            self.dev.mem = NULL
            self.dev.failed = 0
        finally:
            self._unlock_all()
        for r in self.rings:
            _close_fds([r.kickfd, r.callfd, r.errfd])
        self.rings = [_Vring() for _ in range(self.nvq)]
        if self.mem is not None:
            self.mem.unmap()
            self.mem = None
        self._set_features(0)

    # ---- ethdev hooks -------------------------------------------------------------------
    @property
    def max_rx_queues(self):
        return self.queues

    @property
    def max_tx_queues(self):
        return self.queues

    cdef vhost_vq *_queue(self, bint rx, int q) except NULL:
        return <vhost_vq *>self.queue_alloc(rx, q, sizeof(vhost_vq))

    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        cdef vhost_vq *vq
        with self.plock:
            vq = self._queue(True, q)
            with nogil:
                vq_lock(vq)
            vq.mp = pool.mp
            vq_unlock(vq)
            self._sync_quiet(2 * q + 1)

    def _dev_tx_queue_setup(self, q, nb_desc):
        with self.plock:
            self._queue(False, q)
            self._sync_quiet(2 * q)

    def _sync_quiet(self, int idx):
        try:
            self._sync(idx)
        except Violation as v:          # rings that no longer fit the memory: the port stops
            self._stop(v.reason, v.detail)

    def _dev_link(self):
        up = (self.conn is not None and self.dev.failed == 0 and all(
            self._ring_live(i) and self.rings[i].enabled for i in (0, 1)))
        return {"up": bool(up), "operstate": "up" if up else "down"}

    def _dev_info(self):
        return {"iface": self.iface, "client": bool(self.client), "queues": self.queues,
                "connected": self.conn is not None, "features": self.features,
                "protocol_features": self.protocol_features, "last_stop": self.last_stop}

    def _dev_queue_xstats(self, rx, q):
        """The driver's own counters of port queue q (beside its pd_eth_qstats)."""
        cdef vhost_vq *vq = self._vq(2 * q + 1 if rx else 2 * q)
        cdef int k
        if vq == NULL:
            return {}
        out = {"calls": vq.calls, "calls_suppressed": vq.calls_suppressed}
        if rx:
            for k in range(VQ_DROP_MAX):
                if DROP_NAMES[k] != "no_fit":
                    out["drop_" + DROP_NAMES[k]] = vq.drops[k]
        else:
            out["guest_full"] = vq.guest_full
            out["drop_no_fit"] = vq.drops[DROP_NAMES.index("no_fit")]
        return out

    def _dev_xstats(self):
        out = {}
        for r in STOP_REASONS:
            out["stop_" + r] = self.stops[r]
        out.update(self.events)
        return out

    def vring_state(self, int idx):
        """The datapath's view of vring idx (tests): ready, size, last_avail, last_used."""
        cdef vhost_vq *vq = self._vq(idx)
        if vq == NULL:
            return None
        return {"ready": bool(vq.ready), "size": vq.size, "last_avail": vq.last_avail,
                "last_used": vq.last_used, "hdr_len": vq.hdr_len}

    def _dev_queue_release(self, rx, q):
        cdef vhost_vq *vq = self._vq(2 * q + 1 if rx else 2 * q)
        if vq != NULL:
            with nogil:
                vq_lock(vq)
            vq.ready = 0
            vq_unlock(vq)

    def _dev_close(self):
        self.quit = True
        if self.wake_w >= 0:
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        with self.plock:
            if self.rings:
                self._disconnect(mid=False)
        if self.lsock is not None:
            self.lsock.close()
            self.lsock = None
            if self.created_socket:
                try:
                    os.unlink(self.iface)
                except OSError:
                    pass
        _close_fds([self.wake_r, self.wake_w, self.dev.notify_fd])
        self.wake_r = self.wake_w = self.dev.notify_fd = -1
