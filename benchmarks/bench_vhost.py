"""net_vhost's per-packet cost, host only: the backend copying to and from a
guest ring that a Python frontend set up (pypdk.testing.vhost_frontend) and
a C loop drives (vhost_kernels.pyx).

Cases: guest tx (avail ring -> mbufs: rx_burst) and guest rx (mbufs ->
guest buffers with mergeable rx buffers: tx_burst), 64 and 1500-byte
frames, burst 32, the guest's interrupts suppressed (a polling guest) or
wanted (one eventfd write per burst). extra_info: ns per packet.
"""
import pytest

import pypdk.pmd
from pypdk.mempool import PktMbufPool
from pypdk.pmd.vhost import protocol as P
from pypdk.testing.vhost_frontend import Frontend, GuestMemory, VirtioNet, frame

BURST = 32
RING = 256
PACKETS = 2_000_000


@pytest.fixture
def rig(eal, tmp_path):
    pool = PktMbufPool("bench_vhost", 4096, cache_size=256)
    path = str(tmp_path / "bench.sock")
    port = pypdk.pmd.open("net_vhost0", iface=path)
    port.setup(pool, nb_rx_desc=RING, nb_tx_desc=RING)
    port.start()
    mem = GuestMemory(sizes=(8 << 20,))
    g = VirtioNet(Frontend.connect(path), mem, size=RING)
    yield port, pool, g
    g.fe.close()
    port.close()
    g.close()
    mem.close()
    pool.close()


def _prepare(g, direction, frame_len, interrupts):
    vq = g.txq() if direction == "guest tx" else g.rxq()
    for i in range(BURST):
        if direction == "guest tx":
            data = g.header() + frame(frame_len, i)
            gpa = g.mem.alloc(len(data))
            g.mem.write(gpa, data)
            vq.set_desc(i, gpa, len(data), 0)
        else:
            vq.set_desc(i, g.mem.alloc(2048), 2048, 2)       # device-writable
    vq.set_avail_flags(0 if interrupts else 1)
    return g.mem.host_addr(vq.avail)


@pytest.mark.parametrize("interrupts", [False, True], ids=["polling guest", "interrupts"])
@pytest.mark.parametrize("frame_len", [64, 1500])
@pytest.mark.parametrize("direction", ["guest tx", "guest rx"])
def test_vhost_copy(benchmark, rig, direction, frame_len, interrupts):
    from benchmarks import vhost_kernels as K
    port, pool, g = rig
    avail = _prepare(g, direction, frame_len, interrupts)
    rounds = PACKETS // BURST
    benchmark.group = f"vhost {direction} {frame_len} B"
    if direction == "guest tx":
        run = lambda: K.guest_tx(port.fp_addr, avail, RING, BURST, rounds)
    else:
        run = lambda: K.guest_rx(port.fp_addr, avail, pool.addr, RING, BURST, frame_len, rounds)
    ns, n = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert n == rounds * BURST, port.xstats()
    assert not any(v for k, v in port.xstats().items() if k.startswith("stop_"))
    benchmark.extra_info["ns_per_packet"] = round(ns, 2)
    benchmark.extra_info["mpps"] = round(1e3 / ns, 2)
