"""DPDK-style core lists: which lcore ids exist and which cpu each one runs on.

An lcore is a logical execution unit of the EAL (one pinned thread); a cpu is
what the kernel schedules on. The plain forms number both the same way:

    "2-5"         lcores 2,3,4,5 on cpus 2,3,4,5
    "0,2,4"       lcores 0,2,4 on cpus 0,2,4
    "1-3,7"       lcores 1,2,3,7 on the same cpus

and the group form of DPDK's ``--lcores`` puts several lcores on one cpu:

    "(0-3)@1"     lcores 0..3 all on cpu 1
    "0,(1-2)@1"   lcore 0 on cpu 0, lcores 1 and 2 on cpu 1
    "4@0"         lcore 4 on cpu 0

An lcore maps to exactly one cpu here (DPDK also accepts a cpu *set* after the
``@``; we do not, because every pypdk lcore is pinned to a single cpu).

This module is the only place that parses or prints cpu/core lists: the EAL,
the CLI and the sysfs readers (``topology``, ``hugepages``) all use it. Every
error is a ``UsageError`` whose one line names the list, the problem and a fix.
"""
from __future__ import annotations

import os
import re

from pypdk.errors import UsageError

PD_MAX_LCORE = 128  # pd_config.h

# The cpus this process may use, recorded by the EAL before it pins the main
# thread to the main lcore's cpu (sched_getaffinity(0) is per thread, so after
# pinning it would report only that one cpu). None while no EAL is live.
_affinity_before_eal: frozenset[int] | None = None

_NUM_OR_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def usable_cpus() -> set[int]:
    """The cpus this process may run on (its affinity before any EAL pinning)."""
    if _affinity_before_eal is not None:
        return set(_affinity_before_eal)
    return set(os.sched_getaffinity(0))


def format_cpus(cpus) -> str:
    """Print a set of cpu (or lcore) numbers compactly: {0,1,4} -> "0-1,4"."""
    out = []
    nums = sorted(set(cpus))
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(out)


def parse_cpulist(text: str) -> set[int]:
    """Parse the kernel's cpulist format ("0-3,8-11", "" for none) into a set.

    Used for sysfs files; raises ValueError on malformed text.
    """
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part.strip():
            continue
        m = _NUM_OR_RANGE.match(part)
        if not m:
            raise ValueError(f"bad cpulist {text!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        cpus.update(range(lo, hi + 1))
    return cpus


def _split_top(spec: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in spec:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_lcores(spec: str, available=None) -> dict[int, int]:
    """Parse a DPDK core list into {lcore id: cpu id}.

    Args:
        spec: "2-5", "0,2,4", "1-3,7", "(0-3)@1", "0,(1-2)@1" (see the module doc).
        available: the cpus that exist; default: this process's cpu affinity
            (``os.sched_getaffinity(0)`` before any EAL pinning). Tests pass a fake set.

    Returns:
        dict lcore -> cpu, in the order the list names them.

    Raises:
        UsageError: garbage, a reversed range, a duplicate lcore, an lcore id
            >= 128, or a cpu this machine lacks.
    """
    if not isinstance(spec, str):
        spec = ",".join(str(x) for x in spec) if isinstance(spec, (list, tuple, set, range)) else str(spec)
    avail = set(usable_cpus() if available is None else available)
    avail_txt = format_cpus(avail) if avail else "none"

    def bad(problem: str, fix: str) -> UsageError:
        return UsageError(f"lcore list '{spec}': {problem}", fix)

    def nums(text: str, what: str) -> list[int]:
        """'3' or '1-4' -> list; a reversed or malformed range is an error."""
        m = _NUM_OR_RANGE.match(text)
        if not m:
            article = "an" if what == "lcore" else "a"
            raise bad(f"'{text.strip()}' is not {article} {what} number or range",
                      "write numbers and ranges like 0-3,5 or (0-3)@1")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise bad(f"range {lo}-{hi} is reversed", f"write it low-high: {hi}-{lo}")
        return list(range(lo, hi + 1))

    if not spec.strip():
        raise bad("the list is empty", f"give at least one lcore, e.g. --lcores {avail_txt}")
    if spec.count("(") != spec.count(")"):
        raise bad("unbalanced parentheses", "write groups like (0-3)@1")

    mapping: dict[int, int] = {}
    for elem in _split_top(spec):
        elem = elem.strip()
        if not elem:
            raise bad("empty element (two commas in a row?)", "remove the extra comma")
        lhs, at, rhs = elem.partition("@")
        lhs, rhs = lhs.strip(), rhs.strip()
        if lhs.startswith("("):
            if not lhs.endswith(")") or lhs.count("(") != 1:
                raise bad(f"malformed group '{elem}'", "write groups like (0-3)@1")
            lcores = []
            for item in lhs[1:-1].split(","):
                lcores.extend(nums(item, "lcore"))
        else:
            if "(" in lhs or ")" in lhs:
                raise bad(f"malformed group '{elem}'", "write groups like (0-3)@1")
            lcores = nums(lhs, "lcore")
        if at:
            cpu_txt = rhs[1:-1] if rhs.startswith("(") and rhs.endswith(")") else rhs
            if "(" in cpu_txt or ")" in cpu_txt:
                raise bad(f"malformed cpu in '{elem}'", "write groups like (0-3)@1")
            cpus = nums(cpu_txt, "cpu")
            if len(cpus) != 1:
                raise bad(f"'{elem}' puts lcores on several cpus",
                          "each lcore is pinned to one cpu: write e.g. (0-3)@1")
            pairs = [(lc, cpus[0]) for lc in lcores]
        else:
            pairs = [(lc, lc) for lc in lcores]
        for lc, cpu in pairs:
            if lc >= PD_MAX_LCORE:
                raise bad(f"lcore {lc} is out of range (lcore ids are 0-{PD_MAX_LCORE - 1})",
                          f"renumber it with a group, e.g. (0-3)@{cpu}")
            if lc in mapping:
                raise bad(f"lcore {lc} is given twice", "name each lcore once")
            if cpu not in avail:
                raise bad(f"cpu {cpu} does not exist on this machine (cpus available: {avail_txt})",
                          f"use e.g. --lcores {avail_txt}")
            mapping[lc] = cpu
    return mapping
