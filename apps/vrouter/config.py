"""The vRouter's startup file (TOML): read, check every table and key, apply.

Tables (README.md has the schema): [vrouter], [[vif]], [[nh]], [[route]],
[[bridge]], [[mpls]], [[vxlan]], [[neighbor]], [[policy]], [[fip]]. Each
entry is applied through the `VRouter` operation of the same name
(`vif_add` for [[vif]]...), so the checks and their wording are the
model's. An error names the file, the table, the entry's position (1-based)
and id, and the field:

    config vrouter.toml: [[nh]] #2 (id 20): dip '192.168.50' is not an IPv4 address
"""
from __future__ import annotations

import inspect
import tomllib

from pypdk.errors import PypdkError, UsageError

from apps.vrouter import values
from apps.vrouter.dp.router import LIMITS
from apps.vrouter.vrouter import VRouter


def _fields(op):
    """(allowed keys, required keys) of an entry: the operation's arguments."""
    params = list(inspect.signature(op).parameters.values())[1:]        # after self
    return {p.name for p in params}, {p.name for p in params if p.default is p.empty}


# table -> (allowed keys, required keys); an array table's are those of its
# VRouter operation (`[[vif]]` -> `vif_add`), so the file and the API agree.
SCHEMA = {
    "vrouter": ({"mac", "underlay_ip", "icmp_src", "flow_max", "flow_timeout", "mpls_max", "burst"},
                {"mac", "underlay_ip"}),
    **{t: _fields(getattr(VRouter, f"{t}_add"))
       for t in ("vif", "nh", "route", "bridge", "mpls", "vxlan", "neighbor", "policy", "fip")},
}
ORDER = ["vif", "nh", "neighbor", "route", "bridge", "mpls", "vxlan", "policy", "fip"]
# table -> the fields that name an entry: a second entry with the same values
# would silently change the first (the ops are add-or-change), so it is an error.
UNIQUE = {"vif": ("id",), "nh": ("id",), "route": ("vrf", "prefix"), "bridge": ("vrf", "mac"),
          "mpls": ("label",), "vxlan": ("vni",), "neighbor": ("ip",), "fip": ("public",)}


def _where(name, table, i, entry):
    ident = entry.get("id", entry.get("label", entry.get("vni"))) if isinstance(entry, dict) else None
    tag = f"[[{table}]] #{i + 1}" if i is not None else f"[{table}]"
    return f"config {name}: {tag}" + (f" (id {ident})" if ident is not None and "id" in entry else "")


def read(path) -> dict:
    """Parse and check the shape of the file (tables, keys); UsageError otherwise."""
    name = str(path).rsplit("/", 1)[-1]
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config {name}: no such file", "give --config an existing TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config {name}: not valid TOML ({e})", "fix the syntax") from None
    for table in doc:
        if table not in SCHEMA:
            raise UsageError(f"config {name}: unknown table [{table}]",
                             f"known tables: {', '.join(SCHEMA)}")
    if "vrouter" not in doc or not isinstance(doc["vrouter"], dict):
        raise UsageError(f"config {name}: no [vrouter] table", 'add [vrouter] with mac and underlay_ip')
    for table, (allowed, required) in SCHEMA.items():
        if table not in doc:
            continue
        entries = doc[table]
        if table == "vrouter":
            items = [(None, entries)]
        else:
            if not isinstance(entries, list):
                raise UsageError(f"config {name}: [{table}] must be an array of tables",
                                 f"write [[{table}]] for each entry")
            items = list(enumerate(entries))
        for i, e in items:
            where = _where(name, table, i, e)
            unknown = sorted(set(e) - allowed)
            if unknown:
                raise UsageError(f"{where}: unknown field {unknown[0]!r}",
                                 f"fields of {table}: {', '.join(sorted(allowed))}")
            missing = sorted(required - set(e))
            if missing:
                raise UsageError(f"{where}: missing field {missing[0]!r}", f"add {missing[0]} = ...")
        if table in UNIQUE:
            _check_unique(name, table, items)
    return doc


def _check_unique(name, table, items):
    fields = UNIQUE[table]
    seen = {}
    for i, e in items:
        key = tuple(str(e[f]).lower() for f in fields)
        if key in seen:
            what = " ".join(f"{f} {e[f]}" for f in fields)
            raise UsageError(f"{_where(name, table, i, e)}: {what} is also in [[{table}]] #{seen[key] + 1}",
                             f"give each [[{table}]] its own {' and '.join(fields)}")
        seen[key] = i


def apply(vr, doc: dict, name="config"):
    """Apply a checked document to a VRouter (the [vrouter] table was used to make it)."""
    for table in ORDER:
        entries = list(enumerate(doc.get(table, [])))
        if table == "nh":
            # Members before the nexthops that group them.
            entries.sort(key=lambda ie: ie[1].get("type") in ("ecmp", "composite"))
        for i, e in entries:
            try:
                getattr(vr, f"{table}_add")(**e)
            except PypdkError as err:
                # The same kind of error (a busy tap stays a ResourceError), located.
                raise type(err)(f"{_where(name, table, i, e)}: {err.problem}", err.fix) from None


def check_vrouter(doc, name):
    """The [vrouter] table's values (UsageError naming the field)."""
    t = doc["vrouter"]
    where = f"config {name}: [vrouter]"
    try:
        values.parse_mac(t["mac"], "mac")
        values.parse_ip4(t["underlay_ip"], "underlay_ip")
        if "icmp_src" in t:
            values.parse_ip4(t["icmp_src"], "icmp_src")
        for k, lo, hi in (("flow_max", 16, 1 << 24), ("mpls_max", 16, 1 << 20), ("burst", 1, LIMITS["burst"])):
            if k in t:
                values.check_int(t[k], lo, hi, k)
        if "flow_timeout" in t and not (isinstance(t["flow_timeout"], (int, float)) and t["flow_timeout"] > 0):
            raise UsageError(f"flow_timeout {t['flow_timeout']!r} is not a positive number of seconds",
                             "write flow_timeout = 30")
    except UsageError as err:
        raise UsageError(f"{where}: {err.problem}", err.fix) from None
    return t


def load(path, pool, ports=(), **vr_kw):
    """A VRouter built from the file at path (ports: the runner's --vdev ports;
    vr_kw: VRouter's other keywords, e.g. its forwarding lcores and pools)."""
    name = str(path).rsplit("/", 1)[-1]
    doc = read(path)
    t = check_vrouter(doc, name)
    vr = VRouter(pool, t["mac"], t["underlay_ip"], t.get("icmp_src"), ports=ports,
                 flow_max=t.get("flow_max", 1 << 16), mpls_max=t.get("mpls_max", 1 << 20), **vr_kw)
    try:
        apply(vr, doc, name)
    except BaseException:
        vr.close()
        raise
    return vr
