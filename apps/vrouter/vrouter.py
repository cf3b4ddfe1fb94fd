"""`VRouter`: the vRouter's model and its control operations.

The layer between the datapath (`apps.vrouter.dp.router.Router`, the
published C tables) and the front ends: the startup file (config.py), the
agent (agent.py), the control socket (ctl/server.py) and `pypdk-vrouter`
(ctl/cli.py, a client of the socket) all call the methods of this class,
so every check and its wording is in one place.

Each operation validates, then applies: it checks every argument before
touching anything, so an invalid request raises `pypdk.errors.UsageError`
(one line naming the table, entry and field, and a fix) and changes
nothing. Values come in as the user spells them ("10.1.2.0/24",
"02:00:00:00:01:03", "mplsoudp"; parsed by values.py), are kept in the
model (plain dicts: `vifs`, `nhs`, `routes`, ...) beside what is published
to the datapath, and results are plain JSON-friendly values.

Publication order keeps readers safe while lcores forward (dp/vrouter.pxd):
a nexthop is published before a route, label or bridge entry points at it,
and unpublished only when nothing does (nh_del refuses otherwise); replaced
vif/nh entries and released route data are reused only after
`Router.synchronize()`. One thread writes at a time (the agent and the
control socket share a lock).

    vr = VRouter(pool, mac="00:00:5e:00:01:00", underlay_ip="192.168.50.1")
    vr.vif_add(0, "fabric", port="net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap")
    vr.nh_add(20, "tunnel", encap="mplsoudp", dip="192.168.50.2")
    vr.route_add(1, "10.1.2.0/24", nh=20, label=100)
    vr.poll_until_idle()        # or: run the workers on lcores (app.py)
"""
from __future__ import annotations

import ipaddress
import re
import socket
import struct

import pypdk.pmd
from pypdk.errors import PypdkError, UsageError

from apps.vrouter import vhostuser
from apps.vrouter.dp.drop import DROP_NAMES
from apps.vrouter.dp.router import (ENCAPS, FLOW_ACTION_NAMES, LIMITS, NH_FLAGS, NH_TYPES, RULE_ACTIONS,
                                    VIF_FLAGS, VIF_MODES, VIF_TYPES, VRFS_NAMES, Router)
from apps.vrouter.values import (be32, check_bool, check_int, choice, mac_str, parse_ip4, parse_ip6,
                                 parse_mac, parse_ports, parse_prefix)

MAX_VIFS, MAX_NHS, MAX_VRFS = LIMITS["vifs"], LIMITS["nhs"], LIMITS["vrfs"]
MAX_MEMBERS, MAX_RULES, MAX_QUEUES = LIMITS["members"], LIMITS["rules"], LIMITS["queues"]
LABEL_MAX = (1 << 20) - 1           # an MPLS label is 20 bits
VNI_MAX = (1 << 24) - 1             # a VXLAN network identifier is 24 bits
PROTOS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "icmp": socket.IPPROTO_ICMP,
          "icmp6": socket.IPPROTO_ICMPV6, "any": 0}
SPECIAL_VIFS = ("fabric", "vhost", "agent")     # at most one of each per vRouter
_PCI_ADDR = re.compile(r"^(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7](,|$)")


class VRouter:
    """The vRouter's objects, their operations and their datapath (see the module doc).

    Args:
        pool: the PktMbufPool the datapath and its ports take mbufs from.
        mac, underlay_ip, icmp_src: see `vrouter_set`.
        ports: the runner's --vdev ports (a vif's port may name one by id).
        flow_max, mpls_max, bridge_max: table sizes.
        vhost_dir: the directory of `vhostuser:NAME` ports' sockets (uvh_vif_NAME).
    """

    def __init__(self, pool, mac="00:00:5e:00:01:00", underlay_ip="0.0.0.0", icmp_src=None, *,
                 ports=(), flow_max=1 << 16, mpls_max=1 << 20, bridge_max=1 << 16,
                 lcores=None, pools=None, burst=32, yield_after=0, tsc_hz=None, sleep_us=0,
                 vhost_dir=vhostuser.VHOST_DIR):
        self.pool = pool
        self.vhost_dir = vhost_dir        # where vhostuser:NAME ports' sockets are (vhostuser.py)
        self.dp = Router(pool, mpls_max=mpls_max, flow_max=flow_max, bridge_max=bridge_max)
        # The forwarding lcores ({lcore: node}) and their rx queue map (lcores.py),
        # made before any vif so each port gets a tx queue per lcore.
        self.fwd = None
        if lcores:
            from apps.vrouter.lcores import Lcores
            self.fwd = Lcores(self.dp, lcores, pools or {n: pool for n in set(lcores.values())},
                              burst, yield_after, tsc_hz, sleep_us)
        self.runner_ports = {p.port_id: p for p in ports}
        self.owned_ports = []
        self.vifs, self.nhs, self.routes, self.bridge = {}, {}, {}, {}
        self.mpls, self.vxlan, self.neighbors, self.policies = {}, {}, {}, {}
        self.rtdata, self.rtdata_free = {}, list(range(LIMITS["rtdata"] - 1, -1, -1))
        self.mac = self.underlay_ip = self.icmp_src = None
        self.vrouter_set(mac, underlay_ip, icmp_src)

    def vrouter_set(self, mac, underlay_ip, icmp_src=None):
        """The vRouter's own MAC and underlay address (and the source of its
        ICMP errors, default the underlay address); tunnels follow."""
        m = parse_mac(mac, "vrouter.mac")
        u = parse_ip4(underlay_ip, "vrouter.underlay_ip")
        i = parse_ip4(icmp_src, "vrouter.icmp_src") if icmp_src is not None else u
        self.mac, self.underlay_ip, self.icmp_src = m, u, i
        self.dp.set_router(m, be32(u), be32(i))
        for nid in list(self.nhs):
            self._nh_publish(nid)

    # ---- ports ---------------------------------------------------------------

    def open_port(self, port, queues=1):
        """A started port for a vif: a --vdev spec or a PCI address bound to
        vfio-pci (opened here), the id of a port the runner opened, or an EthDev."""
        if isinstance(port, int) and not isinstance(port, bool):
            dev = self.runner_ports.get(port)
            if dev is None:
                raise UsageError(f"port {port} is not a --vdev port of this run",
                                 "give a --vdev spec string or the id of a --vdev port")
            owned = False
        elif isinstance(port, str) and _PCI_ADDR.match(port):
            bdf, _, rest = port.partition(",")      # a vfio-pci NIC (DPDK mode's fabric)
            dev = pypdk.pmd.open_pci(bdf, **dict(kv.split("=", 1) for kv in rest.split(",") if kv))
            owned = True
        elif isinstance(port, str):
            dev = pypdk.pmd.open(port)
            owned = True
        else:
            dev, owned = port, False
        try:
            if dev.state in ("probed", "stopped"):
                if self.fwd is not None:
                    self.fwd.setup_port(dev, queues, queues)
                else:
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

    # ---- vifs -------------------------------------------------------------------

    def vif_add(self, id, type, port=None, vrf=0, mac=None, ip=None, ip6=None, mtu=1500, policy=False,
                mode="l3", queues=1, distribute=False):
        """Add or change vif `id` (same id again = change; its port stays).

        Every vif answers ARP and ND for the addresses it routes to (proxy ARP).
        distribute: software distribution of what it receives over the
        forwarding lcores by inner flow hash (traffic without RSS entropy).
        """
        check_int(id, 0, MAX_VIFS - 1, "id")
        choice(type, VIF_TYPES, "type")
        check_int(vrf, 0, MAX_VRFS - 1, "vrf")
        check_int(mtu, 68, 9000, "mtu")
        check_int(queues, 1, MAX_QUEUES, "queues")
        flags = choice(mode, VIF_MODES, "mode")
        check_bool(policy, "policy")
        check_bool(distribute, "distribute")
        macb = parse_mac(mac) if mac is not None else None
        ip4 = parse_ip4(ip) if ip is not None else None
        ip6a = parse_ip6(ip6) if ip6 is not None else None
        old = self.vifs.get(id)
        if old is not None and old["type"] != type:
            raise UsageError(f"vif {id} is a {old['type']} vif, not {type}", "delete it first to change its type")
        if type in SPECIAL_VIFS:
            for other in self.vifs.values():
                if other["type"] == type and other["id"] != id:
                    raise UsageError(f"vif {other['id']} is already the {type} vif", f"one {type} vif per vRouter")
        if type == "agent" and port is not None:
            raise UsageError("an agent vif has no port", "leave port out (the agent uses rings)")
        if type != "agent" and port is None and old is None:
            raise UsageError(f"a {type} vif needs a port", 'give port = "net_tap1,iface=tapvm1" (any --vdev spec)')
        if type == "virtual" and macb is None and old is None:
            raise UsageError("a virtual vif needs the VM's mac", 'give mac = "02:00:00:00:01:03"')
        # Apply: the port first (it may fail), then the datapath entry.
        dev = old["dev"] if old else None
        opened = False
        if port is not None and (old is None or old["port"] != port):
            try:
                dev = self.open_port(vhostuser.spec(port, id, queues, self.vhost_dir)
                                     if vhostuser.is_vhost(port) else port, queues)
            except PypdkError as e:
                if e.problem.startswith("port "):
                    raise
                raise e.__class__(f"port {port!r}: {e.problem}", e.fix) from None
            opened = True
        try:
            if macb is None:
                macb = old["macb"] if old else (bytes(dev.mac) if dev is not None else self.mac)
            if policy:
                flags |= VIF_FLAGS["policy"]
            flags |= VIF_FLAGS["proxy_arp"]
            entry = {"id": id, "type": type, "port": port, "vrf": vrf, "mac": mac_str(macb), "macb": macb,
                     "ip": str(ip4) if ip4 else None, "ip6": str(ip6a) if ip6a else None, "mtu": mtu,
                     "policy": policy, "mode": mode, "queues": queues, "flags": flags, "dev": dev,
                     "distribute": distribute,
                     "fip": old["fip"] if old else None}
            self.vifs[id] = entry
            self._vif_publish(id)
        except BaseException:
            if opened:
                self.close_port(dev)
            if old is None:
                self.vifs.pop(id, None)
            else:
                self.vifs[id] = old
            raise
        if old is not None and opened and old["dev"] is not None:
            self.dp.synchronize()
            self.close_port(old["dev"])
        self._specials()
        for nid, nh in self.nhs.items():
            if nh.get("vif") == id:
                self._nh_publish(nid)
        self._deal()
        return self._vif_view(id)

    def _deal(self):
        """Deal the vifs' rx queues to the forwarding lcores and publish the poll sets."""
        if self.fwd is not None:
            self.fwd.deal(self.vifs)
        else:
            self.dp.rebalance()

    # ---- forwarding lcores (lcores.py) -----------------------------------------------

    def _need_lcores(self):
        if self.fwd is None:
            raise UsageError("this vRouter has no forwarding lcores of its own",
                             "run it with pypdk-run apps/vrouter --lcores 0-2 (tests: VRouter(..., lcores={1: 0}))")

    def rxq_show(self):
        """Each forwarding lcore (node, tx queue) with the rx queues it polls and
        their busy share since the previous rxq_show (OVS's pmd-rxq-show)."""
        self._need_lcores()
        return self.fwd.show(self.vifs)

    def rxq_rebalance(self):
        """Deal the rx queues again by measured load, within each queue's node;
        the new map as rxq_show gives it."""
        self._need_lcores()
        return self.fwd.rebalance(self.vifs)

    def _vif_publish(self, id):
        v = self.vifs[id]
        rules = [r["dp"] for r in self.policies.get(id, [])]
        ip4 = be32(ipaddress.IPv4Address(v["ip"])) if v["ip"] else 0
        ip6 = ipaddress.IPv6Address(v["ip6"]).packed if v["ip6"] else b""
        # A floating IP needs the flow table whatever the policy says: the VM's
        # replies are translated back through the flow its DNAT made.
        flags = v["flags"] | (VIF_FLAGS["policy"] if v.get("fip") else 0)
        self.dp.vif_set(id, VIF_TYPES[v["type"]], v["dev"], v["vrf"], v["macb"], ip4, ip6, v["mtu"], flags,
                        v["queues"], rules, v.get("distribute", False))

    def _specials(self):
        ids = {t: -1 for t in SPECIAL_VIFS}
        for v in self.vifs.values():
            if v["type"] in ids:
                ids[v["type"]] = v["id"]
        self.dp.set_special(ids["fabric"], ids["vhost"], ids["agent"])

    def vif_del(self, id):
        v = self.vifs.get(id)
        if v is None:
            raise UsageError(f"vif {id} does not exist", "see vif_list()")
        users = [n for n, nh in self.nhs.items() if nh.get("vif") == id]
        if users:
            raise UsageError(f"vif {id} is used by nh {users[0]}", "delete or change that nexthop first")
        if v.get("fip"):
            self.fip_del(v["fip"])
        self.dp.vif_clear(id)
        del self.vifs[id]
        self.policies.pop(id, None)
        self._specials()
        self._deal()              # synchronizes: no lcore polls or sends on it any more
        if v["dev"] is not None:
            self.close_port(v["dev"])

    def _vif_view(self, id):
        v = self.vifs[id]
        out = {k: v[k] for k in ("id", "type", "port", "vrf", "mac", "ip", "ip6", "mtu", "policy", "mode",
                                "queues", "fip", "distribute")}
        if not isinstance(out["port"], (str, int, type(None))):
            out["port"] = getattr(out["port"], "name", str(out["port"]))
        qs = self.dp.vif_queue_stats(id, max(v["queues"], 1))
        out["queue_stats"] = qs
        out["stats"] = {k: sum(q[k] for q in qs) for k in qs[0]}
        out["drops"] = {k: n for k, n in self.dp.dropstats(id).items() if n}
        sock = vhostuser.socket_info(v["dev"])
        if sock is not None:
            out["socket"] = sock
        return out

    def vif_get(self, id):
        if id not in self.vifs:
            raise UsageError(f"vif {id} does not exist", "see vif_list()")
        return self._vif_view(id)

    def vif_list(self):
        return [self._vif_view(i) for i in sorted(self.vifs)]

    # ---- nexthops ------------------------------------------------------------------

    def nh_add(self, id, type, vif=None, encap=None, dip=None, members=None, dmac=None, vnis=None):
        """Add or change nexthop `id`."""
        check_int(id, 1, MAX_NHS - 1, "id")
        choice(type, NH_TYPES, "type")
        entry = {"id": id, "type": type, "vif": None, "encap": None, "dip": None, "members": [],
                 "dmac": None, "vnis": []}
        if type == "encap":
            if vif is None:
                raise UsageError("an encap nexthop needs vif", "give vif = the local vif id")
            check_int(vif, 0, MAX_VIFS - 1, "vif")
            if vif not in self.vifs:
                raise UsageError(f"vif {vif} does not exist", "add the vif first")
            entry["vif"] = vif
            entry["dmac"] = mac_str(parse_mac(dmac, "dmac")) if dmac is not None else None
        elif type == "tunnel":
            choice(encap, ENCAPS, "encap")
            if dip is None:
                raise UsageError("a tunnel nexthop needs dip", 'give dip = "192.168.50.2"')
            entry["encap"] = encap
            entry["dip"] = str(parse_ip4(dip, "dip"))
        elif type in ("ecmp", "composite"):
            if not isinstance(members, list) or not members:
                raise UsageError(f"an {type} nexthop needs members", "give members = [20, 21]")
            if len(members) > MAX_MEMBERS:
                raise UsageError(f"{len(members)} members, at most {MAX_MEMBERS}", "use fewer members")
            for mid in members:
                check_int(mid, 1, MAX_NHS - 1, "member")
                if mid not in self.nhs:
                    raise UsageError(f"member nh {mid} does not exist", "add the member nexthops first")
                if mid == id or self.nhs[mid]["type"] in ("ecmp", "composite"):
                    kind = self.nhs[mid]["type"] if mid != id else "the same"
                    raise UsageError(f"member nh {mid} is an {kind} nexthop", "members are tunnel or encap nexthops")
            entry["members"] = list(members)
            if vnis is not None:
                if not isinstance(vnis, list) or len(vnis) != len(members):
                    raise UsageError("vnis must list one VNI per member", "give vnis = [5000, 5000]")
                for v in vnis:
                    check_int(v, 0, VNI_MAX, "vni")
                entry["vnis"] = list(vnis)
        self.nhs[id] = entry
        self._nh_publish(id)
        return self.nh_get(id)

    def _nh_publish(self, id):
        nh = self.nhs[id]
        flags, dmac, vif, sip, dip = 0, b"", -1, 0, 0
        if nh["type"] == "encap":
            vif = nh["vif"]
            dmac = parse_mac(nh["dmac"]) if nh["dmac"] else self.vifs[vif]["macb"]
            flags = NH_FLAGS["valid"]
        elif nh["type"] == "tunnel":
            d = ipaddress.IPv4Address(nh["dip"])
            sip, dip = be32(self.underlay_ip), be32(d)
            mac = self.neighbors.get(str(d))
            if mac is not None:
                dmac, flags = parse_mac(mac), NH_FLAGS["valid"]
        else:
            flags = NH_FLAGS["valid"]
        self.dp.nh_set(id, NH_TYPES[nh["type"]], flags, vif, ENCAPS.get(nh["encap"], 0), sip, dip, dmac,
                       nh["members"], nh["vnis"])

    def _nh_users(self, id):
        """What points at nexthop id (a phrase for the error), else None."""
        for (vrf, fam), table in self.routes.items():
            for (addr, plen), (n, _lbl) in table.items():
                if n == id:
                    return f"route {ipaddress.ip_address(addr)}/{plen} in vrf {vrf}"
        for label, n in self.mpls.items():
            if n == id:
                return f"mpls label {label}"
        for (vrf, mac), (n, _vni) in self.bridge.items():
            if n == id:
                return f"bridge entry {mac_str(mac)} in vrf {vrf}"
        for n, nh in self.nhs.items():
            if id in nh["members"]:
                return f"nh {n}"
        return None

    def nh_del(self, id):
        if id not in self.nhs:
            raise UsageError(f"nh {id} does not exist", "see nh_list()")
        user = self._nh_users(id)
        if user:
            raise UsageError(f"nh {id} is used by {user}", "delete or repoint it first")
        self.dp.nh_clear(id)
        del self.nhs[id]
        self.dp.synchronize()

    def nh_get(self, id):
        if id not in self.nhs:
            raise UsageError(f"nh {id} does not exist", "see nh_list()")
        nh = dict(self.nhs[id])
        if nh["type"] == "tunnel":
            nh["resolved"] = nh["dip"] in self.neighbors
            nh["sip"] = str(self.underlay_ip)
        return nh

    def nh_list(self):
        return [self.nh_get(i) for i in sorted(self.nhs)]

    # ---- route data: the (nexthop, label or VNI) words routes and bridge entries point at ----

    def _rtdata_index(self, nh, label):
        key = (nh, label)
        if key in self.rtdata:
            idx, n = self.rtdata[key]
            self.rtdata[key] = (idx, n + 1)
            return idx
        if not self.rtdata_free:
            raise UsageError("too many distinct (nexthop, label) pairs", "reuse nexthops and labels")
        idx = self.rtdata_free.pop()
        self.rtdata[key] = (idx, 1)
        self.dp.rtdata_set(idx, nh, 0xffffffff if label is None else label)
        return idx

    def _rtdata_release(self, nh, label):
        key = (nh, label)
        idx, n = self.rtdata[key]
        if n > 1:
            self.rtdata[key] = (idx, n - 1)
        else:
            # Reused only once no route or bridge entry points at it and no lcore
            # can still hold it: the caller changed the table and synchronized first.
            del self.rtdata[key]
            self.rtdata_free.append(idx)

    # ---- routes ----------------------------------------------------------------------

    def route_add(self, vrf, prefix, nh, label=None):
        """Add or change the route to `prefix` in `vrf` (family from the prefix)."""
        check_int(vrf, 0, MAX_VRFS - 1, "vrf")
        net = parse_prefix(prefix)
        check_int(nh, 1, MAX_NHS - 1, "nh")
        if nh not in self.nhs:
            raise UsageError(f"nh {nh} does not exist", "add the nexthop first")
        if label is not None:
            check_int(label, 16, LABEL_MAX, "label")
        fam = net.version
        key = (net.network_address.packed, net.prefixlen)
        table = self.routes.setdefault((vrf, fam), {})
        old = table.get(key)
        idx = self._rtdata_index(nh, label)
        try:
            self.dp.rt_add(vrf, fam, key[0], key[1], idx)
        except BaseException:
            self._rtdata_release(nh, label)
            raise
        table[key] = (nh, label)
        if old is not None:
            self.dp.synchronize()
            self._rtdata_release(*old)
        return {"vrf": vrf, "prefix": str(net), "nh": nh, "label": label}

    def route_del(self, vrf, prefix):
        check_int(vrf, 0, MAX_VRFS - 1, "vrf")
        net = parse_prefix(prefix)
        table = self.routes.get((vrf, net.version), {})
        key = (net.network_address.packed, net.prefixlen)
        if key not in table:
            raise UsageError(f"no route {net} in vrf {vrf}", "see route_dump()")
        self.dp.rt_del(vrf, net.version, key[0], key[1])
        old = table.pop(key)
        self.dp.synchronize()
        self._rtdata_release(*old)

    def route_dump(self, vrf, family=4):
        if family not in (4, 6):
            raise UsageError(f"family {family!r} is not 4 or 6", "give family=4 or family=6")
        table = self.routes.get((vrf, family), {})
        return [{"prefix": f"{ipaddress.ip_address(addr)}/{plen}", "nh": nh, "label": label}
                for (addr, plen), (nh, label) in sorted(table.items())]

    # ---- bridge, MPLS, VXLAN, neighbours ---------------------------------------------------

    def bridge_add(self, vrf, mac, nh, vni=None):
        check_int(vrf, 0, MAX_VRFS - 1, "vrf")
        m = parse_mac(mac)
        check_int(nh, 1, MAX_NHS - 1, "nh")
        if nh not in self.nhs:
            raise UsageError(f"nh {nh} does not exist", "add the nexthop first")
        if vni is not None:
            check_int(vni, 0, VNI_MAX, "vni")
        if self.nhs[nh]["type"] == "tunnel" and self.nhs[nh]["encap"] == "vxlan" and vni is None:
            raise UsageError("a bridge entry through a vxlan tunnel needs vni", "give vni = 5000")
        old = self.bridge.get((vrf, m))
        idx = self._rtdata_index(nh, vni)        # the same (nh, word) table as routes
        try:
            self.dp.bridge_set(vrf, m, idx)
        except BaseException:
            self._rtdata_release(nh, vni)
            raise
        self.bridge[(vrf, m)] = (nh, vni)
        if old is not None:
            self.dp.synchronize()
            self._rtdata_release(*old)
        return {"vrf": vrf, "mac": mac_str(m), "nh": nh, "vni": vni}

    def bridge_del(self, vrf, mac):
        m = parse_mac(mac)
        if (vrf, m) not in self.bridge:
            raise UsageError(f"no bridge entry {mac_str(m)} in vrf {vrf}", "see bridge_dump()")
        self.dp.bridge_clear(vrf, m)
        old = self.bridge.pop((vrf, m))
        self.dp.synchronize()
        self._rtdata_release(*old)

    def bridge_dump(self, vrf):
        return [{"mac": mac_str(m), "nh": n, "vni": v} for (f, m), (n, v) in sorted(self.bridge.items())
                if f == vrf]

    def mpls_add(self, label, nh):
        check_int(label, 16, min(LABEL_MAX, self.dp.mpls_max - 1), "label")
        check_int(nh, 1, MAX_NHS - 1, "nh")
        if nh not in self.nhs:
            raise UsageError(f"nh {nh} does not exist", "add the nexthop first")
        self.dp.mpls_set(label, nh)
        self.mpls[label] = nh
        return {"label": label, "nh": nh}

    def mpls_del(self, label):
        if label not in self.mpls:
            raise UsageError(f"label {label} is not in the MPLS table", "see mpls_dump()")
        self.dp.mpls_set(label, None)
        del self.mpls[label]

    def mpls_dump(self):
        return [{"label": k, "nh": v} for k, v in sorted(self.mpls.items())]

    def vxlan_add(self, vni, vrf):
        check_int(vni, 1, VNI_MAX, "vni")
        check_int(vrf, 0, MAX_VRFS - 1, "vrf")
        self.dp.vxlan_set(vni, vrf)
        self.vxlan[vni] = vrf
        return {"vni": vni, "vrf": vrf}

    def vxlan_del(self, vni):
        if vni not in self.vxlan:
            raise UsageError(f"VNI {vni} is not in the VXLAN table", "see vxlan_dump()")
        self.dp.vxlan_clear(vni)
        del self.vxlan[vni]

    def vxlan_dump(self):
        return [{"vni": k, "vrf": v} for k, v in sorted(self.vxlan.items())]

    def neighbor_add(self, ip, mac):
        """An underlay neighbour: the tunnels to ip become valid (their MAC known)."""
        a = parse_ip4(ip)
        m = parse_mac(mac)
        self.neighbors[str(a)] = mac_str(m)
        self._tunnels_to(str(a))
        return {"ip": str(a), "mac": mac_str(m)}

    def neighbor_del(self, ip):
        a = parse_ip4(ip)
        if str(a) not in self.neighbors:
            raise UsageError(f"no neighbor {a}", "see neighbor_list()")
        del self.neighbors[str(a)]
        self._tunnels_to(str(a))

    def _tunnels_to(self, ip):
        """Republish the tunnel nexthops whose destination is ip."""
        for nid, nh in self.nhs.items():
            if nh["type"] == "tunnel" and nh["dip"] == ip:
                self._nh_publish(nid)

    def neighbor_list(self):
        return [{"ip": k, "mac": v} for k, v in sorted(self.neighbors.items())]

    # ---- policy and floating IPs --------------------------------------------------------------

    def policy_add(self, vif, action, proto=None, src=None, dst=None, src_port=None, dst_port=None,
                   mirror_vif=None):
        """Append a rule to vif's policy (first match wins; no match: allow)."""
        if vif not in self.vifs:
            raise UsageError(f"vif {vif} does not exist", "add the vif first")
        act = choice(action, RULE_ACTIONS, "action")
        pr = 0 if proto is None else (proto if isinstance(proto, int) and not isinstance(proto, bool)
                                      else choice(proto, PROTOS, "proto"))
        check_int(pr, 0, 255, "proto")
        s = parse_prefix(src, "src") if src is not None else None
        d = parse_prefix(dst, "dst") if dst is not None else None
        if s is not None and d is not None and s.version != d.version:
            raise UsageError(f"src {src} and dst {dst} are different families", "use two IPv4 or two IPv6 prefixes")
        fam = (s or d).version if (s or d) else 4
        sp = parse_ports(src_port, "src_port")
        dp = parse_ports(dst_port, "dst_port")
        if action == "mirror":
            if mirror_vif is None or mirror_vif not in self.vifs:
                raise UsageError(f"mirror_vif {mirror_vif!r} is not a vif", "give mirror_vif = an existing vif id")
        elif mirror_vif is not None:
            raise UsageError("mirror_vif is only for action = \"mirror\"", "leave it out")
        if len(self.policies.get(vif, [])) >= MAX_RULES:
            raise UsageError(f"vif {vif} has {MAX_RULES} rules already", "clear some first")

        def padded(net):
            return (net.network_address.packed + bytes(16))[:16] if net else bytes(16)

        rule = {"vif": vif, "action": action, "proto": proto, "src": str(s) if s else None,
                "dst": str(d) if d else None, "src_port": src_port, "dst_port": dst_port,
                "mirror_vif": mirror_vif,
                "dp": {"family": fam, "proto": pr, "action": act, "mirror_vif": mirror_vif or 0,
                       "src": padded(s), "src_plen": s.prefixlen if s else 0,
                       "dst": padded(d), "dst_plen": d.prefixlen if d else 0, "sport": sp, "dport": dp}}
        if action == "allow" and fam == 6 and not (s or d):
            rule["dp"]["family"] = 4    # a bare allow is the default anyway
        self.policies.setdefault(vif, []).append(rule)
        self._vif_publish(vif)
        self.flush_flows()
        return {k: v for k, v in rule.items() if k != "dp"}

    def policy_clear(self, vif):
        if vif not in self.vifs:
            raise UsageError(f"vif {vif} does not exist", "see vif_list()")
        self.policies.pop(vif, None)
        self._vif_publish(vif)
        self.flush_flows()

    def policy_list(self, vif):
        return [{k: v for k, v in r.items() if k != "dp"} for r in self.policies.get(vif, [])]

    def fip_add(self, vif, public):
        """Give VM vif `vif` the floating IP `public` (1:1 NAT to its ip)."""
        if vif not in self.vifs or self.vifs[vif]["type"] != "virtual":
            raise UsageError(f"vif {vif} is not a virtual vif", "floating IPs belong to VM vifs")
        if not self.vifs[vif]["ip"]:
            raise UsageError(f"vif {vif} has no ip to translate to", 'give the vif an ip = "10.1.1.3"')
        p = parse_ip4(public, "public")
        for other in self.vifs.values():
            if other.get("fip") == str(p) and other["id"] != vif:
                raise UsageError(f"{p} is already the floating IP of vif {other['id']}", "pick another address")
        prev = self.vifs[vif]["fip"]
        if prev == str(p):
            return {"vif": vif, "public": str(p)}      # already so: nothing changes
        if prev:
            # One floating IP per vif: replacing it silently would leave the old
            # public address translating (and its flows) in the datapath.
            raise UsageError(f"vif {vif} already has floating IP {prev}; delete it first",
                             f"fip_del({prev!r}), then fip_add({vif}, {str(p)!r})")
        self.vifs[vif]["fip"] = str(p)
        self._vif_publish(vif)           # flows on before the first DNAT
        try:
            self.dp.fip_set(be32(p), vif)
        except BaseException:
            self.vifs[vif]["fip"] = prev
            self._vif_publish(vif)
            raise
        return {"vif": vif, "public": str(p)}

    def fip_del(self, public):
        p = parse_ip4(public, "public")
        for v in self.vifs.values():
            if v.get("fip") == str(p):
                self.dp.fip_clear(be32(p))
                v["fip"] = None
                self._vif_publish(v["id"])
                self.flush_flows()
                return
        raise UsageError(f"{p} is not a floating IP", "see vif_list()")

    # ---- flows and statistics ---------------------------------------------------------------------

    def flow_list(self):
        out = []
        for f in self.dp.flow_list():
            f["src"] = str(ipaddress.ip_address(f["src"]))
            f["dst"] = str(ipaddress.ip_address(f["dst"]))
            f["action"] = FLOW_ACTION_NAMES.get(f["action"], f["action"])
            f["nat_ip"] = socket.inet_ntoa(struct.pack("=I", f["nat_ip"])) if f["nat_ip"] else None
            out.append(f)
        return out

    def flow_age(self):
        """Delete idle flows (the agent calls it once a second); how many entries went."""
        return self.dp.flow_age(False)

    def dropstats(self, vif=None):
        if vif is not None and vif not in self.vifs:
            raise UsageError(f"vif {vif} does not exist", "see vif_list()")
        return self.dp.dropstats(vif)

    def vrfstats(self, vrf):
        check_int(vrf, 0, MAX_VRFS - 1, "vrf")
        return self.dp.vrf_stats(vrf)

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
