"""Core lists: DPDK forms, compact printing, and an error for every bad list."""
import os

import pytest

from pypdk.eal import format_cpus, parse_lcores
from pypdk.eal.corelist import parse_cpulist
from pypdk.errors import UsageError

EIGHT = set(range(8))


@pytest.mark.parametrize("spec, expect", [
    ("2-5", {2: 2, 3: 3, 4: 4, 5: 5}),
    ("0,2,4", {0: 0, 2: 2, 4: 4}),
    ("1-3,7", {1: 1, 2: 2, 3: 3, 7: 7}),
    ("(0-3)@1", {0: 1, 1: 1, 2: 1, 3: 1}),
    ("0,(1-2)@1", {0: 0, 1: 1, 2: 1}),
    ("(0-2)@0,3@1", {0: 0, 1: 0, 2: 0, 3: 1}),
    ("(0,5,7)@(6)", {0: 6, 5: 6, 7: 6}),
    (" 4 - 5 ", {4: 4, 5: 5}),
    ("100@3", {100: 3}),
])
def test_dpdk_forms_map_lcores_to_cpus(spec, expect):
    assert parse_lcores(spec, available=EIGHT) == expect


def test_order_of_the_list_is_kept():
    assert list(parse_lcores("3,1,2", available=EIGHT)) == [3, 1, 2]


def test_default_availability_is_this_process_affinity():
    cpus = os.sched_getaffinity(0)
    assert parse_lcores(format_cpus(cpus)) == {c: c for c in cpus}


def test_a_list_this_machine_lacks_names_the_cpu_and_a_working_list():
    with pytest.raises(UsageError) as e:
        parse_lcores("2-5", available={0, 1})
    assert str(e.value) == ("lcore list '2-5': cpu 2 does not exist on this machine "
                            "(cpus available: 0-1); use e.g. --lcores 0-1")
    missing = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(UsageError, match=f"cpu {missing} does not exist on this machine"):
        parse_lcores(f"0,{missing}")
    if os.sched_getaffinity(0) == {0, 1}:
        with pytest.raises(UsageError, match="cpu 2 does not exist.*use e.g. --lcores 0-1"):
            parse_lcores("2-5")


def test_a_group_on_a_missing_cpu_is_refused():
    with pytest.raises(UsageError, match=r"cpu 9 does not exist .*available: 0-7"):
        parse_lcores("(0-3)@9", available=EIGHT)


@pytest.mark.parametrize("spec, problem", [
    ("1,2,1", "lcore 1 is given twice"),
    ("0-3,(2-3)@1", "lcore 2 is given twice"),
    ("5-2", "range 5-2 is reversed; write it low-high: 2-5"),
    ("(3-1)@0", "range 3-1 is reversed"),
    ("abc", "'abc' is not an lcore number or range"),
    ("1-", "'1-' is not an lcore number or range"),
    ("0,,1", "empty element"),
    ("", "the list is empty"),
    ("(0-3@1", "unbalanced parentheses"),
    ("(0-3)@x", "'x' is not a cpu number or range"),
    ("(0-3)@(0-1)", "puts lcores on several cpus"),
    ("128@0", "lcore 128 is out of range (lcore ids are 0-127)"),
    ("(126-130)@1", "lcore 128 is out of range"),
    ("-1", "'-1' is not an lcore number or range"),
])
def test_bad_lists_name_the_problem_and_a_fix(spec, problem):
    with pytest.raises(UsageError) as e:
        parse_lcores(spec, available=EIGHT)
    msg = str(e.value)
    assert msg.startswith(f"lcore list '{spec}': ")
    assert problem in msg
    assert "; " in msg and "\n" not in msg  # problem; fix on one line
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("cpus, text", [
    ({0, 1, 4}, "0-1,4"), ({3}, "3"), (set(), ""), ({0, 2, 3, 4, 7, 8}, "0,2-4,7-8"),
])
def test_format_cpus_is_compact_and_round_trips(cpus, text):
    assert format_cpus(cpus) == text
    assert parse_cpulist(text) == cpus
