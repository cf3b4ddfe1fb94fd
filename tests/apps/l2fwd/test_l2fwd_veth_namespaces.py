"""l2fwd between two network namespaces over veth pairs: the kernel on both sides.

    ns A: a1 (10.x.y.1, 02:00:00:00:00:00) ── a0 (here: port 0) ┐
                                                               l2fwd (pypdk-run, lcores 0-1)
    ns B: b1 (10.x.y.2, 02:00:00:00:00:01) ── b0 (here: port 1) ┘

Ports 0 and 1 are net_af_xdp (XDP program + AF_XDP sockets on a0/b0, copy
mode on veth) or net_af_packet (packet sockets on a0/b0). l2fwd rewrites the
destination MAC to 02:00:00:00:00:<output port>, so each namespace end
carries exactly that address and the kernel there takes the frames as its
own. Through it: a ping from A to B, a TCP transfer of a few MB (SHA-256 of
the bytes on both sides), and, with two queues per veth and a worker lcore
per queue, many UDP flows spread over both queues with every datagram
counted once.

Offloads: the namespace ends are kernel veths that leave L4 checksums to
"hardware" (CHECKSUM_PARTIAL) and hand over TSO super-frames of up to 64 KiB.
- net_af_packet sees the checksum state (TP_STATUS_CSUMNOTREADY) and fixes
  the checksum in software (`rx_q0_csum_fixed` shows it), but takes a frame
  only up to its ring block (4 KiB) and sends at most MTU-sized frames, so
  TSO is turned off on the namespace ends (`ethtool -K IF tso off`; the
  kernel then segments in software before the veth).
- net_af_xdp gets raw frame bytes, with no checksum state: a TCP segment
  with an unfinished checksum would be forwarded as is and dropped by B's
  stack (a ping works, TCP does not). So tx checksum offload is turned off
  on the namespace ends (`ethtool -K IF tx off`), which is what DPDK users
  of net_af_xdp on veth do. TSO needs no switch: attaching an XDP program to
  a veth turns GSO/TSO off on its peer.

After each test: pypdk-run exited 0 after SIGTERM, no interface of the test
has an XDP program (`ip -d link show`), and its namespaces and links are
gone. Needs root; nothing is skipped; no timing asserts (deadlines only
turn a hang into a failure).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest

from pypdk.testing import netns as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GUARD = 60                   # seconds: hang protection, never asserted on
DRIVERS = ("af_xdp", "af_packet")
_subnet = iter(range(1, 1 << 20))


# ---- topology ------------------------------------------------------------------------

@dataclass
class Topo:
    ns_a: str
    ns_b: str
    a0: str           # this namespace: port 0
    a1: str           # in ns_a
    b0: str           # this namespace: port 1
    b1: str           # in ns_b
    ip_a: str
    ip_b: str
    queues: int


def xdp_of(ifname: str, ns: str | None = None):
    """The XDP attachment `ip -d -j link show` reports for an interface (None: none)."""
    info = json.loads(nn.ns_run(ns, "ip", "-d", "-j", "link", "show", "dev", ifname).stdout)[0]
    return info.get("xdp")


def assert_no_xdp_anywhere(t: Topo) -> None:
    """No XDP program on the test's interfaces, nor on any interface of its namespaces."""
    for ifname in (t.a0, t.b0):
        text = nn.run("ip", "-d", "link", "show", "dev", ifname).stdout
        assert "prog/xdp" not in text and xdp_of(ifname) is None, text
    for ns in (t.ns_a, t.ns_b):
        text = nn.ns_run(ns, "ip", "-d", "link", "show").stdout
        assert "prog/xdp" not in text, text


def set_offloads(t: Topo, driver: str) -> None:
    """What each driver needs from the namespace ends (see the module docstring)."""
    for ns, ifname in ((t.ns_a, t.a1), (t.ns_b, t.b1)):
        if driver == "af_xdp":
            # No checksum state reaches an AF_XDP socket: let the kernel finish
            # L4 checksums before the frame leaves (DPDK's advice for af_xdp on veth).
            nn.ns_run(ns, "ethtool", "-K", ifname, "tx", "off")
        else:
            # af_packet fixes partial checksums itself, but not 64 KiB TSO frames.
            nn.ns_run(ns, "ethtool", "-K", ifname, "tso", "off")


@pytest.fixture
def make_topo():
    """make_topo(queues=1) -> Topo. Teardown: no XDP program left, then
    everything deleted and checked gone (even when the test failed)."""
    made: list[Topo] = []

    def make(queues: int = 1) -> Topo:
        k = next(_subnet)
        ns_a = nn.add_netns()
        ns_b = None
        try:
            ns_b = nn.add_netns()
            a0, a1 = nn.add_veth(nn.unique_name("pdka"), nn.unique_name("pdka"), queues=queues, ns_b=ns_a)
            b0, b1 = nn.add_veth(nn.unique_name("pdkb"), nn.unique_name("pdkb"), queues=queues, ns_b=ns_b)
        except BaseException:
            for ns in (ns_a, ns_b):
                if ns:
                    nn.del_netns(ns)
            raise
        t = Topo(ns_a, ns_b, a0, a1, b0, b1, f"10.{180 + k % 40}.{k % 250}.1",
                 f"10.{180 + k % 40}.{k % 250}.2", queues)
        made.append(t)
        for ifname in (a0, b0):
            nn.disable_ipv6(ifname)
            nn.set_link(ifname, None, "up")
        for port, (ns, ifname, ip) in enumerate(((ns_a, a1, t.ip_a), (ns_b, b1, t.ip_b))):
            nn.disable_ipv6(ifname, ns)
            nn.set_link(ifname, ns, "address", f"02:00:00:00:00:{port:02x}")
            nn.add_addr(ifname, ip + "/24", ns)
        return t

    try:
        yield make
    finally:
        errors = []
        for t in made:
            try:
                assert_no_xdp_anywhere(t)
            except AssertionError as e:
                errors.append(e)
            nn.del_link(t.a0)
            nn.del_link(t.b0)
            nn.del_netns(t.ns_a)
            nn.del_netns(t.ns_b)
        left = set(nn.list_netns())
        for t in made:
            assert t.ns_a not in left and t.ns_b not in left
            assert not nn.link_exists(t.a0) and not nn.link_exists(t.b0)
        if errors:
            raise errors[0]


def vdevs(t: Topo, driver: str) -> list[str]:
    out = []
    for port, ifname in enumerate((t.a0, t.b0)):
        if driver == "af_xdp":
            spec = f"net_af_xdp{port},iface={ifname}"
            if t.queues > 1:
                spec += f",queue_count={t.queues}"
        else:
            spec = f"net_af_packet{port},iface={ifname}"
            if t.queues > 1:
                spec += f",qpairs={t.queues}"
        out += ["--vdev", spec]
    return out


# ---- pypdk-run -----------------------------------------------------------------------

class Run:
    """pypdk-run in the background; ready once its first periodic stats line
    shows (setup done: ports started, lcores launched). stop() sends SIGTERM
    and returns the --stats-json document, having checked the exit status."""

    def __init__(self, app_dir: str, args: list[str], app_args: list[str], stats_path):
        self.stats_path = stats_path
        cmd = [sys.executable, "-m", "pypdk.cli", app_dir, *args, "--stats-period", "0.2",
               "--duration", str(GUARD * 3), "--stats-json", str(stats_path), "--", *app_args]
        self.p = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = [threading.Thread(target=self._read, args=(s, buf), daemon=True)
                        for s, buf in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for th in self.threads:
            th.start()

    @staticmethod
    def _read(stream, buf):
        for line in stream:
            buf.append(line)

    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def wait_ready(self) -> None:
        end = time.monotonic() + GUARD
        while not self.out:
            assert self.p.poll() is None, f"pypdk-run exited {self.p.returncode}:\n{self.text()}"
            assert time.monotonic() < end, f"pypdk-run did not start:\n{self.text()}"
            time.sleep(0.05)

    def stop(self) -> dict:
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=GUARD)
        for th in self.threads:
            th.join(timeout=5)
        assert self.p.returncode == 0, self.text()
        return json.loads(self.stats_path.read_text())

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def l2fwd(t: Topo, driver: str, tmp_path) -> Run:
    r = Run("apps/l2fwd", ["--lcores", "0-1", "--no-huge", *vdevs(t, driver)], [],
            tmp_path / "stats.json")
    try:
        r.wait_ready()
    except BaseException:
        r.kill()
        raise
    return r


# ---- traffic -------------------------------------------------------------------------

_TCP_SERVER = textwrap.dedent("""
    import hashlib, socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen(1)
    s.settimeout(float(sys.argv[3]))
    print("ready", flush=True)
    c, _ = s.accept()
    c.settimeout(float(sys.argv[3]))
    h, n = hashlib.sha256(), 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        h.update(d)
        n += len(d)
    c.sendall(b"k")
    print(n, h.hexdigest(), flush=True)
""")

_TCP_CLIENT = textwrap.dedent("""
    import hashlib, os, socket, sys
    data = os.urandom(int(sys.argv[3]))
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[4]))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    assert s.recv(1) == b"k"
    print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
""")


def tcp_transfer(t: Topo, nbytes: int, port: int = 5201) -> tuple[str, str]:
    """Send nbytes of random data from A to a TCP server in B; ('len sha' sent, 'len sha' received)."""
    srv = nn.ns_popen(t.ns_b, sys.executable, "-c", _TCP_SERVER, t.ip_b, str(port), str(GUARD))
    try:
        line = srv.stdout.readline()
        assert line.strip() == "ready", srv.stderr.read()
        cli = nn.ns_run(t.ns_a, sys.executable, "-c", _TCP_CLIENT, t.ip_b, str(port), str(nbytes),
                        str(GUARD), timeout=GUARD * 2, check=False)
        assert cli.returncode == 0, cli.stderr
        out, err = srv.communicate(timeout=GUARD)
        assert srv.returncode == 0, err
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.communicate()
    return cli.stdout.strip(), out.strip()


_UDP_SINK = textwrap.dedent("""
    import json, socket, sys
    ip, port, n, quiet = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((ip, port))
    s.settimeout(quiet)
    print("ready", flush=True)
    seen = [0] * n
    other = 0
    flows = set()
    try:
        while sum(1 for x in seen if x) < n:
            d, addr = s.recvfrom(2048)
            seq = int.from_bytes(d[:4], "little")
            if seq < n:
                seen[seq] += 1
                flows.add(addr[1])
            else:
                other += 1
    except socket.timeout:
        pass
    print(json.dumps({"missing": seen.count(0), "dups": sum(x - 1 for x in seen if x > 1),
                      "other": other, "flows": len(flows)}), flush=True)
""")

_UDP_SOURCE = textwrap.dedent("""
    import socket, sys, time
    dst, port, n, flows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    socks = []
    for i in range(flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("", 20000 + i))
        socks.append(s)
    for seq in range(n):
        socks[seq % flows].sendto(seq.to_bytes(4, "little") + bytes(60), (dst, port))
        if seq % 32 == 31:
            time.sleep(0.002)       # gentle: lossless, never a rate test
""")


def udp_flows(t: Topo, n: int, flows: int, port: int = 5301) -> dict:
    """n datagrams from A to B over `flows` source ports; B's tally of them."""
    sink = nn.ns_popen(t.ns_b, sys.executable, "-c", _UDP_SINK, t.ip_b, str(port), str(n), "3")
    try:
        assert sink.stdout.readline().strip() == "ready", sink.stderr.read()
        nn.ns_run(t.ns_a, sys.executable, "-c", _UDP_SOURCE, t.ip_b, str(port), str(n), str(flows),
                  timeout=GUARD * 2)
        out, err = sink.communicate(timeout=GUARD)
        assert sink.returncode == 0, err
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.communicate()
    return json.loads(out)


# ---- tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("driver", DRIVERS)
def test_ping_and_tcp_between_namespaces_through_l2fwd(make_topo, driver, tmp_path):
    t = make_topo()
    set_offloads(t, driver)
    run = l2fwd(t, driver, tmp_path)
    try:
        p = nn.ping(t.ns_a, t.ip_b, count=3, wait=2)
        assert p.returncode == 0 and " 0% packet loss" in p.stdout, p.stdout + p.stderr
        nbytes = 4 << 20
        sent, got = tcp_transfer(t, nbytes)
        assert sent == got, (sent, got)
        assert sent.split()[0] == str(nbytes)
        doc = run.stop()
    finally:
        run.kill()
    p0, p1 = doc["ports"]["0"], doc["ports"]["1"]
    # The data went A -> port 0 -> port 1 -> B (plus headers); the acks came back.
    assert p0["ibytes"] >= nbytes and p1["obytes"] >= nbytes
    assert p1["ipackets"] > 0 and p0["opackets"] > 0
    if driver == "af_xdp":
        assert p0["xstats"]["xdp_native"] == 1 and p1["xstats"]["xdp_native"] == 1
        assert p0["xstats"]["xdp_zero_copy"] == 0           # veth: copy mode
    else:
        # The kernel handed A's TCP segments over with unfinished checksums.
        assert p0["xstats"]["rx_q0_csum_fixed"] > 0
    assert "stopped by SIGTERM" in run.text()


@pytest.mark.parametrize("driver", DRIVERS)
def test_two_queues_many_flows_each_packet_once(make_topo, driver, tmp_path):
    """Both veth pairs with 2 queues, the ports with 2 queues each, one worker
    lcore per queue index (lcores 1 and 2 sharing cpu 1), running l2fwd's
    forwarding loop (apps/l2fwd/fwd.pyx). apps/l2fwd itself polls one queue
    per port, so the test brings a small app that gives queue i of both
    ports to worker lcore i+1, with l2fwd's MAC rewrite."""
    t = make_topo(queues=2)
    set_offloads(t, driver)
    # Static neighbours: no ARP, so the frame counts below are exactly the datagrams.
    nn.add_neigh(t.a1, t.ip_b, "02:00:00:00:00:01", t.ns_a)
    nn.add_neigh(t.b1, t.ip_a, "02:00:00:00:00:00", t.ns_b)
    app = tmp_path / "l2fwd_mq"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "app.py").write_text(textwrap.dedent("""
        from apps.l2fwd import fwd
        from pypdk.mempool import PktMbufPool
        from pypdk.worker import make_plan

        def setup(eal, ports, opts):
            nq = ports[0].max_rx_queues
            pool = PktMbufPool("l2fwd_mq", 16384, cache_size=256)
            macs = fwd.MacTable()
            for p in ports:
                p.setup(pool, nq, nq, 1024, 1024)
                macs.set_port(p.port_id, p.mac)
            workers = {lc: fwd.make_worker([(0, q, 1, q), (1, q, 0, q)], macs, yield_after=8)
                       for q, lc in enumerate(eal.worker_lcores[:nq])}
            for p in ports:
                p.start()
            return make_plan(workers, close=pool.close)
    """))
    n, flows = 4000, 64
    run = Run(str(app), ["--lcores", "0,(1-2)@1", "--no-huge", *vdevs(t, driver)], [],
              tmp_path / "stats.json")
    try:
        run.wait_ready()
        tally = udp_flows(t, n, flows)
        doc = run.stop()
    finally:
        run.kill()
    assert tally == {"missing": 0, "dups": 0, "other": 0, "flows": flows}, tally
    x0, x1 = doc["ports"]["0"]["xstats"], doc["ports"]["1"]["xstats"]
    rxq = [x0["rx_q0_packets"], x0["rx_q1_packets"]]
    txq = [x1["tx_q0_packets"], x1["tx_q1_packets"]]
    # Flows were spread over both queues, and each datagram went through once.
    assert all(c > 0 for c in rxq), rxq
    assert sum(rxq) == n and doc["ports"]["0"]["ipackets"] == n, rxq
    assert sum(txq) == n and doc["ports"]["1"]["opackets"] == n, txq
    assert rxq == txq            # queue i of port 0 is forwarded to queue i of port 1
    lcores = doc["lcores"]
    assert {k: v["rx"] for k, v in lcores.items() if k in ("1", "2")} == {"1": rxq[0], "2": rxq[1]}
