"""`pypdk-run apps/vrouter` as a user runs it: bad configs and a good one.

A bad config is one line on stderr naming the table, the entry (position and
id) and the field, exit status 2, and nothing left behind: the tap a vif
before the bad entry created is gone, no control socket, no hugepage file.
Each run is inside a namespace the test made, so a leaked tap could not
hide among the host's links. A good config with pcap vifs runs for
`--duration 1` and its `--stats-json` has per-vif counters keyed by vif id
and the drop statistics by TF's snake_case names, each counted as the input
dictates.
"""
import json
import os
import subprocess
import sys

import pytest
from scapy.all import Ether, IP, UDP, TCP, Raw, wrpcap, rdpcap, ICMP
from scapy.layers.vxlan import VXLAN
from scapy.contrib.mpls import MPLS

from pypdk.testing import netns as nsh
from pypdk.testing.frames import tshark_check
from tests.apps.vrouter.harness import VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, VM3_MAC, VM3_IP

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

HEAD = f'''
[vrouter]
mac = "{VR_MAC}"
underlay_ip = "{UNDERLAY}"
'''


def run_vrouter(ns, config, *runner_args, timeout=60):
    """pypdk-run apps/vrouter inside namespace ns (from the source tree); the CompletedProcess."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "pypdk.cli", "apps/vrouter", *runner_args, "--",
         "--config", str(config), "--ctl-socket", str(config.parent / "ctl.sock"), "--no-agent"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# ---- bad configs -------------------------------------------------------------------------

def tap_vif(tap):
    return f'''
[[vif]]
id = 0
type = "fabric"
port = "net_tap0,iface={tap}"
'''


VM = f'''
[[vif]]
id = 3
type = "virtual"
port = "net_null3"
vrf = 1
mac = "{VM3_MAC}"
ip = "{VM3_IP}"
'''

BAD = {
    "unknown-vif-type": (VM.replace('"virtual"', '"virtul"'),
                         "[[vif]] #2 (id 3): type 'virtul' is unknown"),
    "bad-vif-ip": (VM.replace(VM3_IP, "10.1.1.300"),
                   "[[vif]] #2 (id 3): ip '10.1.1.300' is not an IPv4 address"),
    "bad-tunnel-dip": (VM + '[[nh]]\nid = 20\ntype = "tunnel"\nencap = "mplsoudp"\ndip = "192.168.50"\n',
                       "[[nh]] #1 (id 20): dip '192.168.50' is not an IPv4 address"),
    "bad-route-prefix": (VM + '[[nh]]\nid = 10\ntype = "encap"\nvif = 3\n'
                         '[[route]]\nvrf = 1\nprefix = "10.1.1.3/33"\nnh = 10\n',
                         "[[route]] #1: prefix '10.1.1.3/33' is not a prefix"),
    "nh-to-missing-vif": (VM + '[[nh]]\nid = 10\ntype = "encap"\nvif = 7\n',
                          "[[nh]] #1 (id 10): vif 7 does not exist"),
    "duplicate-vif-id": (VM + VM.replace("net_null3", "net_null4"),
                         "[[vif]] #3 (id 3): id 3 is also in [[vif]] #2"),
    "duplicate-vif-id-other-type": (VM.replace("id = 3", "id = 0"),
                                    "[[vif]] #2 (id 0): id 0 is also in [[vif]] #1"),
    "duplicate-nh-id": (VM + '[[nh]]\nid = 10\ntype = "encap"\nvif = 3\n' * 2,
                        "[[nh]] #2 (id 10): id 10 is also in [[nh]] #1"),
    "duplicate-route": (VM + '[[nh]]\nid = 10\ntype = "encap"\nvif = 3\n'
                        + '[[route]]\nvrf = 1\nprefix = "10.1.1.3/32"\nnh = 10\n' * 2,
                        "[[route]] #2: vrf 1 prefix 10.1.1.3/32 is also in [[route]] #1"),
    "unknown-driver": (VM.replace("net_null3", "net_bogus3"),
                       "[[vif]] #2 (id 3): port 'net_bogus3': unknown driver 'net_bogus'"),
    "bad-port-key": (VM.replace("net_null3", "net_null3,colour=red"),
                     "[[vif]] #2 (id 3): port 'net_null3,colour=red': net_null3: unknown key 'colour'"),
    "bad-port-value": (VM.replace("net_null3", "net_null3,size=big"),
                       "[[vif]] #2 (id 3): port 'net_null3,size=big': net_null3: bad value 'big' for key 'size'"),
    "missing-pcap": (VM.replace("net_null3", "net_pcap3,rx_pcap=/nonexistent/in.pcap"),
                     "[[vif]] #2 (id 3): port 'net_pcap3,rx_pcap=/nonexistent/in.pcap': "),
    "tap-taken-twice": (VM.replace("net_null3", "net_tap3,iface=TAP"),
                        "[[vif]] #2 (id 3): port 'net_tap3,iface=TAP': "),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_one_line_exit_2_nothing_left(tmp_path, netns, case):
    tap = nsh.unique_name("pdrt")
    body, message = BAD[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(HEAD + tap_vif(tap) + body.replace("TAP", tap))
    r = run_vrouter(netns, cfg, "--no-huge", "-l", "0-1")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pypdk-run: config bad.toml: "), lines[0]
    assert message.replace("TAP", tap) in lines[0]
    assert not nsh.link_exists(tap, netns), f"tap {tap} left behind"
    assert not (tmp_path / "ctl.sock").exists()


def test_bad_config_on_hugepages_leaves_no_hugepage_file(tmp_path, netns):
    """The same failure on 2 MiB hugepages: the EAL's files go too."""
    tap = nsh.unique_name("pdrt")
    prefix = nsh.unique_name("vrcfg")
    cfg = tmp_path / "bad.toml"
    cfg.write_text(HEAD + tap_vif(tap) + BAD["nh-to-missing-vif"][0])
    r = run_vrouter(netns, cfg, "-l", "0-1", "-m", "64", "--file-prefix", prefix)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "[[nh]] #1 (id 10): vif 7 does not exist" in r.stderr
    assert not nsh.link_exists(tap, netns)
    for d in ("/dev/hugepages", "/mnt/huge"):
        if os.path.isdir(d):
            assert not [f for f in os.listdir(d) if f.startswith(prefix)]


# ---- a good config ------------------------------------------------------------------------

def fabric_in():
    inner = IP(src="10.1.2.5", dst=VM3_IP, ttl=60) / UDP(sport=1000, dport=2000) / Raw(b"in")

    def outer(payload, **kw):
        return Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY, **kw) / payload

    good = outer(UDP(sport=50000, dport=6635) / MPLS(label=17, s=1) / inner)
    return ([good] * 5 +
            [outer(UDP(sport=50000, dport=6635) / MPLS(label=99, s=1) / inner)] * 2 +             # invalid_label
            [outer(UDP(sport=50000, dport=4789) / VXLAN(vni=4242) / Ether())] +                   # invalid_vni
            [outer(UDP(sport=50000, dport=6635) / MPLS(label=17, s=1) / inner, chksum=0x1234)] +  # checksum_error
            [Raw(bytes(good)[:14 + 20 + 8 + 2])])                                                  # invalid_packet


def vm_in():
    def from_vm(dst, l4, ttl=64):
        return Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=dst, ttl=ttl) / l4
    return ([from_vm("172.16.0.1", UDP(sport=1, dport=2))] * 3 +                # no_route
            [from_vm("10.1.2.7", TCP(sport=1234, dport=5001))] * 2 +           # flow_action_drop
            [from_vm("10.1.2.7", UDP(sport=33434, dport=33434), ttl=1)] +      # ttl_exceeded (+ ICMP back)
            [from_vm("10.1.2.7", TCP(sport=1234, dport=80, flags="S"))])       # forwarded


GOOD = f'''
[[vif]]
id = 0
type = "fabric"
port = "net_pcap0,rx_pcap=DIR/in0.pcap,tx_pcap=DIR/out0.pcap"
mac = "{FABRIC_MAC}"
[[vif]]
id = 3
type = "virtual"
port = "net_pcap3,rx_pcap=DIR/in3.pcap,tx_pcap=DIR/out3.pcap"
vrf = 1
mac = "{VM3_MAC}"
ip = "{VM3_IP}"
policy = true
[[nh]]
id = 10
type = "encap"
vif = 3
[[nh]]
id = 20
type = "tunnel"
encap = "mplsoudp"
dip = "{REMOTE}"
[[neighbor]]
ip = "{REMOTE}"
mac = "{REMOTE_MAC}"
[[mpls]]
label = 17
nh = 10
[[route]]
vrf = 1
prefix = "{VM3_IP}/32"
nh = 10
[[route]]
vrf = 1
prefix = "10.1.2.0/24"
nh = 20
label = 100
[[policy]]
vif = 3
action = "drop"
proto = "tcp"
dst_port = 5001
'''


def test_good_config_runs_and_writes_per_vif_stats_json(tmp_path, netns):
    wrpcap(str(tmp_path / "in0.pcap"), fabric_in())
    wrpcap(str(tmp_path / "in3.pcap"), vm_in())
    cfg = tmp_path / "vrouter.toml"
    cfg.write_text(HEAD + GOOD.replace("DIR", str(tmp_path)))
    out = tmp_path / "stats.json"
    r = run_vrouter(netns, cfg, "--no-huge", "-l", "0-1", "--duration", "1", "--stats-json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (tmp_path / "ctl.sock").exists()
    app = json.loads(out.read_text())["app"]

    vifs = app["vifs"]
    assert set(vifs) == {"0", "3"}
    assert vifs["0"]["rx_packets"] == 10 and vifs["0"]["tx_packets"] == 1
    assert vifs["3"]["rx_packets"] == 7 and vifs["3"]["tx_packets"] == 6       # 5 decapsulated + 1 ICMP
    for v in vifs.values():
        for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_drops", "tx_drops"):
            assert isinstance(v[k], int)
        assert sum(q["rx_packets"] for q in v["queues"]) == v["rx_packets"]
    assert vifs["0"]["drops"] == {"invalid_label": 2, "invalid_vni": 1, "checksum_error": 1, "invalid_packet": 1}
    assert vifs["3"]["drops"] == {"no_route": 3, "flow_action_drop": 2, "ttl_exceeded": 1}

    d = app["dropstats"]
    assert all(k == k.lower() and " " not in k for k in d)
    want = {"no_route": 3, "invalid_label": 2, "invalid_vni": 1, "ttl_exceeded": 1, "flow_action_drop": 2,
            "invalid_packet": 1, "checksum_error": 1}
    assert {k: d[k] for k in want} == want
    assert sum(d.values()) == sum(want.values())
    assert app["vrfstats"]["1"]["udp_mpls_decaps"] == 5 and app["vrfstats"]["1"]["udp_mpls_encaps"] == 1

    fab, vm = rdpcap(str(tmp_path / "out0.pcap")), rdpcap(str(tmp_path / "out3.pcap"))
    assert len(fab) == 1 and fab[0][MPLS].label == 100
    assert len(vm) == 6 and sum(1 for p in vm if ICMP in p and p[ICMP].type == 11) == 1
    tshark_check(tmp_path / "out0.pcap")
    tshark_check(tmp_path / "out3.pcap")
