"""net_tap: a port on a Linux tap device, the kernel's network stack as the peer.

A tap is a virtual Ethernet interface whose "wire" is a file descriptor:
what the kernel transmits on it we read, what we write the kernel receives.
It is the simplest way to connect a pypdk app to the host (or to a network
namespace): slow next to AF_XDP (one syscall per frame each way) but it runs
anywhere /dev/net/tun exists and needs nothing else.

Design
------
Open: `/dev/net/tun` once per queue, `TUNSETIFF` with IFF_TAP | IFF_NO_PI
(| IFF_MULTI_QUEUE when `queues` > 1: one fd per rx/tx queue pair), fds
non-blocking. Queue q's rx and tx both use fd q. With several queues the
kernel picks the fd for each frame by a hash of its flow, so different flows
arrive on different rx queues; the port must be configured with exactly
`queues` rx and tx queues (a fd nobody polls would swallow its flows).

Created or attached (as in snabb's tap app): when the interface does not
exist, we create it and it goes away at close (`persist=1` keeps it, as
`ip tuntap add` would). When a tap of that name already exists we attach to
it and leave it existing at close; its multi-queue flag must match `queues`.
`info()["created"]` says which. `start` brings the interface up, `stop`
puts back the up/down state it had at open.

The kernel side is found through the fd, not by name: `TUNGETIFF` gives the
interface's current name and `TUNGETDEVNETNS` its network namespace, so the
control operations (up/down, MTU, link state) keep working after the test or
the operator moves the tap into another namespace (`ip link set dtap0 netns
NS`; the fd stays valid). The control socket for a foreign namespace is
made by a short-lived thread that `setns`'es into it.

rx_burst (nogil): each queue keeps a stash of up to 64 fresh mbufs, refilled
in one bulk get when it runs low, so an idle poll costs one read() that
returns EAGAIN and no mempool work. A frame is read with one readv() into
the top segments of the stash: as many segments of `data_room` bytes as a
frame of MTU + 26 bytes needs (one, with the defaults). A frame longer than
that receive area (the MTU was raised on the kernel side) is counted in
`ierrors` and dropped. The burst ends at the first EAGAIN or at n frames.
With no mbuf for the next frame, `rx_nombuf` counts one and the burst ends;
the frame waits in the kernel. tun cuts a frame longer than the buffer
without a word, so a 64-byte spill iovec follows the mbufs: a read that
reaches it was too long.

tx_burst (nogil): one writev() per packet, an iovec per segment. EAGAIN
ends the burst (the caller keeps the rest, as with a full NIC ring); any
other error (EIO: the interface is down; EINVAL: a runt) counts the packet in
`oerrors` and it is freed like a sent one.

MAC: the tap's own (kernel) MAC is the peer's address, the host side of the
wire. The port's MAC, which apps put in their frames, is `mac=` or a random
locally administered one; `mac=fixed` gives 02:64:74:61:70:<N> (N: the
device number).

Keys:
  iface    NAME   interface name (default dtap<N>, N from net_tap<N>)
  queues   N      rx/tx queue pairs, 1..16 (default 1); >1 uses IFF_MULTI_QUEUE
  mac      MAC    the port's MAC, xx:xx:xx:xx:xx:xx or "fixed" (default random)
  persist  0/1    1: a tap we create stays after close (default 0)

Caveats: needs CAP_NET_ADMIN and /dev/net/tun; no offloads (no vnet header),
so the kernel sends frames no larger than its MTU; promiscuous mode is
always on (a tap hands over everything).
"""
import ctypes
import errno as _errno
import fcntl
import os
import random
import struct
import threading

from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memset
from libc.errno cimport errno, EAGAIN, EINTR
from posix.uio cimport iovec, readv, writev

from pypdk.mempool.mbuf cimport (pd_mbuf, pktmbuf_alloc_bulk, pktmbuf_free_bulk, mbuf_mtod,
                                 PktMbufPool)
from pypdk.mempool.mempool cimport pd_mempool
from pd_compiler cimport pd_likely, pd_unlikely
from pypdk.pmd.ethdev cimport EthDev, pd_eth_qstats, PD_MAX_QUEUES

from pypdk.pmd import netdev
from pypdk.pmd.devargs import Key, parse_bool
from pypdk.errors import UsageError, ResourceError, StateError
from pypdk.net.addr import parse_mac

cdef extern from "<sys/ioctl.h>":
    pass                        # _IOW and friends, which <linux/if_tun.h> uses

cdef extern from "<linux/if_tun.h>":
    enum:
        _TUNSETIFF "TUNSETIFF"
        _TUNSETPERSIST "TUNSETPERSIST"
        _TUNGETIFF "TUNGETIFF"
        _TUNGETDEVNETNS "TUNGETDEVNETNS"
        _IFF_TAP "IFF_TAP"
        _IFF_NO_PI "IFF_NO_PI"
        _IFF_MULTI_QUEUE "IFF_MULTI_QUEUE"

cdef extern from "<net/if.h>":
    enum:
        _IFNAMSIZ "IFNAMSIZ"

cdef extern from *:
    """
    #define TAP_STASH     64   /* fresh mbufs an rx queue keeps for the next frames */
    #define TAP_MAX_SEGS  64   /* iovecs per frame, rx and tx */
    #define TAP_FRAME_EXTRA 26 /* Ethernet header 14 + two VLAN tags 8 + FCS room 4 */
    """
    enum:
        TAP_STASH
        TAP_MAX_SEGS
        TAP_FRAME_EXTRA

TUNSETIFF = _TUNSETIFF
TUNSETPERSIST = _TUNSETPERSIST
TUNGETIFF = _TUNGETIFF
TUNGETDEVNETNS = _TUNGETDEVNETNS
IFF_TAP = _IFF_TAP
IFF_NO_PI = _IFF_NO_PI
IFF_MULTI_QUEUE = _IFF_MULTI_QUEUE
IFNAMSIZ = _IFNAMSIZ
CLONE_NEWNET = 0x40000000

DRIVER = "net_tap"
HELP = "a Linux tap interface (the kernel stack is the peer)"
KEYS = (
    Key("iface", str, None, "tap interface name (default dtap<N>)"),
    Key("queues", int, 1, "rx/tx queue pairs, 1..16 (>1: multi-queue tap)"),
    Key("mac", str, None, "the port's MAC, xx:xx:xx:xx:xx:xx or 'fixed' (default random)"),
    Key("persist", parse_bool, False, "1: a tap created by the port stays after close"),
)


ctypedef struct tap_rxq:
    pd_eth_qstats stats
    pd_mempool *mp
    int fd
    uint32_t room       # data room of one segment
    uint32_t nseg       # segments in the receive area of one frame
    uint32_t nstash
    uint16_t port
    uint16_t queue
    uint64_t too_long   # frames longer than the receive area (also in errors)
    pd_mbuf *stash[TAP_STASH]
    char spill[64]      # the iovec after the receive area: a byte here means "cut"

ctypedef struct tap_txq:
    pd_eth_qstats stats
    int fd
    int last_errno
    uint64_t too_many_segs


# ---- rx --------------------------------------------------------------------

cdef inline int rx_refill(tap_rxq *rxq) noexcept nogil:
    """Make sure the stash holds a whole receive area; 0 or -1 (pool empty)."""
    if pktmbuf_alloc_bulk(rxq.mp, rxq.stash + rxq.nstash, TAP_STASH - rxq.nstash) == 0:
        rxq.nstash = TAP_STASH
        return 0
    # Short pool: just what the next frame needs.
    if pktmbuf_alloc_bulk(rxq.mp, rxq.stash + rxq.nstash, rxq.nseg - rxq.nstash) == 0:
        rxq.nstash = rxq.nseg
        return 0
    return -1


cdef uint16_t tap_rx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef tap_rxq *rxq = <tap_rxq *>q
    cdef iovec iov[TAP_MAX_SEGS + 1]
    cdef uint16_t nb = 0
    cdef uint32_t s, used, area = rxq.nseg * rxq.room
    cdef ssize_t r
    cdef uint64_t nbytes = 0
    cdef pd_mbuf *m
    cdef pd_mbuf *seg
    while nb < n:
        if pd_unlikely(rxq.nstash < rxq.nseg):
            if rx_refill(rxq) != 0:
                rxq.stats.nombuf += 1
                break
        # The receive area is the top of the stash: stash[top] is segment 0.
        for s in range(rxq.nseg):
            seg = rxq.stash[rxq.nstash - 1 - s]
            iov[s].iov_base = mbuf_mtod(seg)
            iov[s].iov_len = rxq.room
        # tun cuts a frame to the buffer and says nothing: a spill area after
        # the mbufs shows that it was longer.
        iov[rxq.nseg].iov_base = rxq.spill
        iov[rxq.nseg].iov_len = sizeof(rxq.spill)
        r = readv(rxq.fd, iov, <int>rxq.nseg + 1)
        if r <= 0:
            if r < 0 and errno == EINTR:
                continue
            if r < 0 and errno != EAGAIN:
                rxq.stats.errors += 1       # EBADFD and friends: the device is gone
            break
        if pd_unlikely(<size_t>r > area):
            rxq.too_long += 1
            rxq.stats.errors += 1
            continue
        used = (<uint32_t>r + rxq.room - 1) // rxq.room
        m = rxq.stash[rxq.nstash - 1]
        m.pkt_len = <uint32_t>r
        m.nb_segs = <uint16_t>used
        m.port = rxq.port
        m.queue = rxq.queue
        for s in range(used):
            seg = rxq.stash[rxq.nstash - 1 - s]
            if s + 1 < used:
                seg.data_len = <uint16_t>rxq.room
                seg.next = rxq.stash[rxq.nstash - 2 - s]
            else:
                seg.data_len = <uint16_t>(<uint32_t>r - s * rxq.room)
        rxq.nstash -= used
        pkts[nb] = m
        nb += 1
        nbytes += <uint64_t>r
    rxq.stats.packets += nb
    rxq.stats.bytes += nbytes
    return nb


# ---- tx --------------------------------------------------------------------

cdef uint16_t tap_tx(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    cdef tap_txq *txq = <tap_txq *>q
    cdef iovec iov[TAP_MAX_SEGS]
    cdef uint16_t i = 0
    cdef int k
    cdef ssize_t r
    cdef pd_mbuf *seg
    cdef uint64_t nbytes = 0, npkts = 0
    while i < n:
        seg = pkts[i]
        k = 0
        while seg != NULL and k < TAP_MAX_SEGS:
            iov[k].iov_base = mbuf_mtod(seg)
            iov[k].iov_len = seg.data_len
            k += 1
            seg = seg.next
        if pd_unlikely(seg != NULL):
            txq.too_many_segs += 1
            txq.stats.errors += 1
            i += 1
            continue
        r = writev(txq.fd, iov, k)
        while r < 0 and errno == EINTR:
            r = writev(txq.fd, iov, k)
        if pd_unlikely(r < 0):
            if errno == EAGAIN:
                break                       # kernel queue full: the caller keeps pkts[i:]
            txq.last_errno = errno          # dropped, and freed like a sent one
            txq.stats.errors += 1
        else:
            npkts += 1
            nbytes += pkts[i].pkt_len
        i += 1
    pktmbuf_free_bulk(pkts, i)
    txq.stats.packets += npkts
    txq.stats.bytes += nbytes
    return i


# ---- control (slow path) ----------------------------------------------------

def _parse_mac(str text, int devno):
    if text is None:
        b = bytearray(random.getrandbits(8) for _ in range(6))
        b[0] = (b[0] & 0xfc) | 0x02             # unicast, locally administered
        return bytes(b)
    if text.lower() == "fixed":
        return bytes([0x02, 0x64, 0x74, 0x61, 0x70, devno & 0xff])
    try:
        mac = parse_mac(text)
    except UsageError:
        raise UsageError(f"mac={text}: not a MAC address",
                         "write it as xx:xx:xx:xx:xx:xx, or mac=fixed") from None
    if mac[0] & 1 or mac == bytes(6):
        raise UsageError(f"mac={text}: a port needs a unicast, non-zero MAC",
                         "clear the low bit of the first byte (e.g. 02:...)")
    return mac


_libc = ctypes.CDLL(None, use_errno=True)


def _socket_in_netns(int nsfd):
    """An AF_INET datagram socket living in the network namespace `nsfd`.

    setns() moves only the calling thread, so a throw-away thread enters the
    namespace and makes the socket; a socket keeps its namespace for life.
    """
    out = {}

    def run():
        try:
            if _libc.setns(nsfd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
            out["sock"] = netdev.control_socket()
        except OSError as e:
            out["err"] = e

    t = threading.Thread(target=run, name="pypdk-tap-netns")
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    return out["sock"]


def _tun_open(str iface, int flags):
    """One tap fd attached to `iface`; the interface's name (kernel-filled)."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ResourceError("/dev/net/tun does not exist (no tun/tap support)",
                            "load the module: modprobe tun (in a container: "
                            "mknod /dev/net/tun c 10 200, or pass --device /dev/net/tun)") from None
    except PermissionError:
        raise ResourceError("no permission to open /dev/net/tun",
                            "run as root or with CAP_NET_ADMIN") from None
    try:
        ifr = fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", iface.encode(), flags))
    except OSError as e:
        os.close(fd)
        if e.errno == _errno.EPERM:
            raise ResourceError(f"iface={iface}: no permission to create or attach the tap",
                                "run as root or with CAP_NET_ADMIN") from None
        if e.errno == _errno.EBUSY:
            raise ResourceError(f"iface={iface}: the tap is busy (another process holds it "
                                "and it is not multi-queue)",
                                "stop the other user, or create it with "
                                "'ip tuntap add ... multi_queue'") from None
        if e.errno == _errno.EINVAL:
            raise UsageError(f"iface={iface}: the kernel refused to attach (EINVAL: a "
                             "tun rather than a tap, or multi-queue flags differ)",
                             "use another iface name, or match queues= to the tap") from None
        raise ResourceError(f"iface={iface}: TUNSETIFF failed ({e.strerror})",
                            "check the interface name and the tun module") from None
    return fd, ifr[:16].rstrip(b"\0").decode()


cdef class Port(EthDev):
    DRIVER = DRIVER

    cdef list fds
    cdef readonly str iface
    cdef readonly bint created
    cdef int nq
    cdef int was_up         # the interface was up at open (restored at stop)
    cdef object _ctl        # (netns inode, socket): the control socket, cached

    def __cinit__(self):
        self.drv_rx = tap_rx
        self.drv_tx = tap_tx
        self.fds = []
        self._ctl = None

    cdef inline tap_rxq *rxq(self, int q):
        return <tap_rxq *>self.fp.rxq[q]

    cdef inline tap_txq *txq(self, int q):
        return <tap_txq *>self.fp.txq[q]

    @property
    def max_rx_queues(self):
        return self.nq

    @property
    def max_tx_queues(self):
        return self.nq

    def _dev_probe(self, dict args):
        devno = int("".join(c for c in self.name if c.isdigit()) or 0)
        self.iface = args["iface"] if args["iface"] is not None else f"dtap{devno}"
        if not netdev.valid_name(self.iface):
            raise UsageError(f"{self.name}: iface={self.iface!r} is not a valid interface name",
                             f"use 1..{IFNAMSIZ - 1} characters, no '/', ':', '%' or spaces")
        self.nq = args["queues"]
        if not 1 <= self.nq <= 16:
            raise UsageError(f"{self.name}: queues={self.nq} is out of range", "use queues=1..16")
        self._mac = _parse_mac(args["mac"], devno)
        flags = IFF_TAP | IFF_NO_PI
        self.created = not netdev.exists(self.iface)
        if not self.created:
            tun_flags = netdev.sysfs(self.iface, "tun_flags")
            if tun_flags is None:
                raise UsageError(f"{self.name}: interface {self.iface} exists and is not a "
                                 "tap device", "give another iface= name")
            tun_flags = int(tun_flags, 16)
            if not tun_flags & IFF_TAP:
                raise UsageError(f"{self.name}: interface {self.iface} is a tun (layer 3) "
                                 "device, not a tap", "give another iface= name")
            if self.nq > 1 and not tun_flags & IFF_MULTI_QUEUE:
                raise UsageError(f"{self.name}: tap {self.iface} exists without multi-queue, "
                                 f"queues={self.nq} needs it",
                                 f"use queues=1, or recreate it: ip tuntap add dev "
                                 f"{self.iface} mode tap multi_queue")
            flags |= tun_flags & IFF_MULTI_QUEUE
        elif self.nq > 1:
            flags |= IFF_MULTI_QUEUE
        for q in range(self.nq):
            fd, ifname = _tun_open(self.iface, flags)
            self.fds.append(fd)
        if self.created and args["persist"]:
            fcntl.ioctl(self.fds[0], TUNSETPERSIST, 1)
        s, _ = self._ctl_sock()
        self.was_up = netdev.is_up(s, self._kernel_name())
        self._mtu = netdev.get_mtu(s, self._kernel_name())

    # -- the interface wherever it lives --------------------------------------
    def _kernel_name(self):
        ifr = fcntl.ioctl(self.fds[0], TUNGETIFF, bytes(40))
        return ifr[:16].rstrip(b"\0").decode()

    def _ctl_sock(self):
        """A socket in the tap's current network namespace, and its inode."""
        nsfd = fcntl.ioctl(self.fds[0], TUNGETDEVNETNS)
        try:
            ino = os.fstat(nsfd).st_ino
            if self._ctl is not None and self._ctl[0] == ino:
                return self._ctl[1], ino
            if self._ctl is not None:
                self._ctl[1].close()
            if ino == os.stat("/proc/thread-self/ns/net").st_ino:
                s = netdev.control_socket()
            else:
                s = _socket_in_netns(nsfd)
            self._ctl = (ino, s)
            return s, ino
        finally:
            os.close(nsfd)

    def _set_up(self, bint up):
        s, _ = self._ctl_sock()
        netdev.set_up(s, self._kernel_name(), up)

    @property
    def kernel_iface(self):
        """The interface's current name (it may have been renamed or moved)."""
        return self._kernel_name()

    @property
    def in_this_netns(self):
        nsfd = fcntl.ioctl(self.fds[0], TUNGETDEVNETNS)
        try:
            return os.fstat(nsfd).st_ino == os.stat("/proc/thread-self/ns/net").st_ino
        finally:
            os.close(nsfd)

    # -- queues and life cycle -------------------------------------------------
    def _dev_configure(self, nb_rxq, nb_txq):
        # The kernel spreads flows over every attached fd: a queue nobody
        # polls would silently eat its share of the traffic.
        if nb_rxq != self.nq or nb_txq != self.nq:
            raise UsageError(f"{self.name}: queues={self.nq}, but {nb_rxq} rx and {nb_txq} tx "
                             "queues were configured",
                             f"configure {self.nq} rx and tx queues, or set queues={nb_rxq}")

    def _dev_rx_queue_setup(self, q, nb_desc, PktMbufPool pool):
        cdef tap_rxq *rxq
        cdef uint32_t room = pool.data_room
        if room < 64:
            raise UsageError(f"{self.name}: pool {pool.name!r} has a data room of {room} bytes",
                             "use a pool with data_room >= 64")
        if self.rxq(q) != NULL:
            self._dev_queue_release(True, q)
        rxq = <tap_rxq *>self.queue_alloc(True, q, sizeof(tap_rxq))
        memset(rxq, 0, sizeof(tap_rxq))
        rxq.mp = pool.mp
        rxq.fd = self.fds[q]
        rxq.room = room
        rxq.port = self.port_id
        rxq.queue = q
        self._size_rx(rxq, self._mtu)

    cdef _size_rx(self, tap_rxq *rxq, int mtu):
        cdef uint32_t nseg = (mtu + TAP_FRAME_EXTRA + rxq.room - 1) // rxq.room
        if nseg > TAP_MAX_SEGS:
            raise UsageError(f"{self.name}: MTU {mtu} needs {nseg} segments of {rxq.room} "
                             f"bytes, more than {TAP_MAX_SEGS}", "use a pool with a bigger "
                             "data_room or a smaller MTU")
        rxq.nseg = nseg

    def _dev_tx_queue_setup(self, q, nb_desc):
        cdef tap_txq *txq
        if self.txq(q) == NULL:
            txq = <tap_txq *>self.queue_alloc(False, q, sizeof(tap_txq))
            txq.fd = self.fds[q]

    def _dev_start(self):
        self._set_up(True)

    def _dev_stop(self):
        for q in range(PD_MAX_QUEUES):
            if self.rxq(q) != NULL:
                self._dev_queue_release(True, q)
        if not self.was_up:
            try:
                self._set_up(False)
            except OSError:
                pass            # the interface went away under us: nothing to restore

    def _dev_queue_release(self, rx, q):
        # The stash's mbufs go back to the pool.
        cdef tap_rxq *rxq
        if rx:
            rxq = self.rxq(q)
            pktmbuf_free_bulk(rxq.stash, rxq.nstash)
            rxq.nstash = 0

    def _dev_close(self):
        if self._ctl is not None:
            self._ctl[1].close()
            self._ctl = None
        # Closing the last fd removes a tap we created (not persistent); an
        # attached one stays.
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def _dev_set_mtu(self, mtu):
        cdef tap_rxq *rxq
        for q in range(PD_MAX_QUEUES):
            rxq = self.rxq(q)
            if rxq != NULL:
                if (mtu + TAP_FRAME_EXTRA + rxq.room - 1) // rxq.room > TAP_MAX_SEGS:
                    self._size_rx(rxq, mtu)       # raises
        try:
            s, _ = self._ctl_sock()
            netdev.set_mtu(s, self._kernel_name(), mtu)
        except OSError as e:
            raise UsageError(f"{self.name}: the kernel refused MTU {mtu} on {self.iface} "
                             f"({e.strerror})", "use 68..65521") from None
        for q in range(PD_MAX_QUEUES):
            if self.rxq(q) != NULL:
                self._size_rx(self.rxq(q), mtu)

    def _dev_link(self):
        if not self.fds:
            return {"up": False, "speed_mbps": 0, "duplex": "full", "operstate": "closed",
                    "admin_up": False}
        s, _ = self._ctl_sock()
        d = netdev.link(s, self._kernel_name(), in_this_netns=self.in_this_netns)
        d["speed_mbps"] = 10000         # tun reports 10 Mb/s; a tap goes as fast as the cpu
        return d

    def _dev_queue_xstats(self, rx, q):
        if rx:
            return {"too_long": self.rxq(q).too_long}
        return {"too_many_segs": self.txq(q).too_many_segs, "errno": self.txq(q).last_errno}

    def _dev_info(self):
        d = {"iface": self.iface, "created": bool(self.created),
             "persist": bool(self.devargs["persist"]), "queues": self.nq}
        if self.fds:
            try:
                d["kernel_iface"] = self._kernel_name()
                d["in_this_netns"] = self.in_this_netns
                if d["in_this_netns"]:
                    d["ifindex"] = netdev.ifindex(d["kernel_iface"]) or None
            except OSError:
                pass
        return d
