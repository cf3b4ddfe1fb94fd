"""net_af_xdp's XDP program: the built-in one, loading a user's object, and the attachment.

The built-in program
--------------------
Six instructions, assembled here (no compiler at install or run time):

    r2 = *(u32 *)(r1 + 16)            ; ctx->rx_queue_index (struct xdp_md)
    r1 = map_fd (XSKMAP)              ; ld_imm64, src_reg = BPF_PSEUDO_MAP_FD
    r3 = XDP_PASS                     ; bpf_redirect_map's flags: the action
                                      ; when the map has no socket at r2
    call bpf_redirect_map             ; helper 51
    exit                              ; return its result

so every frame of a queue that has a pypdk socket goes to that socket, and a
queue without one keeps going to the kernel's stack. The first instruction
must come first: the `ld_imm64` overwrites r1, the context.

A user program (`xdp_prog=PATH`)
-------------------------------
A BPF ELF object, parsed by `elf.py` at open (`elf.parse_elf`); here its
maps are created with bpf(MAP_CREATE), each relocated `ld_imm64` is patched
with its map's fd and src_reg BPF_PSEUDO_MAP_FD, and the program is loaded.

The attachment
--------------
One XDP program per interface. An `Attachment` is pypdk's in this process:
ports on different queues of one interface share it (and its XSKMAP), the
last one to let go detaches. Attaching refuses an interface that already has
a program that is not ours (ResourceError naming its id and the `ip` command
that removes it), changing nothing. We attach with a bpf_link, so the
program goes away with the process even on SIGKILL (see bpf.py); `release`
compares the interface's program id with ours before closing the link, and
never touches a program that is not ours.
"""
from __future__ import annotations

import errno
import os
import struct

from pypdk.errors import ResourceError, UsageError
from pypdk.pmd.af_xdp import bpf
from pypdk.pmd.af_xdp.elf import XSKS_MAP, MAP_TYPE_NAMES, BpfObject, parse_elf

PROG_NAME = "pypdk_xsk"            # what `bpftool prog` and `ip link` show

# ---- BPF instruction encoding (struct bpf_insn: code u8, dst:4|src:4, off s16, imm s32)

_LDX_MEM_W = 0x61
_LD_IMM64 = 0x18
_MOV64_K = 0xb7
_CALL = 0x85
_EXIT = 0x95
_FUNC_redirect_map = 51


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One 8-byte BPF instruction."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def default_program(xskmap_fd: int) -> bytes:
    """The built-in program's instructions, with the XSKMAP's fd in the ld_imm64."""
    return b"".join((
        insn(_LDX_MEM_W, dst=2, src=1, off=16),               # r2 = ctx->rx_queue_index
        insn(_LD_IMM64, dst=1, src=bpf.BPF_PSEUDO_MAP_FD, imm=xskmap_fd),
        insn(0),                                              # ld_imm64, upper half
        insn(_MOV64_K, dst=3, imm=bpf.XDP_PASS),              # fallback action
        insn(_CALL, imm=_FUNC_redirect_map),
        insn(_EXIT),
    ))


# ---- loading --------------------------------------------------------------------

class LoadedProgram:
    """A program in the kernel: its fd and id, and the fd of its XSKMAP.
    Close it when done (the kernel frees what no fd or attachment holds)."""

    def __init__(self, prog_fd: int, xskmap_fd: int, source: str, map_fds=()):
        self.prog_fd = prog_fd
        self.xskmap_fd = xskmap_fd
        self.source = source
        self.map_fds = list(map_fds)
        info = bpf.obj_info(prog_fd)
        self.id = info["id"]
        self.name = info["name"]

    def close(self):
        for fd in [self.prog_fd, self.xskmap_fd, *self.map_fds]:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.prog_fd = self.xskmap_fd = -1
        self.map_fds = []


def _load_error(e: bpf.BpfError, what: str) -> Exception:
    if e.errno == errno.EPERM:
        return ResourceError(f"{what}: no permission to load BPF programs ({e})",
                             "run as root (needs CAP_BPF and CAP_NET_ADMIN)")
    return UsageError(f"{what}: the kernel refused it ({e})",
                      "check the program (the verifier's last words are above)")


def load_default(max_entries: int) -> LoadedProgram:
    """Create an XSKMAP of max_entries and load the built-in program over it."""
    try:
        map_fd = bpf.map_create(bpf.BPF_MAP_TYPE_XSKMAP, 4, 4, max_entries, XSKS_MAP)
    except bpf.BpfError as e:
        if e.errno == errno.EPERM:
            raise ResourceError(f"cannot create an XSKMAP ({e})",
                                "run as root (needs CAP_BPF and CAP_NET_ADMIN)") from None
        raise ResourceError(f"cannot create an XSKMAP ({e})", "check the kernel has CONFIG_XDP_SOCKETS") from None
    try:
        prog_fd = bpf.prog_load(default_program(map_fd), "Dual BSD/GPL", PROG_NAME)
    except bpf.BpfError as e:
        os.close(map_fd)
        raise _load_error(e, "the built-in XDP program") from None
    return LoadedProgram(prog_fd, map_fd, "built-in")


def load_object(obj: BpfObject) -> LoadedProgram:
    """Create the object's maps, patch its map loads, load it."""
    fds: dict[str, int] = {}
    try:
        for m in obj.maps.values():
            try:
                fds[m.name] = bpf.map_create(m.type, m.key_size, m.value_size, m.max_entries,
                                             m.name, m.flags)
            except bpf.BpfError as e:
                raise UsageError(f"xdp_prog={obj.path}: map {m.name!r} "
                                 f"({MAP_TYPE_NAMES.get(m.type, m.type)}, key {m.key_size}, "
                                 f"value {m.value_size}, {m.max_entries} entries) was refused: {e}",
                                 "fix the map's declaration") from None
        code = bytearray(obj.insns)
        for idx, name in obj.relocs:
            o = idx * 8
            code[o + 1] = (code[o + 1] & 0x0f) | (bpf.BPF_PSEUDO_MAP_FD << 4)
            struct.pack_into("<i", code, o + 4, fds[name])
            struct.pack_into("<i", code, o + 12, 0)
        try:
            prog_fd = bpf.prog_load(bytes(code), obj.license, obj.section.split("/")[-1][:15])
        except bpf.BpfError as e:
            raise _load_error(e, f"xdp_prog={obj.path} (section {obj.section})") from None
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    xsk = fds.pop(XSKS_MAP)
    return LoadedProgram(prog_fd, xsk, obj.path, fds.values())


# ---- attaching -------------------------------------------------------------------

MODES = ("native", "generic", "auto")
_MODE_FLAGS = {"native": bpf.XDP_FLAGS_DRV_MODE, "generic": bpf.XDP_FLAGS_SKB_MODE}


def foreign_program_error(ifname: str, state: dict) -> ResourceError:
    """The error for an interface that has an XDP program this process did not attach."""
    pid = state["prog_id"]
    name = ""
    try:
        fd = bpf.prog_get_fd_by_id(pid)
        try:
            name = bpf.obj_info(fd)["name"]
        finally:
            os.close(fd)
    except OSError:
        pass
    if name == PROG_NAME:
        return ResourceError(f"{ifname} already has XDP program id {pid} ({state['attached']}, "
                             f"pypdk's from another process)",
                             f"stop the other pypdk process using {ifname} or pick another interface")
    how = "xdpgeneric" if state["attached"] == "generic" else "xdp"
    return ResourceError(f"{ifname} already has XDP program id {pid} "
                         f"({state['attached']}{', ' + name if name else ''}; not pypdk's)",
                         f"detach it with `ip link set dev {ifname} {how} off` or pick another interface")


class Attachment:
    """pypdk's XDP program on one interface, shared by this process's ports."""

    def __init__(self, ifname, ifindex, mode, prog: LoadedProgram, link_fd, xdp_prog):
        self.ifname = ifname
        self.ifindex = ifindex
        self.mode = mode                 # "native" or "generic": what is attached
        self.prog = prog
        self.link_fd = link_fd
        self.xdp_prog = xdp_prog         # None: built-in
        self.users = 0

    @property
    def prog_id(self):
        return self.prog.id

    def set_socket(self, key: int, fd: int) -> None:
        bpf.map_update_u32(self.prog.xskmap_fd, key, fd)

    def clear_socket(self, key: int) -> None:
        if self.prog.xskmap_fd >= 0:
            bpf.map_delete_u32(self.prog.xskmap_fd, key)


_attached: dict[int, Attachment] = {}


def attach(ifname: str, ifindex: int, mode: str, xdp_prog: str | None,
           obj: BpfObject | None, max_entries: int) -> Attachment:
    """pypdk's program on `ifindex` (attached now, or shared with another port):
    the built-in one (xdp_prog None) or the object parsed from xdp_prog (`obj`,
    parsed now if None).

    Raises:
        ResourceError: a program that is not ours is attached, no permission,
            the driver cannot run XDP in `mode`.
        UsageError: xdp_prog is not a usable object; another port of this
            process uses the interface with a different program or mode.
    """
    att = _attached.get(ifindex)
    if att is not None:
        if att.xdp_prog != xdp_prog or (mode != "auto" and mode != att.mode):
            raise UsageError(f"{ifname}: another port already runs "
                             f"{att.xdp_prog or 'the built-in XDP program'} in {att.mode} mode on it",
                             "use the same xdp_prog and mode for every port on one interface")
        att.users += 1
        return att
    state = bpf.xdp_query(ifindex)
    if state["prog_id"]:
        raise foreign_program_error(ifname, state)
    if xdp_prog:
        prog = load_object(obj if obj is not None else parse_elf(xdp_prog))
    else:
        prog = load_default(max_entries)
    try:
        link_fd, used = _link(ifname, ifindex, prog, mode)
        att = Attachment(ifname, ifindex, used, prog, link_fd, xdp_prog)
        now = bpf.xdp_query(ifindex)["prog_id"]
        if now != prog.id:          # cannot happen with a link; be sure anyway
            os.close(link_fd)
            raise ResourceError(f"{ifname}: XDP program {now} is attached, not ours ({prog.id})",
                                "something else is attaching programs to it; pick another interface")
    except BaseException:
        prog.close()
        raise
    att.users = 1
    _attached[ifindex] = att
    return att


def _link(ifname, ifindex, prog, mode):
    tries = ["native", "generic"] if mode == "auto" else [mode]
    last = None
    for m in tries:
        try:
            return bpf.link_create_xdp(prog.prog_fd, ifindex, _MODE_FLAGS[m]), m
        except bpf.BpfError as e:
            last = e
            if e.errno == errno.EPERM:
                raise ResourceError(f"{ifname}: no permission to attach an XDP program ({e})",
                                    "run as root (needs CAP_NET_ADMIN and CAP_BPF)") from None
            if e.errno in (errno.EBUSY, errno.EEXIST):
                state = bpf.xdp_query(ifindex)
                if state["prog_id"]:
                    raise foreign_program_error(ifname, state) from None
                raise ResourceError(f"{ifname}: cannot attach XDP ({e})",
                                    "another XDP user holds the interface; pick another one") from None
            if e.errno == errno.ENODEV:
                raise ResourceError(f"{ifname}: the interface went away", "check `ip link`") from None
            if e.errno == errno.EINVAL and m == "native" and mode == "native":
                raise ResourceError(f"{ifname}: its driver refused native XDP ({e})",
                                    "use mode=generic or mode=auto "
                                    "(veth: the peer needs at least as many tx as rx queues, "
                                    "and an MTU that fits a page)") from None
            if e.errno == errno.EOPNOTSUPP and mode == "native":
                raise ResourceError(f"{ifname}: its driver has no native XDP",
                                    "use mode=generic or mode=auto") from None
    raise ResourceError(f"{ifname}: cannot attach an XDP program ({last})",
                        "check `ip link show dev " + ifname + "` and dmesg")


def release(att: Attachment) -> None:
    """Drop one user; the last one detaches (only our own program) and frees it."""
    att.users -= 1
    if att.users > 0:
        return
    if _attached.get(att.ifindex) is att:
        del _attached[att.ifindex]
    try:
        now = bpf.xdp_query(att.ifindex)["prog_id"]
    except OSError:
        now = None                    # interface gone: the kernel detached everything
    if now is not None and now != att.prog.id:
        # Not ours any more: closing our link fd cannot touch it; do nothing else.
        pass
    if att.link_fd >= 0:
        os.close(att.link_fd)        # the last fd of the link: the program is detached
        att.link_fd = -1
    att.prog.close()


def attachments() -> dict[int, Attachment]:
    """This process's attachments by ifindex (for tests and info)."""
    return dict(_attached)
