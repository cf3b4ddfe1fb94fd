"""The flow hash table against a dict, its limits, and nogil readers on a
worker lcore while the main thread adds and deletes (positions reused at
once, and with deferred reuse)."""
import os
import random
import struct
import time

import numpy as np
import pytest

from pypdk.errors import ResourceError, UsageError
from pypdk.net.flow_hash import KEY_LEN, FlowHash, make_key_v4, make_key_v6


def _key(rnd):
    return make_key_v4(rnd.randrange(4096), rnd.getrandbits(32), rnd.getrandbits(32), rnd.choice([6, 17, 1]),
                       rnd.getrandbits(16), rnd.getrandbits(16))


def test_flow_key_layout():
    assert KEY_LEN == 40
    k = make_key_v4(0x1234, "10.0.0.1", "192.0.2.9", 6, 1000, 80)
    assert k == bytes([10, 0, 0, 1]) + bytes(12) + bytes([192, 0, 2, 9]) + bytes(12) + \
        struct.pack("!HH", 1000, 80) + struct.pack("=H", 0x1234) + bytes([6, 4])
    k6 = make_key_v6(7, "2001:db8::1", "2001:db8::2", 17, 53, 5353)
    assert k6[:16] == bytes.fromhex("20010db8000000000000000000000001") and k6[-2:] == bytes([17, 6])


def test_add_lookup_delete_against_a_dict():
    rnd = random.Random(1)
    t = FlowHash(20000)
    ref, keys, at, used = {}, [], {}, set()       # keys/at: O(1) random choice and removal

    def pick():
        return keys[rnd.randrange(len(keys))]

    def forget(k):
        i = at.pop(k)
        last = keys.pop()
        if last != k:
            keys[i] = last
            at[last] = i

    for step in range(60000):
        r = rnd.random()
        if ref and r < 0.35:
            k = pick()
            pos = t.delete(k)
            assert pos == ref.pop(k)[0]
            used.discard(pos)
            forget(k)
        elif ref and r < 0.45:
            k = pick()                                # re-add: same position, new data
            data = rnd.getrandbits(32)
            assert t.add(k, data) == ref[k][0]
            ref[k] = (ref[k][0], data)
        else:
            k, data = _key(rnd), rnd.getrandbits(32)
            pos = t.add(k, data)
            assert pos not in used and 0 <= pos < 20000
            used.add(pos)
            ref[k] = (pos, data)
            at[k] = len(keys)
            keys.append(k)
        if step % 6000 == 0:
            for k, (pos, data) in ref.items():
                assert t.get(k) == (pos, data)
                assert t.lookup(k) == pos and t.key(pos) == k
            for _ in range(200):
                assert t.lookup(os.urandom(40)) is None
    assert len(t) == len(ref)
    assert sorted((k, p, d) for k, p, d in t.items()) == sorted((k, p, d) for k, (p, d) in ref.items())
    with pytest.raises(KeyError):
        t.delete(os.urandom(40))
    t.reset()
    assert len(t) == 0 and t.free_count == 20000 and all(t.lookup(k) is None for k in list(ref)[:100])


def test_lookup_bulk_equals_single_lookups():
    rnd = random.Random(2)
    t = FlowHash(5000)
    keys = [_key(rnd) for _ in range(3000)]
    for i, k in enumerate(keys):
        t.add(k, i)
    probe = keys[:1000] + [os.urandom(40) for _ in range(37)]
    rnd.shuffle(probe)
    got = t.lookup_bulk(probe)
    assert got.dtype == np.int32 and list(got) == [-1 if t.lookup(k) is None else t.lookup(k) for k in probe]
    arr = np.frombuffer(b"".join(probe[:9]), dtype=np.uint8).reshape(9, 40)
    assert list(t.lookup_bulk(arr)) == list(got[:9])
    assert len(t.lookup_bulk([])) == 0


def test_fills_to_capacity_then_refuses():
    t = FlowHash(50000)
    keys = [os.urandom(40) for _ in range(50000)]
    pos = [t.add(k) for k in keys]
    assert sorted(pos) == list(range(50000))
    assert t.free_count == 0 and len(t) == 50000
    with pytest.raises(ResourceError, match="full"):
        t.add(os.urandom(40))
    t.add(keys[7], 99)                                # an existing key still updates
    assert t.get(keys[7]) == (pos[7], 99)
    t.delete(keys[0])
    assert t.add(os.urandom(40)) == pos[0]            # its position is free again


def test_small_buckets_move_residents_then_refuse():
    rnd = random.Random(3)
    t = FlowHash(1000, buckets=32)                    # 256 slots for 1000 positions
    ref = {}
    while True:
        k = _key(rnd)
        try:
            ref[k] = t.add(k, len(ref))
        except ResourceError:
            break
    st = t.stats
    assert st["moves"] > 0 and st["full_buckets"] == 1
    assert 200 <= len(ref) <= 256
    assert all(t.lookup(k) == p for k, p in ref.items())
    assert all(t.lookup(k) is None for k in (_key(rnd) for _ in range(100)))


def test_deferred_free_waits_for_reclaim():
    t = FlowHash(2, defer_free=True)
    a, b, c = os.urandom(40), os.urandom(40), os.urandom(40)
    pa = t.add(a)
    t.add(b)
    t.delete(a)
    assert t.pending_count == 1 and t.free_count == 0
    with pytest.raises(ResourceError):
        t.add(c)
    assert t.reclaim() == 1
    assert t.add(c) == pa


def test_keys_of_other_lengths():
    for n in (1, 7, 8, 13, 64, 120):
        t = FlowHash(100, key_len=n)
        keys = {os.urandom(n) for _ in range(80)}
        pos = {k: t.add(k, i) for i, k in enumerate(keys)}
        assert all(t.lookup(k) == p for k, p in pos.items())
        assert list(t.lookup_bulk(list(keys))) == [pos[k] for k in keys]
        with pytest.raises(UsageError):
            t.lookup(b"\x00" * (n + 1))
    for bad in [dict(capacity=0), dict(capacity=10, key_len=0), dict(capacity=10, key_len=121),
                dict(capacity=10, buckets=3)]:
        with pytest.raises(UsageError):
            FlowHash(**bad)


def test_the_seed_salts_the_hash():
    a, b = FlowHash(64, seed=1), FlowHash(64, seed=2)
    keys = [os.urandom(40) for _ in range(64)]
    for k in keys:
        a.add(k)
        b.add(k)
    order = lambda t: [p for _, p, _ in t.items()]
    assert order(a) != order(b)                        # different buckets for the same keys


# ---- readers on a worker lcore ----------------------------------------------------------

def _reader_keys(n_stable, n_churn, n_never):
    """Key i: bytes 0-3 = i, byte 4 = class (0 stable, 1 churned, 2 never added)."""
    rnd = random.Random(4)
    rows = []
    for i in range(n_stable + n_churn + n_never):
        cls = 0 if i < n_stable else 1 if i < n_stable + n_churn else 2
        rows.append(struct.pack("<IB", i, cls) + bytes(rnd.getrandbits(8) for _ in range(35)))
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 40).copy()


@pytest.mark.parametrize("defer_free", [False, True])
def test_readers_never_match_a_wrong_key(eal_no_huge, defer_free):
    from tests.cy import net_readers
    n_stable, n_churn, n_never = 1500, 1500, 500
    keys = _reader_keys(n_stable, n_churn, n_never)
    # Tight: 2048 slots for 3000 keys keeps buckets near full, so adds move
    # residents and positions are reused within microseconds.
    t = FlowHash(3000, defer_free=defer_free, buckets=256)
    for i in range(n_stable):
        t.add(keys[i].tobytes(), i ^ 0x5a5a5a5a)
    reader = net_readers.flow_reader_new(t, keys)
    reader.start(eal_no_huge, 1)
    rnd = random.Random(5)
    present = set()
    ops = refused = 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline or ops < 50000:
            i = n_stable + rnd.randrange(n_churn)
            if i in present:
                t.delete(keys[i].tobytes())
                present.discard(i)
            else:
                try:
                    t.add(keys[i].tobytes(), i ^ 0x5a5a5a5a)
                    present.add(i)
                except ResourceError:
                    refused += 1
            ops += 1
            if defer_free and ops % 200 == 0:
                reader.wait_quiescent()
                t.reclaim()
    finally:
        stats = reader.stop(eal_no_huge, 1)
    assert stats["errors"] == 0, stats
    assert stats["lookups"] > 100_000 and stats["hits"] > 0
    assert t.stats["moves"] > 0
    for i in range(len(keys)):
        want = i < n_stable or i in present
        assert (t.lookup(keys[i].tobytes()) is not None) == want


def test_a_record_being_rewritten_never_matches():
    # The reader's half of the sequence counter: odd (a write in progress) is
    # "not this key"; the counter moves by 2 for each rewrite of a position.
    from tests.cy import net_readers
    t = FlowHash(4)
    k = os.urandom(40)
    pos = t.add(k, 1)
    v = net_readers.flow_record_ver(t, pos)
    assert v % 2 == 0
    net_readers.flow_record_ver(t, pos, v + 1)
    assert t.lookup(k) is None and list(t.lookup_bulk([k])) == [-1]
    net_readers.flow_record_ver(t, pos, v)
    assert t.lookup(k) == pos
    t.delete(k)
    assert t.add(os.urandom(40)) == pos
    assert net_readers.flow_record_ver(t, pos) == v + 2


def test_structured_keys_spread_over_the_buckets():
    # Flows that differ in a port or the last address byte only: a weak hash
    # would pile them into few buckets and refuse adds long before capacity.
    t = FlowHash(65536, seed=0)
    n = 0
    for sport in range(256):
        for last in range(256):
            t.add(make_key_v4(1, "10.0.0.1", 0x0a010000 | last, 6, 1024 + sport, 80))
            n += 1
    assert len(t) == n == 65536 and t.stats["full_buckets"] == 0
    t8 = FlowHash(4096, key_len=8, seed=0, buckets=512)          # exactly full: 8 per bucket on average
    for i in range(3600):
        t8.add(i.to_bytes(8, "little"))
    assert t8.stats["full_buckets"] == 0


def test_close_and_the_context_manager_free_the_table():
    with FlowHash(16) as h:
        k = make_key_v4(0, "10.0.0.1", "10.0.0.2", 6, 1, 2)
        h.add(k)
        assert h.lookup(k) is not None
    with pytest.raises(UsageError, match="closed"):
        h.lookup(k)
    h.close()                      # a second close is a no-op
