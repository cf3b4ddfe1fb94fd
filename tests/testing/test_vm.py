"""The QEMU guest harness (pypdk.testing.vm): one boot, many commands.

A VM test: it boots a TCG guest, which takes a few seconds and one cpu. In CI
QEMU is installed by the set-up, so a missing QEMU fails here rather than skips.
"""
import os
import signal
import tempfile
import time

import pytest

from pypdk.testing import vm

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def guest():
    with vm.Guest(cpus=2, mem=512) as g:
        yield g


def test_runs_in_the_callers_directory_with_the_host_build(guest):
    res = guest.run("pwd; python3 -c 'import pypdk.ring.ring as r; print(r.__file__)'", check=True)
    lines = res.out.split()
    assert lines[0] == os.getcwd()
    assert lines[1].startswith(os.path.dirname(os.path.dirname(vm.__file__)))


def test_exit_status_and_output_are_the_commands(guest):
    res = guest.run("echo out; echo err >&2; exit 7")
    assert res.rc == 7
    assert "out" in res.out and "err" in res.out


def test_the_guest_is_its_own_machine(guest):
    res = guest.run("nproc; uname -r; ls /sys/kernel/iommu_groups | wc -l", check=True)
    cpus, kver, groups = res.out.split()
    assert cpus == "2"
    assert kver == guest.image.kver
    assert int(groups) > 0                      # the vIOMMU is there


def test_host_files_are_seen_and_writes_stay_in_the_guest(guest):
    # Under /tmp too (a checkout or a virtualenv there must work in the guest).
    for top in ("/tmp", "/var/tmp"):
        with tempfile.TemporaryDirectory(dir=top) as d:
            with open(os.path.join(d, "from_host"), "w") as f:
                f.write("h\n")
            marker = os.path.join(d, "from_guest")
            res = guest.run(f"cat {d}/from_host && echo x > {marker} && cat {marker}", check=True)
            assert res.out.split() == ["h", "x"]
            assert not os.path.exists(marker)      # the host root is read-only under an overlay


def test_commands_run_at_the_same_time_and_can_be_signalled(guest):
    sleeper = guest.spawn("trap 'echo got-term; exit 3' TERM; while :; do sleep 0.2; done")
    assert guest.run("echo alive", check=True).out.strip() == "alive"
    assert not sleeper.done()
    sleeper.signal(signal.SIGTERM)
    res = sleeper.wait(60)
    assert res.rc == 3 and "got-term" in res.out


def test_a_udp_wired_nic_carries_frames_both_ways():
    """An e1000 on a UDP wire, bound to the guest kernel's driver: a frame the host sends
    arrives on the guest's interface, and one the guest sends reaches the host."""
    frame = bytes.fromhex("ffffffffffff" "020000000001" "88b5") + b"pypdk-vm-wire".ljust(46, b".")
    with vm.UdpWire() as wire:
        with vm.Guest(mem=512, iommu=False,
                      devices=wire.nic("e1000", mac="02:00:00:00:00:0e", addr="0x4")) as g:
            g.run("modprobe e1000 && sleep 1 && ip link set eth0 up", check=True, timeout=120)
            cap = g.spawn("timeout 60 tcpdump -c 1 -U -w /tmp/in.pcap -i eth0 ether proto 0x88b5"
                          " 2>/dev/null; tcpdump -r /tmp/in.pcap -x 2>/dev/null")
            time.sleep(3)
            deadline = time.monotonic() + 50
            while not cap.done() and time.monotonic() < deadline:
                wire.send(frame)
                time.sleep(1)
            got = cap.wait(60)
            assert got.rc == 0
            assert "7079 7064 6b2d 766d" in got.out          # "pypdk-vm" in the hex dump
            g.run("python3 -c \"import socket; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW);"
                  " s.bind(('eth0', 0)); s.send(bytes.fromhex('ffffffffffff02000000000e88b5')"
                  " + b'from-guest'.ljust(46, b'.'))\"", check=True)
            frames = wire.recv_all(timeout=10)
    assert any(f[12:14] == b"\x88\xb5" and f[14:24] == b"from-guest" for f in frames)
