"""Receive-and-drop rate of net_af_xdp on a veth pair (`python -m pypdk.perf af_xdp`).

    python -m pypdk.perf af_xdp [--seconds 5] [--size 64] [--mode native|generic|auto]
                                [--lcores 0-1] [--no-huge] [--nb-desc 8192] [--json]

Makes a veth pair (deleted after), opens an AF_XDP port on each end: the
receiver's queue 0 is polled by `RxDrop` on a worker lcore, the sender's
`TxBlast` runs on the main lcore without the GIL, sending one UDP frame of
`--size` bytes over and over (both from pypdk.perf.traffic). Both nogil
loops, no Python per packet. Prints tx and rx Mpps and the kernel's drop
counters. Needs root and 2 lcores. The receiver's rings are deep (8192) so
that a scheduling gap on a shared cpu does not show up as kernel drops. On
veth, AF_XDP is copy mode both ways (the kernel copies each frame into/out
of the UMEM, and builds an skb for each sent one), so this measures the
kernel's veth/XDP path as much as pypdk.
"""
from __future__ import annotations

import time

from pypdk.testing import netns as _n


def frame(size: int, dst_mac: bytes, src_mac: bytes) -> bytes:
    """An Ethernet/IPv4/UDP frame of `size` bytes (checksums left 0)."""
    size = max(size, 60)
    ip_len = size - 14
    ip = bytearray(20)
    ip[0] = 0x45
    ip[2:4] = ip_len.to_bytes(2, "big")
    ip[8] = 64
    ip[9] = 17
    ip[12:16] = bytes([10, 99, 0, 2])
    ip[16:20] = bytes([10, 99, 0, 1])
    udp = bytearray(8)
    udp[0:2] = (40000).to_bytes(2, "big")
    udp[2:4] = (9).to_bytes(2, "big")
    udp[4:6] = (ip_len - 20).to_bytes(2, "big")
    payload = bytes(ip_len - 28)
    return dst_mac + src_mac + b"\x08\x00" + bytes(ip) + bytes(udp) + payload


def run(seconds=5.0, size=64, mode="auto", lcores="0-1", no_huge=False, nb_desc=8192) -> dict:
    """Measure; returns {'tx_mpps', 'rx_mpps', 'rx_packets', ...}."""
    import pypdk.eal
    import pypdk.pmd
    from pypdk.mempool.mbuf import PktMbufPool
    from pypdk.perf.traffic import RxDrop, TxBlast

    eal = pypdk.eal.init(lcores=lcores, no_huge=no_huge)
    worker = eal.worker_lcores[0]
    try:
        with _n.veth_pair() as (a, b):
            for ifc in (a, b):
                _n.disable_ipv6(ifc)
                _n.set_link(ifc, None, "up")
            rx_pool = PktMbufPool("bench_rx", max(16384, 2 * nb_desc))
            tx_pool = PktMbufPool("bench_tx", 8192)
            rx = pypdk.pmd.open(f"net_af_xdp90,iface={a},mode={mode}")
            tx = pypdk.pmd.open(f"net_af_xdp91,iface={b},mode={mode}")
            try:
                rx.setup(rx_pool, 1, 1, nb_desc, nb_desc)
                tx.setup(tx_pool, 1, 1, 256, nb_desc)
                rx.start()
                tx.start()
                sink = RxDrop([(rx, 0)])
                src = TxBlast(tx, 0, tx_pool, frame(size, rx.mac, tx.mac))
                sink.launch(eal, worker)
                t0 = time.monotonic()
                src.run(seconds)
                t1 = time.monotonic()
                time.sleep(0.1)            # let the last frames arrive
                sink.stop()
                st = rx.stats()
                xs = rx.xstats()
                out = {
                    "seconds": round(t1 - t0, 3), "size": size, "xdp_mode": rx.info()["xdp_mode"],
                    "tx_packets": src.sent, "rx_packets": sink.total,
                    "tx_mpps": round(src.sent / (t1 - t0) / 1e6, 3),
                    "rx_mpps": round(sink.total / (t1 - t0) / 1e6, 3),
                    "rx_imissed": st["imissed"], "rx_nombuf": st["rx_nombuf"],
                    "rx_kernel_ring_full": xs.get("q0_kernel_rx_ring_full", 0),
                    "rx_kernel_fill_empty": xs.get("q0_kernel_rx_fill_ring_empty_descs", 0),
                    "tx_not_taken": src.not_taken, "tx_kicks": tx.xstats()["tx_kicks"],
                }
            finally:
                rx.close()
                tx.close()
                for p in ("rx_pool", "tx_pool"):
                    if p in locals():
                        locals()[p].close()
    finally:
        eal.close()
    return out


def summary(r: dict) -> str:
    """The one-line report of a run() result."""
    return (f"net_af_xdp veth {r['xdp_mode']} {r['size']}B, {r['seconds']} s: "
            f"tx {r['tx_mpps']} Mpps, rx-and-drop {r['rx_mpps']} Mpps "
            f"(rx {r['rx_packets']} of {r['tx_packets']} sent; kernel missed {r['rx_imissed']}, "
            f"fill empty {r['rx_kernel_fill_empty']}, rx ring full {r['rx_kernel_ring_full']})")
