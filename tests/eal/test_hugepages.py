"""Hugepage pools, mounts, the shortage check and the reserve tool."""
import re
import subprocess
import sys

import pytest

from pypdk.eal import hugepages as hp
from pypdk.errors import ResourceError, UsageError

MB2 = 2 << 20


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])


def test_sizes_and_default_come_from_the_kernel():
    assert MB2 in hp.page_sizes()
    assert hp.default_page_size() == meminfo("Hugepagesize") * 1024


def test_pool_counts_match_meminfo():
    p = hp.pool(MB2)
    assert p.total == meminfo("HugePages_Total")
    assert p.free == meminfo("HugePages_Free")
    assert p.resv == meminfo("HugePages_Rsvd")
    assert hp.free_pages(MB2) == p.free - p.resv
    assert hp.pool(MB2, node=0).total <= p.total


@pytest.mark.parametrize("text, nbytes", [
    ("256M", 256 << 20), ("1G", 1 << 30), ("2048kB", 2 << 20), ("2MiB", 2 << 20), ("512", 512 << 20), (4096, 4096),
])
def test_parse_size(text, nbytes):
    assert hp.parse_size(text) == nbytes


def test_parse_size_refuses_garbage():
    with pytest.raises(UsageError, match="'lots' is not a size; write it like 256M"):
        hp.parse_size("lots")


def test_size_names():
    assert (hp.size_name(MB2), hp.size_name(1 << 30), hp.size_arg(256 << 20), hp.size_arg(1 << 30)) == \
        ("2 MiB", "1 GiB", "256M", "1G")


def test_a_hugetlbfs_mount_is_listed_with_its_page_size(hugetlbfs):
    m = hp.mount_of(hugetlbfs)
    assert m is not None and m.page_size == MB2
    assert any(x.path == hugetlbfs for x in hp.mounts())
    assert hp.mount_of("/tmp") is None


def test_check_names_the_count_the_free_pages_and_the_fix():
    free = hp.free_pages(MB2)
    total = hp.pool(MB2).total
    need = free + 10
    with pytest.raises(ResourceError) as e:
        hp.check(need, MB2, None, "memzone 'mbuf_pool'")
    reserve = hp.size_arg((total - free + need) * MB2)
    assert str(e.value) == (f"need {need} free 2 MiB hugepages for memzone 'mbuf_pool' ({free} free); "
                            f"reserve them with `python -m pypdk.eal.hugepages --reserve {reserve}` "
                            f"or run with --no-huge")
    with pytest.raises(ResourceError, match=rf"need {need} free 2 MiB hugepages on node 0 for x \(\d+ free\)"):
        hp.check(need, MB2, 0, "x")
    hp.check(0, MB2, None, "x")


def test_check_refuses_an_unsupported_page_size():
    with pytest.raises(ResourceError, match="4 MiB hugepages are not supported here"):
        hp.check(1, 4 << 20)


def run_tool(*args):
    return subprocess.run([sys.executable, "-m", "pypdk.eal.hugepages", *args],
                          capture_output=True, text=True, timeout=60)


def test_tool_show_lists_pools_and_mounts():
    r = run_tool("--show")
    assert r.returncode == 0, r.stderr
    total = hp.pool(MB2, 0).total
    assert re.search(rf"^0\s+2M\s+{total}\s", r.stdout, re.M), r.stdout
    assert "hugetlbfs" in r.stdout


def test_tool_reserve_sets_the_pool_size():
    before = hp.pool(MB2).total
    try:
        r = run_tool("--reserve", hp.size_arg((before + 2) * MB2), "--page-size", "2M", "--show")
        assert r.returncode == 0, r.stderr
        assert hp.pool(MB2).total == before + 2
    finally:
        assert hp.reserve(before, MB2) == before
    assert hp.pool(MB2).total == before


def test_tool_errors_are_one_line_and_exit_2():
    r = run_tool("--reserve", "plenty")
    assert r.returncode == 2
    assert r.stderr.strip() == "error: 'plenty' is not a size; write it like 256M, 2M or 1G"
    r = run_tool("--reserve", "4M", "--page-size", "4M")
    assert r.returncode == 2 and "4 MiB hugepages are not supported here" in r.stderr
    assert run_tool().returncode == 2
