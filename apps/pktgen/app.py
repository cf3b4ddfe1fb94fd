"""pktgen: a traffic generator on pypdk (see README.md).

Sends IPv4 or IPv6, UDP or TCP SYN frames of one size on a port, spread over
`--flows` flows (flow i: source address + i, source port + i), as fast as
the port takes them or at `--rate` packets per second, `--count` packets or
until stopped (`--duration`, Ctrl-C). Every frame carries a stamp in its
payload (magic, sequence number, tx time); with `--rx-port` the app receives
on that port (the same one or another) and counts what came back, what was
lost, and the latency (min/avg/max ns).

This module is the slow path: options, the template frame (built once, here,
in Python), ports, pool and the Plan; `gen.pyx` is the hot loop.
"""
from __future__ import annotations

import ipaddress
import struct

import click

from pypdk.errors import UsageError
from pypdk.net.addr import parse_mac
from pypdk.net.proto import (ETHER_HDR_LEN, ETHER_MIN_LEN, ETHER_TYPE_IPV4, ETHER_TYPE_IPV6, IPPROTO_TCP,
                             IPPROTO_UDP, IPV4_HDR_LEN, IPV6_HDR_LEN, TCP_HDR_LEN, UDP_HDR_LEN)
from pypdk.mempool import PktMbufPool
from pypdk.worker import make_plan

from . import gen

NB_RXD = 1024
NB_TXD = 1024
POOL_MIN = 8192
POOL_CACHE = 256
MIN_FRAME = ETHER_MIN_LEN       # Ethernet minimum without the FCS
MAX_FRAME = 9600
DEFAULTS = {4: ("198.18.0.1", "198.19.0.1"),        # RFC 2544 benchmarking range
            6: ("2001:2::1", "2001:2::2")}          # RFC 5180 benchmarking range
PROTO = {"udp": IPPROTO_UDP, "tcp": IPPROTO_TCP}
L4_HLEN = {"udp": UDP_HDR_LEN, "tcp": TCP_HDR_LEN}


# ---- option parsing ----------------------------------------------------------------

def parse_rate(text) -> float:
    """'1000', '2.5k', '1M', '0' -> packets per second (0: as fast as possible)."""
    t = str(text).strip()
    mult = 1.0
    if t and t[-1] in "kKmMgG":
        mult = {"k": 1e3, "m": 1e6, "g": 1e9}[t[-1].lower()]
        t = t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise UsageError(f"--rate {text!r} is not a packet rate",
                         "give packets per second, e.g. --rate 1000 or --rate 1.5M") from None
    if v < 0 or v != v:
        raise UsageError(f"--rate {text!r} is negative", "give 0 (as fast as possible) or more")
    return v


def parse_ip(text, family, what):
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not an IP address",
                         "write it like 198.18.0.1 or 2001:2::1") from None
    if a.version != family:
        raise UsageError(f"{what} {text} is IPv{a.version} but the packets are IPv{family}",
                         "drop --ipv6 for IPv4 addresses" if family == 4 else
                         "give IPv6 addresses with --ipv6")
    return a


def _rate_cb(ctx, param, value):
    try:
        return parse_rate(value)
    except UsageError as e:
        raise click.BadParameter(e.line()) from None


def options():
    """The app's own options (after `--`)."""

    @click.command("pktgen", help="Generate IPv4/IPv6 UDP or TCP SYN traffic on a port; "
                                  "optionally receive it back and measure loss and latency.")
    @click.option("--tx-port", type=click.IntRange(0), default=0, show_default=True, metavar="P",
                  help="port to send on")
    @click.option("--rx-port", type=click.IntRange(0), default=None, metavar="P",
                  help="port to receive and count on (the same or another; default: none)")
    @click.option("--size", type=click.IntRange(MIN_FRAME, MAX_FRAME), default=64,
                  show_default=True, metavar="BYTES", help="frame length, without the FCS")
    @click.option("--flows", type=click.IntRange(1, 1 << 24), default=1, show_default=True,
                  metavar="N", help="flows: flow i uses source address + i, source port + i")
    @click.option("--proto", type=click.Choice(["udp", "tcp"]), default="udp", show_default=True,
                  help="udp datagrams, or tcp SYN segments")
    @click.option("--ipv6", is_flag=True, help="IPv6 instead of IPv4")
    @click.option("--src-ip", default=None, metavar="ADDR",
                  help="flow 0's source address (default 198.18.0.1 / 2001:2::1)")
    @click.option("--dst-ip", default=None, metavar="ADDR",
                  help="destination address (default 198.19.0.1 / 2001:2::2)")
    @click.option("--sport", type=click.IntRange(0, 65535), default=1024, show_default=True,
                  metavar="N",
                  help="flow 0's source port")
    @click.option("--dport", type=click.IntRange(0, 65535), default=9, show_default=True,
                  metavar="N",
                  help="destination port")
    @click.option("--src-mac", default=None, metavar="MAC",
                  help="source MAC (default: the tx port's MAC)")
    @click.option("--dst-mac", default="ff:ff:ff:ff:ff:ff", show_default=True, metavar="MAC",
                  help="destination MAC")
    @click.option("--rate", default="0", callback=_rate_cb, metavar="PPS",
                  help="packets per second, k/M/G suffixes allowed; 0: as fast as possible "
                       "[default: 0]")
    @click.option("--count", type=click.IntRange(0), default=0, show_default=True, metavar="N",
                  help="packets to send, then stop; 0: until stopped (--duration, Ctrl-C)")
    @click.option("--burst", type=click.IntRange(1, gen.MAX_BURST), default=32, metavar="N",
                  show_default=True, help="packets per tx burst")
    @click.option("--drain", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                  metavar="SECONDS",
                  help="how long rx waits for late packets after the last one is sent")
    def command(**kw):
        pass

    return command


# ---- the template --------------------------------------------------------------------

def header_len(ipv6: bool, proto: str) -> int:
    """Bytes before the stamp: Ethernet + IP + L4 headers."""
    return ETHER_HDR_LEN + (IPV6_HDR_LEN if ipv6 else IPV4_HDR_LEN) + L4_HLEN[proto]


def min_size(ipv6: bool, proto: str) -> int:
    return max(MIN_FRAME, header_len(ipv6, proto) + gen.STAMP_LEN)


def build_template(size, *, ipv6=False, proto="udp", src_mac=bytes(6), dst_mac=b"\xff" * 6,
                   src_ip=None, dst_ip=None, sport=0, dport=9):
    """The frame every packet starts from, with the per-flow fields zeroed.

    Zeroed: the low 32 bits of the source address, the source port, the IPv4
    and L4 checksums, and the stamp (the first STAMP_LEN payload bytes); gen
    fills them per packet. The rest of the payload is a byte counter.

    Returns (template bytes, offsets dict for gen.Gen, src_low: flow 0's
    source address low 32 bits).

    Raises:
        UsageError: a size too small for the headers and the stamp.
    """
    fam = 6 if ipv6 else 4
    src = ipaddress.ip_address(src_ip or DEFAULTS[fam][0])
    dst = ipaddress.ip_address(dst_ip or DEFAULTS[fam][1])
    need = min_size(ipv6, proto)
    if size < need:
        raise UsageError(f"--size {size} is too small for IPv{fam}/{proto.upper()} with the "
                         f"{gen.STAMP_LEN}-byte stamp", f"use --size {need} or more")
    if size > MAX_FRAME:
        raise UsageError(f"--size {size} is too big", f"use --size {MIN_FRAME}..{MAX_FRAME}")
    l3 = ETHER_HDR_LEN
    l4 = l3 + (IPV6_HDR_LEN if ipv6 else IPV4_HDR_LEN)
    l4_len = size - l4
    stamp = l4 + L4_HLEN[proto]
    src_bytes = src.packed
    src_low = int.from_bytes(src_bytes[-4:], "big")
    src_zeroed = src_bytes[:-4] + bytes(4)
    eth = dst_mac + src_mac + struct.pack("!H", ETHER_TYPE_IPV6 if ipv6 else ETHER_TYPE_IPV4)
    if ipv6:
        ip = struct.pack("!IHBB", 0x60000000, l4_len, PROTO[proto], 64) + src_zeroed + dst.packed
        off_src, off_ip_csum = l3 + 8 + 12, 0
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, size - l3, 0, 0x4000, 64, PROTO[proto], 0)
        ip += src_zeroed + dst.packed
        off_src, off_ip_csum = l3 + 12, l3 + 10
    if proto == "udp":
        l4h = struct.pack("!HHHH", 0, dport, l4_len, 0)
        off_l4_csum = l4 + 6
    else:
        # A SYN: sequence 1, window 65535, data offset 5 words, no options.
        l4h = struct.pack("!HHIIBBHHH", 0, dport, 1, 0, 0x50, 0x02, 65535, 0, 0)
        off_l4_csum = l4 + 16
    rest = size - stamp - gen.STAMP_LEN
    payload = bytes(gen.STAMP_LEN) + bytes(i & 0xff for i in range(rest))
    frame = eth + ip + l4h + payload
    assert len(frame) == size
    offsets = {"l3": l3, "l4": l4, "src": off_src, "sport": l4, "ip_csum": off_ip_csum,
               "l4_csum": off_l4_csum, "stamp": stamp, "ipv6": bool(ipv6),
               "udp": proto == "udp"}
    return frame, offsets, src_low


def plan_lcores(workers, rx: bool) -> dict[int, str]:
    """Which loop runs where: 'tx' and 'rx' on two lcores, or 'both' on one.

    Raises:
        UsageError: no worker lcore.
    """
    workers = sorted(workers)
    if not workers:
        raise UsageError("pktgen needs a worker lcore (the main lcore runs pypdk-run)",
                         "give two lcores or more, e.g. --lcores 0-1")
    if rx and len(workers) >= 2:
        return {workers[0]: "tx", workers[1]: "rx"}
    return {workers[0]: "both"}


# ---- setup -------------------------------------------------------------------------

def setup(eal, ports, opts):
    by_id = {p.port_id: p for p in ports}
    if not by_id:
        raise UsageError("pktgen has no port", "add --vdev, e.g. --vdev net_pcap0,tx_pcap=out.pcap")
    for what, pid in (("--tx-port", opts.tx_port), ("--rx-port", opts.rx_port)):
        if pid is not None and pid not in by_id:
            raise UsageError(f"{what} {pid} does not exist (ports: "
                             f"{', '.join(map(str, sorted(by_id)))})",
                             "give the id of a --vdev port (the first is 0)")
    fam = 6 if opts.ipv6 else 4
    src_ip = parse_ip(opts.src_ip or DEFAULTS[fam][0], fam, "--src-ip")
    dst_ip = parse_ip(opts.dst_ip or DEFAULTS[fam][1], fam, "--dst-ip")
    txp = by_id[opts.tx_port]
    rxp = by_id.get(opts.rx_port) if opts.rx_port is not None else None
    src_mac = parse_mac(opts.src_mac, "--src-mac") if opts.src_mac else txp.mac
    dst_mac = parse_mac(opts.dst_mac, "--dst-mac")
    rate = opts.rate if isinstance(opts.rate, float) else parse_rate(opts.rate)
    tmpl, offsets, src_low = build_template(opts.size, ipv6=opts.ipv6, proto=opts.proto,
                                            src_mac=src_mac, dst_mac=dst_mac, src_ip=src_ip,
                                            dst_ip=dst_ip, sport=opts.sport, dport=opts.dport)
    where = plan_lcores(eal.worker_lcores, rxp is not None)

    used = [txp] + ([rxp] if rxp is not None and rxp is not txp else [])
    n_mbufs = max(POOL_MIN, len(used) * (NB_RXD + NB_TXD) + 4 * opts.burst
                  + len(eal.lcores) * POOL_CACHE * 2)
    pool = PktMbufPool("pktgen_pool", n_mbufs, cache_size=POOL_CACHE,
                       data_room=max(2048, opts.size))
    try:
        for p in used:
            p.setup(pool, 1, 1, NB_RXD, NB_TXD)
        g = gen.Gen(pool, txp.port_id, 0, rxp.port_id if rxp is not None else None, 0,
                    tmpl, offsets, src_low, opts.sport, flows=opts.flows, count=opts.count,
                    rate=rate, burst=opts.burst, drain=opts.drain)
        for p in used:
            p.start()
    except BaseException:
        for p in used:
            p.stop()
        pool.close()
        raise
    # Each lcore runs a gen.GenWorker (a pypdk.worker LcoreWorker): its counters are
    # the lcore loop's (tx rounds and rx bursts are polls), its port_stats the
    # tx port's sent and the rx port's received packets.
    workers = {lc: g.worker(which) for lc, which in where.items()}

    config = {"tx_port": txp.port_id, "rx_port": rxp.port_id if rxp is not None else None,
              "size": opts.size, "flows": opts.flows, "proto": opts.proto,
              "ip": f"ipv{fam}", "src_ip": str(src_ip), "dst_ip": str(dst_ip),
              "sport": opts.sport, "dport": opts.dport, "rate": rate, "count": opts.count,
              "burst": opts.burst, "lcores": {str(lc): w for lc, w in where.items()}}

    def app_stats():
        d = g.report()
        d["config"] = config
        return d

    def periodic(dt):
        # Totals only: the runner's table above it has the per-port rates.
        r = g.report()
        line = f"pktgen: sent {r['sent']}"
        if "received" in r:
            lat = r["latency_ns"]
            line += (f", received {r['received']}, lost {r['lost']}, out of order "
                     f"{r['out_of_order']}, latency ns min/avg/max "
                     f"{lat['min']}/{lat['avg']}/{lat['max']}")
        return [line]

    def close():
        pool.close()

    return make_plan(workers, close=close, app_stats=app_stats, periodic=periodic,
                     info={"lcores": where, "gen": g})
