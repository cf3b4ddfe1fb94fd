"""pypdk-vrouter (apps/vrouter/ctl/cli.py) against a control socket serving a fake VRouter.

The CLI parses, sends one request and prints; these tests check the request
each command makes, the TF-style tables, --json, and that errors are one
line with exit status 2. (Named test_ctl_cli.py: tests/test_cli.py already
holds a module called test_cli.)
"""
import json
import os
import subprocess
import sys

import pytest

from apps.vrouter.ctl import show
from apps.vrouter.ctl.server import CtlServer
from pypdk.errors import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def q(rx, tx=0):
    return {"rx_packets": rx, "rx_bytes": rx * 100, "rx_errors": 0, "rx_drops": 0,
            "tx_packets": tx, "tx_bytes": tx * 100, "tx_errors": 0, "tx_drops": 0}


class Fake:
    """Returns what the VRouter operations (apps/vrouter/vrouter.py) return; records every call."""

    def __init__(self):
        self.calls = []

    def _vif(self, id, queues):
        qs = [q(10 * (i + 1), 5) for i in range(queues)]
        return {"id": id, "type": "virtual" if id > 2 else "fabric", "port": f"net_tap{id},iface=tvm{id}",
                "vrf": 1, "mac": "02:00:00:00:01:03", "ip": "10.1.1.3", "ip6": None, "mtu": 1500,
                "policy": True, "mode": "l3", "queues": queues, "fip": None, "queue_stats": qs,
                "stats": {k: sum(x[k] for x in qs) for k in qs[0]}, "drops": {}}

    def vif_list(self):
        self.calls.append(("vif_list", {}))
        return [self._vif(0, 1), self._vif(3, 2)]

    def vif_get(self, id):
        self.calls.append(("vif_get", {"id": id}))
        if id not in (0, 3):
            raise UsageError(f"vif {id} does not exist", "see vif_list()")
        return self._vif(id, 2 if id == 3 else 1)

    def vif_add(self, id, type, port=None, vrf=0, mac=None, ip=None, ip6=None, mtu=1500, policy=False,
                mode="l3", queues=1):
        self.calls.append(("vif_add", dict(id=id, type=type, port=port, vrf=vrf, mac=mac, ip=ip, queues=queues)))
        return self._vif(id, queues)

    def nh_list(self):
        return [{"id": 3, "type": "encap", "vif": 3, "encap": None, "dip": None, "members": [], "dmac": None},
                {"id": 102, "type": "tunnel", "vif": None, "encap": "mplsoudp", "dip": "192.168.50.2",
                 "sip": "192.168.50.1", "resolved": False, "members": []}]

    def nh_add(self, id, type, vif=None, encap=None, dip=None, members=None, dmac=None, vnis=None):
        self.calls.append(("nh_add", dict(id=id, type=type, vif=vif, encap=encap, dip=dip, members=members)))
        return {"id": id, "type": type, "encap": encap, "dip": dip, "members": members or []}

    def route_add(self, vrf, prefix, nh, label=None):
        self.calls.append(("route_add", dict(vrf=vrf, prefix=prefix, nh=nh, label=label)))
        return {"vrf": vrf, "prefix": prefix, "nh": nh, "label": label}

    def route_dump(self, vrf, family=4):
        self.calls.append(("route_dump", dict(vrf=vrf, family=family)))
        return [{"prefix": "10.1.1.21/32", "nh": 102, "label": 103}]

    def bridge_dump(self, vrf):
        self.calls.append(("bridge_dump", dict(vrf=vrf)))
        return [{"mac": "02:00:00:00:02:21", "nh": 102, "vni": 5000}]

    def bridge_add(self, vrf, mac, nh, vni=None):
        self.calls.append(("bridge_add", dict(vrf=vrf, mac=mac, nh=nh, vni=vni)))

    def mpls_dump(self):
        return [{"label": 103, "nh": 3}]

    def vxlan_dump(self):
        return [{"vni": 5000, "vrf": 1}]

    def policy_add(self, vif, action, proto=None, src=None, dst=None, src_port=None, dst_port=None,
                   mirror_vif=None):
        self.calls.append(("policy_add", dict(vif=vif, action=action, proto=proto, dst_port=dst_port)))
        return {"vif": vif, "action": action}

    def flow_list(self):
        return [{"index": 7, "src": "10.1.1.11", "dst": "10.1.1.21", "sport": 40000, "dport": 5001,
                 "proto": 6, "vrf": 1, "action": "drop", "rflow": 8, "packets": 3, "bytes": 180}]

    def dropstats(self, vif=None):
        self.calls.append(("dropstats", {"vif": vif}))
        return {"discard": 0, "flow_action_drop": 3, "no_route": 1}

    def vrfstats(self, vrf):
        return {"udp_mpls_encaps": 10, "discards": 0}


@pytest.fixture
def srv(tmp_path):
    fake = Fake()
    path = str(tmp_path / "vr.sock")
    with CtlServer(fake, path):
        yield fake, path


def run(path, *args):
    p = subprocess.run([sys.executable, "-m", "apps.vrouter.ctl.cli", "--socket", path, *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def test_vif_list_shows_tf_style_counters_per_queue(srv):
    _, path = srv
    rc, out, err = run(path, "vif", "--list")
    assert rc == 0, err
    assert "Vrouter Interface Table" in out
    assert "vif0/3" in out and "OS: tvm3" in out and "Type:Virtual" in out
    assert "RX packets:30  bytes:3000  errors:0  drops:0" in out       # 10 + 20 over two queues
    assert "Queue 0 RX packets:10" in out and "Queue 1 RX packets:20" in out
    assert "Flags:PL3Mq" in out


def test_json_is_the_ops_result(srv):
    _, path = srv
    rc, out, _ = run(path, "--json", "vif", "--get", "3")
    assert rc == 0
    assert json.loads(out)["queue_stats"][1]["rx_packets"] == 20


def test_vif_get_zero_is_a_mode_and_unknown_vif_is_one_line_exit_2(srv):
    _, path = srv
    assert run(path, "vif", "--get", "0")[0] == 0
    rc, out, err = run(path, "vif", "--get", "9")
    assert rc == 2 and out == ""
    assert err.strip() == "pypdk-vrouter: vif 9 does not exist; see vif_list()"


def test_add_forms_send_the_right_request(srv):
    fake, path = srv
    assert run(path, "vif", "--add", "5", "--type", "virtual", "--port", "net_tap5,iface=t5",
               "--vrf", "1", "--mac", "02:00:00:00:01:05", "--queues", "2")[0] == 0
    assert run(path, "nh", "--add", "9", "--type", "ecmp", "--members", "3,4")[0] == 0
    assert run(path, "rt", "--add", "--vrf", "1", "--prefix", "10.1.1.0/24", "--nh", "9", "--label", "20")[0] == 0
    assert run(path, "rt", "--add", "--family", "bridge", "--vrf", "1", "--mac", "02:00:00:00:02:21",
               "--nh", "102", "--vni", "5000")[0] == 0
    assert run(path, "policy", "--add", "3", "--action", "drop", "--proto", "tcp", "--dst-port", "5001")[0] == 0
    calls = [c for c in fake.calls if c[0].endswith("_add")]
    assert calls == [
        ("vif_add", dict(id=5, type="virtual", port="net_tap5,iface=t5", vrf=1, mac="02:00:00:00:01:05",
                         ip=None, queues=2)),
        ("nh_add", dict(id=9, type="ecmp", vif=None, encap=None, dip=None, members=[3, 4])),
        ("route_add", dict(vrf=1, prefix="10.1.1.0/24", nh=9, label=20)),
        ("bridge_add", dict(vrf=1, mac="02:00:00:00:02:21", nh=102, vni=5000)),
        ("policy_add", dict(vif=3, action="drop", proto="tcp", dst_port=5001)),
    ]


def test_unknown_op_on_the_target_is_refused(srv):
    _, path = srv
    rc, _, err = run(path, "nh", "--delete", "3")          # Fake has no nh_del
    assert rc == 2 and "unknown operation 'nh_del'" in err


def test_tables(srv):
    _, path = srv
    out = run(path, "rt", "--dump", "1")[1]
    assert "Vrouter inet routing table 1" in out and "10.1.1.21/32  102      103" in out
    out = run(path, "rt", "--dump", "1", "--family", "bridge")[1]
    assert "02:00:00:00:02:21" in out and "5000" in out
    out = run(path, "nh", "--list")[1]
    assert "Unresolved" in out and "mplsoudp 192.168.50.1 -> 192.168.50.2" in out
    assert "103    3" in run(path, "mpls", "--dump")[1]
    assert "5000  1" in run(path, "vxlan", "--dump")[1]
    out = run(path, "flow", "-l")[1]
    assert "10.1.1.11:40000" in out and "10.1.1.21:5001" in out and "drop" in out
    out = run(path, "dropstats")[1]
    assert "Flow Action Drop  3" in out and "Discard" not in out        # zero reasons hidden
    assert "Udp Mpls Encaps  10" in run(path, "vrfstats", "--get", "1")[1]


def test_usage_errors_exit_2(srv):
    _, path = srv
    rc, _, err = run(path, "vif", "--list", "--get", "1")
    assert rc == 2 and "exactly one of --list, --get, --add, --delete" in err
    rc, _, err = run(path, "rt", "--add", "--vrf", "1", "--prefix", "10.0.0.0/8")
    assert rc == 2 and "needs --nh" in err


def test_no_socket(tmp_path):
    rc, _, err = run(str(tmp_path / "none.sock"), "vif", "--list")
    assert rc == 2 and "no vRouter control socket" in err


def test_top_once(srv):
    _, path = srv
    rc, out, err = run(path, "top", "--period", "0.1", "--count", "2")
    assert rc == 0, err
    assert out.count("per-vif rates") == 2 and "vif0/3" in out and "RX pps" in out


def test_vif_rates_from_two_samples():
    a = [{"id": 3, "port": "net_tap3,iface=t3", "stats": q(100, 50)}]
    b = [{"id": 3, "port": "net_tap3,iface=t3", "stats": q(300, 150)}]
    lines = show.vif_rates(a, b, 2.0)
    row = next(line for line in lines if line.startswith("vif0/3"))
    assert row.split()[:6] == ["vif0/3", "t3", "100", "80.00k", "50", "40.00k"]
