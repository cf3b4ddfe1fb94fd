"""The ethdev layer: ports, queues, the fast-path table and counters.

A driver is a module with a key table and a subclass of `EthDev` that fills
in the template spelled out at the top of ethdev.pxd: `__cinit__` names the
nogil burst functions, `_dev_probe` opens the device, the `_dev_*` queue
hooks allocate the driver's queue structs with `queue_alloc` (kept only in
the port's `pd_eth_fp` slot), start installs the burst functions in the
slot; stop puts the "stopped" functions back (rx gives nothing, tx takes
nothing) so an lcore still polling never touches a queue being torn down.
close releases everything, on every path (a probe that fails closes too).

Port ids are small integers, reused after close (like DPDK's). Stats come
from the `pd_eth_qstats` at the head of every queue struct, plus whatever
the driver adds (`_dev_queue_xstats` per queue, `_dev_xstats` per port).
`link` and `info()` have the same keys for every driver (LINK_KEYS,
INFO_KEYS), the driver's own details added to info().
"""
from libc.stdint cimport uint16_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

from pypdk.mempool.mbuf cimport Mbuf, PktMbufPool, pktmbuf_free
from pypdk.errors import UsageError, StateError
from pypdk.net.addr import mac_str

cdef pd_eth_fp _fp_table[PD_MAX_ETHPORTS]
_ports = [None] * PD_MAX_ETHPORTS

STAT_NAMES = ("ipackets", "opackets", "ibytes", "obytes", "imissed", "ierrors",
              "oerrors", "rx_nombuf")

# `port.link` of every driver: carrier and admin state, speed, duplex, the
# kernel's RFC 2863 operstate ("up", "down", ...; "closed" once the port is).
LINK_KEYS = ("up", "speed_mbps", "duplex", "operstate", "admin_up")
_LINK_VIRTUAL = {"up": True, "speed_mbps": 10000, "duplex": "full", "operstate": "up",
                 "admin_up": True}

# The keys `port.info()` has for every driver (drivers add their own after).
INFO_KEYS = ("port_id", "name", "driver", "state", "mac", "mtu", "promiscuous",
             "nb_rx_queues", "nb_tx_queues", "max_rx_queues", "max_tx_queues",
             "socket_id", "iface", "ifindex")


cdef uint16_t eth_rx_burst_stopped(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    return 0


cdef uint16_t eth_tx_burst_stopped(void *q, pd_mbuf **pkts, uint16_t n) noexcept nogil:
    return 0


cdef pd_eth_fp *eth_port_fp(uint16_t port_id) noexcept nogil:
    if port_id >= PD_MAX_ETHPORTS:
        return NULL
    return &_fp_table[port_id]


cdef uint16_t eth_rx_burst(uint16_t port_id, uint16_t queue_id, pd_mbuf **pkts,
                           uint16_t n) noexcept nogil:
    cdef pd_eth_fp *fp = &_fp_table[port_id]
    return fp.rx_burst(fp.rxq[queue_id], pkts, n)


cdef uint16_t eth_tx_burst(uint16_t port_id, uint16_t queue_id, pd_mbuf **pkts,
                           uint16_t n) noexcept nogil:
    cdef pd_eth_fp *fp = &_fp_table[port_id]
    return fp.tx_burst(fp.txq[queue_id], pkts, n)


def ports():
    """The open ports, by port id."""
    return [p for p in _ports if p is not None]


def get_port(port_id):
    """The port with this id (UsageError if none)."""
    if not 0 <= port_id < PD_MAX_ETHPORTS or _ports[port_id] is None:
        raise UsageError(f"port {port_id} does not exist",
                         f"open ports: {[p.port_id for p in ports()]}")
    return _ports[port_id]


cdef class EthDev:
    """A port. Drivers subclass it (the template: ethdev.pxd); apps use the
    methods below.

    Life cycle (DPDK's): configure(nb_rxq, nb_txq) -> rx_queue_setup /
    tx_queue_setup for each queue -> start() -> [rx_burst/tx_burst] ->
    stop() -> close(). `setup(pool, nb_rxq, nb_txq)` does the first three.
    A port is a context manager: `with pypdk.pmd.open(...) as port:` closes it.
    """
    max_rx_queues = 1
    max_tx_queues = 1
    DRIVER = None                  # the driver's name, e.g. "net_tap" (a subclass sets it)

    def __cinit__(self):
        self.port_id = -1
        self.state = "closed"
        self.socket_id = -1
        self.drv_rx = eth_rx_burst_stopped
        self.drv_tx = eth_tx_burst_stopped

    def __init__(self, str name, dict devargs):
        """Take a port id and its fast-path slot, then probe the device
        (`_dev_probe`); a probe that raises closes the port and re-raises."""
        cdef int pid = -1, i
        for i in range(PD_MAX_ETHPORTS):
            if _ports[i] is None:
                pid = i
                break
        if pid < 0:
            raise UsageError(f"{name}: no free port id (at most {PD_MAX_ETHPORTS} ports)",
                             "close ports you do not use")
        for p in ports():
            if p.name == name:
                raise UsageError(f"{name}: a port of that name is already open",
                                 "give each --vdev a different number (net_tap0, net_tap1, ...)")
        self.port_id = pid
        self.name = name
        self.driver = self.DRIVER
        self.devargs = devargs
        self.state = "probed"
        self.rx_pools = []
        self._mac = bytes([0x02, 0x70, 0x64, 0x6b, 0x00, pid])   # locally administered
        self._mtu = 1500
        self._promisc = True
        self.fp = &_fp_table[pid]
        memset(self.fp, 0, sizeof(pd_eth_fp))
        self.fp.port_id = pid
        self.fp.rx_burst = eth_rx_burst_stopped
        self.fp.tx_burst = eth_tx_burst_stopped
        _ports[pid] = self
        try:
            self._dev_probe(devargs)
        except BaseException:
            self.close()
            raise

    cdef void set_queue(self, bint rx, uint16_t q, void *queue):
        if rx:
            self.fp.rxq[q] = queue
        else:
            self.fp.txq[q] = queue

    cdef void *queue_alloc(self, bint rx, uint16_t q, size_t size) except NULL:
        """The struct of queue q (`size` bytes, beginning with a pd_eth_qstats):
        zeroed when new, the same memory when the queue is set up again. The
        port's slot is where it is kept; close frees it."""
        cdef void *p = self.fp.rxq[q] if rx else self.fp.txq[q]
        if p == NULL:
            p = calloc(1, size)
            if p == NULL:
                raise MemoryError()
            self.set_queue(rx, q, p)
        return p

    cdef _release_queues(self):
        cdef int q
        cdef void *p
        for q in range(PD_MAX_QUEUES):
            for rx in (True, False):
                p = self.fp.rxq[q] if rx else self.fp.txq[q]
                if p != NULL:
                    try:
                        self._dev_queue_release(rx, q)
                    finally:
                        free(p)
                        self.set_queue(rx, q, NULL)

    # ---- hooks a driver overrides (the template: ethdev.pxd) ---------------
    def _dev_probe(self, dict args):
        pass

    def _dev_configure(self, nb_rxq, nb_txq):
        pass

    def _dev_rx_queue_setup(self, q, nb_desc, pool):
        raise NotImplementedError

    def _dev_tx_queue_setup(self, q, nb_desc):
        raise NotImplementedError

    def _dev_start(self):
        pass

    def _dev_stop(self):
        pass

    def _dev_queue_release(self, rx, q):
        pass

    def _dev_close(self):
        pass

    def _dev_link(self):
        return _LINK_VIRTUAL

    def _dev_queue_xstats(self, rx, q):
        return {}

    def _dev_xstats(self):
        return {}

    def _dev_stats_update(self):
        pass

    def _dev_info(self):
        return {}

    def _dev_set_mtu(self, mtu):
        pass

    def _dev_set_promiscuous(self, on):
        pass

    # ---- life cycle --------------------------------------------------------
    def _need(self, *states):
        if self.state not in states:
            raise StateError(f"{self.name}: port is {self.state}",
                             f"this needs the port {' or '.join(states)}")

    def configure(self, nb_rxq=1, nb_txq=1):
        """Set the number of rx and tx queues (port stopped)."""
        self._need("probed", "configured", "stopped")
        if not 1 <= nb_rxq <= min(self.max_rx_queues, PD_MAX_QUEUES):
            raise UsageError(f"{self.name}: {nb_rxq} rx queues asked, the device has "
                             f"{self.max_rx_queues}", f"use 1..{self.max_rx_queues} rx queues")
        if not 1 <= nb_txq <= min(self.max_tx_queues, PD_MAX_QUEUES):
            raise UsageError(f"{self.name}: {nb_txq} tx queues asked, the device has "
                             f"{self.max_tx_queues}", f"use 1..{self.max_tx_queues} tx queues")
        self._dev_configure(nb_rxq, nb_txq)
        self.fp.nb_rxq = nb_rxq
        self.fp.nb_txq = nb_txq
        self.rx_pools = [None] * nb_rxq
        self.state = "configured"

    def rx_queue_setup(self, queue_id, nb_desc, PktMbufPool pool not None):
        """Set up rx queue `queue_id` with `nb_desc` descriptors, receiving into `pool`."""
        self._need("configured", "stopped")
        self._check_queue(queue_id, self.fp.nb_rxq, "rx")
        self._dev_rx_queue_setup(queue_id, nb_desc, pool)
        self.rx_pools[queue_id] = pool

    def tx_queue_setup(self, queue_id, nb_desc=1024):
        """Set up tx queue `queue_id` with `nb_desc` descriptors."""
        self._need("configured", "stopped")
        self._check_queue(queue_id, self.fp.nb_txq, "tx")
        self._dev_tx_queue_setup(queue_id, nb_desc)

    def _check_queue(self, q, n, what):
        if not 0 <= q < n:
            raise UsageError(f"{self.name}: {what} queue {q} does not exist ({n} configured)",
                             f"use {what} queues 0..{n - 1}")

    def setup(self, pool, nb_rxq=1, nb_txq=1, nb_rx_desc=1024, nb_tx_desc=1024):
        """configure + every queue's setup, all rx queues receiving into `pool`."""
        self.configure(nb_rxq, nb_txq)
        for q in range(nb_rxq):
            self.rx_queue_setup(q, nb_rx_desc, pool)
        for q in range(nb_txq):
            self.tx_queue_setup(q, nb_tx_desc)
        return self

    def start(self):
        """Start the device; rx/tx bursts now reach the driver."""
        self._need("configured", "stopped")
        for q in range(self.fp.nb_rxq):
            if self.fp.rxq[q] == NULL:
                raise StateError(f"{self.name}: rx queue {q} is not set up",
                                 "call rx_queue_setup for every rx queue before start")
        for q in range(self.fp.nb_txq):
            if self.fp.txq[q] == NULL:
                raise StateError(f"{self.name}: tx queue {q} is not set up",
                                 "call tx_queue_setup for every tx queue before start")
        self._dev_start()
        self.fp.rx_burst = self.drv_rx
        self.fp.tx_burst = self.drv_tx
        self.fp.started = 1
        self.state = "started"

    def stop(self):
        """Stop: bursts return 0 from now on. Lcores should stop polling first."""
        if self.state != "started":
            return
        self.fp.rx_burst = eth_rx_burst_stopped
        self.fp.tx_burst = eth_tx_burst_stopped
        self.fp.started = 0
        self._dev_stop()
        self.state = "stopped"

    def close(self):
        """Stop and release everything the driver took (idempotent)."""
        if self.state == "closed":
            return
        if self.fp == NULL:
            self.state = "closed"
            return
        try:
            self.stop()
        finally:
            try:
                self._dev_close()
            finally:
                try:
                    self._release_queues()
                finally:
                    memset(self.fp, 0, sizeof(pd_eth_fp))
                    self.fp.rx_burst = eth_rx_burst_stopped
                    self.fp.tx_burst = eth_tx_burst_stopped
                    if _ports[self.port_id] is self:
                        _ports[self.port_id] = None
                    self.state = "closed"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- fast path from Python (slow path use: tests, scripts) -------------
    def rx_burst(self, uint16_t queue_id=0, uint16_t n=32):
        """Receive up to n packets from a queue: a list of Mbuf the caller owns."""
        cdef pd_mbuf *pkts[256]
        cdef uint16_t got, i
        if queue_id >= max(self.fp.nb_rxq, 1):
            self._check_queue(queue_id, self.fp.nb_rxq, "rx")
        if n > 256:
            n = 256
        with nogil:
            got = self.fp.rx_burst(self.fp.rxq[queue_id], pkts, n)
        return [Mbuf.wrap(pkts[i]) for i in range(got)]

    def tx_burst(self, uint16_t queue_id, mbufs):
        """Send packets; returns how many were taken. The rest stay the caller's."""
        cdef pd_mbuf *pkts[256]
        cdef uint16_t n = 0, sent, i
        cdef Mbuf mb
        if queue_id >= max(self.fp.nb_txq, 1):
            self._check_queue(queue_id, self.fp.nb_txq, "tx")
        mbufs = list(mbufs)[:256]
        for mb in mbufs:
            pkts[n] = mb._p()
            n += 1
        with nogil:
            sent = self.fp.tx_burst(self.fp.txq[queue_id], pkts, n)
        for i in range(sent):
            (<Mbuf>mbufs[i]).m = NULL
        return sent

    # ---- information and counters ------------------------------------------
    @property
    def nb_rx_queues(self):
        return self.fp.nb_rxq

    @property
    def nb_tx_queues(self):
        return self.fp.nb_txq

    @property
    def mac(self):
        """The port's MAC address, 6 bytes (`mac_str(port.mac)` spells it)."""
        return self._mac

    @property
    def mtu(self):
        """The MTU in bytes; `port.mtu = N` is set_mtu(N)."""
        return self._mtu

    @mtu.setter
    def mtu(self, int mtu):
        self.set_mtu(mtu)

    @property
    def promiscuous(self):
        """Promiscuous mode; `port.promiscuous = on` is set_promiscuous(on)."""
        return bool(self._promisc)

    @promiscuous.setter
    def promiscuous(self, bint on):
        self.set_promiscuous(on)

    @property
    def link(self):
        """{'up': bool, 'speed_mbps': int, 'duplex': str, 'operstate': str,
        'admin_up': bool}, the same keys for every driver (LINK_KEYS)."""
        d = self._dev_link()
        return {k: d.get(k, _LINK_VIRTUAL[k]) for k in LINK_KEYS}

    def set_mtu(self, int mtu):
        """Set the MTU (68..65535); the driver applies it to the device first.

        Raises:
            UsageError: out of range, or refused by the device.
        """
        if not 68 <= mtu <= 65535:
            raise UsageError(f"{self.name}: MTU {mtu} is out of range", "use 68..65535")
        self._dev_set_mtu(mtu)
        self._mtu = mtu

    def set_promiscuous(self, bint on):
        """Turn promiscuous mode on or off (the driver applies it first)."""
        self._dev_set_promiscuous(on)
        self._promisc = on

    def info(self):
        """Driver, queues, MAC, MTU, state, NUMA node, kernel interface
        (INFO_KEYS, for every driver), then the driver's own details."""
        d = {"port_id": self.port_id, "name": self.name, "driver": self.driver,
             "state": self.state, "mac": mac_str(self._mac), "mtu": self._mtu,
             "promiscuous": bool(self._promisc),
             "nb_rx_queues": self.fp.nb_rxq if self.fp != NULL else 0,
             "nb_tx_queues": self.fp.nb_txq if self.fp != NULL else 0,
             "max_rx_queues": self.max_rx_queues, "max_tx_queues": self.max_tx_queues,
             "socket_id": self.socket_id, "iface": None, "ifindex": None}
        d.update(self._dev_info())
        return d

    def queue_stats(self):
        """Per-queue counters: {'rx': [{...}, ...], 'tx': [{...}, ...]}."""
        cdef pd_eth_qstats *s
        self._dev_stats_update()
        rx, tx = [], []
        for q in range(self.fp.nb_rxq):
            s = <pd_eth_qstats *>self.fp.rxq[q]
            rx.append({"packets": s.packets, "bytes": s.bytes, "errors": s.errors,
                       "nombuf": s.nombuf, "missed": s.missed} if s != NULL else
                      {"packets": 0, "bytes": 0, "errors": 0, "nombuf": 0, "missed": 0})
        for q in range(self.fp.nb_txq):
            s = <pd_eth_qstats *>self.fp.txq[q]
            tx.append({"packets": s.packets, "bytes": s.bytes, "errors": s.errors}
                      if s != NULL else {"packets": 0, "bytes": 0, "errors": 0})
        return {"rx": rx, "tx": tx}

    def stats(self):
        """Port counters by DPDK's names (ipackets, opackets, ibytes, obytes,
        imissed, ierrors, oerrors, rx_nombuf)."""
        qs = self.queue_stats()
        st = {
            "ipackets": sum(q["packets"] for q in qs["rx"]),
            "opackets": sum(q["packets"] for q in qs["tx"]),
            "ibytes": sum(q["bytes"] for q in qs["rx"]),
            "obytes": sum(q["bytes"] for q in qs["tx"]),
            "imissed": sum(q["missed"] for q in qs["rx"]),
            "ierrors": sum(q["errors"] for q in qs["rx"]),
            "oerrors": sum(q["errors"] for q in qs["tx"]),
            "rx_nombuf": sum(q["nombuf"] for q in qs["rx"]),
        }
        extra = self._dev_xstats()
        for k in STAT_NAMES:   # a driver that counts in the kernel adds here
            if k in extra:
                st[k] += extra[k]
        return st

    def xstats(self):
        """Extended stats by name: per-queue counters and the driver's own."""
        out = {}
        qs = self.queue_stats()
        for q, s in enumerate(qs["rx"]):
            for k, v in s.items():
                out[f"rx_q{q}_{k}"] = v
        for q, s in enumerate(qs["tx"]):
            for k, v in s.items():
                out[f"tx_q{q}_{k}"] = v
        for q in range(self.fp.nb_rxq):
            if self.fp.rxq[q] != NULL:
                for k, v in self._dev_queue_xstats(True, q).items():
                    out[f"rx_q{q}_{k}"] = v
        for q in range(self.fp.nb_txq):
            if self.fp.txq[q] != NULL:
                for k, v in self._dev_queue_xstats(False, q).items():
                    out[f"tx_q{q}_{k}"] = v
        for k, v in self._dev_xstats().items():
            out[k if k not in STAT_NAMES else f"dev_{k}"] = v
        return out

    def stats_reset(self):
        """Zero the queue counters (not safe while an lcore polls the port)."""
        for q in range(self.fp.nb_rxq):
            if self.fp.rxq[q] != NULL:
                memset(self.fp.rxq[q], 0, sizeof(pd_eth_qstats))
        for q in range(self.fp.nb_txq):
            if self.fp.txq[q] != NULL:
                memset(self.fp.txq[q], 0, sizeof(pd_eth_qstats))

    @property
    def fp_addr(self):
        """Address of the port's pd_eth_fp slot (for Cython code)."""
        return <uintptr_t>self.fp

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} port {self.port_id} {self.state}>"
