"""A Python function per burst: it sees zero-copy Mbufs, what it returns is
sent, what it drops is freed and counted, and an exception costs one burst,
not the lcore."""
from pypdk.worker import PyBurstWorker


def run(eal, wire, fn):
    w = PyBurstWorker([(0, 0, 1, 0)], fn, yield_after=wire.YIELD)
    eal.remote_launch(w.lcore_function(), 1)
    return w


def finish(eal, w):
    w.stop()
    assert eal.wait_lcore(1) == 0


def test_function_edits_in_place_and_chooses_what_to_send(eal3, wire):
    def keep_even_and_mark(mbufs):
        for m in mbufs:
            m.data[0] = 0xee                   # a write through the zero-copy view
        return [m for m in mbufs if m.data[11] % 2 == 0]

    w = run(eal3, wire, keep_even_and_mark)
    frames = wire.frames(200)
    expect = [b"\xee" + b[1:] for b in (m.bytes() for m in frames) if b[11] % 2 == 0]
    wire.inject(0, frames)
    got = wire.bytes_and_free(wire.collect(1, 100))
    wire.wait(lambda: w.stats()["app_dropped"] == 100)
    finish(eal3, w)
    assert got == expect
    st = w.stats()
    assert (st["rx"], st["tx"], st["app_dropped"], st["py_errors"]) == (200, 100, 100, 0)


def test_function_may_free_and_may_send_new_mbufs(eal3, wire):
    pool = wire.pool

    def reply(mbufs):
        out = []
        for m in mbufs:
            r = pool.alloc()
            r.append(b"R" * 60)
            out.append(r)
            m.free()                           # freed by the function: not counted as a drop
        return out

    w = run(eal3, wire, reply)
    wire.inject(0, wire.frames(50))
    got = wire.bytes_and_free(wire.collect(1, 50))
    finish(eal3, w)
    assert got == [b"R" * 60] * 50
    assert (w.stats()["tx"], w.stats()["app_dropped"]) == (50, 0)


def test_an_exception_drops_the_burst_and_the_lcore_goes_on(eal3, wire):
    calls = []

    def flaky(mbufs):
        calls.append(len(mbufs))
        if len(calls) == 1:
            raise RuntimeError("first burst fails")
        return mbufs

    w = run(eal3, wire, flaky)
    first = wire.frames(10)
    wire.inject(0, first)
    wire.wait(lambda: w.stats()["py_errors"] == 1)
    wire.inject(0, wire.frames(10))
    got = wire.collect(1, 10)
    finish(eal3, w)
    assert len(got) == 10
    wire.bytes_and_free(got)
    st = w.stats()
    assert (st["rx"], st["tx"], st["app_dropped"], st["py_errors"]) == (20, 10, 10, 1)


def test_thread_locals_live_across_bursts_of_one_loop(eal3, wire):
    # The lcore keeps one Python thread state for its whole loop, so what a
    # callback keeps in threading.local() is there at the next burst.
    import threading
    tls = threading.local()
    seen = []

    def count(mbufs):
        tls.n = getattr(tls, "n", 0) + len(mbufs)
        seen.append(tls.n)
        return mbufs

    w = run(eal3, wire, count)
    wire.inject(0, wire.frames(100))
    wire.bytes_and_free(wire.collect(1, 100))
    finish(eal3, w)
    assert seen[-1] == 100 and seen == sorted(seen)
    assert not hasattr(tls, "n")           # set on the lcore's thread, not this one
