"""NUMA placement and the layout report of the EAL.

SOCKET_ID_ANY (-1) is the node of the lcore that asks, or of the lcore that
will use the zone when the caller names it, and the zone is bound there
(not left to first touch); `layout()` reports each lcore's cpu and node and
the memory per node; --socket-mem caps each node's zones and names the node;
the runtime directory /run/pypdk/<file-prefix> is made on first use and
removed at close. A fake topology (lcore 1 on node 1) checks the choice on
this one-node host without binding to a node it lacks.
"""
import os
import threading

import pytest

import pypdk.eal as eal_mod
from pypdk.errors import ResourceError, UsageError


def test_socket_id_any_is_the_asking_or_named_lcores_node(eal_no_huge, monkeypatch):
    e = eal_no_huge
    z = e.memzone_reserve("numa_any", 1 << 16)
    assert z.socket_id == e.socket_of(e.main_lcore) == 0
    z2 = e.memzone_reserve("numa_for1", 1 << 16, lcore=1)
    assert z2.socket_id == e.socket_of(1)
    monkeypatch.setattr(eal_mod._topo, "socket_of_cpu", lambda cpu, root=None: cpu)   # cpu N on node N
    assert e.socket_id_for(-1, lcore=1) == 1
    assert e.socket_id_for(-1) == 0                 # the main thread is lcore 0
    assert e.socket_id_for(3, lcore=1) == 3         # a node given is kept
    seen = []
    t = threading.Thread(target=lambda: seen.append(e.socket_id_for(-1)))   # not an lcore: the main's
    t.start()
    t.join()
    assert seen == [0]
    with pytest.raises(UsageError, match="lcore 7 is not an EAL lcore"):
        e.socket_id_for(-1, lcore=7)
    with pytest.raises(UsageError, match="socket_id -2 is invalid"):
        e.memzone_reserve("numa_bad", 4096, socket_id=-2)


def test_layout_reports_lcores_with_nodes_and_memory_per_node(eal_no_huge):
    e = eal_no_huge
    e.memzone_reserve("numa_lay", 1 << 20)
    lay = e.layout()
    assert lay["lcores"] == {0: {"cpu": 0, "node": 0, "main": True}, 1: {"cpu": 1, "node": 0, "main": False}}
    assert e.lcore_nodes == {0: 0, 1: 0}
    m = lay["memory"][0]
    assert m["zones"] == 1 and m["used_mb"] >= 1 and m["cap_mb"] is None and m["free_hugepages"] is None


def test_socket_mem_caps_each_node_and_names_it():
    with eal_mod.init(lcores="0-1", socket_mem="8") as e:
        e.memzone_reserve("numa_cap1", 4 << 20)
        with pytest.raises(ResourceError, match=r"--socket-mem \(node 0\)"):
            e.memzone_reserve("numa_cap2", 6 << 20)
        assert e.memory_per_node()[0]["cap_mb"] == 8


def test_runtime_dir_is_made_on_use_and_removed_at_close():
    prefix = f"numa_rt{os.getpid()}"
    path = eal_mod.runtime_dir(prefix)
    assert path == f"/run/pypdk/{prefix}"
    with eal_mod.init(lcores="0-1", no_huge=True, file_prefix=prefix) as e:
        assert not os.path.exists(path)
        assert e.runtime_dir == path and os.path.isdir(path)
        assert oct(os.stat(path).st_mode & 0o777) == "0o700"
    assert not os.path.exists(path)
