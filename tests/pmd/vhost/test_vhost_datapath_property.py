"""Property test of the whole datapath under random rings: a guest whose
descriptor tables, avail ring and avail index are random (but laid out in its
memory) is polled both ways. Whatever it wrote, the bursts return, every
mbuf goes back to the pool, delivered frames are whole (pkt_len = the bytes
of their segments), and the port either keeps its frontend with nothing
counted as a stop or drops it with one known reason."""
import struct
import time

from hypothesis import given, settings, strategies as st, HealthCheck

import pypdk.pmd
from pypdk.pmd.vhost import protocol as P
from pypdk.pmd.vhost.port import STOP_REASONS
from pypdk.testing.vhost_frontend import Frontend, GuestMemory, VirtioNet, frame, MB, GOOD_FEATURES

SIZE = 16
REGION = (0x100000, MB)         # one region: GuestMemory(sizes=(MB,))


def desc_strategy():
    lo, size = REGION
    addr = st.one_of(st.integers(lo, lo + size), st.sampled_from([0, lo - 8, lo + size - 8]),
                     st.integers(0, 2 ** 64 - 1))
    length = st.one_of(st.integers(0, 2048), st.sampled_from([12, 2 ** 32 - 1]))
    return st.tuples(addr, length, st.integers(0, 7), st.integers(0, SIZE + 1))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(table=st.lists(desc_strategy(), min_size=SIZE, max_size=SIZE),
       heads=st.lists(st.integers(0, SIZE + 1), min_size=SIZE, max_size=SIZE),
       idx=st.one_of(st.integers(0, SIZE), st.integers(0, 0xffff)),
       ring=st.sampled_from(["tx", "rx"]), indirect=st.booleans())
def test_random_rings_never_crash_leak_or_hang(vhost, pool, table, heads, idx, ring, indirect):
    port = pypdk.pmd.ports()[0] if pypdk.pmd.ports() else vhost()
    mem = GuestMemory(sizes=(MB,))
    feats = GOOD_FEATURES | (P.bit(P.VIRTIO_RING_F_INDIRECT_DESC) if indirect else 0)
    g = VirtioNet(Frontend.connect(port.iface), mem, size=SIZE, features=feats)
    try:
        vq = g.txq() if ring == "tx" else g.rxq()
        for i, d in enumerate(table):
            vq.set_desc(i, *d)
        # Some plausible content where descriptors may point: headers and frames.
        mem.write(REGION[0] + 0x40000, bytes(12) + frame(200))
        mem.write(vq.avail + 4, struct.pack(f"<{SIZE}H", *heads))
        vq.set_avail_idx(idx)
        stops_before = sum(v for k, v in port.xstats().items() if k.startswith("stop_"))
        for _ in range(3):
            if ring == "tx":
                for m in port.rx_burst(0, 32):
                    assert m.pkt_len == len(m.bytes()) >= 14
                    m.free()
            else:
                ms = []
                for k in range(8):
                    m = pool.alloc()
                    m.append(frame(60 + 100 * k))
                    ms.append(m)
                n = port.tx_burst(0, ms)
                for m in ms[n:]:
                    m.free()
        end = time.monotonic() + 2          # a fault: wait for the control thread to count it
        while (port.info()["connected"] and not port.vring_state(1 if ring == "tx" else 0)["ready"]
               and time.monotonic() < end):
            time.sleep(0.005)
        stops = {k: v for k, v in port.xstats().items() if k.startswith("stop_") and v}
        assert set(k[5:] for k in stops) <= set(STOP_REASONS)
        assert sum(stops.values()) - stops_before in (0, 1)
    finally:
        g.fe.close()
        g.close()
        end = time.monotonic() + 2
        while port.info()["connected"] and time.monotonic() < end:
            time.sleep(0.005)
        mem.close()
    assert pool.in_use_count == 0
