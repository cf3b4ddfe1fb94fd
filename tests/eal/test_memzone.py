"""Memzones: the three backings, shared fds, NUMA placement, clean teardown, shortages."""
import mmap
import os

import pytest

import pypdk.eal
from pypdk.eal import hugepages as hp
from pypdk.eal import memzone_reserve
from pypdk.errors import ResourceError, UsageError

MB2 = 2 << 20


def free2m():
    return hp.pool(MB2).free


def fd_target(fd):
    return os.readlink(f"/proc/self/fd/{fd}")


def write_and_check_shared(zone):
    """Bytes written through view() are seen by a second, independent mmap of zone.fd."""
    v = zone.view()
    assert not v.readonly and v.nbytes == zone.len and v.format == "B"
    v[:5] = b"hello"
    v[zone.len - 3:] = b"end"
    m = mmap.mmap(zone.fd, zone.map_len)
    try:
        assert m[:5] == b"hello" and m[zone.len - 3:zone.len] == b"end"
        m[5:8] = b"abc"  # and the other way round
        assert bytes(v[5:8]) == b"abc"
    finally:
        m.close()
    v.release()


def test_hugepage_memfd_zone(eal):
    before = free2m()
    z = eal.memzone_reserve("mz_memfd", 3 << 20)
    assert (z.name, z.len, z.map_len, z.page_size) == ("mz_memfd", 3 << 20, 4 << 20, MB2)
    assert z.hugepage and z.path is None and z.iova == z.addr and z.addr % MB2 == 0
    assert z.socket_id == 0
    assert fd_target(z.fd).startswith("/memfd:pypdk_mz_memfd")
    assert free2m() == before - 2  # faulted in now, not at first touch
    write_and_check_shared(z)
    assert z in eal.memzones and eal.memzone_lookup("mz_memfd") is z
    eal.close()
    assert z.freed and z.fd == -1 and z.addr == 0
    assert free2m() == before


def test_hugetlbfs_file_zone_is_removed_at_cleanup(hugetlbfs):
    before = free2m()
    with pypdk.eal.init("0-1", huge_dir=hugetlbfs, file_prefix="t1") as eal:
        z = eal.memzone_reserve("mz_file", 1 << 20, socket_id=0)
        assert z.path == os.path.join(hugetlbfs, "t1_mz_file") and os.path.exists(z.path)
        assert fd_target(z.fd) == z.path
        assert z.hugepage and z.socket_id == 0 and z.map_len == MB2
        write_and_check_shared(z)
        with open(z.path, "rb") as f:  # the file holds the zone's bytes
            assert f.read(5) == b"hello"
        assert free2m() == before - 1
    assert os.listdir(hugetlbfs) == []
    assert free2m() == before


def test_hugetlbfs_file_left_behind_is_reported(hugetlbfs):
    open(os.path.join(hugetlbfs, "pypdk_stale"), "w").close()
    with pytest.raises(ResourceError, match=r"pypdk_stale already exists .*pick another --file-prefix"):
        memzone_reserve("stale", 4096, huge_dir=hugetlbfs)


def test_huge_dir_must_be_a_hugetlbfs_mount(tmp_path):
    with pytest.raises(UsageError, match=f"--huge-dir {tmp_path} is not a hugetlbfs mount; mount one"):
        pypdk.eal.init("0-1", huge_dir=str(tmp_path))
    with pytest.raises(UsageError, match="is not a hugetlbfs mount"):
        memzone_reserve("x", 4096, huge_dir=str(tmp_path))


def test_no_huge_zone_uses_ordinary_pages(eal_no_huge):
    before = free2m()
    z = eal_no_huge.memzone_reserve("mz_small", 10000, socket_id=0)
    assert not z.hugepage and z.page_size == os.sysconf("SC_PAGE_SIZE") and z.map_len == 12288
    assert z.socket_id == 0 and fd_target(z.fd).startswith("/memfd:pypdk_mz_small")
    write_and_check_shared(z)
    assert free2m() == before


def test_zone_starts_zeroed_and_close_is_idempotent():
    z = memzone_reserve("mz_zero", MB2)
    try:
        assert bytes(z.view()) == bytes(MB2)
    finally:
        z.close()
    z.close()
    assert z.freed
    with pytest.raises(pypdk.StateError, match="memzone 'mz_zero' was freed"):
        z.view()


def test_close_with_a_live_view_returns_the_pages_and_does_not_crash():
    before = free2m()
    z = memzone_reserve("mz_view", MB2)
    v = z.view()
    v[:3] = b"abc"
    z.close()
    assert free2m() == before
    assert bytes(v[:3]) == b"\0\0\0"  # a stale view sees zeros, not freed hugepages
    v.release()


def test_too_few_hugepages_is_a_clear_error_and_changes_nothing(eal):
    free = hp.free_pages(MB2)
    before = free2m()
    need = free + 64
    with pytest.raises(ResourceError) as e:
        eal.memzone_reserve("mbuf_pool", need * MB2, socket_id=0)
    msg = str(e.value)
    assert msg.startswith(f"need {need} free 2 MiB hugepages on node 0 for memzone 'mbuf_pool' ({free} free); ")
    assert "reserve them with `python -m pypdk.eal.hugepages --reserve " in msg and msg.endswith("or run with --no-huge")
    assert free2m() == before and hp.pool(MB2).resv == 0
    assert eal.memzones == []


def test_kernel_refusal_at_mmap_leaves_nothing_behind(hugetlbfs):
    # Skip our sysfs pre-check: the kernel's own reservation at mmap must fail
    # cleanly (ENOMEM, not SIGBUS) and be reported the same way.
    before = free2m()
    need = hp.free_pages(MB2) + 8
    with pytest.raises(ResourceError, match=rf"^need {need} free 2 MiB hugepages for memzone 'big' "):
        memzone_reserve("big", need * MB2, huge_dir=hugetlbfs, _precheck=False)
    assert os.listdir(hugetlbfs) == []
    with pytest.raises(ResourceError, match=rf"^need {need} free 2 MiB hugepages on node 0 for memzone 'big'"):
        memzone_reserve("big", need * MB2, socket_id=0, _precheck=False)
    assert free2m() == before


@pytest.mark.parametrize("name, size, socket_id, problem", [
    ("", 4096, -1, "is not a non-empty string"),
    ("x" * 32, 4096, -1, "is 32 bytes long (at most 31)"),
    ("a/b", 4096, -1, "contains '/'"),
    ("ok", 0, -1, "size 0 is not a positive number of bytes"),
    ("ok", 4096, 7, "NUMA node 7 does not exist"),
    ("ok", 4096, -2, "socket_id -2 is invalid"),
])
def test_bad_arguments(name, size, socket_id, problem):
    with pytest.raises(UsageError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        memzone_reserve(name, size, socket_id)


def test_names_are_unique_among_live_zones(eal):
    z = eal.memzone_reserve("dup", 4096)
    with pytest.raises(UsageError, match="memzone 'dup' already exists"):
        eal.memzone_reserve("dup", 4096)
    eal.memzone_free("dup")
    assert z.freed and eal.memzones == []
    assert eal.memzone_reserve("dup", 4096).name == "dup"


def test_memory_option_caps_the_eal():
    with pypdk.eal.init("0-1", memory=4) as eal:
        eal.memzone_reserve("a", 3 << 20)
        with pytest.raises(ResourceError, match="memzone 'b' needs 2 MB but only 0 MB of -m 4 is left"):
            eal.memzone_reserve("b", 1)
    with pypdk.eal.init("0-1", socket_mem="2") as eal:
        eal.memzone_reserve("a", MB2, socket_id=0)
        with pytest.raises(ResourceError, match=r"of --socket-mem \(node 0\) is left"):
            eal.memzone_reserve("b", 1, socket_id=0)


def test_a_zone_is_a_context_manager(eal):
    with eal.memzone_reserve("mz_with", MB2) as z:
        z.view()[:1] = b"x"
    assert z.freed and z not in eal.memzones
