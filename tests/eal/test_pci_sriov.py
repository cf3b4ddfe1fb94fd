"""SR-IOV in pypdk.eal.pci and pypdk-devbind, against a fake /sys/bus/pci.

The fake tree has what the kernel shows: devices/<BDF>/{vendor,device,class,numa_node},
driver and iommu_group links, net/<ifname>, and for a PF sriov_totalvfs, sriov_numvfs and
virtfnN links to its VFs (each with a physfn link back). A fake kernel answers writes to
sriov_numvfs as Linux does: VFs appear and go, and a nonzero count cannot change to another
without 0 first (EBUSY).
"""
import errno
import json
import os

import pytest

from pypdk import devbind
from pypdk.eal import pci
from pypdk.errors import ResourceError, UsageError

PF, E1000 = "0000:00:04.0", "0000:00:05.0"
VF_BASE = 0x14                   # QEMU's igb: VF offset 128, stride 2 -> 00:14.0, 00:14.2, ...


def vf_bdf(i):
    dev, fn = divmod(VF_BASE * 8 + 2 * i, 8)
    return f"0000:00:{dev:02x}.{fn}"


class FakeSysfs:
    def __init__(self, root):
        self.root = root
        self.writes = []
        for d in ("igb", "igbvf", "e1000", "vfio-pci"):
            (root / "drivers" / d).mkdir(parents=True)
        (root / "devices").mkdir()
        self.add(PF, "10c9", driver="igb", group=3, ifname="eth0")
        (root / "devices" / PF / "sriov_totalvfs").write_text("7\n")
        (root / "devices" / PF / "sriov_numvfs").write_text("0\n")
        self.add(E1000, "100e", driver="e1000", group=4, ifname="eth1")

    def add(self, bdf, device, driver=None, group=None, ifname=None):
        d = self.root / "devices" / bdf
        d.mkdir()
        for name, value in (("vendor", "0x8086"), ("device", f"0x{device}"),
                            ("class", "0x020000"), ("numa_node", "-1")):
            (d / name).write_text(value + "\n")
        if driver:
            os.symlink(self.root / "drivers" / driver, d / "driver")
        if group is not None:
            (self.root / "groups" / str(group)).mkdir(parents=True, exist_ok=True)
            os.symlink(self.root / "groups" / str(group), d / "iommu_group")
        if ifname:
            (d / "net" / ifname).mkdir(parents=True)
        return d

    def write(self, path, value):
        """What the kernel does with a sysfs write."""
        self.writes.append((path.name, value))
        if path.name != "sriov_numvfs":
            path.write_text(value)
            return
        pf = path.parent
        now, want = int(path.read_text()), int(value)
        if now and want:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        for i in range(now):
            (pf / f"virtfn{i}").unlink()
            vf = self.root / "devices" / vf_bdf(i)
            for p in sorted(vf.rglob("*"), reverse=True):
                p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
            vf.rmdir()
        for i in range(want):
            vf = self.add(vf_bdf(i), "10ca", driver="vfio-pci", group=10 + i)
            os.symlink(pf, vf / "physfn")
            os.symlink(vf, pf / f"virtfn{i}")
        path.write_text(f"{want}\n")


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    fake = FakeSysfs(tmp_path)
    monkeypatch.setattr(pci, "SYSFS", tmp_path)
    monkeypatch.setattr(pci, "_write_raw", fake.write)
    return fake


def test_a_pf_shows_its_vfs_and_a_vf_its_pf(sysfs):
    pf = pci.set_num_vfs(PF, 2)
    assert (pf.sriov_numvfs, pf.sriov_totalvfs) == (2, 7)
    assert pf.virtfns == [vf_bdf(0), vf_bdf(1)] == ["0000:00:14.0", "0000:00:14.2"]
    vf = pci.device(vf_bdf(1))
    assert vf.physfn == PF and vf.virtfns == [] and vf.sriov_totalvfs == 0
    assert pci.device(E1000).physfn is None and pci.device(E1000).virtfns == []


def test_a_new_count_writes_zero_first_and_the_same_count_writes_nothing(sysfs):
    pci.set_num_vfs(PF, 2)
    assert sysfs.writes == [("sriov_numvfs", "2")]
    pf = pci.set_num_vfs(PF, 3)
    assert sysfs.writes[1:] == [("sriov_numvfs", "0"), ("sriov_numvfs", "3")]
    assert len(pf.virtfns) == 3
    pci.set_num_vfs(PF, 3)
    assert len(sysfs.writes) == 3
    assert pci.set_num_vfs(PF, 0).virtfns == []
    assert sysfs.writes[3:] == [("sriov_numvfs", "0")]


def test_not_a_pf_a_vf_and_too_many_vfs_are_refused_with_the_fix(sysfs):
    with pytest.raises(UsageError) as e:
        pci.set_num_vfs(E1000, 2)
    assert "not an SR-IOV physical function" in e.value.line() and "--status" in e.value.line()
    with pytest.raises(UsageError) as e:
        pci.set_num_vfs(PF, 8)
    assert "at most 7 VFs" in e.value.line() and "0 to 7" in e.value.line()
    pci.set_num_vfs(PF, 1)
    with pytest.raises(UsageError) as e:
        pci.set_num_vfs(vf_bdf(0), 2)
    assert f"--sriov-numvfs {PF} 2" in e.value.line()
    os.unlink(sysfs.root / "devices" / PF / "driver")
    with pytest.raises(ResourceError) as e:
        pci.set_num_vfs(PF, 2)
    assert f"--bind kernel {PF}" in e.value.line()


def test_status_lists_each_pfs_vfs_under_it(sysfs, capsys):
    pci.set_num_vfs(PF, 2)
    devbind.main(["--status"])
    out = capsys.readouterr().out.splitlines()
    i = next(n for n, ln in enumerate(out) if ln.startswith(PF))
    assert "drv=igb" in out[i] and "if=eth0" in out[i] and "vfs=2/7" in out[i]
    assert out[i + 1].split()[:4] == ["virtfn0", "0000:00:14.0", "'8086:10ca'", "drv=vfio-pci"]
    assert out[i + 2].split()[:4] == ["virtfn1", "0000:00:14.2", "'8086:10ca'", "drv=vfio-pci"]
    assert "iommu_group=11" in out[i + 2]
    # The VFs are listed in their own section too, naming their PF.
    vf_rows = [ln for ln in out if ln.startswith("0000:00:14.")]
    assert len(vf_rows) == 2 and all(f"VF of {PF}" in ln for ln in vf_rows)
    e1000 = next(ln for ln in out if ln.startswith(E1000))
    assert "vfs=" not in e1000 and "VF of" not in e1000


def test_status_json_keeps_the_pf_and_vf_links(sysfs, capsys):
    pci.set_num_vfs(PF, 2)
    devbind.main(["--status", "--json"])
    rows = {r["bdf"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[PF]["virtfns"] == ["0000:00:14.0", "0000:00:14.2"]
    assert (rows[PF]["sriov_numvfs"], rows[PF]["sriov_totalvfs"]) == (2, 7)
    assert rows["0000:00:14.2"]["physfn"] == PF and rows["0000:00:14.2"]["virtfns"] == []
    assert rows[E1000]["sriov_totalvfs"] == 0


def test_the_sriov_numvfs_option(sysfs, capsys):
    devbind.main(["--sriov-numvfs", PF, "2"])
    assert capsys.readouterr().out.strip() == f"{PF}: 2 VFs: virtfn0 0000:00:14.0, virtfn1 0000:00:14.2"
    for args, needle in (([E1000, "2"], "not an SR-IOV physical function"),
                         ([PF, "9"], "at most 7 VFs"),
                         ([PF, "two"], "--sriov-numvfs")):
        with pytest.raises(SystemExit) as e:
            devbind.main(["--sriov-numvfs", *args])
        assert e.value.code == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("pypdk-devbind: ") and needle in err[0], err
