"""SR-IOV in a guest: an 82576 PF (QEMU 10's `igb`) on the guest kernel's igb, two VFs on vfio-pci.

One guest per module (`rig`): QEMU 10 from bookworm-backports (`vm.prepare_qemu10`), the PF
on a UDP wire of this test, up on the kernel's igb (it answers the VFs' mailbox), two VFs
with MACs set from the PF, both on vfio-pci (`pypdk.testing.sriov.create_vfs`). The checks
here are the harness's own: the PF, the VFs and their MACs as the guest kernel shows them,
`pypdk-devbind --status` listing the VFs under their PF, and DPDK's testpmd
(net_e1000_igb_vf) on VF0 echoing, in macswap mode, what the host sends to VF0's MAC.
"""
import dataclasses
import json
import re
import shutil
import tempfile
import time

import pytest

from pypdk.testing import sriov, vm

pytestmark = pytest.mark.vm

PF, PF_MAC = "0000:00:04.0", "52:54:00:12:34:56"
VF_MACS = ("02:00:00:00:00:10", "02:00:00:00:00:11")
HOST_MAC = "02:00:00:00:00:01"
ROOT = sriov.ROOT


@dataclasses.dataclass
class Rig:
    guest: vm.Guest
    wire: vm.UdpWire           # the host's end of the PF's wire (the VFs' too)
    pf: sriov.Pf               # .bdf, .ifname (up, on igb), .vfs (index, bdf, mac, driver)
    vfs: list                  # the VFs' BDFs, in VF order, both on vfio-pci
    macs: list                 # their MACs, set from the PF
    out: str                   # a host directory the guest writes to (same path in both)


@pytest.fixture(scope="module")
def rig():
    qemu = vm.prepare_qemu10(log=lambda *_: None)
    out = tempfile.mkdtemp(dir="/var/tmp", prefix="pdvf")
    wire = vm.UdpWire()
    try:
        with vm.Guest(qemu=qemu, cpus=2, mem=1536, append="hugepages=256", rw=[out],
                      devices=wire.nic("igb", mac=PF_MAC, addr="0x4")) as g:
            pf = sriov.create_vfs(g, PF, VF_MACS, vfio=[0, 1])
            yield Rig(g, wire, pf, [v.bdf for v in pf.vfs], [v.mac for v in pf.vfs], out)
    finally:
        wire.close()
        shutil.rmtree(out, ignore_errors=True)


def test_the_pf_is_up_and_its_vfs_have_their_macs_and_vfio_pci(rig):
    g, pf = rig.guest, rig.pf
    assert [v.driver for v in pf.vfs] == ["vfio-pci", "vfio-pci"]
    assert rig.macs == list(VF_MACS)
    res = g.run(f"ip -d link show {pf.ifname}; cd /sys/bus/pci/devices; "
                f"for v in {' '.join(rig.vfs)}; do echo $v $(basename $(readlink $v/driver)) "
                f"$(basename $(readlink $v/iommu_group)) $(cat $v/vendor $v/device); done; "
                f"readlink {PF}/virtfn0 {PF}/virtfn1; basename $(readlink {PF}/driver)", check=True)
    assert re.search(r"\bstate UP\b", res.out), res.out
    for i, mac in enumerate(VF_MACS):
        assert re.search(rf"vf {i}\s+link/ether {mac}\b", res.out), res.out
    rows = [ln.split() for ln in res.out.splitlines() if ln.startswith(tuple(rig.vfs))]
    assert [r[1] for r in rows] == ["vfio-pci", "vfio-pci"]
    assert rows[0][2] != rows[1][2]                       # each VF in its own IOMMU group
    assert all(r[3:] == ["0x8086", "0x10ca"] for r in rows)
    assert [ln.rsplit("/", 1)[-1] for ln in res.out.splitlines() if ln.startswith("../")] == rig.vfs
    assert res.out.split()[-1] == "igb"


def test_devbind_status_lists_the_vfs_under_their_pf(rig):
    res = rig.guest.run("python3 -m pypdk.devbind --status && echo @@ && "
                        "python3 -m pypdk.devbind --status --json", cwd=ROOT, check=True)
    text, doc = res.out.split("@@\n")
    lines = text.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith(PF))
    assert "drv=igb" in lines[i] and f"if={rig.pf.ifname}" in lines[i] and "vfs=2/7" in lines[i]
    for n, vf in enumerate(rig.vfs):
        assert lines[i + 1 + n].split()[:4] == [f"virtfn{n}", vf, "'8086:10ca'", "drv=vfio-pci"]
    rows = {r["bdf"]: r for r in json.loads(doc)}
    assert rows[PF]["virtfns"] == rig.vfs
    assert all(rows[vf]["physfn"] == PF for vf in rig.vfs)


def frame(i, dst, src=HOST_MAC, size=64):
    return (bytes.fromhex(dst.replace(":", "") + src.replace(":", "")) + b"\x88\xb5"
            + i.to_bytes(4, "big")).ljust(size, b"\x5a")


def from_guest(wire, timeout):
    """The 0x88b5 frames the guest sent to the wire, until it is quiet for a second."""
    return [f for f in wire.recv_all(timeout=timeout, idle=1.0) if f[12:14] == b"\x88\xb5"]


def test_testpmd_on_vf0_echoes_the_hosts_frames_in_macswap_mode(rig):
    """testpmd's net_e1000_igb_vf on VF0 (its MAC from the PF), macswap: every frame the host
    sends to VF0's MAC comes back with the MACs swapped and the rest unchanged; frames to a
    MAC no VF has do not reach it (the NIC filters them)."""
    g, wire, vf0, mac0 = rig.guest, rig.wire, rig.vfs[0], rig.macs[0]
    swapped = bytes.fromhex(HOST_MAC.replace(":", "") + mac0.replace(":", ""))
    job = g.spawn(f"exec dpdk-testpmd --lcores '0@0,1@0' -n 1 -a {vf0} --in-memory --iova-mode=va "
                  "--log-level error -- --port-topology=loop --forward-mode=macswap "
                  "--total-num-mbufs=2048 --rxq=1 --txq=1 --no-lsc-interrupt --stats-period 1")
    warmup = 0
    try:
        deadline = time.monotonic() + 120
        while "macswap packet forwarding - ports=1" not in job.output():
            assert not job.done(), job.output()[-3000:]
            assert time.monotonic() < deadline, job.output()[-3000:]
            time.sleep(0.3)
        assert f"Port 0: {mac0.upper()}" in job.output(), job.output()[-3000:]   # from the PF
        # Until the first echo (QEMU may take a moment after the queues are enabled).
        deadline = time.monotonic() + 30
        while True:
            wire.send(frame(0xFFFF, mac0))
            warmup += 1
            if any(f[:12] == swapped for f in from_guest(wire, 0.5)):
                break
            assert time.monotonic() < deadline, job.output()[-3000:]
        sent = [frame(i, mac0, size=60 + 7 * i) for i in range(30)]
        for i, f in enumerate(sent):
            wire.send(f)
            if i % 3 == 0:
                wire.send(frame(1000 + i, "02:00:00:00:00:99"))     # no VF has this MAC
            time.sleep(0.03)
        got = from_guest(wire, 10)
    finally:
        job.signal()
        res = job.wait(60)
    ours = [f for f in got if f[:12] == swapped]
    assert [f[12:] for f in ours] == [f[12:] for f in sent], res.out[-3000:]
    assert len(ours) == len(got), got                    # nothing else came back
    m = re.search(r"Forward statistics for port 0.*?RX-packets:\s+(\d+).*?TX-packets:\s+(\d+)",
                  res.out, re.S)
    assert m, res.out[-3000:]
    # Every frame to VF0's MAC, warm-up included, and none of those to the other MAC.
    assert (int(m[1]), int(m[2])) == (len(sent) + warmup, len(sent) + warmup), res.out[-3000:]
