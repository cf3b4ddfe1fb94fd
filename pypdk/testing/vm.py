"""QEMU guests for what this host's kernel cannot do: vfio-pci devices behind an IOMMU,
virtio-net frontends for vhost-user ports, many cpus and two NUMA nodes.

A guest boots Debian's stock kernel (unpacked from the `linux-image-amd64` package, never
installed on the host) with a small initramfs of our own. It sees the host's root read-only
(virtio-9p under a tmpfs overlay), so the host's Python, the in-place build of pypdk and
Debian's DPDK run in it unchanged, and a job directory read-write, through which the host
hands it commands and reads back their output and exit status. One boot serves many
commands, and commands may run at the same time (`spawn`):

    from pypdk.testing import vm
    img = vm.prepare()                                  # once: packages, kernel, initramfs
    with vm.Guest(img, cpus=2, devices=vm.vhost_user_net("/tmp/vh0.sock", queues=2)) as g:
        print(g.run("ip -br link").out)
        job = g.spawn("ping -c 3 10.0.0.1")
        print(job.wait(30).rc)

Guests run under TCG (`-accel tcg,thread=multi`): the `/dev/kvm` of these machines is a
paravirtual one that cannot run a stock kernel (`/sys/module/kvm_pvm`). Guest code is slow,
so tests check behaviour there and measure speed only as a ratio within one guest.

What QEMU 7.2 under TCG needs, learned on this machine:
  * vfio-pci in the guest needs the vIOMMU (`intel-iommu,intremap=on,caching-mode=on` and the
    guest's `intel_iommu=on iommu=pt`): Debian's kernel has no VFIO no-IOMMU mode.
  * A virtio-net device driven through vfio needs `disable-legacy=on,iommu_platform=on`, or it
    ignores the IOMMU's mappings.
  * vhost-user needs the guest's memory shared with the backend (a `memory-backend-memfd`
    with `share=on`), and the vhost-user virtio-net device `vectors=0` (INTx), or QEMU crashes
    when the guest driver starts.
  * `-netdev socket,udp=...` carries one Ethernet frame per UDP datagram: traffic in and out
    of an emulated NIC from the host without tap devices (`UdpWire`).
  * The uncompressed kernel (`vmlinux`, PVH entry) boots about twice as fast as the bzImage.

SR-IOV (an 82576 PF, `udp_net("igb", ...)`, and its VFs: pypdk.testing.sriov) needs QEMU 8 or
later: `prepare_qemu10()` unpacks QEMU 10 from bookworm-backports into VM_DIR/q10 without
touching the system's QEMU 7.2, and `Guest(qemu=prepare_qemu10())` boots with it (with the
vIOMMU at aw-bits=48 as always, and no 64-bit PCI window on 10.0.x: see Qemu.has_vf_bar_bug).

`python -m pypdk.testing.vm prepare [--qemu10]` does the one-time set-up (what CI runs);
`python -m pypdk.testing.vm run 'CMD'` boots a guest, runs CMD in the current directory
and exits with its status.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import gzip
import hashlib
import io
import itertools
import json
import lzma
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from pypdk.errors import ResourceError, StateError

VM_DIR = Path(os.environ.get("PYPDK_VM_DIR", "/var/cache/pypdk-vm"))
APT_PACKAGES = ("qemu-system-x86", "busybox-static", "kmod")
# Modules the initramfs loads before it can reach the host's root (the rest the guest
# loads from the unpacked package through the host root: vfio-pci, e1000, igb, ...).
EARLY_MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
                 "virtio_pci", "netfs", "fscache", "9pnet", "9pnet_virtio", "9p", "overlay")
BOOT_TIMEOUT = float(os.environ.get("PYPDK_VM_BOOT_TIMEOUT", "300"))

_seq = itertools.count()


@dataclasses.dataclass(frozen=True)
class Image:
    """A prepared guest: kernel version, kernel image, initramfs, modules directory."""
    dir: Path
    kver: str
    kernel: Path
    initrd: Path

    @property
    def modules(self) -> Path:
        return self.dir / "k" / "lib" / "modules" / self.kver


# ---------------------------------------------------------------- preparation

def _run(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kw)


def _apt_install(packages: Sequence[str]) -> None:
    missing = [p for p in packages
               if subprocess.run(["dpkg", "-s", p], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL).returncode != 0]
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        _run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)
    except subprocess.CalledProcessError:
        _run("apt-get", "update", "-q", env=env)
        _run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


def _kernel_package() -> str:
    """The package `linux-image-amd64` depends on now (its version moves: never hard-code it)."""
    out = _run("apt-cache", "depends", "linux-image-amd64").stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split()[1]
    raise ResourceError("apt knows no linux-image-amd64 package",
                        "run `apt-get update` (the guest kernel comes from Debian's archive)")


def _unpacked_kver(vm_dir: Path) -> str | None:
    found = sorted(p.name for p in (vm_dir / "k" / "lib" / "modules").glob("*") if p.is_dir())
    return found[-1] if found else None


def _extract_vmlinux(vmlinuz: Path, out: Path) -> None:
    """The uncompressed ELF inside Debian's xz-compressed bzImage."""
    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise ResourceError(f"{vmlinuz}: no xz stream in the kernel image",
                            "delete the VM directory and prepare it again")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(lzma.LZMADecompressor().decompress(data[start:]))
    tmp.rename(out)


def _module_paths(modules: Path, names: Iterable[str]) -> list[Path]:
    """Each module's file with its dependencies first, from modules.dep."""
    deps = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[Path(path).name.split(".ko")[0].replace("-", "_")] = (path, rest.split())
    order: list[Path] = []

    def visit(name: str) -> None:
        if name not in deps:
            return              # built into the kernel
        path, needs = deps[name]
        for dep in reversed(needs):
            visit(Path(dep).name.split(".ko")[0].replace("-", "_"))
        p = modules / path
        if p not in order:
            order.append(p)

    for n in names:
        visit(n)
    return order


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    return data


class _Cpio:
    """An initramfs in the newc format (what the kernel unpacks), written in memory."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = itertools.count(1)

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        fields = (next(self.ino), mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(hdr + name.encode() + b"\0")
        self.buf.write(b"\0" * (-self.buf.tell() % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


# The guest's first process. It mounts the host root read-only under a tmpfs overlay,
# mounts the job directory read-write at the same path, and serves commands: a file
# q/N.sh is a command; it runs in the background with its output in out/N, its pid in
# pid/N and its status in rc/N (written last, by rename). The file `poweroff` ends it.
_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in /mods/*.ko; do insmod "$m" 2>/dev/null; done
for a in $(cat /proc/cmdline); do
  case $a in pdvm.*=*) k=${a%%=*}; eval "${k#pdvm.}='${a#*=}'";; esac
done
fail() { echo "pdvm: $*"; poweroff -f; }
mkdir -p /lower /upper /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower \
  || fail "cannot mount the host root over 9p"
mount -t tmpfs -o size=60% tmpfs /upper; mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot \
  || fail "cannot mount the overlay"
R=/newroot
mount -t proc proc $R/proc; mount -t sysfs sys $R/sys; mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm $R/dev/hugepages
mount -t devpts devpts $R/dev/pts; mount -t tmpfs tmpfs $R/dev/shm
mount -t hugetlbfs nodev $R/dev/hugepages; mount -t tmpfs tmpfs $R/run
mount -t bpf bpf $R/sys/fs/bpf 2>/dev/null
rm -rf $R/lib/modules; mkdir -p $R/lib/modules; ln -s "$kmods" "$R/lib/modules/$(uname -r)"
mkdir -p "$R$job"; mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 jobdir "$R$job" \
  || fail "cannot mount the job directory"
i=0
for d in $rw; do
  mkdir -p "$R$d"; mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 "rw$i" "$R$d"
  i=$((i + 1))
done
hostname pdvm
ip link set lo up 2>/dev/null
chroot $R /bin/sh -c '
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
  export PATH="$(dirname "$0"):$PATH"
  q='"$job"'; cd "$q"; mkdir -p q out rc pid; : > ready
  while [ ! -e poweroff ]; do
    for f in q/*.sh; do
      [ -e "$f" ] || break
      n=${f#q/}; n=${n%.sh}; mv "$f" "run.$n.sh"
      ( cd "$(cat "run.$n.cwd" 2>/dev/null || echo /)" 2>/dev/null
        /bin/sh "$q/run.$n.sh" > "$q/out/$n" 2>&1 < /dev/null & echo $! > "$q/pid/$n.tmp"
        mv "$q/pid/$n.tmp" "$q/pid/$n"; wait $!; echo $? > "$q/rc/$n.tmp"; mv "$q/rc/$n.tmp" "$q/rc/$n" ) &
    done
    sleep 0.1
  done
  sync' "$python"
poweroff -f
"""


def prepare(vm_dir: Path | str | None = None, *, log=print) -> Image:
    """Everything a guest needs, made once and kept in `vm_dir` (PYPDK_VM_DIR,
    default /var/cache/pypdk-vm): QEMU and busybox from apt, Debian's kernel unpacked
    (not installed), the uncompressed kernel and the initramfs. Idempotent."""
    vm_dir = Path(vm_dir or VM_DIR)
    vm_dir.mkdir(parents=True, exist_ok=True)
    _apt_install(APT_PACKAGES)
    kver = _unpacked_kver(vm_dir)
    if kver is None:
        pkg = _kernel_package()
        log(f"vm: unpacking {pkg} into {vm_dir}/k")
        with tempfile.TemporaryDirectory(dir=vm_dir) as tmp:
            _run("apt-get", "download", pkg, cwd=tmp)
            deb = glob.glob(os.path.join(tmp, "*.deb"))[0]
            _run("dpkg-deb", "-x", deb, str(vm_dir / "k"))
        kver = _unpacked_kver(vm_dir)
    modules = vm_dir / "k" / "lib" / "modules" / kver
    if not (modules / "modules.dep").exists():
        _run("depmod", "-b", str(vm_dir / "k"), kver)
    kernel = vm_dir / "vmlinux"
    if not kernel.exists():
        _extract_vmlinux(vm_dir / "k" / "boot" / f"vmlinuz-{kver}", kernel)
    initrd = vm_dir / "initrd.gz"
    stamp = vm_dir / "initrd.stamp"
    want = f"{kver}\n{hashlib.sha256(_INIT.encode()).hexdigest()}\n"
    if not initrd.exists() or not stamp.exists() or stamp.read_text() != want:
        busybox = shutil.which("busybox")
        if busybox is None:
            raise ResourceError("busybox is not installed", "apt-get install busybox-static")
        cpio = _Cpio()
        for d in ("bin", "dev", "proc", "sys", "mods"):
            cpio.dir(d)
        cpio.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
        for i, path in enumerate(_module_paths(modules, EARLY_MODULES)):
            name = path.name.split(".ko")[0]
            cpio.file(f"mods/{i:02d}-{name}.ko", _read_module(path))
        cpio.file("init", _INIT.encode(), 0o755)
        tmp = initrd.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(gzip.compress(cpio.finish(), 1))
        tmp.rename(initrd)
        stamp.write_text(want)
    return Image(vm_dir, kver, kernel, initrd)


# ---------------------------------------------------------------- QEMU 10 (SR-IOV)

# QEMU 10 from bookworm-backports, for the 82576 (`-device igb`) with its SR-IOV VFs, which
# QEMU 7.2 does not emulate. It is unpacked into VM_DIR/q10 with a private apt configuration
# (own sources, lists and cache): the system's QEMU 7.2, which the other guests use, and the
# system's apt state are left as they are.
QEMU10_SUITES = ("bookworm", "bookworm-backports")
QEMU10_PACKAGES = ("qemu-system-x86", "qemu-system-common", "qemu-system-data", "qemu-system-gui",
                   "qemu-system-modules-opengl", "qemu-system-modules-spice", "qemu-block-extra",
                   "seabios")                              # their bookworm-backports versions
QEMU10_FIRMWARE = ("ipxe-qemu",)                           # bookworm's (not backported): NIC ROMs
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclasses.dataclass(frozen=True)
class Qemu:
    """A QEMU to boot guests with: its binary, its firmware directories (`-L`, searched in
    order) and the environment it needs (QEMU_MODULE_DIR for an unpacked tree: QEMU also
    searches the system's module directory, and a module of another build aborts it)."""
    binary: str = "qemu-system-x86_64"
    firmware_dirs: tuple[str, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    version: str = ""                   # "10.0.2"; empty for the system's

    def args(self) -> list[str]:
        return [a for d in self.firmware_dirs for a in ("-L", d)]

    @property
    def has_vf_bar_bug(self) -> bool:
        """QEMU 10.0.x realizes an SR-IOV device's VFs before the PF declares the VF BARs'
        types: 64-bit VF BARs are decoded as 32-bit, and a guest that places them above 4 GiB
        reads zeros from them. No 64-bit PCI window (`-global q35-pcihost.pci-hole64-size=0`)
        keeps them below 4 GiB (Guest's vf_bar_workaround)."""
        return self.version.startswith("10.0.")


SYSTEM_QEMU = Qemu()


def debian_mirror(sources: Path | str = "/etc/apt/sources.list.d/debian.sources") -> tuple[str, str]:
    """The (URI, keyring) of the stanza of a deb822 sources file whose suites include bookworm."""
    try:
        text = Path(sources).read_text()
    except OSError as e:
        raise ResourceError(f"cannot read {sources}: {e.strerror}",
                            "QEMU 10 is fetched from the Debian mirror apt is configured with") from None
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "\t", "#")):
                fields[key.strip().lower()] = value.strip()
        if "bookworm" in fields.get("suites", "").split() and fields.get("uris"):
            keyring = fields.get("signed-by", "")
            return fields["uris"].split()[0], keyring if keyring.startswith("/") else DEBIAN_KEYRING
    raise ResourceError(f"{sources} has no Debian bookworm mirror",
                        "add a stanza with URIs: http://deb.debian.org/debian and Suites: bookworm")


def _private_apt(base: Path, sources: Path | str) -> list[str]:
    """apt-get options for a configuration of our own under `base`, its lists updated."""
    uri, keyring = debian_mirror(sources)
    (base / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "sources.list.d").mkdir(exist_ok=True)
    lst = base / "sources.list"
    want = "".join(f"deb [signed-by={keyring}] {uri} {suite} main\n" for suite in QEMU10_SUITES)
    lst.write_text(want)
    opts = ["-o", f"Dir::Etc::SourceList={lst}", "-o", f"Dir::Etc::SourceParts={base / 'sources.list.d'}",
            "-o", f"Dir::State::Lists={base / 'lists'}", "-o", f"Dir::Cache={base / 'cache'}",
            "-o", "APT::Sandbox::User=root", "-q"]
    try:
        _run("apt-get", *opts, "update")
    except subprocess.CalledProcessError as e:
        tail = e.stdout.strip().splitlines()[-1:] or ["?"]
        raise ResourceError(f"apt-get update for QEMU 10 failed ({uri}): {tail[0]}",
                            "check the network and the mirror in /etc/apt/sources.list.d/debian.sources") from None
    return opts


def _qemu10(root: Path, version: str) -> Qemu:
    usr = root / "usr"
    return Qemu(binary=str(usr / "bin" / "qemu-system-x86_64"),
                firmware_dirs=(str(usr / "share" / "qemu"), str(usr / "share" / "seabios"),
                               str(usr / "lib" / "ipxe" / "qemu")),
                env={"QEMU_MODULE_DIR": str(usr / "lib" / "x86_64-linux-gnu" / "qemu")},
                version=version)


def prepare_qemu10(vm_dir: Path | str | None = None, *, log=print,
                   sources: Path | str = "/etc/apt/sources.list.d/debian.sources") -> Qemu:
    """QEMU 10 from bookworm-backports, unpacked (`dpkg -x`) into VM_DIR/q10, with the
    firmware it loads; made once (a second call reads the stamp and downloads nothing)."""
    base = Path(vm_dir or VM_DIR) / "q10"
    base.mkdir(parents=True, exist_ok=True)
    root, stamp = base / "root", base / "stamp.json"
    with open(base / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and (root / "usr" / "bin" / "qemu-system-x86_64").exists():
            return _qemu10(root, json.loads(stamp.read_text())["qemu"])
        t0 = time.monotonic()
        opts = _private_apt(base / "apt", sources)
        backports = QEMU10_SUITES[1]
        names = [f"{p}/{backports}" for p in QEMU10_PACKAGES] + list(QEMU10_FIRMWARE)
        log(f"vm: downloading QEMU 10 from {backports} into {base}")
        debs = base / "debs"
        shutil.rmtree(debs, ignore_errors=True)
        debs.mkdir()
        try:
            _run("apt-get", *opts, "download", *names, cwd=debs)
        except subprocess.CalledProcessError as e:
            tail = e.stdout.strip().splitlines()[-1:] or ["?"]
            raise ResourceError(f"apt-get download of QEMU 10 failed: {tail[0]}",
                                f"check that {backports} has {', '.join(QEMU10_PACKAGES)}") from None
        tmp = base / "root.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        versions = {}
        for deb in sorted(debs.glob("*.deb")):
            name, ver = _run("dpkg-deb", "-W", "--showformat=${Package} ${Version}", str(deb)).stdout.split()
            versions[name] = ver
            _run("dpkg-deb", "-x", str(deb), str(tmp))
        q = _qemu10(tmp, "")
        env = dict(os.environ, **q.env)
        ver = subprocess.run([q.binary, "--version"], env=env, capture_output=True, text=True)
        if ver.returncode != 0 or not ver.stdout.startswith("QEMU emulator version "):
            err = (ver.stderr or ver.stdout).strip().splitlines()[:1] or ["?"]
            raise ResourceError(f"the unpacked QEMU 10 does not run: {err[0]}",
                                "install the libraries it names (apt-get install ...), then prepare again")
        version = ver.stdout.split()[3]
        helps = subprocess.run([q.binary, "-device", "help"], env=env, capture_output=True, text=True)
        if '"igb"' not in helps.stdout:
            raise ResourceError(f"QEMU {version} from {backports} has no igb device",
                                "the SR-IOV tests need QEMU 8 or later with -device igb")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
        shutil.rmtree(debs, ignore_errors=True)
        stamp.write_text(json.dumps({"qemu": version, "packages": versions}, indent=1) + "\n")
        log(f"vm: QEMU {version} in {root} ({time.monotonic() - t0:.1f} s)")
        return _qemu10(root, version)


# ---------------------------------------------------------------- devices

def vhost_user_net(path: str, *, queues: int = 1, mac: str | None = None, server: bool = False,
                   reconnect: int = 0, addr: str | None = None, name: str | None = None) -> list[str]:
    """A virtio-net device on a vhost-user backend's Unix socket.

    server=False: QEMU connects to the backend (pypdk listens, its default); server=True:
    QEMU listens (`server=on,wait=off`) and a backend in client mode connects.
    reconnect=S: QEMU reconnects every S seconds after the backend goes away."""
    n = name or f"vh{next(_seq)}"
    chardev = f"socket,id={n}c,path={path}"
    if server:
        chardev += ",server=on,wait=off"
    elif reconnect:
        chardev += f",reconnect={reconnect}"
    dev = f"virtio-net-pci,netdev={n},vectors=0"
    if queues > 1:
        dev += ",mq=on"
    if mac:
        dev += f",mac={mac}"
    if addr:
        dev += f",addr={addr}"
    return ["-chardev", chardev, "-netdev", f"vhost-user,id={n},chardev={n}c,queues={queues}",
            "-device", dev]


def udp_net(model: str, local_port: int, peer_port: int, *, mac: str | None = None,
            addr: str | None = None, name: str | None = None) -> list[str]:
    """An emulated NIC (`e1000`, `virtio` for a modern virtio-net behind the vIOMMU, `igb`
    for an 82576 with SR-IOV (QEMU 8 or later: prepare_qemu10), or any QEMU device name)
    whose wire is UDP on 127.0.0.1: QEMU sends each frame the guest transmits to
    `peer_port` and receives frames sent to `local_port` (see UdpWire). An igb's VFs share
    its wire: what they send that the NIC does not switch internally leaves by it."""
    n = name or f"un{next(_seq)}"
    dev = {"virtio": "virtio-net-pci,disable-legacy=on,iommu_platform=on"}.get(model, model)
    dev += f",netdev={n}"
    if mac:
        dev += f",mac={mac}"
    if addr:
        dev += f",addr={addr}"
    return ["-netdev", f"socket,id={n},udp=127.0.0.1:{peer_port},localaddr=127.0.0.1:{local_port}",
            "-device", dev]


def tap_net(ifname: str, *, queues: int = 1, mac: str | None = None, addr: str | None = None,
            name: str | None = None) -> list[str]:
    """A modern virtio-net behind the vIOMMU on a host tap device `ifname` that QEMU creates
    (and removes when it exits), with `queues` queue pairs (`mq=on` and 2*queues+2 MSI-X
    vectors when more than one). The host's end is an ordinary interface: bring it up and
    read or write it with an AF_PACKET socket."""
    n = name or f"tn{next(_seq)}"
    dev = f"virtio-net-pci,disable-legacy=on,iommu_platform=on,netdev={n}"
    if queues > 1:
        dev += f",mq=on,vectors={2 * queues + 2}"
    if mac:
        dev += f",mac={mac}"
    if addr:
        dev += f",addr={addr}"
    return ["-netdev", f"tap,id={n},ifname={ifname},queues={queues},script=no,downscript=no",
            "-device", dev]


def numa_nodes(cpus_per_node: Sequence[str], mem_mb_per_node: int) -> list[str]:
    """Guest NUMA nodes: `numa_nodes(["0-2", "3-5"], 512)` gives two nodes of 512 MiB."""
    args = []
    for i, cpus in enumerate(cpus_per_node):
        args += ["-object", f"memory-backend-ram,id=m{i},size={mem_mb_per_node}M",
                 "-numa", f"node,nodeid={i},cpus={cpus},memdev=m{i}"]
    return args


SO_RCVBUFFORCE = 33          # <asm-generic/socket.h>; Python does not name it


class UdpWire:
    """The host end of a `udp_net` NIC: send frames into it, receive what it sends."""

    def __init__(self, local_port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Room for a few thousand frames that arrive while the test is still sending
        # (the default buffer holds about 200 small datagrams).
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        except PermissionError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind(("127.0.0.1", local_port))
        self.port = self.sock.getsockname()[1]
        self.qemu_port: int | None = None

    def nic(self, model: str, **kw) -> list[str]:
        """QEMU arguments for a NIC wired to this socket (a free port for QEMU's end)."""
        self.qemu_port = free_udp_port()
        return udp_net(model, self.qemu_port, self.port, **kw)

    def send(self, frame: bytes) -> None:
        self.sock.sendto(bytes(frame), ("127.0.0.1", self.qemu_port))

    def recv_all(self, timeout: float = 1.0, idle: float = 0.5) -> list[bytes]:
        """Frames received until `idle` seconds pass without one (at most `timeout` of waiting
        for the first)."""
        got = []
        self.sock.settimeout(timeout)
        try:
            while True:
                got.append(self.sock.recv(65536))
                self.sock.settimeout(idle)
        except socket.timeout:
            pass
        return got

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- guests

@dataclasses.dataclass
class Result:
    rc: int
    out: str

    def check(self, what: str = "guest command") -> "Result":
        if self.rc != 0:
            raise StateError(f"{what} exited with {self.rc}", self.out[-2000:])
        return self


class Job:
    """A command running in the guest."""

    def __init__(self, guest: "Guest", n: int):
        self.guest, self.n = guest, n

    def _path(self, kind: str) -> Path:
        return self.guest.job_dir / kind / str(self.n)

    def output(self) -> str:
        try:
            return self._path("out").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def done(self) -> bool:
        return self._path("rc").exists()

    def pid(self, timeout: float = 30.0) -> int:
        self.guest._wait_for(self._path("pid"), timeout, f"job {self.n} to start")
        return int(self._path("pid").read_text())

    def wait(self, timeout: float = 300.0) -> Result:
        self.guest._wait_for(self._path("rc"), timeout, f"job {self.n} to end")
        return Result(int(self._path("rc").read_text() or 255), self.output())

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to the job's shell's children and the shell (as kill in the guest)."""
        pid = self.pid()
        self.guest.run(f"pkill -{int(sig)} -P {pid}; kill -{int(sig)} {pid} 2>/dev/null; true",
                       timeout=60)


def _remove_stale_jobs(vm_dir: Path) -> None:
    """Job directories of guests whose QEMU is gone (a test process that was killed)."""
    for d in vm_dir.glob("job.*"):
        try:
            pid = int((d / "qemu.pid").read_text())
        except (OSError, ValueError):
            if time.time() - d.stat().st_mtime < 600:
                continue            # a guest starting right now
            pid = 0
        if pid and os.path.exists(f"/proc/{pid}"):
            continue
        shutil.rmtree(d, ignore_errors=True)


class Guest:
    """A booted QEMU guest that runs commands until `close()`.

    cpus, mem (MiB), iommu (the q35 vIOMMU), iommu_aw_bits (its address width: 48, or 39
    to see a driver refuse memory above 2**39), shared_mem (memfd memory shared with a
    vhost-user backend), numa (numa_nodes() arguments; the memory is then theirs),
    devices (QEMU arguments: vhost_user_net, udp_net, UdpWire.nic, ...), rw (host
    directories mounted read-write at the same path), append (kernel command line),
    qemu (a Qemu: the system's by default, prepare_qemu10() for `igb` with SR-IOV),
    vf_bar_workaround (no 64-bit PCI window, so that VF BARs work: None = on for the
    QEMU versions with the VF BAR bug, Qemu.has_vf_bar_bug)."""

    def __init__(self, image: Image | None = None, *, cpus: int = 1, mem: int = 1024,
                 iommu: bool = True, iommu_aw_bits: int = 48, shared_mem: bool = False,
                 numa: Sequence[str] = (),
                 devices: Sequence[str] = (), rw: Sequence[str] = (), append: str = "",
                 qemu: Qemu = SYSTEM_QEMU, vf_bar_workaround: bool | None = None,
                 boot_timeout: float = BOOT_TIMEOUT):
        self.image = image or prepare(log=lambda *_: None)
        self.emulator = qemu            # (self.qemu is its process)
        if shutil.which(qemu.binary) is None:
            if qemu.version:
                raise ResourceError(f"{qemu.binary} is missing",
                                    "python -m pypdk.testing.vm prepare --qemu10")
            raise ResourceError(f"{qemu.binary} is not installed",
                                "python -m pypdk.testing.vm prepare (apt-get install qemu-system-x86)")
        _remove_stale_jobs(self.image.dir)
        self.job_dir = Path(tempfile.mkdtemp(prefix="job.", dir=self.image.dir))
        self.console = self.job_dir / "console.log"
        self._n = itertools.count()
        mach = ["-machine", "q35", "-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]
        mem_args = ["-m", str(mem)]
        if shared_mem:
            mem_args += ["-object", f"memory-backend-memfd,id=mem,size={mem}M,share=on",
                         "-numa", "node,memdev=mem"]
        mem_args += list(numa)
        # cryptomgr.notests: the crypto self-tests are minutes of emulated cpu at boot.
        kappend = ["console=ttyS0", "quiet", "loglevel=3", "panic=-1", "cryptomgr.notests",
                   f"pdvm.job={self.job_dir}", f"pdvm.kmods={self.image.modules}",
                   f"pdvm.python={sys.executable}"]
        fs = ["-fsdev", "local,id=fs0,path=/,security_model=none,readonly=on,multidevs=remap",
              "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=hostroot",
              "-fsdev", f"local,id=fs1,path={self.job_dir},security_model=none,multidevs=remap",
              "-device", "virtio-9p-pci,fsdev=fs1,mount_tag=jobdir"]
        for i, d in enumerate(rw):
            fs += ["-fsdev", f"local,id=fsr{i},path={d},security_model=none,multidevs=remap",
                   "-device", f"virtio-9p-pci,fsdev=fsr{i},mount_tag=rw{i}"]
        if rw:
            kappend.append("pdvm.rw=" + " ".join(rw))
        iommu_args = []
        if iommu:
            iommu_args = ["-device", f"intel-iommu,intremap=on,caching-mode=on,aw-bits={iommu_aw_bits}"]
            kappend += ["intel_iommu=on", "iommu=pt"]
        if append:
            kappend.append(append)
        if vf_bar_workaround is None:
            vf_bar_workaround = qemu.has_vf_bar_bug
        if vf_bar_workaround:
            mach += ["-global", "q35-pcihost.pci-hole64-size=0"]
        self.argv = [qemu.binary, *qemu.args(), "-nodefaults", "-no-user-config", *mach,
                     "-smp", str(cpus), *mem_args, *iommu_args,
                     "-display", "none", "-monitor", "none", "-no-reboot",
                     "-serial", f"file:{self.console}", *fs, *devices,
                     "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                     "-append", " ".join(kappend)]
        self.qemu = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, **qemu.env) if qemu.env else None)
        (self.job_dir / "qemu.pid").write_text(str(self.qemu.pid))
        try:
            self._wait_for(self.job_dir / "ready", boot_timeout, "the guest to boot")
        except BaseException:
            self.close()
            raise

    def _wait_for(self, path: Path, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.qemu.poll() is not None:
                out = self.qemu.stdout.read().decode(errors="replace") if self.qemu.stdout else ""
                raise StateError(f"QEMU exited ({self.qemu.returncode}) while waiting for {what}",
                                 (out + self.console_text())[-3000:])
            if time.monotonic() > deadline:
                raise StateError(f"timed out after {timeout:.0f} s waiting for {what}",
                                 self.console_text()[-3000:])
            time.sleep(0.05)

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def spawn(self, cmd: str, cwd: str | None = None) -> Job:
        """Start a shell command in the guest (in `cwd`, default the caller's directory)."""
        if self.qemu.poll() is not None:
            raise StateError("the guest has stopped", self.console_text()[-2000:])
        n = next(self._n)
        (self.job_dir / f"run.{n}.cwd").write_text(cwd or os.getcwd())
        tmp = self.job_dir / f".{n}.sh"
        tmp.write_text(cmd + "\n")
        tmp.rename(self.job_dir / "q" / f"{n}.sh")
        return Job(self, n)

    def run(self, cmd: str, timeout: float = 300.0, cwd: str | None = None,
            check: bool = False) -> Result:
        """Run a shell command in the guest and wait for it."""
        res = self.spawn(cmd, cwd).wait(timeout)
        return res.check(cmd) if check else res

    def close(self) -> None:
        """Power the guest off (QEMU is killed if it does not stop within seconds)."""
        if self.qemu.poll() is None:
            with contextlib.suppress(OSError):
                (self.job_dir / "poweroff").write_text("")
            try:
                self.qemu.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.qemu.pid, signal.SIGKILL)
                self.qemu.wait()
        if self.qemu.stdout:
            self.qemu.stdout.close()
        shutil.rmtree(self.job_dir, ignore_errors=True)

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv=None) -> None:
    import click

    @click.group()
    def cli():
        """QEMU guests for pypdk's VM tests."""

    @cli.command("prepare")
    @click.option("--dir", "vm_dir", default=str(VM_DIR), show_default=True)
    @click.option("--qemu10", is_flag=True,
                  help="also QEMU 10 from bookworm-backports, unpacked into DIR/q10 (SR-IOV tests)")
    def prepare_cmd(vm_dir, qemu10):
        """Install QEMU and busybox, unpack Debian's kernel, build the initramfs."""
        img = prepare(vm_dir)
        click.echo(f"vm: kernel {img.kver}: {img.kernel}, {img.initrd}")
        if qemu10:
            q = prepare_qemu10(vm_dir)
            click.echo(f"vm: QEMU {q.version}: {q.binary}")

    @cli.command("run", context_settings={"ignore_unknown_options": True})
    @click.option("--cpus", default=1, show_default=True)
    @click.option("--mem", default=1024, show_default=True, help="MiB")
    @click.option("--no-iommu", is_flag=True)
    @click.option("--timeout", default=600.0, show_default=True)
    @click.option("--qemu-arg", "extra", multiple=True, help="one more QEMU argument (repeat)")
    @click.option("--qemu10", is_flag=True, help="boot with the unpacked QEMU 10 (prepare --qemu10)")
    @click.argument("command")
    def run_cmd(cpus, mem, no_iommu, timeout, extra, qemu10, command):
        """Boot a guest, run COMMAND in the current directory, exit with its status."""
        qemu = prepare_qemu10(log=lambda *_: None) if qemu10 else SYSTEM_QEMU
        with Guest(cpus=cpus, mem=mem, iommu=not no_iommu, devices=list(extra), qemu=qemu) as g:
            res = g.run(command, timeout=timeout)
        click.echo(res.out, nl=False)
        raise SystemExit(res.rc)

    try:
        cli.main(args=argv, prog_name="python -m pypdk.testing.vm", standalone_mode=True)
    except (ResourceError, StateError) as e:
        click.echo(f"vm: {e.line()}", err=True)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
