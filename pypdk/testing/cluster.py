"""Real topologies for the vRouter: compute nodes, VMs and an underlay, in network namespaces.

Topology 1 (two compute nodes, two VMs each; the kernel is every peer):

    ns <p>-vm11 (10.1.1.11) ─ tap tvm11 ┐                      ┌ tap tvm21 ─ ns <p>-vm21 (10.1.1.21)
    ns <p>-vm12 (10.1.1.12) ─ tap tvm12 ┤ vRouter node1        │ vRouter node2 ├ tap tvm22 ─ ns <p>-vm22
                        ns <p>-n1: eth0 (fabric, af_packet)   ns <p>-n2: eth0 (fabric)
                                   vhost0 192.168.50.1 (tap)         vhost0 192.168.50.2
                                          │ veth                            │ veth
                              ns <p>-ul: bridge br0 ──────── (veth) ── ns <p>-peer: eth0 192.168.50.9
                                                                     (+ vxlan0 10.1.1.9, VNI 5000)

Each vRouter process runs inside its node's namespace (`ip netns exec <p>-n1
pypdk-run apps/vrouter ...`), so the fabric veth end, the vhost tap that
carries the underlay address and the VM taps it creates all start there;
`attach()` then gives vhost0 the node's MAC and underlay address and moves
each VM tap into its VM namespace (the tap driver follows its fd). The
underlay is a Linux bridge in its own namespace; the optional peer namespace
is a plain underlay host (a floating IP's client) and, with
`peer_vxlan=True`, a kernel VXLAN endpoint in the VMs' subnet.

The fabric veth end in a node namespace carries no address, but the kernel
there would still answer for the node's underlay address on it (Linux is a
weak host) and bounce tunnel packets with ICMP errors: a tc ingress filter
(a one-instruction classic BPF program that says "drop") drops everything
the kernel would receive on it, after the vRouter's AF_PACKET socket has had
its copy (packet taps run before tc ingress).

Encapsulations: `mplsoudp` and `mplsogre` make routed (L3) VM vifs with
proxy ARP, /32 routes and one MPLS label per VM (100 + vif id); `vxlan`
makes bridged (L2) vifs, a bridge entry per VM MAC and a flood entry per
node (a composite nexthop with one member per local VM and per remote
VTEP), VNI 5000 <-> VRF 1.

`build()` makes everything but the vRouters and writes each node's TOML
(apps/vrouter/config.py's schema) to the work directory; `vrouter_argv()` is
the command line for a node; `attach()` finishes a node once its vRouter
runs; `teardown()` removes every namespace (their interfaces go with them)
and file it made. The vRouters run as `pypdk-run apps/vrouter` processes from the
source tree; only `Cluster.ctl()` imports the vRouter's code (its control client).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from pypdk.net.proto import UDP_PORT_VXLAN
from pypdk.testing import netns as nn

# The top of the source tree: `pypdk-run` runs apps/vrouter from there.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNDERLAY_NET = "192.168.50"
VM_NET = "10.1.1"
PEER_IP = f"{UNDERLAY_NET}.9"
PEER_VM_IP = f"{VM_NET}.9"
PEER_VXLAN_MAC = "02:00:00:00:01:09"
VNI = 5000
VRF = 1
ENCAPS = ("mplsoudp", "mplsogre", "vxlan")
FABRIC_MTU = 9000           # room for the tunnel headers around a 1500-byte VM packet
NH_DISCARD, NH_RESOLVE, NH_TUNNEL0, NH_FLOOD = 1, 2, 100, 200
FIRST_VM_VIF = 3            # 0 fabric, 1 vhost, 2 agent


@dataclass
class VM:
    name: str               # vm11
    ns: str                 # its namespace
    node: int               # 1-based node number
    vif: int                # vif id on its node
    ip: str
    mac: str
    tap: str                # interface name (created by the vRouter in the node namespace)
    queues: int = 1
    label: int = 0          # MPLS label of its vif on its node

    @property
    def cidr(self) -> str:
        return f"{self.ip}/24"


@dataclass
class Node:
    index: int
    name: str               # node1
    ns: str
    underlay_ip: str
    mac: str                # fabric, vhost0 and vRouter MAC
    vms: list[VM] = field(default_factory=list)
    config: str = ""        # path of its TOML
    socket: str = ""        # its control socket
    stats_json: str = ""


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))         # a TOML basic string is a JSON string


def to_toml(doc: dict) -> str:
    """A config dict ({table: dict | [dict]}) as TOML: [table] and [[table]] of scalars."""
    out = []
    for table, body in doc.items():
        entries = body if isinstance(body, list) else [body]
        for e in entries:
            out.append(f"[[{table}]]" if isinstance(body, list) else f"[{table}]")
            out += [f"{k} = {toml_value(v)}" for k, v in e.items() if v is not None]
            out.append("")
    return "\n".join(out)


class Topology:
    """Namespaces, underlay and configs for N compute nodes with M VMs each (see the module doc).

    Args:
        encap: mplsoudp, mplsogre or vxlan.
        nodes: compute nodes (1 or 2).
        vms: VMs per node.
        peer: add the underlay host namespace <p>-peer (192.168.50.9).
        peer_vxlan: give the peer a kernel vxlan0 (VNI 5000, remote node1,
            10.1.1.9/24 in the VMs' subnet); implies peer, needs encap vxlan.
        queues: {vm name: queues} for multi-queue VM taps.
        policy: VM vifs do flows and policy.
        fip: {vm name: public underlay address} floating IPs.
        fabric: "af_packet" (default) or "af_xdp" for the fabric vif.
        fabric_queues: rx/tx queues of the fabric vif (af_packet: a PACKET_FANOUT
            group hashing the outer flow; the vRouter deals them over its lcores).
        prefix: the namespaces' name prefix (default unique per process).
        workdir: where configs and stats go (default a fresh temp dir).
    """

    def __init__(self, encap: str = "mplsoudp", nodes: int = 2, vms: int = 2, *, peer: bool = False,
                 peer_vxlan: bool = False, queues: dict | None = None, policy: bool = True,
                 fip: dict | None = None, fabric: str = "af_packet", fabric_queues: int = 1,
                 prefix: str | None = None, workdir: str | None = None, log=None):
        if encap not in ENCAPS:
            raise ValueError(f"encap {encap!r}: one of {', '.join(ENCAPS)}")
        if peer_vxlan and encap != "vxlan":
            raise ValueError("a kernel VXLAN peer needs encap='vxlan'")
        if fabric not in ("af_packet", "af_xdp"):
            raise ValueError(f"fabric {fabric!r}: af_packet or af_xdp")
        if fabric_queues > 1 and fabric != "af_packet":
            raise ValueError("several fabric queues need fabric='af_packet' (veth has one AF_XDP queue here)")
        self.encap = encap
        self.peer = peer or peer_vxlan
        self.peer_vxlan = peer_vxlan
        self.policy = policy
        self.fip = dict(fip or {})
        self.fabric = fabric
        self.fabric_queues = fabric_queues
        self.prefix = prefix or nn.unique_name("vr")[:9]
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="pypdk-vrouter-")
        self.log = log or (lambda text: None)
        self.made_ns: list[str] = []
        self.ul = f"{self.prefix}-ul"
        self.peer_ns = f"{self.prefix}-peer"
        queues = dict(queues or {})
        self.nodes: list[Node] = []
        for i in range(1, nodes + 1):
            n = Node(i, f"node{i}", f"{self.prefix}-n{i}", f"{UNDERLAY_NET}.{i}", f"02:50:00:00:00:{i:02x}")
            for j in range(1, vms + 1):
                name = f"vm{i}{j}"
                vif = FIRST_VM_VIF + j - 1
                n.vms.append(VM(name, f"{self.prefix}-{name}", i, vif, f"{VM_NET}.{i}{j}",
                                f"02:00:00:00:0{i}:{i}{j}", f"t{name}", queues.get(name, 1), 100 + vif))
            n.config = os.path.join(self.workdir, f"{n.name}.toml")
            n.socket = os.path.join(self.workdir, f"{n.name}.sock")
            n.stats_json = os.path.join(self.workdir, f"{n.name}.stats.json")
            self.nodes.append(n)
        unknown = set(queues) | set(self.fip)
        unknown -= {vm.name for vm in self.vms}
        if unknown:
            raise ValueError(f"no VM named {sorted(unknown)[0]}")

    # ---- queries ------------------------------------------------------------------

    @property
    def vms(self) -> list[VM]:
        return [vm for n in self.nodes for vm in n.vms]

    def vm(self, name: str) -> VM:
        return next(v for v in self.vms if v.name == name)

    def node(self, name_or_index) -> Node:
        for n in self.nodes:
            if name_or_index in (n.name, n.index):
                return n
        raise KeyError(name_or_index)

    # ---- configs ------------------------------------------------------------------

    def fabric_port(self, n: Node) -> str:
        if self.fabric == "af_xdp":
            return "net_af_xdp0,iface=eth0"
        q = f",qpairs={self.fabric_queues}" if self.fabric_queues > 1 else ""
        return f"net_af_packet0,iface=eth0{q}"

    def config(self, n: Node) -> dict:
        """Node n's vRouter config (the TOML's tables as a dict)."""
        l2 = self.encap == "vxlan"
        vifs = [{"id": 0, "type": "fabric", "port": self.fabric_port(n), "mtu": FABRIC_MTU,
                 **({"queues": self.fabric_queues} if self.fabric_queues > 1 else {})},
                {"id": 1, "type": "vhost", "port": "net_tap1,iface=vhost0", "mac": n.mac, "ip": n.underlay_ip,
                 "mtu": FABRIC_MTU},
                {"id": 2, "type": "agent"}]
        nhs = [{"id": NH_DISCARD, "type": "discard"}, {"id": NH_RESOLVE, "type": "resolve"}]
        routes, mpls, bridge, vxlan, fips = [], [], [], [], []
        for vm in n.vms:
            port = f"net_tap{vm.vif},iface={vm.tap}" + (f",queues={vm.queues}" if vm.queues > 1 else "")
            vifs.append({"id": vm.vif, "type": "virtual", "port": port, "vrf": VRF, "mac": vm.mac,
                         "ip": vm.ip, "policy": self.policy, "mode": "l2" if l2 else "l3",
                         "queues": vm.queues})
            nhs.append({"id": vm.vif, "type": "encap", "vif": vm.vif})
            if l2:
                bridge.append({"vrf": VRF, "mac": vm.mac, "nh": vm.vif})
            else:
                routes.append({"vrf": VRF, "prefix": f"{vm.ip}/32", "nh": vm.vif})
                mpls.append({"label": vm.label, "nh": vm.vif})
            if vm.name in self.fip:
                fips.append({"vif": vm.vif, "public": self.fip[vm.name]})
        flood_members, flood_vnis = [vm.vif for vm in n.vms], [0] * len(n.vms)
        for other in self.nodes:
            if other is n:
                continue
            tid = NH_TUNNEL0 + other.index
            nhs.append({"id": tid, "type": "tunnel", "encap": self.encap, "dip": other.underlay_ip})
            for vm in other.vms:
                if l2:
                    bridge.append({"vrf": VRF, "mac": vm.mac, "nh": tid, "vni": VNI})
                else:
                    routes.append({"vrf": VRF, "prefix": f"{vm.ip}/32", "nh": tid, "label": vm.label})
            flood_members.append(tid)
            flood_vnis.append(VNI)
        if self.peer_vxlan and n.index == 1:
            tid = NH_TUNNEL0 + 9
            nhs.append({"id": tid, "type": "tunnel", "encap": "vxlan", "dip": PEER_IP})
            bridge.append({"vrf": VRF, "mac": PEER_VXLAN_MAC, "nh": tid, "vni": VNI})
            flood_members.append(tid)
            flood_vnis.append(VNI)
        if l2:
            nhs.append({"id": NH_FLOOD, "type": "composite", "members": flood_members, "vnis": flood_vnis})
            bridge.append({"vrf": VRF, "mac": "ff:ff:ff:ff:ff:ff", "nh": NH_FLOOD})
            vxlan.append({"vni": VNI, "vrf": VRF})
        else:
            # The VMs' gateway and anything unknown: answered by proxy ARP, then discarded.
            routes.append({"vrf": VRF, "prefix": "0.0.0.0/0", "nh": NH_DISCARD})
        # The underlay in the fabric VRF (a floating IP's replies): resolved by the agent's ARP.
        routes.append({"vrf": 0, "prefix": f"{UNDERLAY_NET}.0/24", "nh": NH_RESOLVE})
        doc = {"vrouter": {"mac": n.mac, "underlay_ip": n.underlay_ip},
               "vif": vifs, "nh": nhs, "route": routes}
        for k, v in (("bridge", bridge), ("mpls", mpls), ("vxlan", vxlan), ("fip", fips)):
            if v:
                doc[k] = v
        return doc

    def write_configs(self) -> None:
        for n in self.nodes:
            with open(n.config, "w") as f:
                f.write(f"# {n.name} of a pypdk vRouter topology ({self.encap}); written by pypdk.testing.cluster\n")
                f.write(to_toml(self.config(n)))

    # ---- build and tear down ----------------------------------------------------------

    def _ns(self, name: str) -> str:
        nn.add_netns(name)
        self.made_ns.append(name)
        return name

    def build(self) -> "Topology":
        """Namespaces, the underlay bridge, the fabric veths, the peer, the configs."""
        try:
            self.log(f"underlay: namespace {self.ul} with bridge br0 (MTU {FABRIC_MTU})")
            self._ns(self.ul)
            nn.ns_run(self.ul, "ip", "link", "add", "br0", "mtu", str(FABRIC_MTU), "type", "bridge")
            nn.set_link("br0", self.ul, "up")
            for n in self.nodes:
                self.log(f"{n.name}: namespace {n.ns}, fabric eth0 {n.mac} on the underlay")
                self._ns(n.ns)
                self._uplink(f"p{n.index}", n.ns, n.mac)
                # The kernel of the node must not take the fabric's packets (module doc).
                nn.ns_run(n.ns, "tc", "qdisc", "add", "dev", "eth0", "clsact")
                # cls_bpf in direct-action mode, classic BPF "ret #2" (TC_ACT_SHOT): needs no
                # tc action module, which not every kernel has.
                nn.ns_run(n.ns, "tc", "filter", "add", "dev", "eth0", "ingress", "bpf", "da",
                          "bytecode", "1,6 0 0 2,")
                for vm in n.vms:
                    self._ns(vm.ns)
            if self.peer:
                self.log(f"peer: namespace {self.peer_ns}, eth0 {PEER_IP}/24 on the underlay")
                self._ns(self.peer_ns)
                self._uplink("pp", self.peer_ns, "02:50:00:00:00:09")
                nn.add_addr("eth0", f"{PEER_IP}/24", self.peer_ns)
                self._wire_offloads_off("eth0", self.peer_ns)
                if self.peer_vxlan:
                    self.log(f"peer: kernel vxlan0 VNI {VNI} remote {self.nodes[0].underlay_ip}, "
                             f"{PEER_VM_IP}/24 in the VMs' subnet")
                    nn.ns_run(self.peer_ns, "ip", "link", "add", "vxlan0", "address", PEER_VXLAN_MAC,
                              "type", "vxlan", "id", str(VNI), "remote", self.nodes[0].underlay_ip,
                              "local", PEER_IP, "dstport", str(UDP_PORT_VXLAN), "dev", "eth0")
                    nn.ns_run(self.peer_ns, "ip", "link", "set", "vxlan0", "mtu", "1500")
                    nn.add_addr("vxlan0", f"{PEER_VM_IP}/24", self.peer_ns)
                    self._wire_offloads_off("vxlan0", self.peer_ns)
            self.write_configs()
        except BaseException:
            self.teardown()
            raise
        return self

    def _uplink(self, br_end: str, ns: str, mac: str) -> None:
        nn.ns_run(self.ul, "ip", "link", "add", br_end, "mtu", str(FABRIC_MTU), "type", "veth",
                  "peer", "name", "eth0", "mtu", str(FABRIC_MTU), "address", mac, "netns", ns)
        nn.ns_run(self.ul, "ip", "link", "set", br_end, "master", "br0", "up")
        nn.disable_ipv6("eth0", ns)
        nn.set_link("eth0", ns, "up")

    @staticmethod
    def _wire_offloads_off(ifname: str, ns: str) -> None:
        """Checksums and segments made in software, as on a real wire.

        A veth hands the frame to the other end as the kernel built it: with a
        TCP checksum left to "hardware" and, with TSO/GSO, as one 64 KiB
        segment. A vRouter reading the fabric by AF_PACKET would get exactly
        that; a physical NIC would have segmented and summed it first."""
        nn.ns_run(ns, "ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off")

    def teardown(self) -> None:
        """Remove every namespace made (their interfaces with them) and the work files."""
        for ns in reversed(self.made_ns):
            try:
                nn.del_netns(ns)
            except Exception:          # keep going: remove the rest
                pass
        self.made_ns = []
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.build()

    def __exit__(self, *exc):
        self.teardown()
        return False

    # ---- the vRouters ---------------------------------------------------------------

    def vrouter_argv(self, n: Node, *, lcores: str = "0-1", no_huge: bool = True,
                     runner: tuple = (), app: tuple = (), python: str | None = None) -> list[str]:
        """The command starting node n's vRouter in its namespace."""
        argv = ["ip", "netns", "exec", n.ns, python or sys.executable, "-m", "pypdk.cli",
                os.path.join(ROOT, "apps", "vrouter"), "--lcores", lcores,
                "--file-prefix", f"{self.prefix}{n.index}"]
        if no_huge:
            argv.append("--no-huge")
        argv += [*runner, "--stats-json", n.stats_json, "--", "--config", n.config,
                 "--name", f"{self.prefix}-{n.name}", "--ctl-socket", n.socket, *app]
        return argv

    def wait_ready(self, n: Node, proc=None, timeout: float = 30) -> None:
        """Until node n's vRouter made its taps and its control socket (RuntimeError after timeout)."""
        want = ["vhost0"] + [vm.tap for vm in n.vms]
        end = time.monotonic() + timeout
        while True:
            missing = [t for t in want if not nn.link_exists(t, n.ns)]
            if not missing and os.path.exists(n.socket):
                return
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{n.name}: the vRouter exited with status {proc.returncode} before it was ready")
            if time.monotonic() > end:
                what = missing[0] if missing else f"control socket {n.socket}"
                raise RuntimeError(f"{n.name}: {what} did not appear within {timeout:g} s")
            time.sleep(0.1)

    def attach(self, n: Node) -> None:
        """Finish node n once its vRouter runs: vhost0 gets the underlay address, VM taps go to the VMs."""
        self.log(f"{n.name}: vhost0 {n.underlay_ip}/24 ({n.mac}) in {n.ns}")
        nn.disable_ipv6("vhost0", n.ns)
        nn.ns_run(n.ns, "ip", "link", "set", "dev", "vhost0", "address", n.mac, "mtu", str(FABRIC_MTU))
        nn.add_addr("vhost0", f"{n.underlay_ip}/24", n.ns)
        for vm in n.vms:
            self.log(f"{n.name}: tap {vm.tap} -> namespace {vm.ns} as {vm.cidr} ({vm.mac})"
                     + (f", {vm.queues} queues" if vm.queues > 1 else ""))
            nn.move_link(vm.tap, vm.ns, n.ns)
            nn.ns_run(vm.ns, "ip", "link", "set", "dev", vm.tap, "address", vm.mac)
            nn.add_addr(vm.tap, vm.cidr, vm.ns)
            if self.encap != "vxlan":
                nn.ns_run(vm.ns, "ip", "route", "add", "default", "via", f"{VM_NET}.1", "dev", vm.tap)

    # ---- traffic helpers ---------------------------------------------------------------

    def ping(self, src: str, dst_ip: str, count: int = 3, wait: float = 1):
        """Ping from VM (or 'peer') `src` to an address; the CompletedProcess."""
        ns = self.peer_ns if src == "peer" else self.vm(src).ns
        return nn.ping(ns, dst_ip, count=count, wait=wait)

    def ns_of(self, who: str) -> str:
        return self.peer_ns if who == "peer" else self.vm(who).ns



# ---- running the vRouters of a topology -----------------------------------------------

class Cluster:
    """The vRouter processes of a built topology: start, attach, talk to, stop.

        with Topology("mplsoudp") as topo, Cluster(topo) as cl:
            topo.ping("vm11", "10.1.1.21")
            cl.ctl(topo.nodes[0]).call("vif_list")

    Each process's output goes to <workdir>/<node>.log.

    The nodes run on the same lcores of one machine (and the VMs' kernels on
    its cpus too), so by default their forwarding loops yield the cpu after
    `yield_after` empty poll rounds (`--yield-after`): two busy-polling
    vRouters on one cpu would halve each other's throughput and add
    scheduler-slice latency to every packet. 0 makes them spin.
    """

    def __init__(self, topo: Topology, *, lcores: str = "0-1", no_huge: bool = True,
                 runner: tuple = (), app: tuple = (), timeout: float = 60, yield_after: int = 64):
        self.topo = topo
        if yield_after and "--yield-after" not in app:
            app = (*app, "--yield-after", str(yield_after))
        self.lcores, self.no_huge, self.runner, self.app = lcores, no_huge, tuple(runner), tuple(app)
        self.timeout = timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self.returncodes: dict[str, int] = {}

    def log_path(self, n: Node) -> str:
        return os.path.join(self.topo.workdir, f"{n.name}.log")

    def start(self) -> "Cluster":
        try:
            for n in self.topo.nodes:
                argv = self.topo.vrouter_argv(n, lcores=self.lcores, no_huge=self.no_huge,
                                              runner=self.runner, app=self.app)
                self.topo.log(f"{n.name}: " + " ".join(argv[4:]).replace(f"{sys.executable} -m pypdk.cli", "pypdk-run"))
                with open(self.log_path(n), "w") as out:
                    self.procs[n.name] = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                                          stdin=subprocess.DEVNULL)
            for n in self.topo.nodes:
                try:
                    self.topo.wait_ready(n, self.procs[n.name], self.timeout)
                except RuntimeError as e:
                    raise RuntimeError(f"{e}; its output:\n{self.output(n)[-3000:]}") from None
                self.topo.attach(n)
            self.wait_resolved()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_resolved(self, timeout: float = 15) -> None:
        """Until every node's agent has resolved its tunnel destinations by ARP."""
        end = time.monotonic() + timeout
        while True:
            pending = [(n.name, nh["dip"]) for n in self.topo.nodes for nh in self.call(n, "nh_list")
                       if nh["type"] == "tunnel" and not nh.get("resolved")]
            if not pending:
                return
            if time.monotonic() > end:
                raise RuntimeError(f"{pending[0][0]}: the agent did not resolve {pending[0][1]} "
                                   f"within {timeout:g} s")
            time.sleep(0.1)

    def output(self, n: Node) -> str:
        try:
            with open(self.log_path(n)) as f:
                return f.read()
        except OSError:
            return ""

    def ctl(self, n: Node):
        from apps.vrouter.ctl.server import CtlClient
        return CtlClient(n.socket).connect()

    def call(self, n: Node, op: str, **args):
        with self.ctl(n) as c:
            return c.call(op, **args)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs.values())

    def stop(self, timeout: float = 20) -> dict[str, int]:
        """SIGTERM every vRouter and wait; {node: exit status} (killed ones: -9)."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in self.procs.items():
            try:
                self.returncodes[name] = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.returncodes[name] = -9
        self.procs = {}
        return dict(self.returncodes)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


# ---- traffic ---------------------------------------------------------------------------

_SINK = r"""
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(float(sys.argv[2]))
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(float(sys.argv[2]))
h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""

_SOURCE = r"""
import hashlib, random, socket, sys
n, seed = int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed); h = hashlib.sha256(); sent = 0
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[5]))
while sent < n:
    b = rnd.randbytes(min(1 << 16, n - sent))
    c.sendall(b); h.update(b); sent += len(b)
c.shutdown(socket.SHUT_WR)
c.recv(1)
c.close()
print(sent, h.hexdigest(), flush=True)
"""


def tcp_transfer(src_ns: str, dst_ns: str, dst_ip: str, *, nbytes: int = 20 << 20, port: int = 5201,
                 seed: int = 1, timeout: float = 60) -> dict:
    """Send `nbytes` of seeded random data over TCP from src_ns to dst_ip (a listener in dst_ns).

    Returns {"sent": (bytes, sha256), "received": (bytes, sha256), "seconds": s,
    "ok": content identical}; a connection that fails gives ok False and the error.
    """
    sink = nn.ns_popen(dst_ns, sys.executable, "-c", _SINK, str(port), str(timeout))
    try:
        line = sink.stdout.readline()
        if "listening" not in line:
            return {"ok": False, "error": f"the listener did not start: {sink.stderr.read()}"}
        t0 = time.monotonic()
        src = nn.ns_run(src_ns, sys.executable, "-c", _SOURCE, dst_ip, str(port), str(nbytes), str(seed),
                        str(timeout), check=False, timeout=timeout + 10)
        secs = time.monotonic() - t0
        if src.returncode != 0:
            return {"ok": False, "error": (src.stderr.strip().splitlines() or ["?"])[-1], "seconds": secs}
        out, err = sink.communicate(timeout=timeout)
        s_n, s_h = src.stdout.split()
        r = out.split()
        if len(r) != 2:
            return {"ok": False, "error": f"the listener said {out!r} {err!r}", "seconds": secs}
        sent, received = (int(s_n), s_h), (int(r[0]), r[1])
        return {"ok": sent == received and sent[0] == nbytes, "sent": sent, "received": received,
                "seconds": secs}
    finally:
        if sink.poll() is None:
            sink.kill()
        sink.wait()
