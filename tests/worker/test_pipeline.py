"""Pipeline: rx stage -> ring -> worker stage(s) -> ring -> tx stage, each on
its own lcore; packets come out right, full rings are counted and freed, and
close() gives back whatever the rings still held."""
import pytest

from pypdk.errors import UsageError
from pypdk.worker import Pipeline, macswap, drop, make_plan


def launch(eal, pipe, lcores):
    plan = make_plan(pipe.workers(lcores), close=pipe.close)
    for lc, task in plan.tasks.items():
        eal.remote_launch(task, lc)
    return plan


def finish(eal, plan):
    plan.stop()
    assert all(v == 0 for v in eal.mp_wait_lcore().values())
    plan.close()


def test_three_stages_forward_and_rewrite(eal3, wire):
    pipe = Pipeline(rx=[(0, 0)], route={0: (1, 0)}, hooks=[macswap()], yield_after=wire.YIELD)
    assert [s.kind for s in pipe.stages] == ["rx", "worker", "tx"]
    plan = launch(eal3, pipe, [1, 2, 3])
    frames = wire.frames(1000)
    expect = [b[6:12] + b[0:6] + b[12:] for b in (m.bytes() for m in frames)]
    for i in range(0, 1000, 250):              # the rx ring holds 1023
        wire.inject(0, frames[i:i + 250])
    got = wire.bytes_and_free(wire.collect(1, 1000))
    finish(eal3, plan)
    assert got == expect
    st = pipe.stats()
    assert [st[n]["rx"] for n in ("pipe_rx", "pipe_w0", "pipe_tx")] == [1000, 1000, 1000]
    assert [st[n]["tx"] for n in ("pipe_rx", "pipe_w0", "pipe_tx")] == [1000, 1000, 1000]
    assert sum(s["ring_full"] + s["tx_dropped"] + s["no_route"] for s in st.values()) == 0
    assert pipe.port_stats() == {0: {"rx": 1000, "tx": 0, "dropped": 0}, 1: {"rx": 0, "tx": 1000, "dropped": 0}}
    assert set(plan.lcore_stats()) == {1, 2, 3}


def test_rx_straight_to_tx_routes_both_ways(eal3, wire):
    pipe = Pipeline(rx=[(0, 0), (1, 0)], route={0: 1, 1: 0}, yield_after=wire.YIELD)
    plan = launch(eal3, pipe, [1, 2])
    wire.inject(0, wire.frames(100))
    wire.inject(1, wire.frames(30))
    a, b = wire.collect(1, 100), wire.collect(0, 30)
    finish(eal3, plan)
    assert (len(a), len(b)) == (100, 30)
    assert {m.port for m in a} == {0} and {m.port for m in b} == {1}   # m.port: the input port
    wire.bytes_and_free(a + b)


def test_full_ring_is_back_pressure_counted_and_close_frees_the_rest(eal3, wire):
    # Only the rx stage runs: its ring (capacity 15) fills, the rest is dropped and counted.
    pipe = Pipeline(rx=[(0, 0)], route={0: (1, 0)}, hooks=[None], ring_size=16, yield_after=wire.YIELD)
    rx = pipe.stages[0]
    eal3.remote_launch(rx.lcore_function(), 1)
    wire.inject(0, wire.frames(100))
    wire.wait(lambda: rx.stats()["rx"] == 100)
    # A round that only dropped on the full ring is idle: the stage yields its cpu.
    wire.wait(lambda: rx.stats()["idle_yields"] > 0)
    rx.stop()
    eal3.wait_lcore(1)
    st = rx.stats()
    assert (st["tx"], st["ring_full"]) == (15, 85)
    assert wire.pool.in_use_count == 15
    assert pipe.close() == 15 and pipe.close() == 0
    assert wire.pool.in_use_count == 0


def test_packets_without_route_are_counted_and_freed(eal3, wire):
    pipe = Pipeline(rx=[(0, 0), (1, 0)], route={1: (0, 0)}, yield_after=wire.YIELD)
    plan = launch(eal3, pipe, [1, 2])
    wire.inject(0, wire.frames(50))            # m.port 0: no route
    wire.inject(1, wire.frames(20))
    back = wire.collect(0, 20)
    wire.wait(lambda: pipe.stages[-1].stats()["rx"] == 70)
    finish(eal3, plan)
    assert len(back) == 20
    wire.bytes_and_free(back)
    assert pipe.stages[-1].stats()["no_route"] == 50


def test_worker_stage_drops_are_counted(eal3, wire):
    pipe = Pipeline(rx=[(0, 0)], route={0: (1, 0)}, hooks=[drop()], yield_after=wire.YIELD)
    plan = launch(eal3, pipe, [1, 2, 3])
    wire.inject(0, wire.frames(64))
    wire.wait(lambda: pipe.stages[1].stats()["app_dropped"] == 64)
    finish(eal3, plan)
    assert pipe.stages[2].stats()["rx"] == 0


@pytest.mark.parametrize("kw, what", [
    ({"rx": [], "route": {0: 1}}, "no rx queue"),
    ({"rx": [(0, 0)], "route": {}}, "no route"),
    ({"rx": [(0, 5)], "route": {0: 1}}, "rx queue 5"),
    ({"rx": [(0, 0)], "route": {0: (1, 2)}}, "tx queue 2"),
    ({"rx": [(0, 0)], "route": {99: 1}}, "route key 99"),
    ({"rx": [(0, 0)], "route": {0: 1}, "hooks": ["nope"]}, "BurstHook"),
    ({"rx": [(0, 0)], "route": {0: 1}, "ring_size": 1000}, "power of two"),
])
def test_bad_pipelines_say_what_is_wrong(eal3, wire, kw, what):
    with pytest.raises(UsageError) as e:
        Pipeline(**kw)
    assert what in e.value.line()


def test_one_lcore_per_stage(eal3, wire):
    pipe = Pipeline(rx=[(0, 0)], route={0: 1}, hooks=[None, None])
    with pytest.raises(UsageError) as e:
        pipe.workers([1, 2, 3])
    assert "4 stages" in e.value.problem and "(1-4)@1" in e.value.fix


def test_close_releases_the_rings_and_a_closed_pipeline_cannot_run(eal3, wire):
    from pypdk.errors import StateError
    with Pipeline(rx=[(0, 0)], route={0: (1, 0)}, hooks=[None], ring_size=16,
                  yield_after=wire.YIELD) as pipe:
        rx = pipe.stages[0]
        eal3.remote_launch(rx.lcore_function(), 1)
        wire.inject(0, wire.frames(20))
        wire.wait(lambda: rx.stats()["rx"] == 20)
        rx.stop()
        eal3.wait_lcore(1)
        assert wire.pool.in_use_count == 15
    assert wire.pool.in_use_count == 0 and pipe.drained == 15 and pipe.rings == []
    assert pipe.close() == 0
    with pytest.raises(StateError):
        rx.lcore_function()
    with pytest.raises(StateError):
        pipe.workers([1, 2, 3])
