"""apps/l2fwd run through pypdk-run: counters add up across each port pair,
every packet of a capture comes out of the paired port with only its MACs
rewritten, malformed frames are counted and dropped, bad setups are refused."""
import json
import os
import subprocess
import sys

import pytest
from scapy.all import Ether, IP, IPv6, UDP, TCP, ARP, Raw, Dot1Q, rdpcap, wrpcap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GUARD = 60          # hang protection only

sys.path.insert(0, ROOT)
from apps.l2fwd.app import assign_lcores          # noqa: E402
from pypdk.errors import UsageError                # noqa: E402
from pypdk.pmd import STAT_NAMES                   # noqa: E402


def pypdk_run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "pypdk.cli", "apps/l2fwd", *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=GUARD)
    return r


def port_mac(port_id):
    """The MAC pypdk gives a port that has none of its own (ethdev.pyx)."""
    return f"02:70:64:6b:00:{port_id:02x}"


def test_null_ports_forward_equal_counts_across_the_pair(tmp_path):
    out = tmp_path / "stats.json"
    r = pypdk_run("--lcores", "0-1", "--no-huge", "--vdev", "net_null0", "--vdev", "net_null1",
                  "--duration", "1", "--stats-json", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["duration"] > 0
    p0, p1 = doc["ports"]["0"], doc["ports"]["1"]
    for p in (p0, p1):
        assert set(STAT_NAMES) <= set(p) and p["xstats"] and p["driver"] == "net_null"
        assert p["dropped"] == 0
    # Everything port 0 received left by port 1, and the other way round.
    assert p0["ipackets"] > 0 and p0["ipackets"] == p1["opackets"]
    assert p1["ipackets"] > 0 and p1["ipackets"] == p0["opackets"]
    lc = doc["lcores"]["1"]
    for k in ("polls", "empty_polls", "rx", "tx", "tx_dropped", "app_dropped"):
        assert k in lc
    assert lc["rx"] == lc["tx"] == p0["ipackets"] + p1["ipackets"]
    app = doc["app"]
    assert app["ports"]["0"]["received"] == app["ports"]["1"]["sent"] == p0["ipackets"]
    assert app["ports"]["1"]["received"] == app["ports"]["0"]["sent"] == p1["ipackets"]
    assert app["total"]["sent"] == app["total"]["received"] and app["total"]["dropped"] == 0
    assert app["pairs"] == {"0": 1, "1": 0} and app["lcores"] == {"1": [0, 1]}
    # The final report: runner table and l2fwd's port statistics.
    assert "final stats" in r.stdout and "l2fwd port statistics" in r.stdout and "aggregate" in r.stdout


def test_periodic_stats_are_plain_lines_when_not_a_terminal(tmp_path):
    r = pypdk_run("-l", "0-1", "--no-huge", "--vdev", "net_null0", "--vdev", "net_null1",
                  "--duration", "0.7", "--stats-period", "0.2")
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout
    assert r.stdout.count("pypdk-run stats") >= 1 and r.stdout.count("l2fwd port statistics") >= 2
    assert "Mpps" in r.stdout


def capture():
    """Varied frames: UDP/TCP over IPv4 and IPv6, ARP, VLAN, sizes 60..1514."""
    pkts = []
    for i in range(120):
        src, dst = f"00:11:22:33:44:{i:02x}", "66:77:88:99:aa:bb"
        kind = i % 5
        if kind == 0:
            p = Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst=f"10.0.1.{i}") / UDP(sport=1024 + i, dport=4000)
        elif kind == 1:
            p = Ether(src=src, dst=dst) / IP(src="10.0.0.2", dst="10.0.0.3") / TCP(sport=i + 1, dport=80, flags="S")
        elif kind == 2:
            p = Ether(src=src, dst=dst) / IPv6(src="fd00::1", dst=f"fd00::{i:x}") / UDP(sport=5, dport=6)
        elif kind == 3:
            p = Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.1", pdst=f"10.0.0.{i}")
        else:
            p = Ether(src=src, dst=dst) / Dot1Q(vlan=i) / IP(dst="10.9.9.9") / UDP(sport=7, dport=8)
        pkts.append(p / Raw(bytes((i * k) & 0xff for k in range((i * 37) % 1400))))
    return pkts


def run_pcap(tmp_path, pkts, *extra):
    inp, outp = tmp_path / "in.pcap", tmp_path / "out.pcap"
    wrpcap(str(inp), pkts)
    stats = tmp_path / "stats.json"
    r = pypdk_run("--lcores", "0-1", "--no-huge", "--vdev", f"net_pcap0,rx_pcap={inp}",
                  "--vdev", f"net_pcap1,tx_pcap={outp}", "--duration", "1", "--stats-json", stats, *extra)
    assert r.returncode == 0, r.stderr
    return [bytes(p) for p in rdpcap(str(outp))], json.loads(stats.read_text())


def test_pcap_every_packet_forwarded_with_only_the_macs_rewritten(tmp_path):
    pkts = capture()
    got, doc = run_pcap(tmp_path, pkts)
    assert len(got) == len(pkts)
    for sent, recv in zip(pkts, got):
        want = bytes(sent)
        e = Ether(recv)
        assert e.dst == "02:00:00:00:00:01"           # 02:00:00:00:00:<output port id>
        assert e.src == port_mac(1)                   # the output port's MAC
        assert recv[12:] == want[12:]                 # nothing else changed
        assert len(recv) == len(want)
    assert doc["app"]["ports"]["0"]["received"] == doc["app"]["ports"]["1"]["sent"] == len(pkts)
    assert doc["ports"]["1"]["opackets"] == len(pkts) and doc["ports"]["0"]["ipackets"] == len(pkts)
    # tshark, an independent reader, agrees on the addresses.
    t = subprocess.run(["tshark", "-r", str(tmp_path / "out.pcap"), "-T", "fields", "-e", "eth.src",
                        "-e", "eth.dst"], capture_output=True, text=True, timeout=GUARD, check=True)
    rows = [ln.split("\t") for ln in t.stdout.splitlines()]
    assert rows == [[port_mac(1), "02:00:00:00:00:01"]] * len(pkts)


def test_pcap_no_mac_updating_leaves_frames_untouched(tmp_path):
    pkts = capture()[:30]
    got, _ = run_pcap(tmp_path, pkts, "--", "--no-mac-updating")
    assert got == [bytes(p) for p in pkts]


def test_runt_frames_are_counted_and_dropped_not_forwarded(tmp_path):
    good = capture()[:10]
    runts = [Raw(b"\x01" * n) for n in (1, 6, 13)]
    mixed = good[:5] + runts + good[5:]
    got, doc = run_pcap(tmp_path, mixed)
    assert [g[12:] for g in got] == [bytes(p)[12:] for p in good]
    assert doc["lcores"]["1"]["app_dropped"] == 3
    assert doc["app"]["ports"]["1"]["dropped"] == 3 and doc["app"]["ports"]["1"]["sent"] == 10


def test_four_ports_one_rx_port_per_lcore(tmp_path):
    # -q 1 on four worker lcores sharing cpu 1: each port pair crosses lcores.
    pkts = capture()[:20]
    files = []
    vdevs = []
    for i in range(4):
        inp, outp = tmp_path / f"in{i}.pcap", tmp_path / f"out{i}.pcap"
        wrpcap(str(inp), pkts[i * 5:(i + 1) * 5])
        files.append(outp)
        vdevs += ["--vdev", f"net_pcap{i},rx_pcap={inp},tx_pcap={outp}"]
    stats = tmp_path / "s.json"
    r = pypdk_run("--lcores", "0,(1-4)@1", "--no-huge", *vdevs, "--duration", "1", "--stats-json", stats,
                  "--", "-q", "1", "--yield-after", "8")
    assert r.returncode == 0, r.stderr
    doc = json.loads(stats.read_text())
    assert doc["app"]["lcores"] == {"1": [0], "2": [1], "3": [2], "4": [3]}
    out = {i: [Ether(bytes(p)) for p in rdpcap(str(files[i]))] for i in range(4)}
    pair = {0: 1, 1: 0, 2: 3, 3: 2}
    for i in range(4):
        # Port i sends what its pair received, addressed for port i.
        came_from = pair[i]
        assert [bytes(p)[12:] for p in out[i]] == [bytes(p)[12:] for p in pkts[came_from * 5:(came_from + 1) * 5]]
        assert {(p.src, p.dst) for p in out[i]} == {(port_mac(i), f"02:00:00:00:00:{i:02x}")}


def test_portmask_selects_ports(tmp_path):
    stats = tmp_path / "s.json"
    r = pypdk_run("-l", "0-1", "--no-huge", "--vdev", "net_null0", "--vdev", "net_null1", "--vdev", "net_null2",
                  "--duration", "0.3", "--stats-json", stats, "--", "-p", "0x6")
    assert r.returncode == 0, r.stderr
    doc = json.loads(stats.read_text())
    assert doc["app"]["pairs"] == {"1": 2, "2": 1}
    assert doc["ports"]["0"]["ipackets"] == 0 and doc["ports"]["1"]["ipackets"] > 0


@pytest.mark.parametrize("args, needle", [
    (["--vdev", "net_null0", "--vdev", "net_null1", "--vdev", "net_null2"], "3 are enabled"),
    (["--vdev", "net_null0", "--vdev", "net_null1", "--", "-p", "0x1"], "1 are enabled"),
    (["--vdev", "net_null0", "--vdev", "net_null1", "--", "-p", "0x5"], "enables port 2"),
    (["--vdev", "net_null0", "--vdev", "net_null1", "--", "-q", "1"], "need 2 worker lcores"),
    ([], "no ports"),
])
def test_bad_setups_are_one_line_errors(args, needle):
    r = pypdk_run("-l", "0-1", "--no-huge", *args)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and needle in r.stderr, r.stderr


def test_lcore_assignment_follows_dpdk_l2fwd():
    assert assign_lcores([0, 1, 2, 3], [1, 2], None) == {1: [0, 1], 2: [2, 3]}
    assert assign_lcores([0, 1, 2, 3], [1, 2, 3, 4], 1) == {1: [0], 2: [1], 3: [2], 4: [3]}
    assert assign_lcores([0, 1, 2, 3], [1, 2, 3], 3) == {1: [0, 1, 2], 2: [3]}
    assert assign_lcores([0, 1], [5], None) == {5: [0, 1]}
    with pytest.raises(UsageError) as e:
        assign_lcores([0, 1, 2, 3], [1], 2)
    assert "raise -q to 4" in e.value.fix
