"""One function per vRouter control operation: validate, then apply.

The config loader, the Python API (`VRouter` methods) and, later, the
control socket call these. Each takes the `VRouter` first; it checks every
argument before touching anything, so an invalid request raises
`UsageError` (problem; fix) and changes nothing. Values come in as the user
spells them ("10.1.2.0/24", "02:00:00:00:01:03", "mplsoudp") and are kept in
the VRouter's model (plain dicts) beside what is published to the datapath
(`apps.vrouter.dp.router.Router`).

Publication order keeps readers safe: a nexthop is published before a route,
label or bridge entry points at it, and unpublished only when nothing does
(nh_del refuses otherwise). Replaced vif/nh entries are reclaimed after
`Router.synchronize()`.
"""
from __future__ import annotations

import ipaddress
import socket
import struct

from pypdk.errors import PypdkError, UsageError

VIF_TYPES = {"fabric": 0, "vhost": 1, "virtual": 2, "agent": 3}
NH_TYPES = {"discard": 1, "receive": 2, "encap": 3, "tunnel": 4, "ecmp": 5, "resolve": 6, "composite": 7}
ENCAPS = {"mplsoudp": 1, "mplsogre": 2, "vxlan": 3}
ACTIONS = {"allow": 0, "drop": 1, "mirror": 2}
PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58, "any": 0}
MODES = {"l3": 2, "l2": 4, "l2l3": 6}
VIF_F_POLICY, VIF_F_PROXY_ARP = 1, 8
NH_F_VALID = 1
MAX_VIFS, MAX_NHS, MAX_VRFS, MAX_MEMBERS, MAX_RULES, MAX_QUEUES = 256, 4096, 1024, 16, 64, 16
LABEL_MAX = (1 << 20) - 1
VNI_MAX = (1 << 24) - 1
BCAST = "ff:ff:ff:ff:ff:ff"


# ---- value parsers (problem text names the value) ---------------------------

def parse_mac(value, what="mac") -> bytes:
    if isinstance(value, (bytes, bytearray)) and len(value) == 6:
        return bytes(value)
    parts = str(value).split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise UsageError(f"{what} {value!r} is not a MAC address", "write it as 02:00:00:00:01:03")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a MAC address", "write it as 02:00:00:00:01:03") from None


def mac_str(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def parse_ip4(value, what="ip") -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise UsageError(f"{what} {value!r} is not an IPv4 address", "write it as 192.168.50.2") from None


def parse_ip6(value, what="ip6") -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(str(value))
    except ValueError:
        raise UsageError(f"{what} {value!r} is not an IPv6 address", "write it as fd00::3") from None


def parse_prefix(value, what="prefix"):
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError as e:
        raise UsageError(f"{what} {value!r} is not a prefix ({e})",
                         "write it as 10.1.2.0/24 or fd00:2::/64 with the host bits zero") from None


def be32(ip4: ipaddress.IPv4Address) -> int:
    """The address as the native-order int whose memory is the network-order bytes."""
    return struct.unpack("=I", ip4.packed)[0]


def check_int(value, lo, hi, what):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{what} {value!r} is not an integer in {lo}..{hi}", f"give {what} in {lo}..{hi}")
    return value


def parse_ports(value, what):
    if value is None:
        return (0, 65535)
    if isinstance(value, int) and not isinstance(value, bool):
        check_int(value, 0, 65535, what)
        return (value, value)
    text = str(value)
    lo, sep, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi if sep else lo)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a port or a range", 'write 5001 or "5000-5010"') from None
    if not (0 <= a <= b <= 65535):
        raise UsageError(f"{what} {value!r} is not a port range in 0..65535", 'write 5001 or "5000-5010"')
    return (a, b)


def _choice(value, table, what):
    if value not in table:
        raise UsageError(f"{what} {value!r} is unknown", f"use one of: {', '.join(table)}")
    return table[value]


# ---- the vRouter ------------------------------------------------------------

def vrouter_set(vr, mac, underlay_ip, icmp_src=None):
    m = parse_mac(mac, "vrouter.mac")
    u = parse_ip4(underlay_ip, "vrouter.underlay_ip")
    i = parse_ip4(icmp_src, "vrouter.icmp_src") if icmp_src is not None else u
    vr.mac, vr.underlay_ip, vr.icmp_src = m, u, i
    vr.dp.set_router(m, be32(u), be32(i))
    for nid in list(vr.nhs):
        _nh_publish(vr, nid)


# ---- vifs -------------------------------------------------------------------

def vif_add(vr, id, type, port=None, vrf=0, mac=None, ip=None, ip6=None, mtu=1500, policy=False,
            mode="l3", queues=1, proxy_arp=True):
    """Add or change vif `id` (same id again = change; its port stays)."""
    check_int(id, 0, MAX_VIFS - 1, "id")
    vtype = _choice(type, VIF_TYPES, "type")
    check_int(vrf, 0, MAX_VRFS - 1, "vrf")
    check_int(mtu, 68, 9000, "mtu")
    check_int(queues, 1, MAX_QUEUES, "queues")
    flags = _choice(mode, MODES, "mode")
    if not isinstance(policy, bool):
        raise UsageError(f"policy {policy!r} is not true or false", "write policy = true")
    macb = parse_mac(mac) if mac is not None else None
    ip4 = parse_ip4(ip) if ip is not None else None
    ip6a = parse_ip6(ip6) if ip6 is not None else None
    old = vr.vifs.get(id)
    if old is not None and old["type"] != type:
        raise UsageError(f"vif {id} is a {old['type']} vif, not {type}", "delete it first to change its type")
    if type in ("fabric", "vhost", "agent"):
        for other in vr.vifs.values():
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
            dev = vr.open_port(port, queues)
        except PypdkError as e:
            if e.problem.startswith("port "):
                raise
            raise e.__class__(f"port {port!r}: {e.problem}", e.fix) from None
        opened = True
    try:
        if macb is None:
            macb = old["macb"] if old else (bytes(dev.mac) if dev is not None else vr.mac)
        if policy:
            flags |= VIF_F_POLICY
        if proxy_arp:
            flags |= VIF_F_PROXY_ARP
        entry = {"id": id, "type": type, "port": port, "vrf": vrf, "mac": mac_str(macb), "macb": macb,
                 "ip": str(ip4) if ip4 else None, "ip6": str(ip6a) if ip6a else None, "mtu": mtu,
                 "policy": policy, "mode": mode, "queues": queues, "flags": flags, "dev": dev,
                 "fip": old["fip"] if old else None}
        vr.vifs[id] = entry
        _vif_publish(vr, id)
    except BaseException:
        if opened:
            vr.close_port(dev)
        if old is None:
            vr.vifs.pop(id, None)
        else:
            vr.vifs[id] = old
        raise
    if old is not None and opened and old["dev"] is not None:
        vr.dp.synchronize()
        vr.close_port(old["dev"])
    _specials(vr)
    for nid, nh in vr.nhs.items():
        if nh.get("vif") == id:
            _nh_publish(vr, nid)
    vr.dp.rebalance()
    return _vif_view(vr, id)


def _vif_publish(vr, id):
    v = vr.vifs[id]
    rules = [r["dp"] for r in vr.policies.get(id, [])]
    ip4 = be32(ipaddress.IPv4Address(v["ip"])) if v["ip"] else 0
    ip6 = ipaddress.IPv6Address(v["ip6"]).packed if v["ip6"] else b""
    vtype = VIF_TYPES[v["type"]]
    # A floating IP needs the flow table whatever the policy says: the VM's
    # replies are translated back through the flow its DNAT made.
    flags = v["flags"] | (VIF_F_POLICY if v.get("fip") else 0)
    vr.dp.vif_set(id, vtype, v["dev"], v["vrf"], v["macb"], ip4, ip6, v["mtu"], flags,
                  v["queues"], rules)


def _specials(vr):
    ids = {t: -1 for t in ("fabric", "vhost", "agent")}
    for v in vr.vifs.values():
        if v["type"] in ids:
            ids[v["type"]] = v["id"]
    vr.dp.set_special(ids["fabric"], ids["vhost"], ids["agent"])


def vif_del(vr, id):
    v = vr.vifs.get(id)
    if v is None:
        raise UsageError(f"vif {id} does not exist", "see vif_list()")
    users = [n for n, nh in vr.nhs.items() if nh.get("vif") == id]
    if users:
        raise UsageError(f"vif {id} is used by nh {users[0]}", "delete or change that nexthop first")
    if v.get("fip"):
        fip_del(vr, v["fip"])
    vr.dp.vif_clear(id)
    del vr.vifs[id]
    vr.policies.pop(id, None)
    _specials(vr)
    vr.dp.rebalance()       # synchronizes: no lcore polls or sends on it any more
    if v["dev"] is not None:
        vr.close_port(v["dev"])


def _vif_view(vr, id):
    v = vr.vifs[id]
    out = {k: v[k] for k in ("id", "type", "port", "vrf", "mac", "ip", "ip6", "mtu", "policy", "mode",
                            "queues", "fip")}
    if not isinstance(out["port"], (str, int, type(None))):
        out["port"] = getattr(out["port"], "name", str(out["port"]))
    nq = max(v["queues"], 1)
    qs = vr.dp.vif_queue_stats(id, nq)
    out["queue_stats"] = qs
    out["stats"] = {k: sum(q[k] for q in qs) for k in qs[0]}
    out["drops"] = {k: n for k, n in vr.dp.dropstats(id).items() if n}
    return out


def vif_get(vr, id):
    if id not in vr.vifs:
        raise UsageError(f"vif {id} does not exist", "see vif_list()")
    return _vif_view(vr, id)


def vif_list(vr):
    return [_vif_view(vr, i) for i in sorted(vr.vifs)]


# ---- nexthops ------------------------------------------------------------------

def nh_add(vr, id, type, vif=None, encap=None, dip=None, members=None, dmac=None, vnis=None):
    """Add or change nexthop `id`."""
    check_int(id, 1, MAX_NHS - 1, "id")
    ntype = _choice(type, NH_TYPES, "type")
    entry = {"id": id, "type": type, "vif": None, "encap": None, "dip": None, "members": [],
             "dmac": None, "vnis": []}
    if type == "encap":
        if vif is None:
            raise UsageError("an encap nexthop needs vif", "give vif = the local vif id")
        check_int(vif, 0, MAX_VIFS - 1, "vif")
        if vif not in vr.vifs:
            raise UsageError(f"vif {vif} does not exist", "add the vif first")
        entry["vif"] = vif
        entry["dmac"] = mac_str(parse_mac(dmac, "dmac")) if dmac is not None else None
    elif type == "tunnel":
        _choice(encap, ENCAPS, "encap")
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
            if mid not in vr.nhs:
                raise UsageError(f"member nh {mid} does not exist", "add the member nexthops first")
            if mid == id or vr.nhs[mid]["type"] in ("ecmp", "composite"):
                raise UsageError(f"member nh {mid} is an {vr.nhs[mid]['type'] if mid != id else 'the same'} nexthop",
                                 "members are tunnel or encap nexthops")
        entry["members"] = list(members)
        if vnis is not None:
            if not isinstance(vnis, list) or len(vnis) != len(members):
                raise UsageError("vnis must list one VNI per member", "give vnis = [5000, 5000]")
            for v in vnis:
                check_int(v, 0, VNI_MAX, "vni")
            entry["vnis"] = list(vnis)
    vr.nhs[id] = entry
    _nh_publish(vr, id)
    return nh_get(vr, id)


def _nh_publish(vr, id):
    nh = vr.nhs[id]
    flags, dmac, vif, sip, dip = 0, b"", -1, 0, 0
    if nh["type"] == "encap":
        vif = nh["vif"]
        dmac = parse_mac(nh["dmac"]) if nh["dmac"] else vr.vifs[vif]["macb"]
        flags = NH_F_VALID
    elif nh["type"] == "tunnel":
        d = ipaddress.IPv4Address(nh["dip"])
        sip, dip = be32(vr.underlay_ip), be32(d)
        mac = vr.neighbors.get(str(d))
        if mac is not None:
            dmac, flags = parse_mac(mac), NH_F_VALID
    else:
        flags = NH_F_VALID
    vr.dp.nh_set(id, NH_TYPES[nh["type"]], flags, vif, ENCAPS.get(nh["encap"], 0), sip, dip, dmac,
                 nh["members"], nh["vnis"])


def _nh_users(vr, id):
    for (vrf, fam), table in vr.routes.items():
        for (addr, plen), (n, _lbl) in table.items():
            if n == id:
                return f"route {ipaddress.ip_address(addr)}/{plen} in vrf {vrf}"
    for label, n in vr.mpls.items():
        if n == id:
            return f"mpls label {label}"
    for (vrf, mac), (n, _vni) in vr.bridge.items():
        if n == id:
            return f"bridge entry {mac_str(mac)} in vrf {vrf}"
    for n, nh in vr.nhs.items():
        if id in nh["members"]:
            return f"nh {n}"
    return None


def nh_del(vr, id):
    if id not in vr.nhs:
        raise UsageError(f"nh {id} does not exist", "see nh_list()")
    user = _nh_users(vr, id)
    if user:
        raise UsageError(f"nh {id} is used by {user}", "delete or repoint it first")
    vr.dp.nh_clear(id)
    del vr.nhs[id]
    vr.dp.synchronize()


def nh_get(vr, id):
    if id not in vr.nhs:
        raise UsageError(f"nh {id} does not exist", "see nh_list()")
    nh = dict(vr.nhs[id])
    if nh["type"] == "tunnel":
        nh["resolved"] = nh["dip"] in vr.neighbors
        nh["sip"] = str(vr.underlay_ip)
    return nh


def nh_list(vr):
    return [nh_get(vr, i) for i in sorted(vr.nhs)]


# ---- routes ----------------------------------------------------------------------

def _rtdata_index(vr, nh, label):
    key = (nh, label)
    if key in vr.rtdata:
        idx, n = vr.rtdata[key]
        vr.rtdata[key] = (idx, n + 1)
        return idx
    if not vr.rtdata_free:
        raise UsageError("too many distinct (nexthop, label) pairs", "reuse nexthops and labels")
    idx = vr.rtdata_free.pop()
    vr.rtdata[key] = (idx, 1)
    vr.dp.rtdata_set(idx, nh, 0xffffffff if label is None else label)
    return idx


def _rtdata_release(vr, nh, label):
    key = (nh, label)
    idx, n = vr.rtdata[key]
    if n > 1:
        vr.rtdata[key] = (idx, n - 1)
    else:
        # Reused only once no route or bridge entry points at it and no lcore
        # can still hold it: the caller changed the table and synchronized first.
        del vr.rtdata[key]
        vr.rtdata_free.append(idx)


def route_add(vr, vrf, prefix, nh, label=None):
    """Add or change the route to `prefix` in `vrf` (family from the prefix)."""
    check_int(vrf, 0, MAX_VRFS - 1, "vrf")
    net = parse_prefix(prefix)
    check_int(nh, 1, MAX_NHS - 1, "nh")
    if nh not in vr.nhs:
        raise UsageError(f"nh {nh} does not exist", "add the nexthop first")
    if label is not None:
        check_int(label, 16, LABEL_MAX, "label")
    fam = net.version
    key = (net.network_address.packed, net.prefixlen)
    table = vr.routes.setdefault((vrf, fam), {})
    old = table.get(key)
    idx = _rtdata_index(vr, nh, label)
    try:
        vr.dp.rt_add(vrf, fam, key[0], key[1], idx)
    except BaseException:
        _rtdata_release(vr, nh, label)
        raise
    table[key] = (nh, label)
    if old is not None:
        vr.dp.synchronize()
        _rtdata_release(vr, *old)
    return {"vrf": vrf, "prefix": str(net), "nh": nh, "label": label}


def route_del(vr, vrf, prefix):
    check_int(vrf, 0, MAX_VRFS - 1, "vrf")
    net = parse_prefix(prefix)
    table = vr.routes.get((vrf, net.version), {})
    key = (net.network_address.packed, net.prefixlen)
    if key not in table:
        raise UsageError(f"no route {net} in vrf {vrf}", "see route_dump()")
    vr.dp.rt_del(vrf, net.version, key[0], key[1])
    old = table.pop(key)
    vr.dp.synchronize()
    _rtdata_release(vr, *old)


def route_dump(vr, vrf, family=4):
    if family not in (4, 6):
        raise UsageError(f"family {family!r} is not 4 or 6", "give family=4 or family=6")
    table = vr.routes.get((vrf, family), {})
    out = []
    for (addr, plen), (nh, label) in sorted(table.items()):
        out.append({"prefix": f"{ipaddress.ip_address(addr)}/{plen}", "nh": nh, "label": label})
    return out


# ---- bridge, MPLS, VXLAN, neighbours ---------------------------------------------------

def bridge_add(vr, vrf, mac, nh, vni=None):
    check_int(vrf, 0, MAX_VRFS - 1, "vrf")
    m = parse_mac(mac)
    check_int(nh, 1, MAX_NHS - 1, "nh")
    if nh not in vr.nhs:
        raise UsageError(f"nh {nh} does not exist", "add the nexthop first")
    if vni is not None:
        check_int(vni, 0, VNI_MAX, "vni")
    if vr.nhs[nh]["type"] == "tunnel" and vr.nhs[nh]["encap"] == "vxlan" and vni is None:
        raise UsageError("a bridge entry through a vxlan tunnel needs vni", "give vni = 5000")
    old = vr.bridge.get((vrf, m))
    idx = _rtdata_index(vr, nh, vni)        # the same (nh, word) table as routes
    try:
        vr.dp.bridge_set(vrf, m, idx)
    except BaseException:
        _rtdata_release(vr, nh, vni)
        raise
    vr.bridge[(vrf, m)] = (nh, vni)
    if old is not None:
        vr.dp.synchronize()
        _rtdata_release(vr, *old)
    return {"vrf": vrf, "mac": mac_str(m), "nh": nh, "vni": vni}


def bridge_del(vr, vrf, mac):
    m = parse_mac(mac)
    if (vrf, m) not in vr.bridge:
        raise UsageError(f"no bridge entry {mac_str(m)} in vrf {vrf}", "see bridge_dump()")
    vr.dp.bridge_clear(vrf, m)
    old = vr.bridge.pop((vrf, m))
    vr.dp.synchronize()
    _rtdata_release(vr, *old)


def bridge_dump(vr, vrf):
    return [{"mac": mac_str(m), "nh": n, "vni": v} for (f, m), (n, v) in sorted(vr.bridge.items()) if f == vrf]


def mpls_add(vr, label, nh):
    check_int(label, 16, min(LABEL_MAX, vr.dp.mpls_max - 1), "label")
    check_int(nh, 1, MAX_NHS - 1, "nh")
    if nh not in vr.nhs:
        raise UsageError(f"nh {nh} does not exist", "add the nexthop first")
    vr.dp.mpls_set(label, nh)
    vr.mpls[label] = nh
    return {"label": label, "nh": nh}


def mpls_del(vr, label):
    if label not in vr.mpls:
        raise UsageError(f"label {label} is not in the MPLS table", "see mpls_dump()")
    vr.dp.mpls_set(label, None)
    del vr.mpls[label]


def mpls_dump(vr):
    return [{"label": k, "nh": v} for k, v in sorted(vr.mpls.items())]


def vxlan_add(vr, vni, vrf):
    check_int(vni, 1, VNI_MAX, "vni")
    check_int(vrf, 0, MAX_VRFS - 1, "vrf")
    vr.dp.vxlan_set(vni, vrf)
    vr.vxlan[vni] = vrf
    return {"vni": vni, "vrf": vrf}


def vxlan_del(vr, vni):
    if vni not in vr.vxlan:
        raise UsageError(f"VNI {vni} is not in the VXLAN table", "see vxlan_dump()")
    vr.dp.vxlan_clear(vni)
    del vr.vxlan[vni]


def vxlan_dump(vr):
    return [{"vni": k, "vrf": v} for k, v in sorted(vr.vxlan.items())]


def neighbor_add(vr, ip, mac):
    a = parse_ip4(ip)
    m = parse_mac(mac)
    vr.neighbors[str(a)] = mac_str(m)
    for nid, nh in vr.nhs.items():
        if nh["type"] == "tunnel" and nh["dip"] == str(a):
            _nh_publish(vr, nid)
    return {"ip": str(a), "mac": mac_str(m)}


def neighbor_del(vr, ip):
    a = parse_ip4(ip)
    if str(a) not in vr.neighbors:
        raise UsageError(f"no neighbor {a}", "see neighbor_list()")
    del vr.neighbors[str(a)]
    for nid, nh in vr.nhs.items():
        if nh["type"] == "tunnel" and nh["dip"] == str(a):
            _nh_publish(vr, nid)


def neighbor_list(vr):
    return [{"ip": k, "mac": v} for k, v in sorted(vr.neighbors.items())]


# ---- policy and floating IPs --------------------------------------------------------------

def policy_add(vr, vif, action, proto=None, src=None, dst=None, src_port=None, dst_port=None,
               mirror_vif=None):
    """Append a rule to vif's policy (first match wins; no match: allow)."""
    if vif not in vr.vifs:
        raise UsageError(f"vif {vif} does not exist", "add the vif first")
    act = _choice(action, ACTIONS, "action")
    pr = 0 if proto is None else (proto if isinstance(proto, int) and not isinstance(proto, bool)
                                  else _choice(proto, PROTOS, "proto"))
    check_int(pr, 0, 255, "proto")
    s = parse_prefix(src, "src") if src is not None else None
    d = parse_prefix(dst, "dst") if dst is not None else None
    if s is not None and d is not None and s.version != d.version:
        raise UsageError(f"src {src} and dst {dst} are different families", "use two IPv4 or two IPv6 prefixes")
    fam = (s or d).version if (s or d) else 4
    sp = parse_ports(src_port, "src_port")
    dp = parse_ports(dst_port, "dst_port")
    if action == "mirror":
        if mirror_vif is None or mirror_vif not in vr.vifs:
            raise UsageError(f"mirror_vif {mirror_vif!r} is not a vif", "give mirror_vif = an existing vif id")
    elif mirror_vif is not None:
        raise UsageError("mirror_vif is only for action = \"mirror\"", "leave it out")
    if len(vr.policies.get(vif, [])) >= MAX_RULES:
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
    vr.policies.setdefault(vif, []).append(rule)
    _vif_publish(vr, vif)
    vr.flush_flows()
    return {k: v for k, v in rule.items() if k != "dp"}


def policy_clear(vr, vif):
    if vif not in vr.vifs:
        raise UsageError(f"vif {vif} does not exist", "see vif_list()")
    vr.policies.pop(vif, None)
    _vif_publish(vr, vif)
    vr.flush_flows()


def policy_list(vr, vif):
    return [{k: v for k, v in r.items() if k != "dp"} for r in vr.policies.get(vif, [])]


def fip_add(vr, vif, public):
    if vif not in vr.vifs or vr.vifs[vif]["type"] != "virtual":
        raise UsageError(f"vif {vif} is not a virtual vif", "floating IPs belong to VM vifs")
    if not vr.vifs[vif]["ip"]:
        raise UsageError(f"vif {vif} has no ip to translate to", 'give the vif an ip = "10.1.1.3"')
    p = parse_ip4(public, "public")
    for other in vr.vifs.values():
        if other.get("fip") == str(p) and other["id"] != vif:
            raise UsageError(f"{p} is already the floating IP of vif {other['id']}", "pick another address")
    prev = vr.vifs[vif]["fip"]
    if prev == str(p):
        return {"vif": vif, "public": str(p)}      # already so: nothing changes
    if prev:
        # One floating IP per vif: replacing it silently would leave the old
        # public address translating (and its flows) in the datapath.
        raise UsageError(f"vif {vif} already has floating IP {prev}; delete it first",
                         f"fip_del({prev!r}), then fip_add({vif}, {str(p)!r})")
    vr.vifs[vif]["fip"] = str(p)
    _vif_publish(vr, vif)           # flows on before the first DNAT
    try:
        vr.dp.fip_set(be32(p), vif)
    except BaseException:
        vr.vifs[vif]["fip"] = prev
        _vif_publish(vr, vif)
        raise
    return {"vif": vif, "public": str(p)}


def fip_del(vr, public):
    p = parse_ip4(public, "public")
    for v in vr.vifs.values():
        if v.get("fip") == str(p):
            vr.dp.fip_clear(be32(p))
            v["fip"] = None
            _vif_publish(vr, v["id"])
            vr.flush_flows()
            return
    raise UsageError(f"{p} is not a floating IP", "see vif_list()")


# ---- flows and statistics ---------------------------------------------------------------------

FLOW_ACTIONS = {0: "forward", 1: "drop", 2: "mirror", 3: "nat"}


def flow_list(vr):
    out = []
    for f in vr.dp.flow_list():
        f["src"] = str(ipaddress.ip_address(f["src"]))
        f["dst"] = str(ipaddress.ip_address(f["dst"]))
        f["action"] = FLOW_ACTIONS.get(f["action"], f["action"])
        f["nat_ip"] = socket.inet_ntoa(struct.pack("=I", f["nat_ip"])) if f["nat_ip"] else None
        out.append(f)
    return out


def dropstats(vr, vif=None):
    if vif is not None and vif not in vr.vifs:
        raise UsageError(f"vif {vif} does not exist", "see vif_list()")
    return vr.dp.dropstats(vif)


def vrfstats(vr, vrf):
    check_int(vrf, 0, MAX_VRFS - 1, "vrf")
    return vr.dp.vrf_stats(vrf)
