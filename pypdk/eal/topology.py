"""NUMA topology from sysfs: which node (DPDK: socket) each cpu belongs to.

The kernel lists each node's cpus in ``/sys/devices/system/node/nodeN/cpulist``.
A kernel built without NUMA (or a container that hides the node directories)
has no ``nodeN`` entries; then the whole machine is node 0, which is also what
DPDK reports on such a system. Nothing is cached: sysfs reads are cheap and
this is control path only (init, memzone placement, port setup).

``root`` lets tests point the functions at a fake sysfs tree.
"""
from __future__ import annotations

import os
import re

from pypdk.eal.corelist import parse_cpulist

SYSFS_NODE = "/sys/devices/system/node"
SYSFS_CPU_ONLINE = "/sys/devices/system/cpu/online"

_NODE_DIR = re.compile(r"^node(\d+)$")


def nodes(root: str = SYSFS_NODE) -> list[int]:
    """The NUMA node ids of this machine, sorted; [0] when sysfs has none."""
    try:
        found = sorted(int(m.group(1)) for m in map(_NODE_DIR.match, os.listdir(root)) if m)
    except OSError:
        found = []
    return found or [0]


def _all_cpus() -> set[int]:
    try:
        with open(SYSFS_CPU_ONLINE) as f:
            return parse_cpulist(f.read())
    except (OSError, ValueError):
        return set(range(os.cpu_count() or 1))


def cpus_of_node(node: int, root: str = SYSFS_NODE) -> set[int]:
    """The cpus of NUMA node `node` (every cpu for node 0 on a machine without node dirs).

    Raises:
        ValueError: the node does not exist.
    """
    path = os.path.join(root, f"node{node}", "cpulist")
    try:
        with open(path) as f:
            return parse_cpulist(f.read())
    except FileNotFoundError:
        if node == 0 and nodes(root) == [0] and not os.path.isdir(os.path.join(root, "node0")):
            return _all_cpus()
        raise ValueError(f"NUMA node {node} does not exist (nodes: {nodes(root)})") from None


def socket_of_cpu(cpu: int, root: str = SYSFS_NODE) -> int:
    """The NUMA node of `cpu`; 0 when sysfs has no node directories or omits the cpu."""
    for node in nodes(root):
        try:
            if cpu in cpus_of_node(node, root):
                return node
        except ValueError:
            continue
    return 0
