"""The vRouter's forwarding lcores: which lcore polls which rx queue, on which node.

TF's DPDK vRouter (and OVS's PMD threads) deal the rx queues of every
interface over the forwarding cores; this module is that dealing for
`VRouter` (vrouter.py), which calls it when a vif's port is set up
(`setup_port`) and whenever the set of vifs changes (`deal`).

NUMA, the rule of DESIGN.md ("a queue's mbufs come from a pool on the
polling lcore's node"):

- a port's rx queues go to the lcores of the port's node first (the port's
  `socket_id`, from sysfs; -1, unknown, for software ports: any lcore),
  each to the least loaded candidate (fewest queues, then lowest id);
- the queue's mbufs come from the pool of that lcore's node (the app makes
  one pool per node that has forwarding lcores, `pools`);
- a queue polled from another node than its port's (no lcore on the
  port's node) is a one-line warning, as testpmd gives;
- a queue stays on its pool's node: `rebalance` moves queues by measured
  load only among the lcores of that node, so the rule holds after a move.

Load: every forwarding context counts the TSC cycles of each rx queue's
bursts (vr_stats.vifq_cycles, two TSC reads per burst that brought
packets). `rxq_show` reports each queue's share of its lcore's time over
the interval since the previous report (OVS's `pmd-rxq-show` "usage"), and
`rebalance` deals the queues again, heaviest first, to the least loaded
lcore of their node (OVS's `pmd-rxq-rebalance`, "cycles" assignment).

Tx: a vif whose port has a tx queue per forwarding lcore sends lock-free
(each lcore on its own queue: `Worker.txq`); otherwise (a single-queue
pcap, a multi-queue VM whose queue is the flow's) the lcores take the
(vif, queue) spinlock around the burst (dp/vif.pyx slot_flush).
"""
from __future__ import annotations

import logging
import time

from pypdk.errors import PypdkError

log = logging.getLogger("pypdk.vrouter")


class Lcores:
    """The forwarding lcores of one VRouter and its rx queue → lcore map.

    Args:
        dp: the datapath (`dp.router.Router`); a worker is added per lcore.
        nodes: {lcore: NUMA node} of the forwarding lcores.
        pools: {node: PktMbufPool}: a pool on each node in `nodes`.
        burst, yield_after, sleep_us: the workers' (app.py --burst, --yield-after, --idle-sleep).
        tsc_hz: TSC ticks per second (busy shares).
    """

    def __init__(self, dp, nodes: dict, pools: dict, burst=32, yield_after=0, tsc_hz=None, sleep_us=0):
        missing = sorted({n for n in nodes.values()} - set(pools))
        if missing:
            raise ValueError(f"no pool for node {missing[0]}")
        self.dp = dp
        self.nodes = dict(sorted(nodes.items()))
        self.pools = dict(pools)
        self.workers = {lc: dp.add_worker(lc, burst, yield_after, sleep_us) for lc in self.nodes}
        self.map: dict[tuple[int, int], int] = {}     # (vif, queue) -> lcore
        self.planned: dict[int, list[int]] = {}       # id(dev) -> lcore per rx queue, from setup_port
        self.queue_node: dict[tuple[int, int], int] = {}   # the node of its pool
        self.queue_dev: dict[tuple[int, int], object] = {}  # the port it was dealt on
        self.hz = tsc_hz
        self._sample = (time.monotonic(), {})
        self.warnings: list[str] = []

    # ---- dealing -----------------------------------------------------------------

    def _load(self, lc):
        return sum(1 for v in self.map.values() if v == lc) + sum(
            lcs.count(lc) for lcs in self.planned.values())

    def _pick(self, node, extra=()):
        """The least loaded lcore on `node` (any node when it has none or is -1)."""
        cands = [lc for lc, n in self.nodes.items() if n == node] or list(self.nodes)
        return min(cands, key=lambda lc: (self._load(lc) + list(extra).count(lc), lc))

    def _warn_cross(self, lc, dev, q):
        node = dev.socket_id
        if node >= 0 and self.nodes[lc] != node:
            line = (f"lcore {lc} (node {self.nodes[lc]}) polls {dev.name} rx queue {q} on node {node}: "
                    f"cross-node memory access; give the vRouter an lcore on node {node}")
            if line not in self.warnings:
                self.warnings.append(line)
                log.warning("%s", line)

    def setup_port(self, dev, nb_rxq, nb_txq, nb_desc=1024):
        """Configure and set up `dev`: each rx queue from the pool of the lcore it
        will go to, and a tx queue per forwarding lcore when the driver has them."""
        lcs = []
        for q in range(nb_rxq):
            lc = self._pick(dev.socket_id, lcs)
            lcs.append(lc)
        ntx = nb_txq
        if nb_txq <= 1 and len(self.nodes) > 1 and dev.max_tx_queues >= len(self.nodes):
            ntx = len(self.nodes)
        try:
            dev.configure(nb_rxq, ntx)
        except PypdkError:
            if ntx == nb_txq:
                raise
            ntx = nb_txq        # a driver of queue pairs (net_ring): the shared queue and its lock
            dev.configure(nb_rxq, ntx)
        for q, lc in enumerate(lcs):
            dev.rx_queue_setup(q, nb_desc, self.pools[self.nodes[lc]])
        for q in range(ntx):
            dev.tx_queue_setup(q, nb_desc)
        self.planned[id(dev)] = lcs
        return dev

    def deal(self, vifs: dict):
        """Give every rx queue of `vifs` ({id: model entry with "dev"}) an lcore
        (kept if it has one) and publish the poll sets; {lcore: [(vif, q)]}."""
        live = set()
        for vid in sorted(vifs):
            dev = vifs[vid].get("dev")
            if dev is None:
                continue
            lcs = self.planned.pop(id(dev), None)
            for q in range(dev.nb_rx_queues):
                key = (vid, q)
                live.add(key)
                if key in self.map and self.queue_dev.get(key) is dev:
                    continue            # dealt already (a vif changed, not its port)
                lc = lcs[q] if lcs and q < len(lcs) else self._pick(dev.socket_id)
                self.map[key] = lc
                self.queue_node[key] = self.nodes[lc]
                self.queue_dev[key] = dev
                self._warn_cross(lc, dev, q)
        for key in [k for k in self.map if k not in live]:
            del self.map[key]
            self.queue_node.pop(key, None)
            self.queue_dev.pop(key, None)
        return self.publish()

    def publish(self):
        sets = {lc: [] for lc in self.nodes}
        for key, lc in sorted(self.map.items()):
            sets[lc].append(key)
        return self.dp.assign(sets)

    # ---- load ----------------------------------------------------------------------

    def _usage(self):
        """{(vif, q): busy share of its lcore (0..1)} since the previous sample, and the interval."""
        now, cyc = time.monotonic(), self.dp.rxq_cycles()
        t0, prev = self._sample
        self._sample = (now, cyc)
        dt = max(now - t0, 1e-9)
        hz = self.hz or 1.0
        return {k: (cyc.get(k, 0) - prev.get(k, 0)) / (dt * hz) for k in self.map}, dt

    def show(self, vifs: dict) -> dict:
        """The rxq → lcore map with each queue's busy share (OVS's pmd-rxq-show).

            {"interval_s": 1.02, "lcores": [{"lcore": 1, "node": 0, "busy": 0.41,
              "txq": 0, "rxqs": [{"vif": 3, "queue": 0, "port": "net_tap3", "port_node": -1,
                                  "busy": 0.41}, ...]}, ...]}
        """
        return self._show(vifs, *self._usage())

    def _show(self, vifs, usage, dt):
        out = []
        for lc, node in self.nodes.items():
            rxqs = []
            for (vid, q), owner in sorted(self.map.items()):
                if owner != lc:
                    continue
                dev = vifs.get(vid, {}).get("dev")
                rxqs.append({"vif": vid, "queue": q, "port": getattr(dev, "name", None),
                             "port_node": getattr(dev, "socket_id", -1),
                             "busy": round(usage.get((vid, q), 0.0), 4)})
            out.append({"lcore": lc, "node": node, "txq": self.workers[lc].txq,
                        "busy": round(sum(r["busy"] for r in rxqs), 4), "rxqs": rxqs})
        return {"interval_s": round(dt, 3), "lcores": out}

    def rebalance(self, vifs: dict) -> dict:
        """Deal the rx queues again by their measured load (heaviest first, each to
        the least loaded lcore of its node); publish; the new map (as show())."""
        usage, dt = self._usage()
        load = {lc: 0.0 for lc in self.nodes}
        count = {lc: 0 for lc in self.nodes}
        new = {}
        for key in sorted(self.map, key=lambda k: (-usage.get(k, 0.0), k)):
            node = self.queue_node[key]
            cands = [lc for lc, n in self.nodes.items() if n == node]
            lc = min(cands, key=lambda c: (load[c], count[c], c))
            new[key] = lc
            load[lc] += usage.get(key, 0.0)
            count[lc] += 1
        self.map = new
        self.publish()
        self._usage()       # the next report covers the new map only
        return self._show(vifs, usage, dt)
