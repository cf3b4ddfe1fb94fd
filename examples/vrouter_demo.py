"""The vRouter demo: two compute nodes, two VMs each, an overlay between them, on this machine.

    python -m examples.vrouter_demo [--encap mplsoudp|mplsogre|vxlan] [--mb 20] [--no-huge]

(`bash scripts/demo.sh` runs it after setting the machine up.) It builds
topology 1 of pypdk.testing.cluster in network namespaces, starts one
`pypdk-run apps/vrouter --lcores 0-1` per compute node inside the node's
namespace, moves the VM taps into the VM namespaces, then shows a ping and
a TCP transfer (content checked) from a VM on node1 to a VM on node2 across
the overlay, the operator's view (`pypdk-vrouter vif --list`, `nh --list`,
`dropstats`, `vrfstats`), stops both vRouters with SIGTERM and removes every
namespace, interface and file it made, checking that nothing is left.
Run as root.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from pypdk.testing import netns as nn
from pypdk.testing.cluster import Cluster, Topology, tcp_transfer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def step(text: str) -> None:
    print(f"    {text}", flush=True)


def tool(node, *args) -> str:
    """Run pypdk-vrouter against a node, printing the command and its output."""
    print(f"\n    $ pypdk-vrouter --socket {os.path.basename(node.socket)} {' '.join(args)}", flush=True)
    p = subprocess.run([sys.executable, "-m", "apps.vrouter.ctl.cli", "--socket", node.socket, *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    out = (p.stdout + p.stderr).rstrip("\n")
    print("\n".join("    " + line for line in out.splitlines()), flush=True)
    return p.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="pypdk vRouter demo: two compute nodes, an overlay, four VMs")
    ap.add_argument("--encap", choices=["mplsoudp", "mplsogre", "vxlan"], default="mplsoudp")
    ap.add_argument("--mb", type=int, default=20, help="MB sent over TCP across the overlay")
    ap.add_argument("--no-huge", action="store_true", help="ordinary pages instead of hugepages")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: run as root (it creates network namespaces and tap devices)", file=sys.stderr)
        return 2

    say(f"building topology 1: two compute nodes, two VMs each, {args.encap.upper()} overlay")
    topo = Topology(args.encap, log=step)
    ok = True
    try:
        topo.build()
        step(f"configs: {', '.join(n.config for n in topo.nodes)}")
        say("starting one vRouter per compute node (each inside its node's namespace)")
        cl = Cluster(topo, no_huge=args.no_huge, runner=("--stats-period", "2"))
        cl.start()
        n1, n2 = topo.nodes
        vm11, vm21 = topo.vm("vm11"), topo.vm("vm21")
        say("the agents resolved each other's underlay address by ARP (tunnel nexthops Valid):")
        tool(n1, "nh", "--list")

        say(f"ping from vm11 ({vm11.ip}, node1) to vm21 ({vm21.ip}, node2) across the overlay")
        r = topo.ping("vm11", vm21.ip, count=5, wait=2)
        print("\n".join("    " + line for line in r.stdout.rstrip().splitlines()), flush=True)
        ok &= r.returncode == 0

        say(f"TCP: {args.mb} MB of random bytes from vm11 to vm21, SHA-256 compared at both ends")
        res = tcp_transfer(vm11.ns, vm21.ns, vm21.ip, nbytes=args.mb << 20)
        if res["ok"]:
            mbps = res["sent"][0] * 8 / res["seconds"] / 1e6
            step(f"sent {res['sent'][0]} bytes sha256 {res['sent'][1][:16]}...; received {res['received'][0]} "
                 f"bytes sha256 {res['received'][1][:16]}...: identical ({res['seconds']:.2f} s, {mbps:.0f} Mbit/s)")
        else:
            step(f"the transfer FAILED: {res}")
        ok &= res["ok"]

        say("what the operator sees on node1 (TF vRouter tools)")
        tool(n1, "vif", "--list")
        tool(n1, "rt", "--dump", "1") if args.encap != "vxlan" else tool(n1, "rt", "--dump", "1", "--family", "bridge")
        tool(n1, "vrfstats", "--get", "1")
        tool(n1, "dropstats")

        say("stopping both vRouters with SIGTERM (their final statistics follow)")
        codes = cl.stop()
        for n in topo.nodes:
            lines = cl.output(n).rstrip().splitlines()
            start = max((i for i, line in enumerate(lines) if line.startswith("final stats")), default=len(lines))
            step(f"{n.name} exited with status {codes[n.name]}")
            print("\n".join("      " + line for line in lines[start:]), flush=True)
            ok &= codes[n.name] == 0
        left = [f"{vm.tap} in {vm.ns}" for vm in topo.vms if nn.link_exists(vm.tap, vm.ns)]
        left += [f"vhost0 in {n.ns}" for n in topo.nodes if nn.link_exists("vhost0", n.ns)]
        left += [n.socket for n in topo.nodes if os.path.exists(n.socket)]
        if left:
            step(f"LEFT BEHIND: {', '.join(left)}")
            ok = False
        else:
            step("nothing left behind: tap devices, vhost0 and control sockets are gone")
    except Exception as e:
        ok = False
        print(f"demo: {e}", file=sys.stderr, flush=True)
    finally:
        say("removing the namespaces, veths and configs")
        topo.teardown()
        mine = [ns for ns in nn.list_netns() if ns.startswith(topo.prefix + "-")]
        step("done" if not mine else f"namespaces left: {mine}")
    say("demo " + ("finished: ping and TCP crossed the overlay" if ok else "FAILED (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
