"""net_e1000 and net_virtio through vfio-pci in a vIOMMU guest: pypdk l2fwd against testpmd.

One guest (TCG, 2 vCPUs, the q35 vIOMMU) with four emulated NICs whose wires are UDP sockets
of this process: two 82540EMs (00:04.0, 00:05.0) and two modern virtio-nets behind the IOMMU
(00:06.0, 00:07.0), all bound to vfio-pci, 512 MiB of 2 MiB hugepages reserved. For each pair,
the two contenders run in turn in the same guest, round after round:

    pypdk:   pypdk-run apps/l2fwd -l 0-1 -a A -a B -- --no-mac-updating
    testpmd: dpdk-testpmd -l 0-1 -a A -a B --iova-mode=va -- --forward-mode=io
                 --total-num-mbufs=8192 --mbcache=256 --rxd=1024 --txd=1024 --stats-period 1

The same pool (8192 mbufs, l2fwd's size for two ports), per-lcore cache (256), ring sizes
(1024; virtio's rings are the device's 256 on both sides), burst (32), one forwarding lcore,
IOVA = VA, promiscuous ports, hugepages on both sides. Once a contender polls (and 2.5 s
more: QEMU's e1000 blanks reception for about a second after RCTL.EN), a sender process on
the host blasts the same 60-byte frames into NIC A for `--duration` seconds, as fast as it
can; a receiver thread counts what leaves NIC B (frames received, plus those the host
socket dropped with a full buffer: they did leave the NIC; the drivers' own tx counts are kept
as a check). Forwarded pps = frames out of B during the blast / its duration. The host cpu
time QEMU's vCPU 1 thread (the forwarding lcore) got during the blast is recorded too, and the
rate per cpu-second of it: on a shared machine that is the steadier figure.

Register writes (each one a VM exit to QEMU's device model): QEMU runs with the trace event
`memory_region_ops_write` (every MMIO write the guest makes, with its region's name and
offset) logged to a file, and the lines written during a contender's blast (and the second
of drain after it) are counted: e1000 TDT (0x3818) and RDT (0x2818) writes on the
`e1000-mmio` regions, virtio queue notifications on the `virtio-pci-notify-virtio-net`
regions. A notification QEMU takes through an ioeventfd never reaches that trace point, so
the virtio-nets run with `ioeventfd=off` while tracing (the guest's write is then handled
in its vCPU thread; `--no-trace` keeps QEMU's default). The same count for both
contenders; pypdk's own xstats (`tx_q0_tail_writes`, `rx_q0_tail_writes`,
`tx_q0_notifies`, `rx_q0_notifies`) are reported beside it as a check.

Absolute rates mean little under TCG (the guest's code is emulated, the host's two cpus are
shared with QEMU's threads and the sender); compare the ratio within one run.

    python -m benchmarks.bench_vfio_guest --rounds 3 [--duration 4] [--cases e1000,virtio]
"""
from __future__ import annotations

import collections
import json
import multiprocessing
import os
import re
import socket
import statistics
import tempfile
import threading
import time

from benchmarks.cpu_time import threads_cpu
from pypdk.testing import vm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# l2fwd's sizes (apps/l2fwd/app.py: NB_RXD, NB_TXD, POOL_CACHE, its pool for two ports).
NB_DESC, POOL_CACHE, NB_MBUFS, BURST = 1024, 256, 8192, 32
PAIRS = {"e1000": ("0000:00:04.0", "0000:00:05.0"), "virtio": ("0000:00:06.0", "0000:00:07.0")}
MACS = {"0000:00:04.0": "52:54:00:00:00:04", "0000:00:05.0": "52:54:00:00:00:05",
        "0000:00:06.0": "52:54:00:00:00:06", "0000:00:07.0": "52:54:00:00:00:07"}
E1000_RDT, E1000_TDT, E1000_BAR0_SIZE = 0x2818, 0x3818, 0x20000
VIRTIO_DEV = "virtio-net-pci,disable-legacy=on,iommu_platform=on"     # vm.udp_net("virtio")
SETTLE = 2.5            # after the contender polls: QEMU's e1000 blanks rx ~1 s after RCTL.EN
DRAIN = 1.0
_TRACE_RE = re.compile(r"memory_region_ops_write .*?mr (0x[0-9a-f]+) addr (0x[0-9a-f]+) "
                       r"value (0x[0-9a-f]+) size (\d+) name '([^']*)'")


def frames(n: int = 64) -> list[bytes]:
    """The blast's frames: 60 bytes (64 on the wire with the CRC), distinct payloads."""
    return [(bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + i.to_bytes(4, "big"))
            .ljust(60, b"\x5a") for i in range(n)]


def _blast(port: int, seconds: float, counter) -> None:
    """Send frames to 127.0.0.1:port as fast as one process can for `seconds`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    fs = frames()
    send = s.send
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for f in fs:
            try:
                send(f)
            except OSError:         # ENOBUFS / ECONNREFUSED under load: the frame is lost
                pass
        sent += len(fs)
    counter.value = sent
    s.close()


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped on the host's socket bound to 127.0.0.1:port (a full
    receive buffer: the frames did leave the NIC), from /proc/net/udp."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want:
                return int(fields[-1])
    return 0


class Counter:
    """Counts the datagrams arriving on a UdpWire, with the time of each count change."""

    def __init__(self, wire: vm.UdpWire):
        self.wire = wire
        self.n = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.wire.sock.settimeout(0.1)
        recv = self.wire.sock.recv
        while not self.stop.is_set():
            try:
                recv(2048)
                self.n += 1
            except socket.timeout:
                pass

    def seen(self) -> int:
        """Frames that arrived: received, or dropped by a full socket buffer."""
        return self.n + udp_drops(self.wire.port)

    def drain(self, idle: float = 0.5) -> None:
        last = -1
        while last != self.seen():
            last = self.seen()
            time.sleep(idle)

    def close(self):
        self.stop.set()
        self.t.join()


class Trace:
    """QEMU's memory_region_ops_write log: counts of register writes between two offsets.

    QEMU 7.2 logs the absolute address of the write; a register's offset is that address
    within its BAR (the e1000's BAR0 is 128 KiB, aligned)."""

    def __init__(self, path: str):
        self.path = path

    def offset(self) -> int:
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    def writes(self, start: int, end: int) -> collections.Counter:
        c: collections.Counter = collections.Counter()
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read(end - start).decode(errors="replace")
        for m in _TRACE_RE.finditer(data):
            _, addr, _, _, name = m.groups()
            if name == "e1000-mmio":
                off = int(addr, 16) & (E1000_BAR0_SIZE - 1)
                c[{E1000_TDT: "e1000 TDT", E1000_RDT: "e1000 RDT"}.get(off, "e1000 other")] += 1
            elif name == "virtio-pci-notify-virtio-net":
                c["virtio notify"] += 1
            elif name.startswith("virtio-pci-") and name.endswith("virtio-net"):
                c["virtio other"] += 1
        return c


def _wait_output(job, pattern: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, job.output(), re.M):
        if job.done():
            raise RuntimeError("the contender exited before it polled:\n" + job.output()[-3000:])
        if time.monotonic() > deadline:
            raise RuntimeError("the contender did not start:\n" + job.output()[-3000:])
        time.sleep(0.3)


def pypdk_line(a: str, b: str, stats: str) -> str:
    return (f"exec python3 -m pypdk.cli apps/l2fwd -l 0-1 -a {a} -a {b} --stats-period 1 "
            f"--stats-json {stats} -- --no-mac-updating")


def dpdk_testpmd_line(a: str, b: str) -> str:
    return (f"exec dpdk-testpmd -l 0-1 -a {a} -a {b} --iova-mode=va --file-prefix pdbench "
            f"--log-level error -- --forward-mode=io --total-num-mbufs={NB_MBUFS} "
            f"--mbcache={POOL_CACHE} --rxd={NB_DESC} --txd={NB_DESC} --burst={BURST} "
            f"--rxq=1 --txq=1 --no-lsc-interrupt --stats-period 1")


def one_run(g, wires, trace, out, case: str, who: str, duration: float) -> dict:
    a, b = PAIRS[case]
    wa, wb = wires[a], wires[b]
    stats = os.path.join(out, f"{case}-{who}.json")
    if who == "pypdk":
        job = g.spawn(pypdk_line(a, b, stats), cwd=ROOT)
        _wait_output(job, r"^\s*1\s+" + re.escape(b))
    else:
        job = g.spawn(dpdk_testpmd_line(a, b), cwd=ROOT)
        _wait_output(job, r"Port statistics|packet forwarding - ports=")
    time.sleep(SETTLE)
    cnt = Counter(wb)
    base = cnt.seen()
    sent = multiprocessing.Value("q", 0)
    t0_off = trace.offset() if trace else 0
    c0, w0 = threads_cpu(g.qemu.pid), time.monotonic()
    p = multiprocessing.Process(target=_blast, args=(wa.qemu_port, duration, sent))
    p.start()
    p.join(duration + 30)
    in_window = cnt.seen() - base
    c1, w1 = threads_cpu(g.qemu.pid), time.monotonic()
    time.sleep(DRAIN)
    t1_off = trace.offset() if trace else 0
    cnt.drain()
    cnt.close()
    job.signal(2)           # SIGINT: both print their statistics and exit
    res = job.wait(120)
    if res.rc not in (0, 130):
        raise RuntimeError(f"{who} exited {res.rc}:\n{res.out[-3000:]}")
    forwarded = cnt.seen() - base
    r = {"case": case, "who": who, "sent": sent.value, "forwarded": forwarded,
         "host_socket_drops": forwarded - cnt.n,
         "pps": in_window / duration, "offered_pps": sent.value / duration}
    # Host cpu time of QEMU's threads over the blast: the forwarding lcore is vCPU 1.
    share = {k: round((v - c0.get(k, 0.0)) / (w1 - w0), 3) for k, v in c1.items()}
    r["vcpu1_share"] = share.get("CPU 1/TCG", 0.0)
    r["qemu_cpu_share"] = share
    r["pps_per_vcpu1_s"] = r["pps"] / r["vcpu1_share"] if r["vcpu1_share"] else None
    if trace:
        w = trace.writes(t0_off, t1_off)
        r["trace"] = dict(w)
        regs = w["e1000 TDT"] + w["e1000 RDT"] if case == "e1000" else w["virtio notify"]
        r["writes_per_pkt"] = regs / forwarded if forwarded else None
    if who == "pypdk":
        with open(stats) as f:
            doc = json.load(f)
        p0, p1 = doc["ports"]["0"], doc["ports"]["1"]
        x0, x1 = p0["xstats"], p1["xstats"]
        keys = ("rx_q0_tail_writes", "tx_q0_tail_writes", "rx_q0_notifies", "tx_q0_notifies")
        own = sum(x.get(k, 0) for x in (x0, x1) for k in keys)
        r["xstats_writes"] = own
        r["xstats_writes_per_pkt"] = own / p1["opackets"] if p1["opackets"] else None
        r["driver_rx"], r["driver_tx"] = p0["ipackets"], p1["opackets"]
    else:
        # testpmd's closing "Forward statistics for port 1" block
        m = re.findall(r"Forward statistics for port 1.*?TX-packets:\s*(\d+)", res.out, re.S)
        if m:
            r["driver_tx"] = int(m[-1])
    return r


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="pypdk l2fwd vs testpmd on vfio e1000/virtio in a guest")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of blast per run")
    ap.add_argument("--cases", default="e1000,virtio")
    ap.add_argument("--no-trace", action="store_true", help="do not trace QEMU's MMIO writes")
    ap.add_argument("--keep", action="store_true", help="keep the trace and stats directory")
    ap.add_argument("--json", metavar="FILE", help="write every run's figures to FILE")
    a = ap.parse_args(argv)
    cases = [c for c in a.cases.split(",") if c]

    out = tempfile.mkdtemp(dir="/var/tmp", prefix="pdvb")
    trace_path = os.path.join(out, "qemu-trace.log")
    wires = {bdf: vm.UdpWire() for pair in PAIRS.values() for bdf in pair}
    devices = []
    for case, pair in PAIRS.items():
        for bdf in pair:
            model = case
            if case == "virtio" and not a.no_trace:
                model = VIRTIO_DEV + ",ioeventfd=off"
            devices += wires[bdf].nic(model, mac=MACS[bdf], addr="0x" + bdf[8:10])
    devices += ["-name", "pdbench,debug-threads=on"]        # "CPU 1/TCG": the vCPU threads by name
    if not a.no_trace:
        devices += ["-trace", f"enable=memory_region_ops_write,file={trace_path}"]
    trace = None if a.no_trace else Trace(trace_path)
    runs = []
    try:
        with vm.Guest(cpus=2, mem=1536, devices=devices, rw=[out]) as g:
            bdfs = " ".join(b for c in cases for b in PAIRS[c])
            g.run(f"python3 -m pypdk.devbind --bind vfio-pci {bdfs} && "
                  "python3 -m pypdk.eal.hugepages --reserve 512M", cwd=ROOT, check=True)
            for rnd in range(a.rounds):
                for case in cases:
                    order = ("testpmd", "pypdk") if rnd % 2 == 0 else ("pypdk", "testpmd")
                    for who in order:
                        r = one_run(g, wires, trace, out, case, who, a.duration)
                        r["round"] = rnd
                        runs.append(r)
                        wpp = r.get("writes_per_pkt")
                        own = r.get("xstats_writes_per_pkt")
                        print(f"round {rnd} {case:6} {who:7} {r['pps']:9.0f} pps forwarded "
                              f"(offered {r['offered_pps']:.0f}; {r['pps_per_vcpu1_s'] or 0:.0f} per "
                              f"vCPU-1 cpu-s, share {r['vcpu1_share']:.2f})  register writes/pkt "
                              f"{'-' if wpp is None else f'{wpp:.3f}'}"
                              + ("" if own is None else f" (xstats {own:.3f})"), flush=True)
    finally:
        for w in wires.values():
            w.close()
    print("medians:")
    summary = {}
    for case in cases:
        med = {}
        for who in ("pypdk", "testpmd"):
            rs = [r for r in runs if r["case"] == case and r["who"] == who]
            med[who] = statistics.median(r["pps"] for r in rs)
            med[who + "_per_cpu"] = statistics.median(r["pps_per_vcpu1_s"] or 0 for r in rs)
            w = [r["writes_per_pkt"] for r in rs if r.get("writes_per_pkt") is not None]
            med[who + "_wpp"] = statistics.median(w) if w else None
            wpp = med[who + "_wpp"]
            print(f"  {case:6} {who:7} {med[who]:9.0f} pps ({med[who + '_per_cpu']:.0f} per vCPU-1 "
                  f"cpu-s), register writes/pkt "
                  f"{'-' if wpp is None else f'{wpp:.3f}'}")
        med["ratio"] = med["pypdk"] / med["testpmd"] if med["testpmd"] else None
        ratios = [p["pps"] / t["pps"] for p, t in zip(
            [r for r in runs if r["case"] == case and r["who"] == "pypdk"],
            [r for r in runs if r["case"] == case and r["who"] == "testpmd"]) if t["pps"]]
        med["ratio_per_round"] = ratios
        tc = med["testpmd_per_cpu"]
        med["ratio_per_cpu"] = med["pypdk_per_cpu"] / tc if tc else None
        print(f"  {case:6} pypdk / testpmd {med['ratio']:.2f} (per round: "
              f"{', '.join(f'{x:.2f}' for x in ratios)}), per vCPU-1 cpu-s "
              f"{med['ratio_per_cpu'] or 0:.2f}")
        summary[case] = med
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": runs, "summary": summary}, f, indent=1)
    if a.keep:
        print(f"kept {out} (the QEMU trace and pypdk's stats)")
        return
    for f in os.listdir(out):
        os.unlink(os.path.join(out, f))
    os.rmdir(out)


if __name__ == "__main__":
    main()
