"""Thread and cpu time accounting for the benchmarks, read from /proc.

The machine is shared: a forwarding thread pinned to a cpu may still get
only part of it, so a rate alone does not say what the code does per
cpu-second. Each benchmark samples the CPU time its polling threads used
(/proc/PID/task/TID/stat: utime + stime, in clock ticks) and, on the veth
rig, how a cpu's time was split (/proc/stat: busy, softirq, steal), and
reports the shares beside its figures.

- `threads_cpu(pid)`: CPU seconds of each thread of a process, by name;
- `thread_cpu(pid, prefix)`: the sum over the threads whose name starts
  with `prefix` (pypdk's `lcore-1`, DPDK's `rte-worker`);
- `sample_until_exit(p, timeout)`: each thread's largest reading while a
  process runs (its lcore threads leave at teardown);
- `cpu_times()` / `cpu_shares(t0, t1, cpu)`: one cpu's shares between two
  /proc/stat samples.
"""
from __future__ import annotations

import os
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) each thread of `pid` has used, by thread name.

    Threads sharing a name are summed. Empty when the process is gone.
    """
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces: split after the last ')'.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[comm] = out.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def thread_cpu(pid: int, name_prefix: str) -> float:
    """CPU seconds (user + system) used by the threads of `pid` whose name starts with name_prefix."""
    return sum(v for k, v in threads_cpu(pid).items() if k.startswith(name_prefix))


def sample_until_exit(p: subprocess.Popen, timeout: float, period: float = 0.1) -> dict[str, float]:
    """Sample threads_cpu(p.pid) every `period` seconds until `p` exits; each
    thread name's largest reading. Threads that block before their loop
    starts and after it stops, as pypdk's lcores do, leave at teardown: their
    largest reading is the run's. `p` is killed once it outlives `timeout`
    seconds (from now)."""
    cpu: dict[str, float] = {}
    end = time.monotonic() + timeout
    while p.poll() is None:
        for k, v in threads_cpu(p.pid).items():
            cpu[k] = max(cpu.get(k, 0.0), v)
        if time.monotonic() > end:
            p.kill()
        time.sleep(period)
    return cpu


def cpu_times() -> dict[int, list[int]]:
    """/proc/stat per cpu: [user, nice, system, idle, iowait, irq, softirq, steal] in ticks."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                out[int(parts[0][3:])] = [int(x) for x in parts[1:9]]
    return out


def cpu_shares(t0: dict, t1: dict, cpu: int) -> dict[str, float]:
    """Shares of one cpu's time between two cpu_times() samples: busy, softirq, steal."""
    d = [b - a for a, b in zip(t0[cpu], t1[cpu])]
    total = sum(d) or 1
    return {"busy": round((total - d[3] - d[4]) / total, 3), "softirq": round(d[6] / total, 3),
            "steal": round(d[7] / total, 3)}
