"""Fixtures for the processing-model tests: an EAL whose worker lcores share
cpu 1 (so a 3-stage pipeline fits this 2-cpu machine), two net_ring ports
fed and drained from Python, and a pool that must be whole again afterwards."""
import time

import pytest

import pypdk.eal
import pypdk.pmd
from pypdk.mempool import Mbuf

# Worker lcores 1, 2, 3 all on cpu 1; workers built with yield_after let each other run.
LCORES = "0,(1-3)@1"
YIELD = 8


@pytest.fixture
def eal3():
    e = pypdk.eal.init(lcores=LCORES, no_huge=True)
    try:
        yield e
    finally:
        e.close()


class Wire:
    """Two net_ring ports; inject() feeds a port's rx ring from Python, collect()
    drains what a port transmitted."""
    YIELD = YIELD

    def __init__(self, pool, ports):
        self.pool = pool
        self.ports = ports

    @staticmethod
    def wait(pred, guard=10.0):
        """Poll pred() until true; the guard only protects against a hang."""
        end = time.monotonic() + guard
        while not pred():
            assert time.monotonic() < end, "the lcore never got there"
            time.sleep(0.001)

    @staticmethod
    def bytes_and_free(mbufs):
        out = [m.bytes() for m in mbufs]
        for m in mbufs:
            m.free()
        return out

    def frames(self, n, size=64):
        out = []
        for i in range(n):
            m = self.pool.alloc()
            body = bytes([0x02, 0, 0, 0, 0xdd, 0xdd]) + bytes([0x02, 0, 0, 0, 0x55, i & 0xff]) + b"\x08\x00"
            m.append(body + bytes((i + k) & 0xff for k in range(size - len(body))))
            out.append(m)
        return out

    def inject(self, port, mbufs):
        taken = self.ports[port].rx_ring(0).enqueue_burst(mbufs)
        assert taken == len(mbufs)

    def collect(self, port, n, guard=10.0):
        """Dequeue what port `port` transmitted until n packets came (guard: hang protection)."""
        got, end = [], time.monotonic() + guard
        ring = self.ports[port].tx_ring(0)
        while len(got) < n and time.monotonic() < end:
            got += [Mbuf.from_addr(a) for a in ring.dequeue_burst(256)]
            if len(got) < n:
                time.sleep(0.001)
        return got


@pytest.fixture
def wire(eal3, make_pool, request):
    """Ports 0 and 1 (net_ring, own rings), started, one queue each; pool leak-checked."""
    tx_size = getattr(request, "param", 1024)
    pool = make_pool(4096)
    ports = [pypdk.pmd.open("net_ring0", size=1024), pypdk.pmd.open("net_ring1", size=tx_size)]
    try:
        for p in ports:
            p.setup(pool, 1, 1)
            p.start()
        yield Wire(pool, ports)
    finally:
        for p in ports:
            p.close()

