"""net_e1000 and net_virtio through vfio-pci, in a guest with a virtual IOMMU.

One guest per module with two emulated NICs, QEMU's 82540EM (port 0) and a modern
virtio-net behind the IOMMU (port 1), whose wires are UDP sockets of this test: frames
sent into one NIC must leave by the other through `pypdk-run apps/l2fwd -a A -a B` with
their bytes unchanged (or with l2fwd's MAC rewrite), and the counts must agree on both
sides: the host's, the drivers' and the e1000's own counters.

Two more NICs in the same guest: a virtio-net with two queue pairs on a host tap with two
queues (port C, frames both ways on both queue pairs), and an e1000 left to the guest
kernel's driver (port K: `-a K` must be refused with the devbind fix). A second guest with
a 39-bit vIOMMU checks the IOMMU width error.
"""
import json
import os
import re
import socket
import subprocess
import struct
import tempfile
import time

import pytest

from pypdk.testing import vm

pytestmark = pytest.mark.vm

A, B = "0000:00:04.0", "0000:00:05.0"
MAC_A, MAC_B = "52:54:00:00:00:04", "52:54:00:00:00:05"     # e1000, virtio-net
C, MAC_C = "0000:00:06.0", "52:54:00:00:00:06"              # virtio-net, 2 queue pairs on a tap
K = "0000:00:07.0"                                          # e1000 bound to the kernel's e1000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAP = f"pdmq{os.getpid() % 100000}"


@pytest.fixture(scope="module")
def rig():
    out = tempfile.mkdtemp(dir="/var/tmp", prefix="pdem")
    wa, wb, wk = vm.UdpWire(), vm.UdpWire(), vm.UdpWire()
    devices = wa.nic("e1000", mac=MAC_A, addr="0x4") + wb.nic("virtio", mac=MAC_B, addr="0x5")
    devices += wk.nic("e1000", addr="0x7")
    devices += vm.tap_net(TAP, queues=2, mac=MAC_C, addr="0x6")
    bind = [A, B, C]
    with vm.Guest(cpus=2, mem=1024, devices=devices, rw=[out]) as g:
        # The host's end of the tap: up, and quiet (no IPv6 of its own).
        with open(f"/proc/sys/net/ipv6/conf/{TAP}/disable_ipv6", "w") as f:
            f.write("1")
        subprocess.run(["ip", "link", "set", "dev", TAP, "up"], check=True)
        g.run(f"python3 -m pypdk.devbind --bind vfio-pci {' '.join(bind)} && "
              "python3 -m pypdk.eal.hugepages --reserve 256M && modprobe e1000", cwd=ROOT, check=True)
        yield g, wa, wb, out
    for w in (wa, wb, wk):
        w.close()
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
    # At most one tail write and one notification per burst (frames 2 ms apart may come one
    # per burst, and QEMU asks for no notification only while its tx handler runs, so every
    # frame may need one; the fake-BAR tests check one TDT write for a burst of 20).
    assert 0 < p0["xstats"]["tx_q0_tail_writes"] <= p0["opackets"]
    assert 0 < p1["xstats"]["tx_q0_notifies"] <= p1["opackets"]


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


def test_a_device_bound_to_its_kernel_driver_is_a_one_line_error(rig):
    g, _, _, _ = rig
    assert g.run(f"basename $(readlink /sys/bus/pci/devices/{K}/driver)").out.strip() == "e1000"
    res = g.run(f"python3 -m pypdk.cli apps/l2fwd -l 0-1 -a {A} -a {K} -- --no-mac-updating",
                cwd=ROOT, timeout=300)
    lines = [ln for ln in res.out.splitlines() if ln.strip()]
    assert res.rc == 2, res.out[-3000:]
    assert len(lines) == 1, res.out[-3000:]
    assert f"{K} is bound to e1000" in lines[0]
    assert f"pypdk-devbind --bind vfio-pci {K}" in lines[0]


def udp4(sport, dst_mac, payload=b""):
    """An Ethernet/IPv4/UDP frame 10.0.0.1:sport -> 10.0.0.2:4789 (the tap hashes its flow)."""
    udp = struct.pack("!HHHH", sport, 4789, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    csum = sum(struct.unpack("!10H", ip))
    csum = (csum & 0xFFFF) + (csum >> 16)
    ip = ip[:10] + struct.pack("!H", ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF) + ip[12:]
    return (bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("020000000001") + b"\x08\x00"
            + ip + udp).ljust(60, b"\0")


MQ_GUEST = """
import json, sys, time, pypdk.eal, pypdk.pmd
from pypdk.mempool import PktMbufPool
C, out = sys.argv[1], sys.argv[2]
with pypdk.eal.init(lcores='0-1') as eal:
    pool = PktMbufPool('mq', 4096, cache_size=64)
    p = pypdk.pmd.open_pci(C)
    p.setup(pool, 2, 2, 256, 256)
    p.start()
    for q in (0, 1):                                   # 20 tagged frames on each tx queue
        ms = []
        for i in range(20):
            m = pool.alloc()
            m.append(bytes.fromhex('02000000000a') + bytes(p.mac) + b'\\x88\\xb5'
                     + bytes([q, i]) + bytes(44))
            ms.append(m)
        assert p.tx_burst(q, ms) == 20
    print('READY', flush=True)
    got = {0: [], 1: []}
    end = time.monotonic() + 20
    while time.monotonic() < end and len(got[0]) + len(got[1]) < 64:
        for q in (0, 1):
            for m in p.rx_burst(q, 32):
                d = bytes(m.data)
                if d[12:14] == b'\\x08\\x00' and d[36:38] == (4789).to_bytes(2, 'big'):
                    got[q].append(int.from_bytes(d[34:36], 'big'))
                m.free()
    time.sleep(0.5)
    xs = p.xstats()
    doc = {'got': got, 'xstats': {k: v for k, v in xs.items() if k.startswith(('rx_q', 'tx_q'))}}
    p.close()
    pool.close()
json.dump(doc, open(out, 'w'))
print('DONE', flush=True)
"""


def test_virtio_two_queue_pairs_carry_frames_both_ways(rig):
    g, _, _, out = rig
    script, result = os.path.join(out, "mq.py"), os.path.join(out, "mq.json")
    with open(script, "w") as f:
        f.write(MQ_GUEST)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((TAP, 0))
    s.settimeout(0.2)
    try:
        job = g.spawn(f"exec python3 {script} {C} {result}", cwd=ROOT)
        deadline = time.monotonic() + 240
        while "READY" not in job.output():
            assert not job.done(), job.output()[-3000:]
            assert time.monotonic() < deadline, job.output()[-3000:]
            time.sleep(0.3)
        sports = list(range(40000, 40064))           # 64 flows: the tap spreads them on 2 queues
        for sp in sports:
            s.send(udp4(sp, MAC_C))
            time.sleep(0.005)
        from_guest = []
        end = time.monotonic() + 10
        while time.monotonic() < end and len(from_guest) < 40:
            try:
                data, addr = s.recvfrom(2048)
            except socket.timeout:
                continue
            if addr[2] != socket.PACKET_OUTGOING and data[12:14] == b"\x88\xb5":
                from_guest.append((data[14], data[15]))
        res = job.wait(120)
        assert res.rc == 0 and "DONE" in res.out, res.out[-3000:]
    finally:
        s.close()
    with open(result) as f:
        doc = json.load(f)
    # Both tx queues' frames reached the host, all of them.
    assert sorted(from_guest) == sorted((q, i) for q in (0, 1) for i in range(20))
    xs = doc["xstats"]
    assert xs["tx_q0_packets"] == 20 and xs["tx_q1_packets"] == 20
    # Every host frame arrived once, and both rx queues were polled and fed.
    got = doc["got"]
    assert sorted(got["0"] + got["1"]) == sports
    assert got["0"] and got["1"], got
    assert xs["rx_q0_packets"] >= len(got["0"]) and xs["rx_q1_packets"] >= len(got["1"])


def test_a_39_bit_iommu_is_a_one_line_error_naming_aw_bits_48():
    devices = []
    for addr in ("0x4", "0x5"):
        devices += vm.udp_net("e1000", vm.free_udp_port(), vm.free_udp_port(), addr=addr)
    with vm.Guest(cpus=2, mem=1024, devices=devices, iommu_aw_bits=39) as g:
        g.run(f"python3 -m pypdk.devbind --bind vfio-pci {A} {B} && "
              "python3 -m pypdk.eal.hugepages --reserve 128M", cwd=ROOT, check=True)
        res = g.run(f"python3 -m pypdk.cli apps/l2fwd -l 0-1 -a {A} -a {B} -- --no-mac-updating",
                    cwd=ROOT, timeout=300)
    lines = [ln for ln in res.out.splitlines() if ln.strip()]
    assert res.rc == 2, res.out[-3000:]
    assert len(lines) == 1, res.out[-3000:]
    assert "39 bits" in lines[0] and "aw-bits=48" in lines[0], lines[0]
