"""Worker lcores: pinned named threads, lcore ids, real parallelism, launch/wait semantics."""
import errno
import os
import threading

import pytest

import pypdk.eal
from pypdk.eal import LCORE_ID_ANY
from pypdk.errors import StateError, UsageError
from tests.cy import lcore_kernels as K


def thread_names():
    base = "/proc/self/task"
    out = []
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/comm") as f:
                out.append(f.read().strip())
        except FileNotFoundError:
            pass
    return out


def test_init_describes_the_lcores(eal):
    assert eal.lcores == {0: 0, 1: 1}
    assert (eal.main_lcore, eal.worker_lcores, eal.sockets) == (0, [1], [0])
    assert eal.socket_of(1) == 0
    assert pypdk.eal.current() is eal
    assert "lcore-1" in thread_names()


def test_python_callable_runs_pinned_on_its_lcore(eal):
    eal.remote_launch(lambda: (os.sched_getaffinity(0), pypdk.eal.lcore_id(), threading.get_ident()), 1)
    cpus, lcore, ident = eal.wait_lcore(1)
    assert cpus == {1} and lcore == 1 and ident != threading.get_ident()


def test_main_thread_is_the_main_lcore_until_cleanup(eal):
    from pypdk.eal.corelist import usable_cpus
    assert pypdk.eal.lcore_id() == 0 and K.c_lcore_id() == 0
    assert os.sched_getaffinity(0) == {0}
    before_eal = usable_cpus()  # the affinity init saved
    seen = []
    t = threading.Thread(target=lambda: seen.append(pypdk.eal.lcore_id()))
    t.start()
    t.join()
    assert seen == [LCORE_ID_ANY]
    eal.close()
    assert pypdk.eal.lcore_id() == LCORE_ID_ANY
    assert os.sched_getaffinity(0) == before_eal and {0, 1} <= before_eal


def test_c_function_sees_the_worker_lcore_id(eal):
    eal.remote_launch(K.lcore_id_function(), 1)
    assert eal.wait_lcore(1) == 1


def test_worker_and_main_spin_at_the_same_time(eal):
    # lcore 1 (cpu 1) and the main thread (cpu 0) bump counters without the
    # GIL; each must see the other's counter move while it is spinning itself.
    spin = K.SpinTest(2)
    eal.remote_launch(spin.function(1), 1)
    here = spin.run_here(0)
    there = eal.wait_lcore(1)
    assert (here, there) == (0, 0), (spin.counts(), spin.seen(0), spin.seen(1))
    assert spin.seen(0)[1] >= 200000 and spin.seen(1)[0] >= 200000


def test_two_workers_run_together_with_groups():
    # lcores 0,1 share cpu 0 (the main thread just waits), lcore 2 is on cpu 1.
    with pypdk.eal.init("(0-1)@0,2@1") as eal:
        assert eal.lcores == {0: 0, 1: 0, 2: 1} and eal.worker_lcores == [1, 2]
        spin = K.SpinTest(2)
        eal.remote_launch(spin.function(0), 1)
        eal.remote_launch(spin.function(1), 2)
        assert eal.mp_wait_lcore() == {1: 0, 2: 0}
        assert spin.seen(0)[1] >= 200000 and spin.seen(1)[0] >= 200000
        eal.mp_remote_launch(lambda: (pypdk.eal.lcore_id(), os.sched_getaffinity(0)))
        assert eal.mp_wait_lcore() == {1: (1, {0}), 2: (2, {1})}


def test_launch_on_a_busy_lcore_is_ebusy_and_wait_returns_the_value(eal):
    gate = K.Gate(ret=42)
    eal.remote_launch(gate.function(), 1)
    try:
        while not gate.entered:
            pass
        assert eal.lcore_state(1) == "RUNNING"
        with pytest.raises(StateError, match=r"lcore 1 is busy \(EBUSY\).*wait_lcore\(1\)") as e:
            eal.remote_launch(lambda: None, 1)
        assert e.value.errno == errno.EBUSY
        with pytest.raises(StateError, match="busy"):
            eal.mp_remote_launch(lambda: None)
    finally:
        gate.open()
    assert eal.wait_lcore(1) == 42
    assert eal.lcore_state(1) == "WAIT"
    assert eal.wait_lcore(1) == 0  # nothing running: 0 at once


def test_finished_lcore_can_be_relaunched_and_keeps_the_latest_result(eal):
    eal.remote_launch(lambda: "first", 1)
    while eal.lcore_state(1) != "FINISHED":
        pass
    eal.remote_launch(lambda x: x * 2, 1, arg=21)
    assert eal.wait_lcore(1) == 42


def test_exception_in_a_python_function_is_raised_by_wait(eal):
    def boom():
        raise KeyError("on the lcore")
    eal.remote_launch(boom, 1)
    with pytest.raises(KeyError, match="on the lcore"):
        eal.wait_lcore(1)
    eal.remote_launch(boom, 1)
    with pytest.raises(KeyError):
        eal.mp_wait_lcore()


def test_launch_targets_must_be_worker_lcores(eal):
    with pytest.raises(UsageError, match="lcore 0 is the main lcore"):
        eal.remote_launch(lambda: None, 0)
    with pytest.raises(UsageError, match="lcore 5 is not an EAL lcore; launch on a worker lcore: 1"):
        eal.remote_launch(lambda: None, 5)
    with pytest.raises(UsageError, match="cannot launch 3"):
        eal.remote_launch(3, 1)
    with pytest.raises(UsageError, match="carries its own arg"):
        eal.remote_launch(K.lcore_id_function(), 1, arg=1)


def test_close_joins_workers_and_is_idempotent():
    eal = pypdk.eal.init("0-1")
    gate = K.Gate(ret=7)
    eal.remote_launch(gate.function(), 1)
    while not gate.entered:
        pass
    threading.Timer(0.2, gate.open).start()  # close waits for the running function
    eal.close()
    assert "lcore-1" not in thread_names()
    eal.close()
    with pytest.raises(StateError, match=r"^EAL not initialised; call pypdk.eal.init\(\) first$"):
        pypdk.eal.current()
    with pytest.raises(StateError, match="this EAL was closed"):
        eal.remote_launch(lambda: None, 1)


def test_one_eal_per_process(eal):
    with pytest.raises(StateError, match=r"EAL already initialised \(lcores 0-1\)"):
        pypdk.eal.init("0-1")
    assert pypdk.eal.current() is eal


def test_main_lcore_option():
    with pypdk.eal.init("0-1", main_lcore=1) as eal:
        assert (eal.main_lcore, eal.worker_lcores) == (1, [0])
        assert os.sched_getaffinity(0) == {1} and pypdk.eal.lcore_id() == 1
        eal.remote_launch(lambda: os.sched_getaffinity(0), 0)
        assert eal.wait_lcore(0) == {0}
    with pytest.raises(UsageError, match="--main-lcore 3 is not in the lcore list '0-1'; pick one of 0-1"):
        pypdk.eal.init("0-1", main_lcore=3)


def test_bad_options_leave_no_eal():
    threads = len(thread_names())
    missing = max(os.sched_getaffinity(0)) + 1
    for kwargs, problem in [
        (dict(lcores=f"0,{missing}"), f"cpu {missing} does not exist on this machine"),
        (dict(lcores="0-1", log_level="loud"), "--log-level 'loud' is unknown"),
        (dict(lcores="0-1", file_prefix="a/b"), "--file-prefix 'a/b' is not a plain name"),
        (dict(lcores="0-1", memory=64, socket_mem="64"), "-m and --socket-mem both given"),
        (dict(lcores="0-1", no_huge=True, socket_mem="64"), "--no-huge with --huge-dir or --socket-mem"),
        (dict(lcores="0-1", socket_mem="0,64"), "NUMA node 1, which does not exist"),
        (dict(lcores="0-1", memory="lots"), "-m 'lots' is not a number of megabytes"),
    ]:
        with pytest.raises(UsageError) as e:
            pypdk.eal.init(**kwargs)
        assert problem in str(e.value)
    with pytest.raises(StateError):
        pypdk.eal.current()
    assert len(thread_names()) == threads


def test_memory_check_at_init_is_clear_and_changes_nothing():
    from pypdk.eal import hugepages as hp
    mb2 = 2 << 20
    free = hp.free_pages(mb2)
    before = hp.pool(mb2)
    need = free + 100
    with pytest.raises(pypdk.ResourceError) as e:
        pypdk.eal.init("0-1", memory=need * 2)
    assert str(e.value).startswith(f"need {need} free 2 MiB hugepages for -m {need * 2} ({free} free); "
                                   "reserve them with `python -m pypdk.eal.hugepages --reserve ")
    with pytest.raises(pypdk.ResourceError, match=rf"need {need} free 2 MiB hugepages on node 0 for --socket-mem"):
        pypdk.eal.init("0-1", socket_mem=str(need * 2))
    assert hp.pool(mb2) == before
    with pytest.raises(StateError):
        pypdk.eal.current()
    with pypdk.eal.init("0-1", memory=2) as eal:  # enough: fine
        assert eal.memory == 2
