"""Human tables for the vRouter's objects, from the JSON its operations return.

`pypdk-vrouter` prints these; the app's `--stats-period` display and
`pypdk-vrouter top` share `vif_rates`. Every function takes the plain
JSON-friendly results of the `VRouter` API (lists of dicts, dicts of
counters) and returns a list of lines, so it is tested without a vRouter.

The layouts follow what an operator of the Tungsten Fabric vRouter knows
from its `vif`, `nh`, `rt`, `mpls`, `vxlan`, `flow`, `dropstats` and
`vrfstats` tools: a block per vif with its RX/TX counter lines, a table per
dump, non-zero drop reasons only. Field names missing from a result are
shown as "-" rather than failing, so the tools keep working while the API
grows.
"""
from __future__ import annotations

from typing import Any, Iterable

from apps.vrouter.dp.router import VIFQ_NAMES

# What TF's `vif` tool calls each vif type (the types are dp.router.VIF_TYPES).
VIF_TYPE_LABELS = {"fabric": "Physical", "vhost": "Host", "virtual": "Virtual", "agent": "Agent"}
COUNTERS = VIFQ_NAMES       # a vif's (and each of its queues') counters


def _g(d: dict, *keys, default: Any = "-"):
    """The first of `keys` present (and not None) in d."""
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return default


def _flags(v: dict) -> str:
    """vif flags in TF's letters: P policy, L3, L2, Mq multi-queue."""
    out = ""
    if _g(v, "policy", default=False):
        out += "P"
    mode = str(_g(v, "mode", default="")).lower()
    if "l3" in mode:
        out += "L3"
    if "l2" in mode:
        out += "L2"
    if int(_g(v, "queues", "nb_queues", default=1) or 1) > 1:
        out += "Mq"
    return out or "-"


def vif_counters(v: dict) -> dict:
    """A vif's totals {rx_packets...} from its 'stats' (or its per-queue sums)."""
    st = _g(v, "stats", "counters", default=None)
    if isinstance(st, dict) and any(k in st for k in COUNTERS):
        return {k: int(st.get(k, 0)) for k in COUNTERS}
    tot = {k: 0 for k in COUNTERS}
    for q in vif_queues(v):
        for k in COUNTERS:
            tot[k] += int(q.get(k, 0))
    return tot


def vif_queues(v: dict) -> list[dict]:
    """Per-queue counters as a list (queue order), from 'queue_stats' or 'stats'['queues']."""
    qs = _g(v, "queue_stats", default=None)
    if qs is None and isinstance(v.get("stats"), dict):
        qs = v["stats"].get("queues")
    if isinstance(qs, dict):
        qs = [qs[k] for k in sorted(qs, key=int)]
    return list(qs or [])


def _counter_lines(c: dict, indent: str, label: str = "") -> list[str]:
    return [f"{indent}{label}RX packets:{c['rx_packets']}  bytes:{c['rx_bytes']}  "
            f"errors:{c['rx_errors']}  drops:{c['rx_drops']}",
            f"{indent}{label}TX packets:{c['tx_packets']}  bytes:{c['tx_bytes']}  "
            f"errors:{c['tx_errors']}  drops:{c['tx_drops']}"]


def vif_name(v: dict) -> str:
    """What the OS calls the vif: the iface= of its port spec, else the spec, else its type."""
    name = _g(v, "name", "ifname", default=None)
    if name is not None:
        return str(name)
    port = v.get("port")
    if port is None:
        return "pkt0" if v.get("type") == "agent" else "-"
    if str(port).startswith("vhostuser:"):          # DPDK mode: the NAME of uvh_vif_NAME
        return str(port)[len("vhostuser:"):].split(",")[0].rsplit("/", 1)[-1]
    for kv in str(port).split(",")[1:]:
        k, _, val = kv.partition("=")
        if k == "iface":
            return val
    return str(port)


def vif_block(v: dict) -> list[str]:
    """One vif as TF's `vif --get` shows it: identity lines, then counters (per queue too)."""
    vid = _g(v, "id", "vif")
    name = vif_name(v)
    typ = str(_g(v, "type"))
    ip = _g(v, "ip", "ip4", default="0.0.0.0")
    lines = [f"vif0/{vid:<6} OS: {name}" + (f"  NH: {v['nh']}" if v.get("nh") is not None else ""),
             f"            Type:{VIF_TYPE_LABELS.get(typ.lower(), typ)} HWaddr:{_g(v, 'mac')} IPaddr:{ip}"
             + (f" IP6addr:{v['ip6']}" if v.get("ip6") else ""),
             f"            Vrf:{_g(v, 'vrf')} Flags:{_flags(v)} MTU:{_g(v, 'mtu')} "
             f"QOS:-1 Queues:{_g(v, 'queues', 'nb_queues', default=1)}"
             + (f" FIP:{v['fip']}" if v.get("fip") else "")]
    sock = v.get("socket")
    if isinstance(sock, dict):
        lines.append(f"            Socket: {sock.get('type', 'unix')} {sock.get('path')} Mode:{sock.get('mode')} "
                     f"{'Connected' if sock.get('connected') else 'Disconnected'} "
                     f"Link:{'UP' if sock.get('link_up') else 'DOWN'} Queues:{sock.get('queues')}")
    lines += _counter_lines(vif_counters(v), "            ")
    qs = vif_queues(v)
    if len(qs) > 1:
        for i, q in enumerate(qs):
            full = {k: int(q.get(k, 0)) for k in COUNTERS}
            lines += _counter_lines(full, "            ", f"Queue {i} ")
    drops = _g(v, "drops", default=None)
    if isinstance(drops, dict):
        total = sum(int(x) for x in drops.values())
        lines.append(f"            Drops:{total}")
    elif drops not in (None, "-"):
        lines.append(f"            Drops:{drops}")
    return lines


def vif_list(vifs: Iterable[dict]) -> list[str]:
    lines = ["Vrouter Interface Table", "",
             "Flags: P=Policy, L3=Layer 3, L2=Layer 2, Mq=Multi-queue", ""]
    for v in sorted(vifs, key=lambda x: int(_g(x, "id", "vif", default=0))):
        lines += vif_block(v)
        lines.append("")
    return lines


def table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> list[str]:
    """A left-aligned text table with a header rule."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()  # noqa: E731
    out = [title, ""] if title else []
    out += [fmt(cells[0]), "  ".join("-" * x for x in w)]
    out += [fmt(r) for r in cells[1:]]
    if not rows:
        out.append("(none)")
    return out


def nh_list(nhs: Iterable[dict]) -> list[str]:
    rows = []
    for n in sorted(nhs, key=lambda x: int(_g(x, "id", default=0))):
        members = n.get("members")
        detail = []
        if n.get("encap"):
            detail.append(f"{n['encap']}")
        if n.get("sip") or n.get("dip"):
            detail.append(f"{_g(n, 'sip')} -> {_g(n, 'dip')}")
        if n.get("dmac"):
            detail.append(f"dmac {n['dmac']}")
        if members:
            detail.append("members " + ",".join(map(str, members)))
        valid = n.get("valid", n.get("resolved"))
        flags = "-" if valid is None else ("Valid" if valid else "Unresolved")
        rows.append([n.get("id"), n.get("type"), n.get("vif"), flags, " ".join(detail) or "-"])
    return table(["Id", "Type", "Oif", "Flags", "Details"], rows, "Next Hop Table")


def rt_dump(routes: Iterable[dict], vrf: int, family: str) -> list[str]:
    routes = list(routes)
    title = f"Vrouter {family} routing table {vrf}"
    if family == "bridge":
        rows = [[r.get("mac"), r.get("nh"), r.get("vni", r.get("label"))] for r in routes]
        return table(["Mac", "Nexthop", "Vni"], rows, title)
    rows = [[r.get("prefix"), r.get("nh"), r.get("label")] for r in routes]
    return table(["Destination", "Nexthop", "Label"], rows, title)


def mpls_dump(labels: Iterable[dict]) -> list[str]:
    rows = [[x.get("label"), x.get("nh")] for x in sorted(labels, key=lambda x: int(_g(x, "label", default=0)))]
    return table(["Label", "Next Hop"], rows, "MPLS Input Label Map")


def vxlan_dump(vnis: Iterable[dict]) -> list[str]:
    rows = [[x.get("vni"), x.get("vrf", x.get("nh"))] for x in sorted(vnis, key=lambda x: int(_g(x, "vni", default=0)))]
    return table(["VNID", "Vrf"], rows, "VXLAN Table")


def neighbor_list(nbrs: Iterable[dict]) -> list[str]:
    rows = [[x.get("ip"), x.get("mac")] for x in nbrs]
    return table(["Address", "Mac"], rows, "Underlay Neighbours")


def _ep(addr, port) -> str:
    return f"{addr}:{port}" if port not in (None, 0, "-") else str(addr)


def flow_list(flows: Iterable[dict]) -> list[str]:
    rows = []
    for f in flows:
        rows.append([f.get("index", f.get("id")),
                     _ep(_g(f, "src", "sip"), f.get("sport")),
                     _ep(_g(f, "dst", "dip"), f.get("dport")),
                     f.get("proto"), f.get("vrf"), f.get("action"),
                     f.get("rflow", f.get("reverse")), f.get("packets"), f.get("bytes")])
    return table(["Index", "Source", "Destination", "Proto", "Vrf", "Action", "Rflow", "Packets", "Bytes"],
                 rows, "Flow table")


def counters(title: str, c: dict, all_: bool = False) -> list[str]:
    """Named counters, one a line (non-zero ones unless all_), as TF's dropstats."""
    c = c or {}
    items = [(k, v) for k, v in c.items() if all_ or (isinstance(v, (int, float)) and v)]
    if not items:
        return [title, "", "(all zero)"]
    w = max(len(k) for k, _ in items)
    return [title, ""] + [f"{k.replace('_', ' ').title().ljust(w)}  {v}" for k, v in items]


def dropstats(d: dict, vif=None) -> list[str]:
    title = "Drop statistics" + (f" for vif {vif}" if vif is not None else "")
    if isinstance(d, dict) and isinstance(d.get("drops"), dict):
        d = d["drops"]
    return counters(title, d)


def vrfstats(d: dict, vrf) -> list[str]:
    return counters(f"Vrf: {vrf}", d)


# ---- the live view ------------------------------------------------------------------

def _rate(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def vif_rates(prev: list[dict] | None, cur: list[dict], dt: float, title: str = "vRouter vifs") -> list[str]:
    """Per-vif rx/tx packet and bit rates and drops since the last sample.

    Args:
        prev, cur: two `vif_list()` results, `dt` seconds apart (prev None:
            the first sample, rates shown as totals-so-far / dt).
    """
    before = {str(_g(v, "id", "vif")): vif_counters(v) for v in (prev or [])}
    rows = []
    dt = max(dt, 1e-6)
    for v in sorted(cur, key=lambda x: int(_g(x, "id", "vif", default=0))):
        vid = str(_g(v, "id", "vif"))
        c = vif_counters(v)
        b = before.get(vid, {k: 0 for k in COUNTERS})
        d = {k: max(c[k] - b[k], 0) for k in COUNTERS}
        rows.append([f"vif0/{vid}", vif_name(v),
                     _rate(d["rx_packets"] / dt), _rate(d["rx_bytes"] * 8 / dt),
                     _rate(d["tx_packets"] / dt), _rate(d["tx_bytes"] * 8 / dt),
                     d["rx_drops"] + d["tx_drops"] + d["rx_errors"] + d["tx_errors"],
                     c["rx_packets"], c["tx_packets"]])
    return table(["Vif", "Name", "RX pps", "RX bps", "TX pps", "TX bps", "Drops/int", "RX total", "TX total"],
                 rows, title)


def rxq_show(r: dict) -> list[str]:
    """OVS's pmd-rxq-show layout: a block per forwarding lcore, a line per rx queue."""
    lines = [f"rx queue busy shares over the last {_g(r, 'interval_s', default=0):g} s"]
    for lc in _g(r, "lcores", default=[]):
        lines.append(f"lcore {lc['lcore']}  node {lc['node']}  txq {_g(lc, 'txq')}  "
                     f"busy {100 * lc.get('busy', 0):.1f} %")
        rxqs = lc.get("rxqs") or []
        if not rxqs:
            lines.append("  (no rx queues)")
        for q in rxqs:
            node = q.get("port_node", -1)
            lines.append(f"  vif {q['vif']:<3} queue {q['queue']:<2} port {_g(q, 'port'):<24} "
                         f"node {node if node >= 0 else '-':<2} busy {100 * q.get('busy', 0):5.1f} %")
    return lines
