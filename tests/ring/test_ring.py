"""Ring semantics on one thread: bulk vs burst, capacity, counts, wrap-around."""
import pytest

from pypdk.ring import Ring
from pypdk.errors import StateError, UsageError


@pytest.mark.parametrize("sp,sc", [(True, True), (False, False), (True, False), (False, True)])
def test_fifo_order_and_counts(sp, sc):
    r = Ring("fifo", 16, sp=sp, sc=sc)
    assert (r.size, r.capacity, r.count, r.free_count) == (16, 15, 0, 15)
    assert r.enqueue_burst(range(1, 11)) == 10
    assert (r.count, r.free_count) == (10, 5)
    assert r.dequeue_burst(4) == [1, 2, 3, 4]
    assert r.dequeue_burst(100) == [5, 6, 7, 8, 9, 10]
    assert r.empty() and r.dequeue() is None


def test_power_of_two_ring_holds_size_minus_one():
    r = Ring("cap", 8)
    assert r.enqueue_burst(range(100, 120)) == 7
    assert r.full()
    assert r.enqueue(1) is False


def test_exact_size_holds_exactly_what_was_asked():
    r = Ring("exact", 5, exact_size=True)
    assert r.capacity == 5 and r.size == 8
    assert r.enqueue_burst(range(1, 10)) == 5
    assert r.dequeue_burst(10) == [1, 2, 3, 4, 5]


def test_bulk_is_all_or_nothing():
    r = Ring("bulk", 8)
    assert r.enqueue_bulk(range(1, 6)) == 5
    assert r.enqueue_bulk(range(6, 9)) == 0      # 3 > 2 free: nothing taken
    assert r.count == 5
    assert r.dequeue_bulk(6) == []                # 6 > 5 present: nothing taken
    assert r.count == 5
    assert r.dequeue_bulk(5) == [1, 2, 3, 4, 5]


def test_wrap_around_many_times_keeps_order():
    r = Ring("wrap", 8, sp=True, sc=True)
    nxt_in = nxt_out = 1
    for step in range(1000):
        k = step % 7 + 1
        n = r.enqueue_burst(range(nxt_in, nxt_in + k))
        nxt_in += n
        got = r.dequeue_burst((step * 3) % 7 + 1)
        assert got == list(range(nxt_out, nxt_out + len(got)))
        nxt_out += len(got)
    assert r.dequeue_burst(8) == list(range(nxt_out, nxt_in))


def test_objects_with_addr_are_enqueued_by_address():
    class Obj:
        addr = 0xdead0
    r = Ring("addr", 4)
    r.enqueue(Obj())
    assert r.dequeue() == 0xdead0


@pytest.mark.parametrize("size", [0, 3, 100, 2**33])
def test_bad_sizes_are_rejected_with_the_fix(size):
    with pytest.raises(UsageError) as e:
        Ring("bad", size)
    assert "ring 'bad'" in str(e.value)


def test_long_name_is_rejected():
    with pytest.raises(UsageError, match="longer than"):
        Ring("x" * 40, 8)


def test_close_frees_the_ring_and_a_closed_ring_refuses_use():
    with Ring("closing", 8) as r:
        assert r.enqueue(7)
    assert r.addr == 0
    r.close()                                   # idempotent
    with pytest.raises(StateError, match="ring 'closing' was closed"):
        r.enqueue(1)
    with pytest.raises(StateError):
        len(r)
    assert "closed" in repr(r)
