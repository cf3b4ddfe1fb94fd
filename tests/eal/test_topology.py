"""NUMA topology from sysfs, the real one and fake trees (with and without node dirs)."""
import os

import pytest

from pypdk.eal import topology


def test_this_machine_has_node_0_holding_every_cpu_we_may_use():
    assert 0 in topology.nodes()
    every = set().union(*(topology.cpus_of_node(n) for n in topology.nodes()))
    assert os.sched_getaffinity(0) <= every
    for cpu in os.sched_getaffinity(0):
        assert cpu in topology.cpus_of_node(topology.socket_of_cpu(cpu))


def test_two_node_tree(tmp_path):
    for node, cpus in ((0, "0-3\n"), (1, "4-7\n")):
        (tmp_path / f"node{node}").mkdir()
        (tmp_path / f"node{node}" / "cpulist").write_text(cpus)
    (tmp_path / "possible").write_text("0-1\n")
    root = str(tmp_path)
    assert topology.nodes(root) == [0, 1]
    assert topology.cpus_of_node(1, root) == {4, 5, 6, 7}
    assert topology.socket_of_cpu(5, root) == 1
    assert topology.socket_of_cpu(2, root) == 0
    with pytest.raises(ValueError, match="NUMA node 3 does not exist"):
        topology.cpus_of_node(3, root)


def test_no_node_dirs_means_node_0_for_everything(tmp_path):
    root = str(tmp_path)
    assert topology.nodes(root) == [0]
    assert topology.socket_of_cpu(1, root) == 0
    assert topology.cpus_of_node(0, root) >= os.sched_getaffinity(0)
    assert topology.nodes(str(tmp_path / "missing")) == [0]
