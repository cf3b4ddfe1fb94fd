"""`python -m pypdk.perf ring|mempool [--json]`: DPDK-style perf autotests.

Every figure is measured inside Cython (pypdk.perf.kernels) over enough
iterations to be stable, and printed as nanoseconds per object:
  ring     SP/SC and MP/MC, bulk and burst of 1, 8 and 32 on one lcore; then
           a producer lcore and a consumer lcore on different cpus.
  mempool  get+put of 1, 8, 32 objects with the per-lcore cache and without;
           mbuf alloc+free bulk of 32.
"""
from __future__ import annotations

import json
import sys

import click

from pypdk.errors import PypdkError

RING_OPS = 8_000_000      # objects per single-lcore ring case
MEMPOOL_OPS = 8_000_000


def ring_cases(eal, ops=RING_OPS):
    from pypdk.ring import Ring
    from pypdk.perf import kernels as k
    out = {}
    for single, mode in ((True, "SP/SC"), (False, "MP/MC")):
        r = Ring("perf_ring", 2048, sp=single, sc=single)
        for burst in (False, True):
            for bulk in (1, 8, 32):
                name = f"ring {mode} {'burst' if burst else 'bulk'} {bulk}"
                k.ring_enq_deq(r.addr, bulk, 10_000, single, burst)   # warm up
                out[name] = k.ring_enq_deq(r.addr, bulk, max(ops // bulk, 1), single, burst)
        if eal.worker_lcores:
            wl = eal.worker_lcores[0]
            for bulk in (8, 32):
                name = (f"ring {mode} burst {bulk} two lcores "
                        f"(cpu {eal.lcores[wl]} -> cpu {eal.lcores[eal.main_lcore]})")
                out[name] = k.ring_two_lcores(eal, wl, r.addr, bulk, ops // 2, single)
    return out


def mempool_cases(eal, ops=MEMPOOL_OPS):
    from pypdk.mempool import Mempool, PktMbufPool
    from pypdk.perf import kernels as k
    out = {}
    mp = Mempool("perf_mp", 8192, 2304, cache_size=256)
    try:
        for cache in (True, False):
            for bulk in (1, 8, 32):
                name = f"mempool get+put bulk {bulk} {'cache' if cache else 'no cache'}"
                k.mempool_get_put(mp.addr, bulk, 10_000, cache)
                out[name] = k.mempool_get_put(mp.addr, bulk, max(ops // bulk, 1), cache)
    finally:
        mp.free()
    pool = PktMbufPool("perf_mbuf", 8192, cache_size=256)
    try:
        k.mbuf_alloc_free(pool.addr, 32, 10_000)
        out["mbuf alloc+free bulk 32"] = k.mbuf_alloc_free(pool.addr, 32, ops // 32)
    finally:
        pool.free()
    return out


@click.command()
@click.argument("suite", type=click.Choice(["ring", "mempool", "all"]))
@click.option("--json", "as_json", is_flag=True, help="print one JSON object {case: ns_per_object}")
@click.option("-l", "--lcores", default="0-1", show_default=True,
              help="lcores: the main one consumes, a worker produces (two-lcore cases)")
@click.option("--no-huge", is_flag=True, help="use ordinary pages for the pools")
def main(suite, as_json, lcores, no_huge):
    """Measure ring and mempool costs in ns per object (like DPDK's perf autotests)."""
    from pypdk import eal as eal_mod
    try:
        eal = eal_mod.init(lcores=lcores, no_huge=no_huge)
    except PypdkError as e:
        click.echo(f"pypdk.perf: {e.line()}", err=True)
        sys.exit(2)
    try:
        results = {}
        if suite in ("ring", "all"):
            results.update(ring_cases(eal))
        if suite in ("mempool", "all"):
            results.update(mempool_cases(eal))
    finally:
        eal.cleanup()
    if as_json:
        click.echo(json.dumps({k: round(v, 3) for k, v in results.items()}))
    else:
        width = max(map(len, results))
        for name, ns in results.items():
            click.echo(f"{name:<{width}}  {ns:8.2f} ns/obj")


if __name__ == "__main__":
    main()
