"""Mempool: counts, all-or-nothing bulk get, per-lcore cache, debug checks."""
import pytest

from pypdk.mempool import Mempool
from pypdk.errors import StateError, UsageError


def test_counts_follow_get_and_put(eal):
    mp = Mempool("mp_counts", 100, 64)
    try:
        assert (mp.size, mp.avail_count, mp.in_use_count) == (100, 100, 0)
        objs = mp.get_bulk(30)
        assert len(objs) == 30 and len(set(objs)) == 30
        assert (mp.avail_count, mp.in_use_count) == (70, 30)
        mp.put_bulk(objs)
        assert mp.in_use_count == 0
    finally:
        mp.close()


def test_objects_are_distinct_aligned_and_inside_the_zone(eal):
    mp = Mempool("mp_layout", 50, 100)
    try:
        assert mp.elt_size == 128
        objs = sorted(mp.get_bulk(50))
        assert all(b - a == 128 for a, b in zip(objs, objs[1:]))
        assert all(o % 64 == 0 for o in objs)
        mp.put_bulk(objs)
    finally:
        mp.close()


def test_bulk_get_is_all_or_nothing(eal):
    mp = Mempool("mp_bulk", 10, 64)
    try:
        first = mp.get_bulk(8)
        assert mp.get_bulk(3) == []          # only 2 left: nothing taken
        assert mp.avail_count == 2
        assert len(mp.get_bulk(2)) == 2
        assert mp.get() is None
        mp.put_bulk(first)
    finally:
        mp.close()


def test_cache_keeps_objects_for_this_lcore_and_counts_them(eal):
    mp = Mempool("mp_cache", 1024, 64, cache_size=64)
    try:
        objs = mp.get_bulk(16)
        mp.put_bulk(objs)
        # The cache was filled to its size on the first get and holds them:
        # counted as available all the same.
        assert mp.avail_count == 1024 and mp.in_use_count == 0
        # LIFO: the objects freed last come out first.
        again = mp.get_bulk(16)
        assert set(again) == set(objs)
        mp.put_bulk(again)
        # Taking everything works through cache and ring together.
        everything = mp.get_bulk(1024)
        assert len(set(everything)) == 1024 and mp.avail_count == 0
        mp.put_bulk(everything)
        assert mp.avail_count == 1024
    finally:
        mp.close()


def test_cache_too_big_for_the_pool_is_refused(eal):
    with pytest.raises(UsageError, match="cache_size"):
        Mempool("mp_badcache", 100, 64, cache_size=512)


def test_close_releases_the_pool_and_its_memzone(eal):
    with Mempool("mp_with", 16, 64) as mp:
        assert mp.get() is not None
    assert "closed" in repr(mp)
    assert all(z.name != "mp_with" for z in eal.memzones)
    mp.close()                                  # idempotent
    with pytest.raises(StateError, match="mempool 'mp_with' was closed"):
        mp.get()


def test_debug_mode_catches_double_free_and_wrong_pool(eal):
    a = Mempool("mp_dbg_a", 16, 64, debug=True)
    b = Mempool("mp_dbg_b", 16, 64, debug=True)
    try:
        x = a.get()
        a.put(x)
        with pytest.raises(StateError, match="double free"):
            a.put(x)
        assert a.debug_stats["double_free"] == 1
        assert a.avail_count == 16              # the pool stayed consistent
        y = b.get()
        with pytest.raises(StateError, match="does not belong"):
            a.put(y)
        assert a.debug_stats["wrong_pool"] == 1 and b.in_use_count == 1
        b.put(y)
    finally:
        a.close()
        b.close()


def test_pool_memory_is_a_memzone_of_the_eal(eal):
    mp = Mempool("mp_zone", 32, 2048)
    try:
        assert "mp_zone" in [z.name for z in eal.memzones]
    finally:
        mp.close()
    assert "mp_zone" not in [z.name for z in eal.memzones]
