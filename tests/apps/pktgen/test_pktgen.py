"""apps/pktgen: its template and per-flow fields checked by scapy, then whole
runs through pypdk-run: a capture of exactly --count frames with the right
sizes, flows and valid checksums (scapy and tshark agree), received back over
net_ring loopback and over a real veth pair with loss and latency counted,
and bad options refused in one line."""
import ipaddress
import json
import os
import struct
import subprocess
import sys

import pytest
from scapy.all import Ether, IP, IPv6, TCP, UDP, rdpcap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GUARD = 60          # hang protection only, never a timing assertion

sys.path.insert(0, ROOT)
from apps.pktgen import app as pg            # noqa: E402
from apps.pktgen import gen                  # noqa: E402
from pypdk.errors import UsageError          # noqa: E402
from pypdk.mempool import PktMbufPool        # noqa: E402
from pypdk.testing import netns as nsh       # noqa: E402
from pypdk.testing.frames import checksums_ok  # noqa: E402


def pypdk_run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "pypdk.cli", "apps/pktgen", *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=GUARD)


def run_json(tmp_path, *args):
    out = tmp_path / "stats.json"
    r = pypdk_run("--lcores", "0-1", "--no-huge", "--stats-json", out, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(out.read_text()), r


def stamp(raw, off):
    """(magic, seq, tx time) from a frame's payload."""
    return struct.unpack_from("<IQQ", raw, off)


def first_l3(f):
    return f[IP] if IP in f else f[IPv6]


# ---- the template and the per-packet fields (no run) ----------------------------------

@pytest.mark.parametrize("ipv6,proto,size", [(False, "udp", 64), (False, "tcp", 74),
                                             (True, "udp", 82), (True, "tcp", 1514)])
def test_template_parses_as_the_headers_asked_for(ipv6, proto, size):
    tmpl, off, low = pg.build_template(size, ipv6=ipv6, proto=proto, src_mac=b"\x02" * 6,
                                       sport=1000, dport=53)
    assert len(tmpl) == size
    f = Ether(tmpl)
    l3 = first_l3(f)
    assert (IPv6 in f) == ipv6
    l4 = f[UDP] if proto == "udp" else f[TCP]
    assert l4.dport == 53 and l4.sport == 0                  # sport: filled per flow
    assert off["stamp"] == pg.header_len(ipv6, proto) and tmpl[off["stamp"]:][:20] == bytes(20)
    if proto == "tcp":
        assert l4.flags == "S" and l4.dataofs == 5
    if ipv6:
        assert l3.plen == size - 54 and l3.nh == pg.PROTO[proto]
        assert low == 1 and l3.src == "2001:2::"            # low 32 bits zeroed
    else:
        assert l3.len == size - 14 and l3.flags == "DF" and l3.ttl == 64
        assert low == int.from_bytes(bytes([198, 18, 0, 1]), "big") and l3.src == "0.0.0.0"


def test_sizes_below_headers_and_stamp_are_refused_with_the_minimum():
    with pytest.raises(UsageError, match="--size 82 or more"):
        pg.build_template(64, ipv6=True)
    with pytest.raises(UsageError, match="--size 74 or more"):
        pg.build_template(64, proto="tcp")
    assert pg.min_size(False, "udp") == 62 and pg.build_template(62)[0]


def test_rate_parsing_and_lcore_plan():
    assert pg.parse_rate("1000") == 1000 and pg.parse_rate("2.5k") == 2500
    assert pg.parse_rate("1M") == 1e6 and pg.parse_rate("0") == 0
    with pytest.raises(UsageError, match="--rate"):
        pg.parse_rate("fast")
    assert pg.plan_lcores([1], rx=True) == {1: "both"}
    assert pg.plan_lcores([2, 1], rx=True) == {1: "tx", 2: "rx"}
    assert pg.plan_lcores([1, 2], rx=False) == {1: "both"}
    with pytest.raises(UsageError, match="worker lcore"):
        pg.plan_lcores([], rx=False)


@pytest.mark.parametrize("ipv6,proto", [(False, "udp"), (False, "tcp"), (True, "udp"),
                                        (True, "tcp")])
def test_every_flow_gets_its_address_port_and_valid_checksums(eal_no_huge, ipv6, proto):
    pool = PktMbufPool("pgt", 64)
    try:
        size = 200
        src = "2001:2::fffe" if ipv6 else "10.0.255.254"       # flows cross a carry
        tmpl, off, low = pg.build_template(size, ipv6=ipv6, proto=proto, src_ip=src,
                                           sport=65534)
        g = gen.Gen(pool, 0, 0, None, 0, tmpl, off, low, 65534, flows=5)
        for seq in range(12):
            raw = g.frame(seq, t=123456789 + seq)
            f = Ether(raw)
            flow = seq % 5
            assert checksums_ok(raw), (seq, f.show(dump=True))
            l4 = f[UDP] if proto == "udp" else f[TCP]
            assert l4.sport == (65534 + flow) & 0xffff
            assert first_l3(f).src == str(ipaddress.ip_address(src) + flow)
            assert stamp(raw, off["stamp"]) == (gen.MAGIC, seq, 123456789 + seq)
            assert raw[off["stamp"] + 20:] == tmpl[off["stamp"] + 20:]
        assert pool.in_use_count == 0
    finally:
        pool.close()


# ---- runs through pypdk-run ---------------------------------------------------------

def test_pcap_gets_count_frames_of_size_over_flows_with_valid_checksums(tmp_path):
    pcap = tmp_path / "out.pcap"
    doc, r = run_json(tmp_path, "--vdev", f"net_pcap0,tx_pcap={pcap}", "--",
                      "--count", 1000, "--flows", 16)
    frames = [bytes(p) for p in rdpcap(str(pcap))]
    assert len(frames) == 1000
    assert {len(f) for f in frames} == {64}
    flows = {}
    seqs = []
    for raw in frames:
        f = Ether(raw)
        assert IP in f and UDP in f and checksums_ok(raw)
        assert f.src == "02:70:64:6b:00:00" and f.dst == "ff:ff:ff:ff:ff:ff"
        assert f[IP].dst == "198.19.0.1" and f[UDP].dport == 9
        flows.setdefault((f[IP].src, f[UDP].sport), 0)
        flows[(f[IP].src, f[UDP].sport)] += 1
        magic, seq, _ = stamp(raw, 42)
        assert magic == gen.MAGIC
        seqs.append(seq)
    assert sorted(flows) == sorted((f"198.18.0.{1 + i}", 1024 + i) for i in range(16))
    assert sorted(flows.values()) == [62] * 8 + [63] * 8     # turns: 1000 = 16 x 62 + 8
    assert seqs == list(range(1000))
    # tshark, an independent dissector, finds no bad checksum either
    t = subprocess.run(["tshark", "-r", str(pcap), "-o", "ip.check_checksum:TRUE",
                        "-o", "udp.check_checksum:TRUE", "-T", "fields",
                        "-e", "ip.checksum.status", "-e", "udp.checksum.status"],
                       capture_output=True, text=True, timeout=GUARD)
    assert t.returncode == 0, t.stderr
    assert t.stdout.splitlines() == ["1\t1"] * 1000         # 1: good (0 would be bad)
    app = doc["app"]
    assert app["sent"] == 1000 and "received" not in app
    assert app["config"]["flows"] == 16 and app["config"]["lcores"] == {"1": "both"}
    assert doc["ports"]["0"]["opackets"] == 1000 and doc["ports"]["0"]["obytes"] == 64000
    assert doc["lcores"]["1"]["tx"] == 1000
    assert "every lcore task returned" in r.stdout and "pktgen: sent 1000" in r.stdout


def test_ipv6_tcp_syn_frames(tmp_path):
    pcap = tmp_path / "syn.pcap"
    run_json(tmp_path, "--vdev", f"net_pcap0,tx_pcap={pcap}", "--", "--count", 200,
             "--flows", 4, "--ipv6", "--proto", "tcp", "--size", 128, "--dport", 80,
             "--dst-mac", "02:00:00:00:00:09", "--src-ip", "fd00::10", "--dst-ip", "fd00::1")
    frames = [bytes(p) for p in rdpcap(str(pcap))]
    assert len(frames) == 200 and {len(f) for f in frames} == {128}
    srcs = set()
    for raw in frames:
        f = Ether(raw)
        assert f.dst == "02:00:00:00:00:09"
        assert f[IPv6].dst == "fd00::1" and f[TCP].flags == "S" and f[TCP].dport == 80
        assert checksums_ok(raw)
        srcs.add((f[IPv6].src, f[TCP].sport))
    assert srcs == {(f"fd00::{0x10 + i:x}", 1024 + i) for i in range(4)}


def test_ring_loopback_receives_everything_with_latency(tmp_path):
    doc, r = run_json(tmp_path, "--vdev", "net_ring0,loopback=1", "--",
                      "--count", 50000, "--flows", 8, "--rx-port", 0)
    app = doc["app"]
    assert app["sent"] == app["received"] == 50000
    assert app["lost"] == 0 and app["out_of_order"] == 0 and app["rx_other"] == 0
    lat = app["latency_ns"]
    assert lat["samples"] == 50000 and 0 < lat["min"] <= lat["avg"] <= lat["max"]
    assert doc["ports"]["0"]["ipackets"] == doc["ports"]["0"]["opackets"] == 50000
    assert doc["lcores"]["1"]["rx"] == doc["lcores"]["1"]["tx"] == 50000
    assert "lost 0" in r.stdout and "latency ns min/avg/max" in r.stdout


def test_rx_on_another_port_and_tx_rx_on_two_lcores(tmp_path):
    out = tmp_path / "stats.json"
    r = pypdk_run("--lcores", "0,(1-2)@1", "--no-huge", "--stats-json", out,
                  "--vdev", "net_ring0", "--vdev", "net_ring1,peer=net_ring0", "--",
                  "--tx-port", 1, "--rx-port", 0, "--count", 3000, "--rate", "30k",
                  "--size", 300)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    app = doc["app"]
    assert app["config"]["lcores"] == {"1": "tx", "2": "rx"}
    assert app["sent"] == app["received"] == 3000 and app["lost"] == 0
    assert app["rx_bytes"] == 3000 * 300
    assert doc["ports"]["1"]["opackets"] == 3000 and doc["ports"]["0"]["ipackets"] == 3000
    assert doc["lcores"]["1"]["tx"] == 3000 and doc["lcores"]["2"]["rx"] == 3000
    # pypdk's lcore counters, in pypdk's order, then pktgen's own per side
    from pypdk.stats import LCORE_COUNTERS
    tx_lc, rx_lc = doc["lcores"]["1"], doc["lcores"]["2"]
    assert list(tx_lc) == [*LCORE_COUNTERS, "tx_nombuf"] and list(rx_lc) == [*LCORE_COUNTERS, "rx_other"]
    assert tx_lc["tx_dropped"] == app["tx_refused"] and rx_lc["rx_other"] == 0
    assert tx_lc["polls"] >= tx_lc["empty_polls"] > 0         # paced: rounds with nothing due


def test_nothing_back_is_all_lost(tmp_path):
    doc, _ = run_json(tmp_path, "--vdev", "net_null0", "--vdev", "net_ring0", "--",
                      "--tx-port", 0, "--rx-port", 1, "--count", 500, "--drain", 0.1)
    app = doc["app"]
    assert app["sent"] == 500 and app["received"] == 0 and app["lost"] == 500
    assert app["latency_ns"] == {"min": 0, "avg": 0, "max": 0, "samples": 0}


def test_duration_stops_an_endless_paced_run_with_no_holes(tmp_path):
    pcap = tmp_path / "paced.pcap"
    doc, r = run_json(tmp_path, "--duration", 0.5, "--vdev", f"net_pcap0,tx_pcap={pcap}",
                      "--", "--rate", "5k", "--size", 100)
    assert "--duration 0.5 s reached" in r.stdout
    frames = [bytes(p) for p in rdpcap(str(pcap))]
    sent = doc["app"]["sent"]
    assert sent > 0 and len(frames) == sent
    assert [stamp(raw, 42)[1] for raw in frames] == list(range(sent))


def test_af_packet_over_a_veth_pair(tmp_path):
    """Both ends of a real veth pair as ports: what port 0 sends the kernel
    carries to port 1, counted with loss and latency."""
    with nsh.veth_pair() as (a, b):
        for x in (a, b):
            nsh.disable_ipv6(x)
        doc, r = run_json(tmp_path, "--vdev", f"net_af_packet0,iface={a}",
                          "--vdev", f"net_af_packet1,iface={b}", "--",
                          "--tx-port", 0, "--rx-port", 1, "--count", 2000, "--rate", "20k",
                          "--flows", 32, "--size", 512)
        assert nsh.link_exists(a)                   # attached, not created: still there
        assert "UP" not in nsh.link_info(a)["flags"]    # and put back down
    app = doc["app"]
    assert app["sent"] == 2000
    assert app["received"] + app["lost"] == 2000 and app["received"] > 0
    assert app["rx_other"] == 0 and app["out_of_order"] == 0
    assert app["latency_ns"]["samples"] == app["received"]
    assert 0 < app["latency_ns"]["min"] <= app["latency_ns"]["max"]
    assert doc["ports"]["0"]["opackets"] == 2000
    assert doc["ports"]["1"]["ipackets"] == app["received"]
    assert doc["ports"]["0"]["driver"] == "net_af_packet"


# ---- bad options -------------------------------------------------------------------

@pytest.mark.parametrize("args,needles", [
    (["--rx-port", 3], ["--rx-port 3 does not exist"]),
    (["--size", 70, "--ipv6"], ["--size 82 or more"]),
    (["--rate", "fast"], ["--rate"]),
    (["--src-ip", "2001:2::1"], ["IPv6", "--ipv6"]),
    (["--dst-mac", "nope"], ["--dst-mac", "xx:xx"]),
])
def test_bad_options_are_one_line_errors(tmp_path, args, needles):
    r = pypdk_run("--lcores", "0-1", "--no-huge", "--vdev", f"net_pcap0,tx_pcap={tmp_path}/x.pcap",
                  "--", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pypdk-run: ")
    for n in needles:
        assert n in lines[0], lines[0]


def test_no_worker_lcore_is_refused():
    r = pypdk_run("--lcores", "0", "--no-huge", "--vdev", "net_null0")
    assert r.returncode == 2 and "worker lcore" in r.stderr and "--lcores 0-1" in r.stderr
