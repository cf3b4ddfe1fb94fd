"""Table memory (pypdk.eal.tablemem): the default lazily backed pages, and the
EAL's hugepages on a node (Eal.place_tables): where the pages are
(/proc/self/numa_maps), what the EAL counts (layout, -m/--socket-mem), the
tbl24 backed per 2 MiB chunk, a shortage, --no-huge, nothing left after close."""
import ipaddress
import random

import numpy as np
import pytest

import pypdk.eal
from pypdk.eal import hugepages as hp
from pypdk.eal import tablemem
from pypdk.errors import ResourceError, UsageError
from pypdk.net import LPM4, LPM6, FlowHash

MB2 = 2 << 20


def free2m():
    return hp.pool(MB2).free


def private_hugetlb_kb():
    """This process's private hugetlb memory (smaps_rollup): tables, not zones (those are shared)."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Hugetlb:"):
                return int(line.split()[1])
    raise AssertionError("no Private_Hugetlb in smaps_rollup")


def numa_maps():
    """{start address: line} of /proc/self/numa_maps."""
    with open("/proc/self/numa_maps") as f:
        return {int(line.split()[0], 16): line for line in f}


def table_lines(node):
    """numa_maps lines of the tables on hugepages: anonymous hugetlb, bound to node."""
    maps = numa_maps()
    out = {}
    for m in tablemem.mappings():
        # a sparse table is several mappings: its backed chunks are hugetlb ones inside it
        for a, line in maps.items():
            if m["addr"] <= a < m["addr"] + m["map_len"] and "anon_hugepage" in line:
                out[a] = line
    for line in out.values():
        assert " huge " in line and f"bind:{node}" in line and f"N{node}=" in line, line
        assert "kernelpagesize_kB=2048" in line, line
    return out


def huge_pages_in(lines):
    return sum(int(f.split("=")[1]) for line in lines.values() for f in line.split() if f.startswith("N"))


def test_default_is_lazy_ordinary_memory_without_an_eal():
    assert tablemem.placement() == {"hugepages": False, "node": None, "page_size": None, "min_bytes": 0}
    before = private_hugetlb_kb()
    with LPM4(1024, 1024) as t:
        t.add("10.1.0.0", 16, 5)
        assert t.lookup("10.1.2.3") == 5
        assert tablemem.mappings() == [] and tablemem.usage() == {}
        assert private_hugetlb_kb() == before


def test_tables_on_hugepages_on_the_node_counted_and_freed(eal):
    node = eal.socket_of(eal.main_lcore)
    assert eal.place_tables() == {"hugepages": True, "node": node, "page_size": MB2, "min_bytes": MB2 // 2}
    free0, priv0 = free2m(), private_hugetlb_kb()
    t = LPM4(1024, 4096)            # tbl24 sparse (nothing yet), tbl8 4 MiB: on hugepages now
    maps = {m["map_len"]: m for m in tablemem.mappings()}
    assert maps[64 << 20]["sparse"] and maps[64 << 20]["bytes"] == 0
    assert maps[4 << 20]["bytes"] == 4 << 20 and maps[4 << 20]["node"] == node
    assert free2m() == free0 - 2                    # reserved and faulted in at map, not at first use
    t.add("10.1.0.0", 16, 5)                        # one tbl24 chunk (1/32 of the space)
    t.add("10.200.0.0", 16, 6)                      # the same chunk
    t.add("200.1.2.0", 25, 7)                       # another chunk, and a tbl8 group
    assert [m["bytes"] for m in tablemem.mappings() if m["sparse"]] == [2 * MB2]
    assert free2m() == free0 - 4
    assert (t.lookup("10.1.9.9"), t.lookup("10.200.1.1"), t.lookup("200.1.2.100"), t.lookup("9.9.9.9")) \
        == (5, 6, 7, None)
    lines = table_lines(node)
    assert huge_pages_in(lines) == 4 and private_hugetlb_kb() - priv0 == 4 * 2048
    lay = eal.layout()["memory"][node]
    assert lay["tables"] == 2 and lay["tables_mb"] == 8.0
    t.close()
    assert tablemem.mappings() == [] and eal.layout()["memory"][node]["tables_mb"] == 0
    assert free2m() == free0 and private_hugetlb_kb() == priv0
    assert table_lines(node) == {}


def test_hugepage_tables_answer_as_the_default_ones(eal):
    """The same random routes in a default and a hugepage LPM4/LPM6: the same answers."""
    rnd = random.Random(7)
    routes4 = [(rnd.getrandbits(32), rnd.randint(1, 32), rnd.randint(0, 1000)) for _ in range(3000)]
    routes6 = [(str(ipaddress.IPv6Address(rnd.getrandbits(128))), rnd.choice([16, 24, 32, 48, 64, 96, 128]),
                rnd.randint(0, 1000)) for _ in range(500)]
    probes4 = [rnd.getrandbits(32) for _ in range(2000)] + [ip for ip, _, _ in routes4]
    probes6 = [str(ipaddress.IPv6Address(rnd.getrandbits(128))) for _ in range(500)] + [ip for ip, _, _ in routes6]

    def fill():
        a, b = LPM4(1 << 14, 1 << 12), LPM6(1 << 12, 1 << 14)
        for ip, d, nh in routes4:
            a.add(ip, d, nh)
        for ip, d, nh in routes6:
            b.add(ip, d, nh)
        return a, b

    ref4, ref6 = fill()
    assert tablemem.mappings() == []
    eal.place_tables()
    h4, h6 = fill()
    assert sum(m["bytes"] for m in tablemem.mappings() if m["sparse"]) == 64 * MB2   # two full tbl24s
    assert [h4.lookup(p) for p in probes4] == [ref4.lookup(p) for p in probes4]
    assert [h6.lookup(p) for p in probes6] == [ref6.lookup(p) for p in probes6]
    for t in (h4, h6, ref4, ref6):
        t.close()
    assert tablemem.mappings() == []


def test_shortage_is_one_line_naming_the_node_and_the_fix(eal):
    node = eal.socket_of(eal.main_lcore)
    eal.place_tables(node)
    priv0 = private_hugetlb_kb()
    need = hp.pool(MB2).total + 8                   # more 2 MiB pages than the machine has
    with pytest.raises(ResourceError) as ei:
        FlowHash(need * (MB2 // 64), key_len=40)    # 64-byte records: `need` pages of them
    msg = str(ei.value)
    assert "\n" not in msg and f"on node {node}" in msg and "python -m pypdk.eal.hugepages --reserve" in msg
    assert "FlowHash" in msg and f"need {need + 256} free 2 MiB" in msg    # records, 512 MiB of buckets
    assert private_hugetlb_kb() == priv0 and tablemem.mappings() == []


def test_route_add_over_the_shortage_changes_nothing(eal):
    """A tbl24 chunk that cannot get its page: the add fails and the table is as before."""
    eal.place_tables()
    tablemem.place(0, MB2, cap_bytes=0)             # no room at all for table memory
    with LPM4(1024, 0) as t:                        # tbl8 of one entry: ordinary pages
        with pytest.raises(ResourceError) as ei:
            t.add("10.1.0.0", 16, 5)
        assert "table memory on node 0" in str(ei.value) and "--socket-mem" in str(ei.value)
        assert t.lookup("10.1.0.1") is None and t.get("10.1.0.0", 16) is None
        t.add("0.0.0.0", 0, 9)                      # the default route is not in tbl24
        assert t.lookup("10.1.0.1") == 9


def test_socket_mem_counts_zones_and_tables():
    with pypdk.eal.init(lcores="0", socket_mem="8") as e:
        e.place_tables(0)
        z = e.memzone_reserve("tm_zone", 4 << 20)               # 4 of the 8 MB
        with FlowHash(MB2 // 64, key_len=40) as h:              # 2 MiB of records (buckets: 512 KiB, ordinary)
            assert e.layout()["memory"][0]["tables_mb"] == 2.0
            with pytest.raises(ResourceError) as ei:
                FlowHash(MB2 // 32, key_len=40)                 # 4 + 1 MiB more: over
            assert "-m/--socket-mem" in str(ei.value) and "node 0" in str(ei.value)
            with pytest.raises(ResourceError, match="--socket-mem"):
                e.memzone_reserve("tm_zone2", 4 << 20)          # zones see the tables too
            e.memzone_reserve("tm_zone3", 2 << 20).close()      # the last 2 MB fit
            h.add(b"\1" * 40, 3)
            assert h.get(b"\1" * 40)[1] == 3
        z.close()


def test_no_huge_keeps_tables_on_ordinary_pages(eal_no_huge):
    assert eal_no_huge.place_tables() == {"hugepages": False, "node": None, "page_size": None, "min_bytes": 0}
    with LPM4(1024, 4096) as t:
        t.add("10.1.0.0", 16, 5)
        assert tablemem.mappings() == [] and eal_no_huge.layout()["memory"][0]["tables_mb"] == 0


def test_close_puts_the_default_back_and_an_older_table_still_frees():
    e = pypdk.eal.init(lcores="0")
    e.place_tables()
    t = LPM4(1024, 4096)
    t.add("10.1.0.0", 16, 5)
    e.close()
    assert tablemem.placement()["hugepages"] is False
    assert t.lookup("10.1.3.3") == 5 and len(tablemem.mappings()) == 2
    t.close()
    assert tablemem.mappings() == []


def test_place_tables_checks_the_node(eal):
    with pytest.raises(UsageError, match="NUMA node 7"):
        eal.place_tables(7)
