"""Counters: the one place that sums and formats them (live table, final report, JSON).

Counters live in C structs, each written by one lcore (a queue's
`pd_eth_qstats`, a worker's `pd_lcore_stats` and per-hop counters) or read
from the kernel by a driver. Everything above reads them as plain dicts;
this module turns those dicts into what people and programs read:

- `take(ports, plan)` samples every port's ethdev counters and every lcore's
  loop counters at one instant (a `Sample`);
- `rates(prev, cur)` turns two samples into per-port packet rates;
- `format_table(prev, cur)` is the live table of `--stats-period`,
  `LiveDisplay` redraws it in place on a terminal (ANSI cursor-up) or
  prints plain lines when stdout is a pipe or file;
- `format_final(first, last)` is the report printed at exit;
- `to_json(first, last, app)` is the `--stats-json` document:

    {"duration": 1.0,                       # seconds between first and last sample
     "ports":  {"0": {"name": "net_null0", "driver": "net_null", "mac": "02:...",
                      "ipackets": N, "opackets": N, "ibytes": N, "obytes": N,
                      "imissed": N, "ierrors": N, "oerrors": N, "rx_nombuf": N,
                      "xstats": {...}, "lcore": {"rx": N, "tx": N, "dropped": N}}},
     "lcores": {"1": {"polls": N, "empty_polls": N, "rx": N, "tx": N, ...}},   # LCORE_COUNTERS
     "app": {...}}                          # whatever the app's app_stats() returns

  Counters are totals since the ports started; `duration` and the rates are
  over the run (first sample just after launch, last after the lcores stopped).
- `port_counters_from_hops` / `merge_port_counters` attribute workers' hop
  counters to ports; `format_port_report` prints per-port blocks and an
  aggregate (l2fwd's periodic display).

A port's "dropped" is what its driver counted as lost (imissed, ierrors,
oerrors, rx_nombuf) plus what the lcores freed because its tx queue refused
them or their hook dropped them on the way to it.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

ETH_DROP_COUNTERS = ("imissed", "ierrors", "oerrors", "rx_nombuf")
HOP_PORT_KEYS = ("rx", "tx", "dropped")

# Every lcore's loop counters, in this order (pypdk/worker/lcore_loop.pxd:
# pd_lcore_stats, checked against these names when it loads). A model adds
# its own after them (py_errors; pktgen's nombuf and rx_other; the vRouter's
# dropped, flows_created and traps).
LCORE_COUNTERS = (
    "polls",            # rx bursts (or ring dequeues, or tx rounds) attempted
    "empty_polls",      # ... that brought nothing
    "rx",               # packets in
    "tx",               # packets out (taken by a port or a ring)
    "tx_dropped",       # refused by a tx queue: freed
    "app_dropped",      # dropped by the app's hook: freed by the loop
    "taken",            # taken over by the app's hook (sent, queued or dropped by it)
    "ring_full",        # pipeline back-pressure: the next ring was full, freed
    "no_route",         # pipeline tx stage: m.port has no route, freed
    "idle_yields",      # sched_yield calls after yield_after empty rounds
)


# ---- attributing worker counters to ports --------------------------------------------------

def port_counters_from_hops(hops) -> dict[int, dict[str, int]]:
    """Per-port {'rx', 'tx', 'dropped'} from hop counter dicts.

    A hop dict may hold rx_port/rx (counted as the port's rx) and
    tx_port/tx/tx_dropped/app_dropped (the port's tx; both drop kinds are
    charged to the port the packets were meant to leave by).
    """
    out: dict[int, dict[str, int]] = {}

    def slot(p):
        return out.setdefault(int(p), dict.fromkeys(HOP_PORT_KEYS, 0))

    for h in hops:
        if h.get("rx_port") is not None and "rx" in h and h["rx_port"] != 0xffff:
            slot(h["rx_port"])["rx"] += h["rx"]
        if h.get("tx_port") is not None and h["tx_port"] != 0xffff:
            s = slot(h["tx_port"])
            s["tx"] += h.get("tx", 0)
            s["dropped"] += h.get("tx_dropped", 0) + h.get("app_dropped", 0)
    return out


def merge_port_counters(parts) -> dict[int, dict[str, int]]:
    """Sum several {port: {counter: n}} dicts."""
    out: dict[int, dict[str, int]] = {}
    for part in parts:
        for p, counters in (part or {}).items():
            dst = out.setdefault(int(p), {})
            for k, v in counters.items():
                dst[k] = dst.get(k, 0) + v
    return out


def sum_counters(dicts) -> dict[str, int]:
    """Sum counter dicts key by key (numbers only)."""
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return out


# ---- samples ---------------------------------------------------------------------------

@dataclass
class Sample:
    """Every counter at one instant (monotonic time `t`)."""
    t: float
    ports: dict[int, dict] = field(default_factory=dict)        # ethdev stats + name/driver/mac
    xstats: dict[int, dict] = field(default_factory=dict)
    lcores: dict[int, dict] = field(default_factory=dict)       # loop counters
    port_lcore: dict[int, dict] = field(default_factory=dict)   # worker counters per port


def take(ports, plan=None, xstats=False) -> Sample:
    """Sample the ports' counters and the plan's lcore/port counters now."""
    from pypdk.net.addr import mac_str
    s = Sample(time.monotonic())
    for p in ports:
        if p.state == "closed":
            continue
        st = dict(p.stats())
        st.update(name=p.name, driver=p.driver, mac=mac_str(p.mac))
        s.ports[p.port_id] = st
        if xstats:
            s.xstats[p.port_id] = dict(p.xstats())
    if plan is not None:
        s.lcores = {int(k): dict(v) for k, v in (plan.lcore_stats() or {}).items()}
        port_stats = getattr(plan, "port_stats", None)
        if port_stats is not None:
            s.port_lcore = {int(k): dict(v) for k, v in (port_stats() or {}).items()}
    return s


def port_dropped(sample: Sample, port_id: int) -> int:
    """The port's drops: driver-counted losses plus what lcores freed on its way."""
    st = sample.ports.get(port_id, {})
    n = sum(st.get(k, 0) for k in ETH_DROP_COUNTERS)
    return n + sample.port_lcore.get(port_id, {}).get("dropped", 0)


def rates(prev: Sample, cur: Sample) -> dict[int, dict[str, float]]:
    """Per port: rx_pps, tx_pps, drop_pps, rx_bps, tx_bps between two samples."""
    dt = max(cur.t - prev.t, 1e-9)
    out = {}
    for pid, st in cur.ports.items():
        old = prev.ports.get(pid, {})

        def d(k):
            return max(st.get(k, 0) - old.get(k, 0), 0)

        out[pid] = {
            "rx_pps": d("ipackets") / dt,
            "tx_pps": d("opackets") / dt,
            "drop_pps": max(port_dropped(cur, pid) - port_dropped(prev, pid), 0) / dt,
            "rx_bps": d("ibytes") * 8 / dt,
            "tx_bps": d("obytes") * 8 / dt,
        }
    return out


# ---- formatting ------------------------------------------------------------------------

def _mpps(pps: float) -> str:
    return f"{pps / 1e6:.3f}"


def _rows(prev: Sample, cur: Sample, title: str) -> list[str]:
    r = rates(prev, cur)
    lines = [title]
    if cur.ports:        # an app that opens its own ports (the vRouter) has no --vdev ports
        lines.append(f"{'port':>4}  {'name':<14}{'rx Mpps':>9}{'tx Mpps':>9}{'drop/s':>11}"
                     f"{'rx pkts':>14}{'tx pkts':>14}{'dropped':>12}")
    tot = dict.fromkeys(("rx_pps", "tx_pps", "drop_pps"), 0.0)
    tot_n = dict.fromkeys(("rx", "tx", "drop"), 0)
    for pid in sorted(cur.ports):
        st, rt = cur.ports[pid], r[pid]
        drop = port_dropped(cur, pid)
        lines.append(f"{pid:>4}  {st['name'][:13]:<14}{_mpps(rt['rx_pps']):>9}{_mpps(rt['tx_pps']):>9}"
                     f"{rt['drop_pps']:>11.0f}{st['ipackets']:>14}{st['opackets']:>14}{drop:>12}")
        for k in tot:
            tot[k] += rt[k]
        tot_n["rx"] += st["ipackets"]
        tot_n["tx"] += st["opackets"]
        tot_n["drop"] += drop
    if len(cur.ports) > 1:
        lines.append(f"{'all':>4}  {'':<14}{_mpps(tot['rx_pps']):>9}{_mpps(tot['tx_pps']):>9}"
                     f"{tot['drop_pps']:>11.0f}{tot_n['rx']:>14}{tot_n['tx']:>14}{tot_n['drop']:>12}")
    for lc in sorted(cur.lcores):
        c = cur.lcores[lc]
        polls = c.get("polls", 0)
        busy = 100.0 * (polls - c.get("empty_polls", 0)) / polls if polls else 0.0
        drops = {k: v for k, v in c.items() if ("drop" in k or k in ("ring_full", "no_route", "py_errors")) and v}
        extra = "".join(f", {k} {v}" for k, v in drops.items())
        lines.append(f"lcore {lc}: polls {polls} ({busy:.0f}% busy), rx {c.get('rx', 0)}, "
                     f"tx {c.get('tx', 0)}{extra}")
    return lines


def format_table(prev: Sample, cur: Sample, elapsed: float | None = None) -> list[str]:
    """The live table: per-port rates over [prev, cur] and totals since start."""
    head = f"pypdk-run stats, {elapsed:.1f} s" if elapsed is not None else "pypdk-run stats"
    return _rows(prev, cur, head)


def format_final(first: Sample, last: Sample) -> list[str]:
    """The exit report: totals and average rates over the whole run."""
    return _rows(first, last, f"final stats over {max(last.t - first.t, 0):.2f} s (rates are averages)")


def format_port_report(title: str, per_port: dict, keys=("sent", "received", "dropped")) -> list[str]:
    """Per-port counter blocks and their aggregate (the display l2fwd prints)."""
    width = max([len(k) for k in keys] + [5]) + 1
    lines = [f"=== {title} " + "=" * max(0, 44 - len(title))]
    for pid in sorted(per_port):
        lines.append(f"--- port {pid} " + "-" * 36)
        for k in keys:
            lines.append(f"  {k + ':':<{width}}{per_port[pid].get(k, 0):>24}")
    agg = sum_counters(per_port.values())
    lines.append("--- aggregate " + "-" * 34)
    for k in keys:
        lines.append(f"  {k + ':':<{width}}{agg.get(k, 0):>24}")
    lines.append("=" * 48)
    return lines


class LiveDisplay:
    """Writes blocks of lines: redrawn in place on a terminal, appended otherwise."""

    def __init__(self, stream, tty: bool | None = None):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._drawn = 0

    def show(self, lines: list[str]) -> None:
        out = []
        if self.tty and self._drawn:
            out.append(f"\x1b[{self._drawn}A")         # back to the first line drawn
        for ln in lines:
            out.append(("\x1b[2K" if self.tty else "") + ln + "\n")
        if self.tty and len(lines) < self._drawn:      # clear what the old block had below
            out.append("\x1b[J")
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn = len(lines) if self.tty else 0

    def release(self) -> None:
        """Later output goes below the block (no more redrawing over it)."""
        self._drawn = 0


# ---- JSON ------------------------------------------------------------------------------

def to_json(first: Sample, last: Sample, app: dict | None = None) -> dict:
    """The --stats-json document (see the module doc for its shape)."""
    ports = {}
    for pid in sorted(last.ports):
        d = dict(last.ports[pid])
        d["xstats"] = dict(last.xstats.get(pid, {}))
        d["lcore"] = {k: last.port_lcore.get(pid, {}).get(k, 0) for k in HOP_PORT_KEYS}
        d["dropped"] = port_dropped(last, pid)
        ports[str(pid)] = d
    return {
        "duration": round(max(last.t - first.t, 0.0), 6),
        "ports": ports,
        "lcores": {str(lc): dict(c) for lc, c in sorted(last.lcores.items())},
        "app": app if app is not None else {},
    }


def write_json(path: str, doc: dict) -> None:
    """Write atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)
