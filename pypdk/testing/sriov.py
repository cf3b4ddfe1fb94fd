"""SR-IOV in a guest: an Intel 82576 PF (QEMU's `igb`, QEMU 8 or later) and its VFs.

The PF stays on the guest kernel's igb driver and up: it answers its VFs' mailbox (their
reset, their MAC). `create_vfs` loads igb, brings the PF up, turns the VFs' driver autoprobe
off, creates the VFs, sets their MACs from the PF (before any VF driver binds: a driver takes
its MAC at reset) and binds the chosen VFs to vfio-pci (for pypdk or testpmd) and others to the
kernel's igbvf, both through driver_override and drivers_probe (with autoprobe off, a plain
`bind` of igbvf fails).

    q = vm.prepare_qemu10()
    wire = vm.UdpWire()
    with vm.Guest(qemu=q, cpus=2, mem=1536, devices=wire.nic("igb", addr="0x4")) as g:
        pf = sriov.create_vfs(g, "0000:00:04.0", ["02:00:00:00:00:10", "02:00:00:00:00:11"],
                              vfio=[0, 1])
        pf.ifname, pf.vfs[0].bdf, pf.vfs[0].mac, pf.vfs[0].driver

In the guest this module runs itself (`python3 -m pypdk.testing.sriov PF MAC... --vfio 0,1`),
so the VFs are made by pypdk.eal.pci, as `pypdk-devbind --sriov-numvfs` makes them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from pypdk.errors import StateError

ROOT = str(Path(__file__).resolve().parents[2])     # the tree pypdk is imported from


@dataclasses.dataclass(frozen=True)
class Vf:
    index: int               # N of the PF's virtfnN
    bdf: str
    mac: str                 # set from the PF
    driver: str | None       # vfio-pci, igbvf, or None (left unbound)


@dataclasses.dataclass(frozen=True)
class Pf:
    bdf: str
    ifname: str              # the guest kernel's interface (igb), up
    vfs: tuple[Vf, ...]


def create_vfs(guest, pf: str, macs: Sequence[str], *, vfio: Sequence[int] = (),
               igbvf: Sequence[int] = (), timeout: float = 180.0) -> Pf:
    """Give the guest's 82576 PF `pf` len(macs) VFs with these MACs; bind VF i to vfio-pci
    for i in `vfio` and to igbvf for i in `igbvf` (the others stay unbound). Once per guest."""
    def ints(xs):
        return ",".join(str(int(x)) for x in xs) or "-"
    cmd = (f"{shlex.quote(sys.executable)} -m pypdk.testing.sriov {pf} {' '.join(macs)} "
           f"--vfio {ints(vfio)} --igbvf {ints(igbvf)}")
    res = guest.run(cmd, timeout=timeout, cwd=ROOT)
    last = res.out.strip().splitlines()[-1:] or [""]
    if res.rc != 0 or not last[0].startswith("{"):
        raise StateError(f"the SR-IOV set-up in the guest failed ({res.rc}): {last[0]}",
                         res.out[-3000:])
    doc = json.loads(last[0])
    return Pf(doc["bdf"], doc["ifname"], tuple(Vf(**v) for v in doc["vfs"]))


# ---------------------------------------------------------------- in the guest

def _sh(*cmd: str) -> None:
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise StateError(f"{' '.join(cmd)} exited with {r.returncode}: {r.stdout.strip()}")


def _wait(what: str, cond, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise StateError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _setup(pf: str, macs: Sequence[str], vfio: Sequence[int], igbvf: Sequence[int]) -> dict:
    from pypdk.eal import pci
    pf = pci.parse_bdf(pf)
    _sh("modprobe", "igb")
    net = pci.SYSFS / "devices" / pf / "net"
    ifname = _wait(f"igb's interface on {pf}",
                   lambda: net.is_dir() and next((p.name for p in net.iterdir()), None))
    _sh("ip", "link", "set", ifname, "up")
    # The PF answers the mailbox once up (igb_up); its link comes from QEMU's netdev.
    _wait(f"{ifname}'s carrier",
          lambda: Path(f"/sys/class/net/{ifname}/carrier").read_text().strip() == "1")
    with open(pci.SYSFS / "devices" / pf / "sriov_drivers_autoprobe", "w") as f:
        f.write("0")
    vfs = pci.set_num_vfs(pf, len(macs)).virtfns
    for i, mac in enumerate(macs):
        _sh("ip", "link", "set", ifname, "vf", str(i), "mac", mac)
    drivers = {**{i: "igbvf" for i in igbvf}, **{i: "vfio-pci" for i in vfio}}
    for i, drv in sorted(drivers.items()):
        pci.bind(vfs[i], drv)
    return {"bdf": pf, "ifname": ifname,
            "vfs": [{"index": i, "bdf": vf, "mac": macs[i], "driver": pci.device(vf).driver}
                    for i, vf in enumerate(vfs)]}


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    ap = argparse.ArgumentParser(prog="python3 -m pypdk.testing.sriov",
                                 description="in a guest: an 82576 PF's VFs, their MACs and drivers")
    ap.add_argument("pf")
    ap.add_argument("macs", nargs="+")
    ap.add_argument("--vfio", default="-", help="VF indexes for vfio-pci, e.g. 0,1 (- for none)")
    ap.add_argument("--igbvf", default="-", help="VF indexes for the kernel's igbvf")
    a = ap.parse_args(argv)

    def idx(text):
        return [int(x) for x in text.split(",")] if text != "-" else []
    from pypdk.errors import PypdkError
    try:
        doc = _setup(a.pf, a.macs, idx(a.vfio), idx(a.igbvf))
    except PypdkError as e:
        print(f"sriov: {e.line()}", file=sys.stderr)
        raise SystemExit(2)
    print(json.dumps(doc), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
