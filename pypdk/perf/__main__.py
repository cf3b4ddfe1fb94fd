"""`python -m pypdk.perf ring|mempool|all|af_xdp [--json]`: DPDK-style perf autotests.

Every figure is measured inside Cython (pypdk.perf.kernels, pypdk.perf.traffic)
over enough iterations to be stable:
  ring     SP/SC and MP/MC, bulk and burst of 1, 8 and 32 on one lcore; then
           a producer lcore and a consumer lcore on different cpus (ns/object).
  mempool  get+put of 1, 8, 32 objects with the per-lcore cache and without;
           mbuf alloc+free bulk of 32 (ns/object).
  all      ring, then mempool.
  af_xdp   net_af_xdp receive-and-drop on a veth pair, fed by a sender on the
           other end (Mpps; pypdk.perf.veth_rxdrop).
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
        mp.close()
    pool = PktMbufPool("perf_mbuf", 8192, cache_size=256)
    try:
        k.mbuf_alloc_free(pool.addr, 32, 10_000)
        out["mbuf alloc+free bulk 32"] = k.mbuf_alloc_free(pool.addr, 32, ops // 32)
    finally:
        pool.close()
    return out


def _eal(lcores, no_huge):
    from pypdk import eal as eal_mod
    try:
        return eal_mod.init(lcores=lcores, no_huge=no_huge)
    except PypdkError as e:
        click.echo(f"pypdk.perf: {e.line()}", err=True)
        sys.exit(2)


def _suite_options(f):
    f = click.option("--no-huge", is_flag=True, help="use ordinary pages for the pools")(f)
    f = click.option("-l", "--lcores", default="0-1", show_default=True,
                     help="lcores: the main one consumes, a worker produces (two-lcore cases)")(f)
    return click.option("--json", "as_json", is_flag=True,
                        help="print one JSON object {case: ns_per_object}")(f)


def _run_suites(suites, as_json, lcores, no_huge):
    eal = _eal(lcores, no_huge)
    try:
        results = {}
        if "ring" in suites:
            results.update(ring_cases(eal))
        if "mempool" in suites:
            results.update(mempool_cases(eal))
    finally:
        eal.close()
    if as_json:
        click.echo(json.dumps({k: round(v, 3) for k, v in results.items()}))
    else:
        width = max(map(len, results))
        for name, ns in results.items():
            click.echo(f"{name:<{width}}  {ns:8.2f} ns/obj")


@click.group()
def main():
    """Measure ring, mempool and port costs (like DPDK's perf autotests)."""


@main.command()
@_suite_options
def ring(as_json, lcores, no_huge):
    """Ring enqueue+dequeue in ns per object."""
    _run_suites(("ring",), as_json, lcores, no_huge)


@main.command()
@_suite_options
def mempool(as_json, lcores, no_huge):
    """Mempool get+put and mbuf alloc+free in ns per object."""
    _run_suites(("mempool",), as_json, lcores, no_huge)


@main.command("all")
@_suite_options
def all_suites(as_json, lcores, no_huge):
    """ring, then mempool."""
    _run_suites(("ring", "mempool"), as_json, lcores, no_huge)


@main.command("af_xdp")
@click.option("--seconds", type=float, default=5.0, show_default=True, help="how long the sender sends")
@click.option("--size", type=int, default=64, show_default=True, help="frame size in bytes")
@click.option("--mode", type=click.Choice(["native", "generic", "auto"]), default="auto",
              show_default=True, help="the XDP mode of both ports")
@click.option("-l", "--lcores", default="0-1", show_default=True,
              help="lcores: the main one sends, a worker receives")
@click.option("--no-huge", is_flag=True, help="use ordinary pages for the pools")
@click.option("--nb-desc", type=int, default=8192, show_default=True, help="receiver's rx/fill ring size")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def af_xdp(seconds, size, mode, lcores, no_huge, nb_desc, as_json):
    """net_af_xdp receive-and-drop on a veth pair, in Mpps (needs root and 2 lcores)."""
    from pypdk.perf import veth_rxdrop
    try:
        r = veth_rxdrop.run(seconds, size, mode, lcores, no_huge, nb_desc)
    except PypdkError as e:
        click.echo(f"pypdk.perf: {e.line()}", err=True)
        sys.exit(2)
    click.echo(json.dumps(r) if as_json else veth_rxdrop.summary(r))


if __name__ == "__main__":
    main()
