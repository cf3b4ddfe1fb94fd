"""Run-to-completion: an lcore forwards what a port receives, runs the hook,
counts every packet (forwarded, refused by tx, dropped by the hook) and gives
every mbuf back."""
import pytest

from pypdk.errors import UsageError
from pypdk.worker import RtcWorker, macswap, drop, make_plan



def run(eal, worker, lcore=1):
    eal.remote_launch(worker.lcore_function(), lcore)
    return worker


def finish(eal, worker, lcore=1):
    worker.stop()
    assert eal.wait_lcore(lcore) == 0


def test_forwards_unchanged_without_hook_and_counts(eal3, wire):
    w = run(eal3, RtcWorker([(0, 0, 1, 0)], yield_after=wire.YIELD))
    sent = wire.frames(300)
    expect = [m.bytes() for m in sent]
    wire.inject(0, sent)
    got = wire.bytes_and_free(wire.collect(1, 300))
    finish(eal3, w)
    assert got == expect
    st = w.stats()
    assert (st["rx"], st["tx"], st["tx_dropped"], st["app_dropped"]) == (300, 300, 0, 0)
    assert st["polls"] >= st["empty_polls"] > 0
    assert w.hop_stats() == [{"rx_port": 0, "rx_queue": 0, "tx_port": 1, "tx_queue": 0,
                              "rx": 300, "tx": 300, "tx_dropped": 0, "app_dropped": 0, "taken": 0}]
    assert w.port_stats() == {0: {"rx": 300, "tx": 0, "dropped": 0}, 1: {"rx": 0, "tx": 300, "dropped": 0}}


def test_macswap_hook_swaps_and_drops_runts(eal3, wire):
    w = run(eal3, RtcWorker([(0, 0, 1, 0)], hook=macswap(), yield_after=wire.YIELD))
    good = wire.frames(100)
    expect = [m.bytes()[6:12] + m.bytes()[0:6] + m.bytes()[12:] for m in good]
    runts = []
    for i in range(7):
        m = wire.pool.alloc()
        m.append(bytes(range(i + 3)))          # 3..9 bytes: no room for two addresses
        runts.append(m)
    mixed = good[:50] + runts + good[50:]
    wire.inject(0, mixed)
    got = wire.bytes_and_free(wire.collect(1, 100))
    finish(eal3, w)
    assert got == expect                       # order kept, runts gone
    st = w.stats()
    assert (st["rx"], st["tx"], st["app_dropped"]) == (107, 100, 7)


def test_tx_refusal_is_freed_and_counted(eal3, wire):
    # Port 1's tx ring holds 63 (size 64) and nobody drains it while the lcore runs.
    wire.ports[1].close()
    import pypdk.pmd
    p1 = pypdk.pmd.open("net_ring1", size=64)
    p1.setup(wire.pool, 1, 1)
    p1.start()
    wire.ports[1] = p1
    w = run(eal3, RtcWorker([(0, 0, 1, 0)], yield_after=wire.YIELD))
    wire.inject(0, wire.frames(500))
    # Every packet is accounted for once the lcore has seen all 500.
    wire.wait(lambda: w.stats()["rx"] == 500)
    finish(eal3, w)
    st = w.stats()
    assert st["tx"] == 63 and st["tx_dropped"] == 437
    assert w.port_stats()[1] == {"rx": 0, "tx": 63, "dropped": 437}
    wire.bytes_and_free(wire.collect(1, 63))


def test_drop_hook_frees_everything(eal3, wire):
    w = run(eal3, RtcWorker([(0, 0, 1, 0), (1, 0, 0, 0)], hook=drop(), yield_after=wire.YIELD))
    wire.inject(0, wire.frames(200))
    wire.wait(lambda: w.stats()["rx"] == 200)
    finish(eal3, w)
    assert w.stats()["app_dropped"] == 200 and w.stats()["tx"] == 0


def test_two_hops_on_one_lcore_and_relaunch(eal3, wire):
    w = RtcWorker([(0, 0, 1, 0), (1, 0, 0, 0)], yield_after=wire.YIELD)
    for round_ in range(2):                    # a stopped worker can be launched again
        run(eal3, w)
        wire.inject(0, wire.frames(40))
        wire.inject(1, wire.frames(60))
        a = wire.collect(1, 40)
        b = wire.collect(0, 60)
        finish(eal3, w)
        assert (len(a), len(b)) == (40, 60)
        wire.bytes_and_free(a + b)
    assert w.stats()["rx"] == w.stats()["tx"] == 200


def test_plan_from_workers(eal3, wire):
    w = RtcWorker([(0, 0, 1, 0)], yield_after=wire.YIELD)
    plan = make_plan({2: w})
    assert list(plan.tasks) == [2]
    eal3.remote_launch(plan.tasks[2], 2)
    wire.inject(0, wire.frames(10))
    wire.bytes_and_free(wire.collect(1, 10))
    plan.stop()
    eal3.wait_lcore(2)
    assert plan.lcore_stats()[2]["tx"] == 10
    assert plan.port_stats() == {0: {"rx": 10, "tx": 0, "dropped": 0}, 1: {"rx": 0, "tx": 10, "dropped": 0}}


@pytest.mark.parametrize("hops, kw, what", [
    ([], {}, "no hops"),
    ([(0, 1, 1, 0)], {}, "rx queue 1"),
    ([(0, 0, 1, 3)], {}, "tx queue 3"),
    ([(0, 0, 9, 0)], {}, "port 9"),
    ([(0, 0, 1)], {}, "four numbers"),
    ([(0, 0, 1, 0)], {"burst": 0}, "burst"),
    ([(0, 0, 1, 0)], {"burst": 65}, "burst"),
    ([(0, 0, 1, 0)], {"yield_after": -1}, "yield_after"),
])
def test_bad_worker_arguments_say_what_is_wrong(eal3, wire, hops, kw, what):
    with pytest.raises(UsageError) as e:
        RtcWorker(hops, **kw)
    assert what in str(e.value) or what in e.value.fix


def test_a_queue_belongs_to_one_lcore(eal3, wire):
    a = RtcWorker([(0, 0, 1, 0)])
    b = RtcWorker([(0, 0, 0, 0)])
    with pytest.raises(UsageError) as e:
        make_plan({1: a, 2: b})
    assert "rx queue 0 of port 0" in e.value.problem and "lcores 1 and 2" in e.value.problem
    c = RtcWorker([(1, 0, 1, 0)])
    with pytest.raises(UsageError) as e:
        make_plan({1: a, 2: c})
    assert "tx queue 0 of port 1" in e.value.problem
    make_plan({1: a, 2: RtcWorker([(1, 0, 0, 0)])})     # the classic pair: fine


def test_a_hook_that_takes_packets_over_counts_them_as_taken(eal3, wire):
    from tests.cy import worker_hooks
    w = run(eal3, RtcWorker([(0, 0, 1, 0)], hook=worker_hooks.taker(), yield_after=wire.YIELD))
    wire.inject(0, wire.frames(64))
    wire.wait(lambda: w.stats()["rx"] == 64)
    finish(eal3, w)
    st = w.stats()
    sent = st["tx"]
    assert sent + st["taken"] == 64 and st["taken"] >= 32
    assert st["app_dropped"] == 0
    (hop,) = w.hop_stats()
    assert (hop["taken"], hop["app_dropped"], hop["tx"]) == (st["taken"], 0, sent)
    assert w.port_stats()[1] == {"rx": 0, "tx": sent, "dropped": 0}
    wire.bytes_and_free(wire.collect(1, sent))


def test_the_per_round_callback_runs_after_every_round(eal3, wire):
    from tests.cy import worker_hooks
    w = RtcWorker([(0, 0, 1, 0)], yield_after=wire.YIELD)
    rounds = worker_hooks.RoundCounter()
    rounds.install(w)
    run(eal3, w)
    wire.inject(0, wire.frames(10))
    wire.bytes_and_free(wire.collect(1, 10))
    wire.wait(lambda: rounds.rounds > 100)
    finish(eal3, w)
    # One hop: one poll per round, so the callback ran once per poll.
    assert rounds.rounds == w.stats()["polls"]


def test_every_worker_is_an_lcore_worker_with_one_set_of_counters(eal3, wire):
    from pypdk import stats
    from pypdk.worker import LcoreWorker, LCORE_STAT_NAMES, PyBurstWorker, Pipeline
    rtc = RtcWorker([(0, 0, 1, 0)])
    py = PyBurstWorker([(1, 0, 0, 0)], lambda b: b)
    pipe = Pipeline(rx=[(0, 0)], route={0: (1, 0)}, hooks=[None])
    assert LCORE_STAT_NAMES == stats.LCORE_COUNTERS
    for w in (rtc, py, *pipe.stages):
        assert isinstance(w, LcoreWorker)
        assert tuple(w.stats())[:len(LCORE_STAT_NAMES)] == LCORE_STAT_NAMES
    with pytest.raises(TypeError):
        LcoreWorker()
    pipe.close()
