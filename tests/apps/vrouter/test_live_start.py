"""`pypdk-run apps/vrouter` as an operator starts it: empty, then programmed live.

With no app options the vRouter starts with no vifs, its control socket in
the EAL's runtime directory (/run/pypdk/<file-prefix>/vrouter.sock) and its
agent, and keeps running; `pypdk-vrouter --file-prefix P` adds vifs (each
opens its port and its rx queues go to the forwarding lcores), nexthops and
routes, and the packets of a pcap vif come out of another. SIGTERM stops it
clean (exit 0, the runtime directory gone). Two vRouters with different
prefixes run side by side. An lcore list naming cpus this machine lacks is
one line and exit status 2.
"""
import json
import os
import signal
import subprocess
import sys
import time

from scapy.all import Ether, IP, UDP, Raw, wrpcap, rdpcap

from pypdk.testing import netns as nsh
from tests.apps.vrouter.harness import VR_MAC, VM3_MAC, VM3_IP, VM4_MAC, VM4_IP

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CLI = [sys.executable, "-m", "apps.vrouter.ctl.cli"]


def start(prefix, *args, lcores="0-1"):
    p = subprocess.Popen([sys.executable, "-m", "pypdk.cli", "apps/vrouter", "-l", lcores, "--no-huge",
                          "--file-prefix", prefix, *args],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sock = f"/run/pypdk/{prefix}/vrouter.sock"
    end = time.monotonic() + 30
    while not os.path.exists(sock):
        if p.poll() is not None or time.monotonic() > end:
            p.kill()
            out, err = p.communicate()
            raise AssertionError(f"vRouter did not come up: {out}{err}")
        time.sleep(0.05)
    return p


def ctl(prefix, *args):
    r = subprocess.run([*CLI, "--file-prefix", prefix, "--json", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip() else None


def stop(p):
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    return p.returncode, out, err


def test_empty_vrouter_programmed_live_forwards_and_stops_clean(tmp_path):
    prefix = nsh.unique_name("vrlive")
    n = 20
    frames = [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=VM4_IP, ttl=30) / UDP(sport=1000 + i, dport=2000)
              / Raw(b"x" * 20) for i in range(n)]
    wrpcap(str(tmp_path / "in.pcap"), frames)
    out_pcap = tmp_path / "out.pcap"
    p = start(prefix)
    try:
        assert ctl(prefix, "vif", "--list") == []
        ctl(prefix, "vif", "--add", "4", "--type", "virtual", "--port", f"net_pcap4,tx_pcap={out_pcap}",
            "--vrf", "1", "--mac", VM4_MAC, "--ip", VM4_IP)
        ctl(prefix, "nh", "--add", "11", "--type", "encap", "--vif", "4")
        ctl(prefix, "rt", "--add", "--vrf", "1", "--prefix", f"{VM4_IP}/32", "--nh", "11")
        ctl(prefix, "vif", "--add", "3", "--type", "virtual", "--port",
            f"net_pcap3,rx_pcap={tmp_path / 'in.pcap'}", "--vrf", "1", "--mac", VM3_MAC, "--ip", VM3_IP)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if ctl(prefix, "vif", "--get", "4")["stats"]["tx_packets"] >= n:
                break
            time.sleep(0.1)
        assert p.poll() is None, "the vRouter exited by itself"
    finally:
        rc, out, err = stop(p)
    assert rc == 0, err
    assert "stopped by SIGTERM" in out
    got = rdpcap(str(out_pcap))
    assert len(got) == n
    assert all(q[Ether].dst == VM4_MAC and q[Ether].src == VR_MAC and q[IP].ttl == 29 for q in got)
    assert not os.path.exists(f"/run/pypdk/{prefix}")


def test_two_vrouters_with_different_prefixes_do_not_collide():
    a, b = nsh.unique_name("vra"), nsh.unique_name("vrb")
    pa = start(a)
    try:
        pb = start(b)
        try:
            ctl(a, "vif", "--add", "3", "--type", "virtual", "--port", "net_null3", "--vrf", "1", "--mac", VM3_MAC)
            assert [v["id"] for v in ctl(a, "vif", "--list")] == [3]
            assert ctl(b, "vif", "--list") == []
        finally:
            rcb, _, errb = stop(pb)
    finally:
        rca, _, erra = stop(pa)
    assert rca == 0 and rcb == 0, erra + errb


def test_lcores_beyond_this_machine_is_one_line_exit_2():
    ncpu = len(os.sched_getaffinity(0))
    lcores = f"{ncpu}-{ncpu + 3}"
    r = subprocess.run([sys.executable, "-m", "pypdk.cli", "apps/vrouter", "--lcores", lcores, "--no-huge"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert f"cpu {ncpu} does not exist on this machine" in lines[0] and "--lcores" in lines[0]
