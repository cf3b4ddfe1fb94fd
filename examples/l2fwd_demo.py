"""The l2fwd demo: two namespaces pinging each other through pypdk.

    python -m examples.l2fwd_demo        (as root, from the top of the tree)

    ns pdk-a (10.99.0.1) ── tap pdkdemo0 ── port 0 ┐
                                               l2fwd (lcore 1)
    ns pdk-b (10.99.0.2) ── tap pdkdemo1 ── port 1 ┘

It starts `pypdk-run apps/l2fwd` on two tap ports (created by the driver),
moves each tap into its namespace (with the MAC l2fwd writes as destination
for that port, 02:00:00:00:00:<port>), pings across, shows the l2fwd stats,
stops the run with SIGTERM and removes everything it made.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from pypdk.testing import netns as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def say(text):
    print(f"\n==> {text}", flush=True)


def main() -> int:
    taps = ("pdkdemo0", "pdkdemo1")
    stats = os.path.join(tempfile.mkdtemp(prefix="pypdk-demo-"), "stats.json")
    say("starting pypdk-run apps/l2fwd on lcores 0-1 with two tap ports")
    cmd = [sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "--lcores", "0-1",
           "--vdev", f"net_tap0,iface={taps[0]}", "--vdev", f"net_tap1,iface={taps[1]}",
           "--duration", "60", "--stats-json", stats]
    print("    " + " ".join(cmd[2:]).replace("pypdk.cli", "pypdk-run"))
    run = subprocess.Popen(cmd, cwd=ROOT)
    try:
        with nn.netns() as a, nn.netns() as b:
            deadline = time.time() + 20
            while not all(nn.link_exists(t) for t in taps):
                if run.poll() is not None or time.time() > deadline:
                    raise SystemExit("demo: pypdk-run did not create its tap devices")
                time.sleep(0.1)
            say(f"moving {taps[0]} into namespace {a} (10.99.0.1/24) and {taps[1]} into {b} (10.99.0.2/24)")
            # l2fwd writes 02:00:00:00:00:<output port> as the destination MAC:
            # give each namespace's end of the tap that address.
            for port, (tap, ns, ip) in enumerate(((taps[0], a, "10.99.0.1/24"),
                                                  (taps[1], b, "10.99.0.2/24"))):
                nn.move_link(tap, ns)
                nn.ns_run(ns, "ip", "link", "set", tap, "address", f"02:00:00:00:00:{port:02x}")
                nn.add_addr(tap, ip, ns)
            say(f"ping from {a} to 10.99.0.2, through l2fwd")
            out = nn.ping(a, "10.99.0.2", count=5, wait=2)
            print(out.stdout)
            if out.returncode != 0:
                print("demo: the ping did not get through", file=sys.stderr)
            say("stopping pypdk-run with SIGTERM")
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=15)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    with open(stats) as f:
        data = json.load(f)
    say("per-port counters from --stats-json")
    for pid, p in sorted(data["ports"].items()):
        print(f"    port {pid} {p['name']}: ipackets {p['ipackets']}  opackets {p['opackets']}  "
              f"dropped {p.get('dropped', 0)}")
    say("ring and mempool costs (python -m pypdk.perf all)")
    subprocess.run([sys.executable, "-m", "pypdk.perf", "all"], cwd=ROOT, check=True)
    say("done: namespaces and tap devices removed")
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
