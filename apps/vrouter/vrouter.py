"""`VRouter`: the Python API of the vRouter (what the agent, tests and,
later, the control socket and `pypdk-vrouter` use).

Every method is one control operation from `ctl/ops.py` (validate, then
apply; an invalid request raises `pypdk.errors.UsageError` and changes
nothing) and returns plain JSON-friendly values. Safe while lcores forward:
the datapath reads published entries only (see dp/vrouter.pxd).

    vr = VRouter(pool, mac="00:00:5e:00:01:00", underlay_ip="192.168.50.1")
    vr.vif_add(0, "fabric", port="net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap")
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip="192.168.50.2")
    vr.route_add(1, "10.1.2.0/24", nh=20, label=100)
    vr.poll_until_idle()        # or: run the workers on lcores (app.py)
"""
from __future__ import annotations

import struct

import pypdk.pmd
from pypdk.errors import UsageError

from apps.vrouter.ctl import ops
from apps.vrouter.dp.router import Router, VRFS_NAMES
from apps.vrouter.dp.drop import DROP_NAMES


class VRouter:
    """The vRouter's objects and their datapath (one control thread)."""

    def __init__(self, pool, mac="00:00:5e:00:01:00", underlay_ip="0.0.0.0", icmp_src=None, *,
                 ports=(), flow_max=1 << 16, mpls_max=1 << 20, bridge_max=1 << 16):
        self.pool = pool
        self.dp = Router(pool, mpls_max=mpls_max, flow_max=flow_max, bridge_max=bridge_max)
        self.runner_ports = {p.port_id: p for p in ports}
        self.owned_ports = []
        self.vifs, self.nhs, self.routes, self.bridge = {}, {}, {}, {}
        self.mpls, self.vxlan, self.neighbors, self.policies = {}, {}, {}, {}
        self.rtdata, self.rtdata_free = {}, list(range(65535, -1, -1))
        self.mac = self.underlay_ip = self.icmp_src = None
        ops.vrouter_set(self, mac, underlay_ip, icmp_src)

    # ---- ports ---------------------------------------------------------------

    def open_port(self, port, queues=1):
        """A started port for a vif: a --vdev spec (opened here), the id of a
        port the runner opened, or an EthDev."""
        if isinstance(port, int) and not isinstance(port, bool):
            dev = self.runner_ports.get(port)
            if dev is None:
                raise UsageError(f"port {port} is not a --vdev port of this run",
                                 "give a --vdev spec string or the id of a --vdev port")
            owned = False
        elif isinstance(port, str):
            dev = pypdk.pmd.open(port)
            owned = True
        else:
            dev, owned = port, False
        try:
            if dev.state in ("probed", "stopped"):
                dev.setup(self.pool, queues, queues)
            if dev.state != "started":
                dev.start()
        except BaseException:
            if owned:
                dev.close()
            raise
        if owned:
            self.owned_ports.append(dev)
        return dev

    def close_port(self, dev):
        if dev in self.owned_ports:
            self.owned_ports.remove(dev)
            dev.close()

    def close_ports(self):
        """Close the ports it opened (lcores stopped first); tables and counters stay."""
        self.dp.synchronize()
        for dev in list(self.owned_ports):
            self.close_port(dev)

    def close(self):
        """Close the ports it opened and free the tables (lcores stopped first)."""
        if self.dp is None:
            return
        self.close_ports()
        self.dp.close()
        self.dp = None

    # ---- forwarding on the calling thread (tests, tools) -------------------------

    def poll(self, rounds=1):
        return self.dp.poll(rounds)

    def poll_until_idle(self, idle_rounds=3):
        return self.dp.poll_until_idle(idle_rounds)

    def flush_flows(self):
        """Forget every flow (policy changed: the next packet re-evaluates)."""
        self.dp.flow_age(True)

    # ---- the agent (minimal) ---------------------------------------------------------

    def agent_poll(self):
        """Handle trapped packets: learn underlay neighbours from ARP on the
        fabric; for packets waiting on an unresolved tunnel, ARP for its
        destination. Returns what was handled [(reason, vif, note)]."""
        done = []
        for reason, vif, frame in self.dp.trap_dequeue():
            if reason == 1 and len(frame) >= 42 and frame[12:14] == b"\x08\x06":
                op = struct.unpack("!H", frame[20:22])[0]
                sha, spa = frame[22:28], ".".join(map(str, frame[28:32]))
                if op in (1, 2) and spa != "0.0.0.0" and spa != str(self.underlay_ip):
                    if self.neighbors.get(spa) != ops.mac_str(sha):
                        ops.neighbor_add(self, spa, ops.mac_str(sha))
                        done.append((reason, vif, f"learned {spa}"))
            elif reason == 2:
                for nh in self.nhs.values():
                    if nh["type"] == "tunnel" and nh["dip"] not in self.neighbors:
                        self._arp_request(nh["dip"])
                        done.append((reason, vif, f"arp {nh['dip']}"))
        return done

    def _arp_request(self, ip):
        fab = next((v for v in self.vifs.values() if v["type"] == "fabric"), None)
        if fab is None:
            return
        tip = ops.parse_ip4(ip).packed
        frame = (b"\xff" * 6 + self.mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                 + self.mac + self.underlay_ip.packed + bytes(6) + tip)
        self.dp.inject(fab["id"], frame + bytes(60 - len(frame)))

    # ---- the API (ops) -------------------------------------------------------------

    def vif_add(self, id, type, port=None, vrf=0, mac=None, ip=None, ip6=None, mtu=1500, policy=False,
                mode="l3", queues=1):
        return ops.vif_add(self, id, type, port, vrf, mac, ip, ip6, mtu, policy, mode, queues)

    def vif_del(self, id):
        return ops.vif_del(self, id)

    def vif_get(self, id):
        return ops.vif_get(self, id)

    def vif_list(self):
        return ops.vif_list(self)

    def nh_add(self, id, type, vif=None, encap=None, dip=None, members=None, dmac=None, vnis=None):
        return ops.nh_add(self, id, type, vif, encap, dip, members, dmac, vnis)

    def nh_del(self, id):
        return ops.nh_del(self, id)

    def nh_get(self, id):
        return ops.nh_get(self, id)

    def nh_list(self):
        return ops.nh_list(self)

    def route_add(self, vrf, prefix, nh, label=None):
        return ops.route_add(self, vrf, prefix, nh, label)

    def route_del(self, vrf, prefix):
        return ops.route_del(self, vrf, prefix)

    def route_dump(self, vrf, family=4):
        return ops.route_dump(self, vrf, family)

    def bridge_add(self, vrf, mac, nh, vni=None):
        return ops.bridge_add(self, vrf, mac, nh, vni)

    def bridge_del(self, vrf, mac):
        return ops.bridge_del(self, vrf, mac)

    def bridge_dump(self, vrf):
        return ops.bridge_dump(self, vrf)

    def mpls_add(self, label, nh):
        return ops.mpls_add(self, label, nh)

    def mpls_del(self, label):
        return ops.mpls_del(self, label)

    def mpls_dump(self):
        return ops.mpls_dump(self)

    def vxlan_add(self, vni, vrf):
        return ops.vxlan_add(self, vni, vrf)

    def vxlan_del(self, vni):
        return ops.vxlan_del(self, vni)

    def vxlan_dump(self):
        return ops.vxlan_dump(self)

    def neighbor_add(self, ip, mac):
        return ops.neighbor_add(self, ip, mac)

    def neighbor_del(self, ip):
        return ops.neighbor_del(self, ip)

    def neighbor_list(self):
        return ops.neighbor_list(self)

    def policy_add(self, vif, action, proto=None, src=None, dst=None, src_port=None, dst_port=None,
                   mirror_vif=None):
        return ops.policy_add(self, vif, action, proto, src, dst, src_port, dst_port, mirror_vif)

    def policy_clear(self, vif):
        return ops.policy_clear(self, vif)

    def policy_list(self, vif):
        return ops.policy_list(self, vif)

    def fip_add(self, vif, public):
        return ops.fip_add(self, vif, public)

    def fip_del(self, public):
        return ops.fip_del(self, public)

    def flow_list(self):
        return ops.flow_list(self)

    def flow_age(self):
        return self.dp.flow_age(False)

    def dropstats(self, vif=None):
        return ops.dropstats(self, vif)

    def vrfstats(self, vrf):
        return ops.vrfstats(self, vrf)

    def stats_json(self):
        """Per-vif counters (keyed by vif id) and drop statistics, for --stats-json."""
        return {"vifs": {str(v["id"]): {**v["stats"], "queues": v["queue_stats"], "drops": v["drops"]}
                         for v in self.vif_list()},
                "dropstats": self.dropstats(),
                "vrfstats": {str(vrf): s for vrf in sorted({v["vrf"] for v in self.vifs.values()} | {0})
                             for s in [self.vrfstats(vrf)]},
                "flows": self.dp.flow_count(),
                **self.dp.totals()}


__all__ = ["VRouter", "DROP_NAMES", "VRFS_NAMES"]
