"""The vRouter agent: the slow path and the control plane inside the vRouter process.

What it does (Tungsten Fabric's agent, much reduced):
- Underlay neighbour resolution on the fabric with ARP. A tunnel nexthop
  whose destination MAC is unknown is not valid; packets routed to it are
  trapped (reason "resolve") and dropped by the datapath. The agent ARPs for
  every such destination (at once when it starts, then at most once a second
  per address until answered), learns the answer from the ARP replies the
  datapath copies to it, and programs `neighbor_add`, which validates the
  tunnel nexthops. Every ARP seen on the fabric refreshes a known neighbour
  (a peer that changed its MAC is followed).
- Resolve nexthops (the fabric VRF's on-link route, say `192.168.50.0/24 ->
  resolve`): a trapped packet names the address to resolve; once the ARP
  reply comes the agent adds an encap nexthop on the fabric vif with that
  MAC and a /32 route to it, and sends the packet it held (the last one per
  address) so the first packet of a conversation is not lost.
- Floating IPs: the public addresses live on no interface, so the agent
  answers ARP requests for them on the fabric with the vRouter's MAC.
- Flow aging: `VRouter.flow_age()` once a second.
- The control socket (ctl/server.py) runs beside it; both take `lock`, so the
  tables have one writer at a time (the datapath's publication rule). Like
  every front end, the agent changes the vRouter only through the
  operations of `VRouter` (vrouter.py): `neighbor_add`, `nh_add`,
  `route_add`, `flow_age`.

Threads: the agent runs on its own daemon thread of the vRouter process
(the main lcore's runner loop stays free for signals and stats), polling the
trap ring every `tick` seconds: trapped packets wait at most that long. The
trap ring has one consumer, the agent; nothing else may dequeue it.

`start_control(vr, name=..., socket_path=...)` starts both and returns a
`Control` whose `close()` stops them (before the VRouter is closed). The app
calls it from setup() (see `app.py`, the clearly marked control hook).
"""
from __future__ import annotations

import ipaddress
import logging
import struct
import threading
import time

from pypdk.net.addr import mac_str
from pypdk.net.arp_frames import ARP_OP_REPLY, ARP_OP_REQUEST, arp_frame, parse_arp
from pypdk.net.proto import ETHER_HDR_LEN, ETHER_TYPE_IPV4, IPV4_HDR_LEN

from apps.vrouter.dp.router import LIMITS, TRAP_REASONS

log = logging.getLogger("pypdk.vrouter.agent")

TRAP_ARP, TRAP_RESOLVE, TRAP_PACKET = TRAP_REASONS["arp"], TRAP_REASONS["resolve"], TRAP_REASONS["packet"]
AGENT_NH_TOP = LIMITS["nhs"] - 1    # nexthop ids the agent allocates, down from the top
AGENT_NH_BASE = AGENT_NH_TOP - 95


class Agent:
    """The slow path of one VRouter (see the module doc).

    Args:
        vr: the `VRouter` (its `dp.trap_dequeue`, `dp.inject` and API methods).
        lock: taken around every use of vr (shared with the control socket).
        tick: seconds between polls of the trap ring.
        arp_retry: seconds between ARP requests for one unanswered address.
        flow_age_period: seconds between flow agings.
    """

    def __init__(self, vr, lock: threading.RLock | None = None, *, tick: float = 0.005,
                 arp_retry: float = 1.0, flow_age_period: float = 1.0):
        self.vr = vr
        self.lock = lock or threading.RLock()
        self.tick = tick
        self.arp_retry = arp_retry
        self.flow_age_period = flow_age_period
        self.asked: dict[str, float] = {}       # ip -> when we last ARPed for it
        self.resolving: dict[str, bytes | None] = {}   # ip -> held frame (resolve nexthops)
        self.resolved: dict[str, int] = {}      # ip -> the encap nh the agent added for it
        self.counters = {"trapped": 0, "arp_requests_sent": 0, "arp_replies_sent": 0,
                         "neighbors_learned": 0, "resolved_routes": 0, "held_sent": 0, "errors": 0}
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_age = 0.0

    # ---- life cycle --------------------------------------------------------------------

    def start(self) -> "Agent":
        self._thread = threading.Thread(target=self._run, name="vr-agent", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._quit.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None

    def _run(self) -> None:
        while not self._quit.is_set():
            try:
                busy = self.poll()
            except Exception:
                # The agent must outlive a bad packet or a refused operation.
                self.counters["errors"] += 1
                log.exception("agent poll failed")
                busy = 0
            if not busy:
                self._quit.wait(self.tick)

    # ---- one round ------------------------------------------------------------------------

    def poll(self, now: float | None = None) -> int:
        """Handle what was trapped, ARP for what is unresolved, age flows; packets handled."""
        now = time.monotonic() if now is None else now
        with self.lock:
            trapped = self.vr.dp.trap_dequeue(64)
            for reason, vif, frame in trapped:
                self.counters["trapped"] += 1
                if reason == TRAP_ARP:
                    self._on_arp(vif, frame)
                elif reason == TRAP_RESOLVE:
                    self._on_resolve(vif, frame, now)
            self._arp_unresolved(now)
            if now >= self._next_age:
                self._next_age = now + self.flow_age_period
                self.vr.flow_age()
        return len(trapped)

    # ---- what the vRouter is -----------------------------------------------------------------

    def _fabric(self):
        return next((v for v in self.vr.vifs.values() if v["type"] == "fabric"), None)

    def _our_ip(self) -> bytes:
        return ipaddress.IPv4Address(str(self.vr.underlay_ip)).packed

    def _fips(self) -> set[str]:
        return {v["fip"] for v in self.vr.vifs.values() if v.get("fip")}

    # ---- ARP -------------------------------------------------------------------------------

    def _send_arp_request(self, ip: str, now: float) -> None:
        fab = self._fabric()
        if fab is None or str(self.vr.underlay_ip) in ("0.0.0.0", ip):
            return
        if now - self.asked.get(ip, -1e9) < self.arp_retry:
            return
        self.asked[ip] = now
        frame = arp_frame(ARP_OP_REQUEST, self.vr.mac, self._our_ip(), bytes(6), ipaddress.IPv4Address(ip).packed)
        self.vr.dp.inject(fab["id"], frame)
        self.counters["arp_requests_sent"] += 1

    def _arp_unresolved(self, now: float) -> None:
        """ARP for every tunnel destination and held resolve target without a MAC."""
        want = {nh["dip"] for nh in self.vr.nhs.values()
                if nh["type"] == "tunnel" and nh["dip"] not in self.vr.neighbors}
        want |= {ip for ip in self.resolving if ip not in self.resolved}
        for ip in sorted(want):
            self._send_arp_request(ip, now)

    def _on_arp(self, vif: int, frame: bytes) -> None:
        a = parse_arp(frame)
        if a is None:
            return
        op, sha, spa, _tha, tpa = a
        fab = self._fabric()
        sender = str(ipaddress.IPv4Address(spa))
        target = str(ipaddress.IPv4Address(tpa))
        if fab is None or vif != fab["id"]:
            return
        if op == ARP_OP_REQUEST and target in self._fips() and sender != "0.0.0.0":
            # Nobody owns a floating IP on the underlay: answer for it.
            reply = arp_frame(ARP_OP_REPLY, self.vr.mac, tpa, sha, spa)
            self.vr.dp.inject(fab["id"], reply)
            self.counters["arp_replies_sent"] += 1
        if sender in ("0.0.0.0", str(self.vr.underlay_ip)) or sha == self.vr.mac:
            return
        self._learn(sender, sha)

    def _learn(self, ip: str, mac: bytes) -> None:
        m = mac_str(mac)
        tunnel_dst = any(nh["type"] == "tunnel" and nh["dip"] == ip for nh in self.vr.nhs.values())
        if (tunnel_dst or ip in self.vr.neighbors) and self.vr.neighbors.get(ip) != m:
            self.vr.neighbor_add(ip, m)
            self.counters["neighbors_learned"] += 1
            log.info("neighbour %s is at %s", ip, m)
        if ip in self.resolving:
            self._install_resolved(ip, mac)

    # ---- resolve nexthops ---------------------------------------------------------------------

    def _on_resolve(self, vif: int, frame: bytes, now: float) -> None:
        if len(frame) < ETHER_HDR_LEN + IPV4_HDR_LEN or frame[12:14] != struct.pack("!H", ETHER_TYPE_IPV4):
            return
        dst = str(ipaddress.IPv4Address(frame[ETHER_HDR_LEN + 16:ETHER_HDR_LEN + 20]))
        # A packet to an unresolved tunnel is routed by the VM's VRF to the
        # tunnel's nh: its own destination is a VM, not something to ARP for.
        if self._tunnel_pending():
            self._arp_unresolved(now)
        if not self._fabric_route_resolves(dst):
            return
        if dst in self.resolved:
            return
        self.resolving[dst] = frame        # hold the latest: sent once resolved
        self._send_arp_request(dst, now)

    def _tunnel_pending(self) -> bool:
        return any(nh["type"] == "tunnel" and nh["dip"] not in self.vr.neighbors for nh in self.vr.nhs.values())

    def _fabric_route_resolves(self, ip: str) -> bool:
        """True if the longest VRF 0 route covering ip points at a resolve nexthop."""
        addr = ipaddress.IPv4Address(ip)
        best = None
        for r in self.vr.route_dump(0, 4):
            net = ipaddress.ip_network(r["prefix"])
            if addr in net and (best is None or net.prefixlen > best[0].prefixlen):
                best = (net, r["nh"])
        return best is not None and self.vr.nhs.get(best[1], {}).get("type") == "resolve"

    def _free_nh_id(self) -> int | None:
        for nid in range(AGENT_NH_TOP, AGENT_NH_BASE - 1, -1):
            if nid not in self.vr.nhs:
                return nid
        return None

    def _install_resolved(self, ip: str, mac: bytes) -> None:
        fab = self._fabric()
        held = self.resolving.pop(ip, None)
        if fab is None:
            return
        nid = self.resolved.get(ip) or self._free_nh_id()
        if nid is None:
            log.warning("no free nexthop id for the resolved neighbour %s", ip)
            return
        self.vr.nh_add(nid, "encap", vif=fab["id"], dmac=mac_str(mac))
        self.vr.route_add(0, f"{ip}/32", nid)
        self.resolved[ip] = nid
        self.counters["resolved_routes"] += 1
        log.info("resolved %s at %s: nh %d, route %s/32 in vrf 0", ip, mac_str(mac), nid, ip)
        if held is not None and len(held) >= ETHER_HDR_LEN + IPV4_HDR_LEN:
            frame = mac + self.vr.mac + held[12:]
            self.vr.dp.inject(fab["id"], frame)
            self.counters["held_sent"] += 1

    def stats(self) -> dict:
        return dict(self.counters, resolving=len(self.resolving), resolved=len(self.resolved))


class Control:
    """The agent and the control socket of one vRouter process (close() stops both)."""

    def __init__(self, vr, agent: Agent, server):
        self.vr = vr
        self.agent = agent
        self.server = server
        self.lock = agent.lock

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.agent.close()


def start_control(vr, *, name: str, socket_path: str | None = None, agent: bool = True) -> Control:
    """Start the agent thread and the control socket for `vr`; close() them before vr.close().

    Args:
        name: the vRouter's name (the socket is /run/pypdk/vrouter-<name>.sock
            unless socket_path is given; `hello` reports it).
        socket_path: the control socket's path; "" for none.

    Raises:
        UsageError: the socket cannot be made (another vRouter has it...).
    """
    from apps.vrouter.ctl.server import CtlServer, default_path
    lock = threading.RLock()
    ag = Agent(vr, lock)
    server = None
    if socket_path != "":
        path = socket_path or default_path(name)
        server = CtlServer(vr, path, lock=lock, hello={"name": name, "socket": path})
        server.start()
    try:
        if agent:
            ag.start()
    except BaseException:
        if server is not None:
            server.close()
        raise
    return Control(vr, ag, server)
