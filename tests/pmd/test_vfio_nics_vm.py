"""net_e1000 and net_virtio through vfio-pci, in a guest with a virtual IOMMU.

One guest per module with two emulated NICs, QEMU's 82540EM (port 0) and a modern
virtio-net behind the IOMMU (port 1), whose wires are UDP sockets of this test: frames
sent into one NIC must leave by the other through `pypdk-run apps/l2fwd -a A -a B` with
their bytes unchanged (or with l2fwd's MAC rewrite), and the counts must agree on both
sides: the host's, the drivers' and the e1000's own counters.
"""
import json
import os
import re
import tempfile
import time

import pytest

from pypdk.testing import vm

pytestmark = pytest.mark.vm

A, B = "0000:00:04.0", "0000:00:05.0"
MAC_A, MAC_B = "52:54:00:00:00:04", "52:54:00:00:00:05"     # e1000, virtio-net
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def rig():
    out = tempfile.mkdtemp(dir="/var/tmp", prefix="pdem")
    wa, wb = vm.UdpWire(), vm.UdpWire()
    devices = wa.nic("e1000", mac=MAC_A, addr="0x4") + wb.nic("virtio", mac=MAC_B, addr="0x5")
    with vm.Guest(cpus=2, mem=1024, devices=devices, rw=[out]) as g:
        g.run(f"python3 -m pypdk.devbind --bind vfio-pci {A} {B} && "
              "python3 -m pypdk.eal.hugepages --reserve 256M", cwd=ROOT, check=True)
        yield g, wa, wb, out
    wa.close()
    wb.close()
    for f in os.listdir(out):
        os.unlink(os.path.join(out, f))
    os.rmdir(out)


def frame(i, dst="020000000002", src="020000000001", size=64):
    return (bytes.fromhex(dst + src) + b"\x88\xb5" + i.to_bytes(4, "big")).ljust(size, b"\x5a")


def run_l2fwd(g, out, name, app_args, frames_for):
    """Start l2fwd in the guest, wait until it polls, feed it, stop it; its JSON stats."""
    stats = os.path.join(out, f"{name}.json")
    job = g.spawn(f"exec python3 -m pypdk.cli apps/l2fwd -l 0-1 -a {A} -a {B} --stats-period 1 "
                  f"--stats-json {stats} -- {app_args}", cwd=ROOT)
    deadline = time.monotonic() + 240
    while not re.search(r"^\s*1\s+" + re.escape(B), job.output(), re.M):
        assert not job.done(), job.output()[-3000:]
        assert time.monotonic() < deadline, job.output()[-3000:]
        time.sleep(0.5)
    time.sleep(2.5)              # QEMU blanks reception for about a second after RCTL.EN
    frames_for()
    job.signal()
    res = job.wait(120)
    assert res.rc == 0, res.out[-3000:]
    with open(stats) as f:
        return json.load(f)


def test_frames_cross_unchanged_both_ways(rig):
    g, wa, wb, out = rig
    got = {}

    def traffic():
        fa = [frame(i, size=60 + i % 200) for i in range(300)]
        fb = [frame(1000 + i, size=1514 - i) for i in range(100)]
        for f in fa:
            wa.send(f)
            time.sleep(0.002)
        got["b"] = wb.recv_all(timeout=10)
        for f in fb:
            wb.send(f)
            time.sleep(0.002)
        got["a"] = wa.recv_all(timeout=10)
        got["sent"] = (fa, fb)

    st = run_l2fwd(g, out, "nomac", "--no-mac-updating", traffic)
    fa, fb = got["sent"]
    assert got["b"] == fa                    # every byte, in order (QEMU pads nothing above 60)
    assert got["a"] == fb
    p0, p1 = st["ports"]["0"], st["ports"]["1"]
    assert (p0["driver"], p1["driver"]) == ("net_e1000", "net_virtio")
    assert p0["ipackets"] == len(fa) and p1["opackets"] == len(fa)
    assert p1["ipackets"] == len(fb) and p0["opackets"] == len(fb)
    assert p0["ibytes"] == sum(map(len, fa)) and p1["obytes"] == sum(map(len, fa))
    assert p1["ibytes"] == sum(map(len, fb)) and p0["obytes"] == sum(map(len, fb))
    # The e1000's own counters agree with the driver's and with what the host sent.
    assert p0["xstats"]["good_rx_packets"] == len(fa)
    assert p0["xstats"]["good_tx_packets"] == len(fb)
    assert p0["xstats"]["good_rx_octets"] == sum(len(f) + 4 for f in fa)   # the NIC counts the CRC
    assert p0["dropped"] == p1["dropped"] == 0
    assert p1["xstats"]["rx_q0_bad_used"] == p1["xstats"]["tx_q0_bad_used"] == 0
    # One tail write / notification per burst, not per packet.
    assert p0["xstats"]["tx_q0_tail_writes"] < p0["opackets"]
    assert p1["xstats"]["tx_q0_notifies"] < p1["opackets"]


def test_mac_updating_and_a_second_start_in_the_same_guest(rig):
    """l2fwd's default rewrite (dst 02:00:00:00:00:<out port>, src the out port's MAC); this
    second run also shows that stop/close released the devices for the next process."""
    g, wa, wb, out = rig
    got = {}

    def traffic():
        sent = [frame(i) for i in range(100)]
        for f in sent:
            wa.send(f)
            time.sleep(0.002)
        got["b"] = wb.recv_all(timeout=10)
        got["sent"] = sent

    st = run_l2fwd(g, out, "mac", "", traffic)
    assert len(got["b"]) == len(got["sent"]) == st["ports"]["1"]["opackets"]
    for f, s in zip(got["b"], got["sent"]):
        assert f[0:6] == bytes.fromhex("020000000001")            # port 1
        assert f[6:12] == bytes.fromhex(MAC_B.replace(":", ""))    # port 1's MAC, from the device
        assert f[12:] == s[12:]


def test_open_close_leaves_no_fd_or_dma_mapping(rig):
    g, _, _, _ = rig
    script = f"""
import os, pypdk.eal, pypdk.pmd
from pypdk.eal import vfio
from pypdk.mempool import PktMbufPool
def fds(): return len(os.listdir('/proc/self/fd'))
with pypdk.eal.init(lcores='0-1') as eal:
    pool = PktMbufPool('p', 2048, cache_size=64)
    base = fds()
    for _ in range(3):
        ports = [pypdk.pmd.open_pci(b) for b in ({A!r}, {B!r})]
        for p in ports:
            p.setup(pool, nb_rx_desc=256, nb_tx_desc=256); p.start()
        assert vfio.dma_mapped(), 'no DMA maps while ports are open'
        for p in ports:
            p.close()
        assert vfio.dma_mapped() == {{}}, vfio.dma_mapped()
        assert fds() == base, (fds(), base)
    assert pool.avail_count == 2048, pool.avail_count
    pool.close()
print('OK')
"""
    res = g.run(f"python3 -c \"{script}\"", cwd=ROOT, timeout=300)
    assert res.rc == 0 and res.out.strip().endswith("OK"), res.out[-3000:]
