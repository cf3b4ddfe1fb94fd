"""net_vhost with real guests: pypdk l2fwd against dpdk-testpmd's vhost PMD.

Two cases, `--case g2h` (guest to host, the default) and `--case g2g` (guest to guest).

Guest to host:

One TCG guest (1 vCPU, 512 MiB of shared memfd memory) whose virtio-net is a vhost-user device;
QEMU is the client (`reconnect=1`), so the two contenders take turns on the same socket and the
same guest, round after round, each as the vhost-user server:

    pypdk:   pypdk-run apps/l2fwd -l 0-1 -m 256 --vdev net_vhost0,iface=SOCK
                 --vdev net_null1,no-rx=1 -- --no-mac-updating
    testpmd: dpdk-testpmd -l 0-1 --no-pci -m 256 --huge-dir MNT --vdev net_vhost0,iface=SOCK
                 --vdev net_null0,no-rx=1 -- --forward-mode=io --total-num-mbufs=8192
                 --mbcache=256 --rxd=1024 --txd=1024 --burst=32

Both on 2 MiB hugepages (pypdk through memfd, testpmd through a hugetlbfs mount this script
makes and removes), the same pool (8192 mbufs, l2fwd's size for two ports), per-lcore cache
(256), ring sizes (1024), burst (32), one forwarding lcore; the vhost port forwards to a
net_null that receives nothing (`no-rx=1`). Once a contender listens and QEMU is connected
again, the guest kernel's pktgen sends 60-byte UDP frames on its virtio-net for `--duration`
seconds as fast as it can; what the contender received on the vhost port over that time is
the figure (pypdk: its --stats-json; testpmd: its forward statistics at SIGINT), beside what
pktgen says it sent.

Under TCG the guest's sender is emulated and shares the host's two cpus with the contender,
so the rate is the guest's more than the backend's: compare the ratio within one run. The
backend's own cost per packet, without a guest, is bench_vhost.py's.

Guest to guest: two such guests, A and B, each on its own socket; the contender forwards
between the two vhost ports:

    pypdk:   pypdk-run apps/l2fwd -l 0-1 -m 256 --vdev net_vhost0,iface=SOCK_A
                 --vdev net_vhost1,iface=SOCK_B -- --no-mac-updating
    testpmd: dpdk-testpmd -l 0-1 --no-pci -m 256 --huge-dir MNT --vdev net_vhost0,iface=SOCK_A
                 --vdev net_vhost1,iface=SOCK_B -- --forward-mode=io (same pool, cache, rings, burst)

A's pktgen sends (to a MAC that is not B's, so B's stack drops the frames as soon as its driver
has counted them); the figure is what B's virtio-net counted in rx_packets over pktgen's run
time, beside what the contender received from A and sent to B.

    python -m benchmarks.bench_vhost_guest [--case g2h|g2g] --rounds 3 [--duration 5] [--json FILE]
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.cpu_time import threads_cpu
from pypdk.testing import vm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAC = "52:54:00:00:7b:01"
MAC_B = "52:54:00:00:7b:02"
NB_MBUFS, POOL_CACHE, NB_DESC, BURST, MEM_MB = 8192, 256, 1024, 32, 256
PKTGEN = "/proc/net/pktgen"


def second_port(socks: list[str], pmd_null: str) -> str:
    """The second vdev: the other guest's vhost port (g2g) or a net_null that receives nothing."""
    return f"net_vhost1,iface={socks[1]}" if len(socks) > 1 else f"{pmd_null},no-rx=1"


def pypdk_argv(socks: list[str], stats: str) -> list[str]:
    return [sys.executable, "-m", "pypdk.cli", "apps/l2fwd", "-l", "0-1", "-m", str(MEM_MB),
            "--file-prefix", f"pdvhb{os.getpid()}", "--vdev", f"net_vhost0,iface={socks[0]}",
            "--vdev", second_port(socks, "net_null1"), "--stats-json", stats, "--", "--no-mac-updating"]


def dpdk_testpmd_argv(socks: list[str], huge_dir: str) -> list[str]:
    return ["dpdk-testpmd", "-l", "0-1", "--no-pci", "--no-shconf", "--file-prefix", f"pdvhb{os.getpid()}",
            "--huge-dir", huge_dir, "-m", str(MEM_MB), "--log-level", "error",
            "--vdev", f"net_vhost0,iface={socks[0]}", "--vdev", second_port(socks, "net_null0"), "--",
            "--forward-mode=io", f"--total-num-mbufs={NB_MBUFS}", f"--mbcache={POOL_CACHE}",
            f"--rxd={NB_DESC}", f"--txd={NB_DESC}", f"--burst={BURST}", "--rxq=1", "--txq=1"]


class Contender:
    """A backend process on the socket(s), started before QEMU (re)connects."""

    def __init__(self, who: str, socks: list[str], out: str, huge_dir: str):
        self.who = who
        self.stats = os.path.join(out, f"{who}.json")
        cmd = pypdk_argv(socks, self.stats) if who == "pypdk" else dpdk_testpmd_argv(socks, huge_dir)
        for s in socks:                      # a server's socket left behind by a killed run
            with contextlib.suppress(FileNotFoundError):
                os.unlink(s)
        self.log = open(os.path.join(out, f"{who}.log"), "w+")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while not all(os.path.exists(s) for s in socks):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{who} did not listen on {socks}:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        self.ports: dict[int, tuple[int, int]] = {}
        self.calls: dict[int, dict] = {}       # pypdk: each port's call eventfd writes (xstats)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        """Stop it; the packets it received on the vhost port (port 0). `ports` then holds
        (rx, tx) packets for ports 0 and 1."""
        self.proc.send_signal(signal.SIGINT if self.who == "testpmd" else signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        text = self.output()
        self.log.close()
        if self.who == "pypdk":
            with open(self.stats) as f:
                ports = json.load(f)["ports"]
            self.ports = {int(p): (c["ipackets"], c["opackets"]) for p, c in ports.items()}
            self.calls = {int(p): {k: v for k, v in c.get("xstats", {}).items() if "calls" in k}
                          for p, c in ports.items()}
        else:
            for m in re.finditer(r"Forward statistics for port (\d+)\s*-+\s*RX-packets:\s*(\d+)"
                                 r".*?TX-packets:\s*(\d+)", text, re.S):
                self.ports[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
            if 0 not in self.ports:
                raise RuntimeError(f"no forward statistics from testpmd:\n{text[-3000:]}")
        return self.ports[0][0]


def guest_iface(g, mac: str) -> str:
    """Load virtio-net (and pktgen), turn IPv6 off (no stray frames); the interface with `mac`, up."""
    g.run("modprobe virtio_net && modprobe pktgen && sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
          "net.ipv6.conf.default.disable_ipv6=1", check=True, timeout=120)
    ifn = None
    for _ in range(120):
        for line in g.run("ip -o link", check=True).out.splitlines():
            if mac in line:
                ifn = line.split(":")[1].strip()
        if ifn:
            break
        time.sleep(0.5)
    if not ifn:
        raise RuntimeError("no virtio-net interface in the guest")
    g.run(f"ip link set {ifn} up", check=True)
    return ifn


def rx_packets(g, ifn: str) -> int:
    return int(g.run(f"cat /sys/class/net/{ifn}/statistics/rx_packets", check=True).out)


def guest_setup(g) -> str:
    """The sender: its interface, pktgen set up on it."""
    ifn = guest_iface(g, MAC)
    dev = f"{PKTGEN}/{ifn}"
    g.run(f"echo rem_device_all > {PKTGEN}/kpktgend_0 && "
          f"echo 'add_device {ifn}' > {PKTGEN}/kpktgend_0 && "
          f"for c in 'count 0' 'pkt_size 60' 'delay 0' 'clone_skb 1000' 'dst 10.99.0.2' "
          f"'dst_mac 02:00:00:00:7b:02'; do echo \"$c\" > {dev}; done", check=True)
    return ifn


def blast(g, ifn: str, duration: float) -> dict:
    """pktgen for `duration` seconds; what it reports."""
    job = g.spawn(f"echo start > {PKTGEN}/pgctrl")
    time.sleep(duration)
    g.run(f"echo stop > {PKTGEN}/pgctrl", check=True)
    job.wait(60)
    text = g.run(f"cat {PKTGEN}/{ifn}", check=True).out
    m = re.search(r"Result: OK: (\d+)\(.*?usec, (\d+) \(", text)
    pps = re.search(r"(\d+)pps", text)
    if not m:
        raise RuntimeError(f"pktgen gave no result:\n{text}")
    return {"usec": int(m.group(1)), "sent": int(m.group(2)), "pktgen_pps": int(pps.group(1)) if pps else 0}


def virtio_irqs(g) -> int:
    """Interrupts of the guest's virtio lines so far (/proc/interrupts, all cpus, config
    vectors left out). The harness gives vhost-user nets no MSI-X vectors: the net's INTx
    line may be shared with the 9p devices, whose (few, between commands) interrupts count too."""
    n = 0
    for line in g.run("cat /proc/interrupts", check=True).out.splitlines():
        if "virtio" in line and "config" not in line:
            n += sum(int(x) for x in line.split()[1:] if x.isdigit())
    return n


def proc_cpu(pid: int) -> float:
    """CPU seconds all threads of `pid` have used."""
    return sum(threads_cpu(pid).values())


def one_run(g, ifn, who, socks, out, huge_dir, duration, settle, contender=None, sink=None) -> dict:
    """One contender's run; with `sink` (guest B and its interface) the figure is what B counted.

    Beside the figure: the host cpu seconds the backend process and each guest's QEMU
    used over the blast, and the guests' virtio interrupts (what the backend's call
    eventfd writes became)."""
    c = contender or Contender(who, socks, out, huge_dir)
    guests = [g] + ([sink[0]] if sink else [])
    try:
        time.sleep(settle)                   # QEMU reconnects (every second) and starts the rings
        before = rx_packets(*sink) if sink else 0
        irq0 = [virtio_irqs(x) for x in guests]
        cpu0 = [proc_cpu(c.proc.pid)] + [proc_cpu(x.qemu.pid) for x in guests]
        r = blast(g, ifn, duration)
        cpu1 = [proc_cpu(c.proc.pid)] + [proc_cpu(x.qemu.pid) for x in guests]
        time.sleep(0.5)
        arrived = rx_packets(*sink) - before if sink else 0
        irqs = [virtio_irqs(x) - i for x, i in zip(guests, irq0)]
    finally:
        received = c.stop()
    r.update(who=who, backend_rx=received, backend_cpu_s=cpu1[0] - cpu0[0],
             qemu_cpu_s=[b - a for a, b in zip(cpu0[1:], cpu1[1:])], guest_irqs=irqs, calls=c.calls)
    if sink:
        r.update(backend_tx=c.ports.get(1, (0, 0))[1], received=arrived)
    else:
        r.update(received=received)
    r["pps"] = r["received"] / (r["usec"] / 1e6)
    return r


def boot(socks: list[str], macs: list[str]) -> list:
    """Boot one guest per socket, at once (each QEMU waits for its backend, then boots)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(sock_mac):
        sock, mac = sock_mac
        return vm.Guest(cpus=1, mem=512, iommu=False, shared_mem=True, boot_timeout=900,
                        devices=vm.vhost_user_net(sock, mac=mac, reconnect=1))
    with ThreadPoolExecutor(len(socks)) as ex:
        futs = [ex.submit(one, sm) for sm in zip(socks, macs)]
    guests, err = [], None
    for f in futs:
        try:
            guests.append(f.result())
        except BaseException as e:
            err = e
    if err is not None:
        for g in guests:
            g.close()
        raise err
    return guests


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="pypdk l2fwd vs testpmd on vhost-user guests")
    ap.add_argument("--case", choices=("g2h", "g2g"), default="g2h",
                    help="g2h: one guest to a net_null on the host; g2g: guest A to guest B")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of pktgen per run")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds for QEMU to reconnect")
    ap.add_argument("--json", metavar="FILE", help="write every run's figures to FILE")
    a = ap.parse_args(argv)

    out = tempfile.mkdtemp(dir="/var/tmp", prefix="pdvhb")
    g2g = a.case == "g2g"
    socks = [os.path.join(out, "vm.sock")] + ([os.path.join(out, "vmb.sock")] if g2g else [])
    huge_dir = os.path.join(out, "huge")
    os.mkdir(huge_dir)
    subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "pdvhb", huge_dir], check=True)
    runs, first = [], None
    try:
        first = Contender("pypdk", socks, out, huge_dir)    # QEMU waits for its backend at start
        guests = boot(socks, [MAC, MAC_B][:len(socks)])
        try:
            g = guests[0]
            ifn = guest_setup(g)
            sink = (guests[1], guest_iface(guests[1], MAC_B)) if g2g else None
            for rnd in range(a.rounds):
                order = ("pypdk", "testpmd") if rnd % 2 == 0 else ("testpmd", "pypdk")
                for who in order:
                    r = one_run(g, ifn, who, socks, out, huge_dir, a.duration, a.settle,
                                contender=first if first is not None and who == "pypdk" else None,
                                sink=sink)
                    first = None
                    r["round"] = rnd
                    runs.append(r)
                    via = (f" (backend: {r['backend_rx']} from A, {r['backend_tx']} to B)" if g2g else "")
                    if r["calls"]:
                        via += f"; call writes {r['calls']}"
                    via += (f"; host cpu-s: backend {r['backend_cpu_s']:.2f}, QEMU "
                            + "/".join(f"{x:.2f}" for x in r["qemu_cpu_s"])
                            + "; guest virtio irqs " + "/".join(str(x) for x in r["guest_irqs"]))
                    print(f"round {rnd} {who:8s} received {r['received']:9d} of {r['sent']:9d} sent "
                          f"in {r['usec'] / 1e6:.2f} s: {r['pps'] / 1e3:8.1f} kpps "
                          f"(pktgen {r['pktgen_pps'] / 1e3:.1f} kpps){via}", flush=True)
        finally:
            for gu in guests:
                gu.close()
    finally:
        if first is not None:                                # the guests did not boot
            with contextlib.suppress(Exception):
                first.stop()
        subprocess.run(["umount", huge_dir], check=False)
        for f in sorted(os.listdir(out), reverse=True):
            p = os.path.join(out, f)
            if os.path.isdir(p):
                os.rmdir(p)
            else:
                os.unlink(p)
        os.rmdir(out)
    med = {w: statistics.median(r["pps"] for r in runs if r["who"] == w) for w in ("pypdk", "testpmd")}
    share = {w: statistics.median(r["received"] / max(r["sent"], 1) for r in runs if r["who"] == w)
             for w in ("pypdk", "testpmd")}
    print(f"median kpps: pypdk {med['pypdk'] / 1e3:.1f}, testpmd {med['testpmd'] / 1e3:.1f}; "
          f"pypdk / testpmd = {med['pypdk'] / med['testpmd']:.2f}; received/sent: "
          f"pypdk {share['pypdk']:.3f}, testpmd {share['testpmd']:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"case": a.case, "runs": runs, "median_pps": med, "received_share": share}, f, indent=1)


if __name__ == "__main__":
    main()
