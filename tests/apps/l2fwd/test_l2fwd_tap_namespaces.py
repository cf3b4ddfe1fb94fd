"""A ping between two network namespaces passes through apps/l2fwd on two tap ports.

l2fwd rewrites the destination MAC to 02:00:00:00:00:<output port>, so each
namespace's end of the tap is given exactly that address: port 0's tap
carries 02:00:00:00:00:00, port 1's 02:00:00:00:00:01 (DPDK's l2fwd makes
the same assumption about its peers)."""
import json
import os
import signal
import subprocess
import sys
import time

from pypdk.testing import netns as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_ping_between_namespaces_through_l2fwd_on_taps(tmp_path):
    taps = (nn.unique_name("pdl2a"), nn.unique_name("pdl2b"))
    stats = tmp_path / "stats.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "--lcores", "0-1", "--no-huge",
         "--vdev", f"net_tap0,iface={taps[0]}", "--vdev", f"net_tap1,iface={taps[1]}",
         "--duration", "60", "--stats-json", str(stats)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        with nn.netns() as a, nn.netns() as b:
            deadline = time.time() + 30
            while not all(nn.link_exists(t) for t in taps):
                assert run.poll() is None, run.communicate()
                assert time.time() < deadline, "pypdk-run made no tap devices"
                time.sleep(0.05)
            for port, (tap, ns, ip) in enumerate(((taps[0], a, "10.98.0.1/24"),
                                                  (taps[1], b, "10.98.0.2/24"))):
                nn.move_link(tap, ns)
                nn.ns_run(ns, "ip", "link", "set", tap, "address", f"02:00:00:00:00:{port:02x}")
                nn.add_addr(tap, ip, ns)
            p = nn.ping(a, "10.98.0.2", count=3, wait=2)
            assert p.returncode == 0, p.stdout + p.stderr
            assert " 0% packet loss" in p.stdout
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=20)
        assert run.returncode == 0, err
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    doc = json.loads(stats.read_text())
    p0, p1 = doc["ports"]["0"], doc["ports"]["1"]
    # 3 echo requests (and ARP) one way, 3 replies (and ARP) the other.
    assert p0["ipackets"] >= 3 and p1["ipackets"] >= 3
    # What one port received left by the other, or is counted as dropped there
    # (a tap write can fail with EAGAIN when the kernel side is busy).
    for rx, tx in ((p0, p1), (p1, p0)):
        assert tx["opackets"] <= rx["ipackets"] <= tx["opackets"] + tx["dropped"]
    for t in taps:   # the taps the driver created are gone with the run
        assert not nn.link_exists(t)
