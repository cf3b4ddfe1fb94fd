"""Packet mbufs: layout, data operations, chains, clones, views, leaks."""
import numpy as np
import pytest

from pypdk.mempool import PktMbufPool, Mbuf
from pypdk.errors import ResourceError, StateError, UsageError


pytestmark = pytest.mark.pypdk_pool(eal="eal", size=256, cache_size=32)    # the `pool` fixture


def test_fresh_mbuf_has_default_headroom_and_room(pool):
    m = pool.alloc()
    assert (m.pkt_len, m.data_len, m.headroom, m.nb_segs, m.refcnt) == (0, 0, 128, 1, 1)
    assert m.buf_len == 128 + 2048 and m.tailroom == 2048
    assert pool.elt_size == 128 + 2176     # header + headroom + data room = 2304
    m.free()


def test_append_prepend_adj_trim(pool):
    m = pool.alloc()
    m.append(b"payload")
    m.prepend(b"hdr:")
    assert m.bytes() == b"hdr:payload" and m.pkt_len == 11 and m.headroom == 124
    m.adj(4)
    m.trim(3)
    assert m.bytes() == b"payl"
    with pytest.raises(UsageError):
        m.adj(100)
    with pytest.raises(ResourceError, match="headroom"):
        m.prepend(b"x" * 200)
    with pytest.raises(ResourceError, match="tailroom"):
        m.append(b"x" * 3000)
    m.free()


def test_data_view_is_zero_copy_and_writable(pool):
    m = pool.alloc()
    m.append(bytes(64))
    view = m.data
    view[0:4] = b"\xde\xad\xbe\xef"
    assert m.bytes()[:4] == b"\xde\xad\xbe\xef"
    arr = m.numpy()
    arr[4] = 7
    assert m.bytes()[4] == 7 and arr.dtype == np.uint8 and len(arr) == 64
    del view, arr
    m.free()


def test_chain_counts_segments_and_free_returns_them_all(pool):
    before = pool.in_use_count
    head = pool.alloc()
    head.append(b"A" * 1000)
    for ch in b"BCD":
        seg = pool.alloc()
        seg.append(bytes([ch]) * 1000)
        head.chain(seg)
    assert head.nb_segs == 4 and head.pkt_len == 4000
    assert head.bytes() == b"A" * 1000 + b"B" * 1000 + b"C" * 1000 + b"D" * 1000
    assert pool.in_use_count == before + 4
    head.free()
    assert pool.in_use_count == before


def test_clone_shares_the_buffer_and_refcount_frees_it_last(pool):
    m = pool.alloc()
    m.append(b"shared bytes")
    c = m.clone()
    assert c.is_indirect and c.bytes() == b"shared bytes"
    assert m.refcnt == 2 and pool.in_use_count == 2
    m.data[0:6] = b"SHARED"              # one buffer: the clone sees it
    assert c.bytes() == b"SHARED bytes"
    m.free()                              # the buffer lives on in the clone
    assert pool.in_use_count == 2
    assert c.bytes() == b"SHARED bytes"
    c.free()
    assert pool.in_use_count == 0


def test_clone_of_a_chain(pool):
    head = pool.alloc()
    head.append(b"one")
    seg = pool.alloc()
    seg.append(b"two")
    head.chain(seg)
    c = head.clone()
    assert c.nb_segs == 2 and c.bytes() == b"onetwo"
    head.free()
    c.free()


def test_metadata_fields_round_trip(pool):
    m = pool.alloc()
    m.port, m.vlan_tci, m.rss_hash, m.packet_type, m.ol_flags = 3, 100, 0xabcd, 7, 1
    assert (m.port, m.vlan_tci, m.rss_hash, m.packet_type, m.ol_flags) == (3, 100, 0xabcd, 7, 1)
    same = Mbuf.from_addr(m.addr)
    assert same.port == 3
    m.free()
    fresh = pool.alloc()                  # reset on alloc
    assert (fresh.port, fresh.vlan_tci, fresh.ol_flags) == (0xffff, 0, 0)
    fresh.free()


def test_exhaustion_and_bulk_alloc(pool):
    got = pool.alloc_bulk(256)
    assert pool.alloc() is None and pool.avail_count == 0
    with pytest.raises(ResourceError, match="cannot allocate"):
        pool.alloc_bulk(1)
    for m in got:
        m.free()


def test_use_after_free_is_refused_by_the_handle(pool):
    m = pool.alloc()
    m.free()
    with pytest.raises(StateError):
        m.append(b"x")


def test_debug_pool_catches_double_free(eal):
    p = PktMbufPool("mbuf_dbg", 16, cache_size=0, debug=True)
    try:
        m = p.alloc()
        again = Mbuf.from_addr(m.addr)
        m.free()
        with pytest.raises(StateError, match="double free"):
            again.free()
        assert p.in_use_count == 0
    finally:
        p.close()


def test_cache_size_too_big_is_refused_as_mempool_refuses_it(eal):
    with pytest.raises(UsageError, match=r"mempool 'mbuf_bigcache': cache_size 256 is too big for 64 objects"):
        PktMbufPool("mbuf_bigcache", 64, cache_size=256)


@pytest.mark.parametrize("n, cache", [(8192, 256), (384, 256), (64, 42), (2, 0)])
def test_default_cache_size_is_256_or_what_a_small_pool_allows(eal, n, cache):
    with PktMbufPool(f"mbuf_defcache{n}", n) as p:
        assert p.cache_size == cache
    with pytest.raises(StateError, match="was closed"):
        p.alloc()
