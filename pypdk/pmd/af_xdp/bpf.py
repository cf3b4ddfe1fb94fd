"""The bpf() system call and the netlink XDP query, for net_af_xdp's slow path.

pypdk loads its XDP program and XSKMAP itself, with no libbpf or clang at
install or run time: `bpf()` is reached through libc's `syscall(321, ...)`
(ctypes), netlink through a plain AF_NETLINK socket. Everything here runs
once per port start or stop, never per packet.

`union bpf_attr` is passed as a zeroed 144-byte buffer (its size in the 6.1
UAPI headers); the kernel accepts a shorter attr than its own as long as
every byte it does not know is zero. Offsets below are from
`include/uapi/linux/bpf.h` (each command's anonymous struct in the union):
MAP_CREATE map_type 0, key_size 4, value_size 8, max_entries 12, map_flags
16, map_name 28; MAP_*_ELEM map_fd 0, key 8, value 16, flags 24; PROG_LOAD
prog_type 0, insn_cnt 4, insns 8, license 16, log_level 24, log_size 28,
log_buf 32, prog_name 48; LINK_CREATE prog_fd 0, target_ifindex 4,
attach_type 8 (BPF_XDP, 37), flags 12; OBJ_GET_INFO_BY_FD bpf_fd 0,
info_len 4, info 8. __NR_bpf is 321 on x86_64.

Attaching uses BPF_LINK_CREATE (kernel >= 5.9): the attachment lives as long
as the link fd, so a crashed or killed process can never leave its program
on the interface. The netlink path (`netlink_set_xdp`) is kept for what a
link cannot do: clearing a stale netlink-attached program, and tests that
need a "foreign" program attached the way `ip link set dev X xdp ...` does.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

# ---- constants (include/uapi/linux/bpf.h, if_link.h, rtnetlink.h) ------------
NR_BPF = 321                      # x86_64 asm/unistd_64.h
ATTR_SIZE = 144                   # sizeof(union bpf_attr) in the 6.1 UAPI header

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_PROG_LOAD = 5
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_CREATE = 28
BPF_LINK_DETACH = 34

BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_XSKMAP = 17
BPF_PROG_TYPE_XDP = 6
BPF_XDP = 37                      # enum bpf_attach_type
BPF_PSEUDO_MAP_FD = 1
BPF_ANY = 0

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)

XDP_FLAGS_UPDATE_IF_NOEXIST = 1
XDP_FLAGS_SKB_MODE = 2
XDP_FLAGS_DRV_MODE = 4
XDP_FLAGS_HW_MODE = 8

# IFLA_XDP_ATTACHED values
XDP_ATTACHED_NONE, XDP_ATTACHED_DRV, XDP_ATTACHED_SKB, XDP_ATTACHED_HW, XDP_ATTACHED_MULTI = range(5)
ATTACHED_NAMES = {0: "none", 1: "native", 2: "generic", 3: "offload", 4: "multi"}

_RTM_NEWLINK, _RTM_GETLINK, _RTM_SETLINK = 16, 18, 19
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLA_F_NESTED = 0x8000
_IFLA_XDP = 43
_IFLA_XDP_FD, _IFLA_XDP_ATTACHED, _IFLA_XDP_FLAGS, _IFLA_XDP_PROG_ID = 1, 2, 3, 4
_IFLA_XDP_DRV_PROG_ID, _IFLA_XDP_SKB_PROG_ID, _IFLA_XDP_HW_PROG_ID = 5, 6, 7
_SOL_NETLINK, _NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 270, 10, 11
_NLM_F_ACK_TLVS = 0x200
_NLMSGERR_ATTR_MSG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A bpf() or netlink call failed: errno, the call, and the verifier log or
    the kernel's extended-ack message when there is one."""

    def __init__(self, err: int, what: str, detail: str = ""):
        super().__init__(err, f"{what}: {os.strerror(err)}" + (f" ({detail})" if detail else ""))
        self.what = what
        self.detail = detail


def sys_bpf(cmd: int, attr: ctypes.Array, what: str) -> int:
    """bpf(cmd, attr, sizeof attr); the non-negative result or BpfError."""
    while True:
        rc = _libc.syscall(NR_BPF, ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
        if rc >= 0:
            return rc
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise BpfError(err, what)


def _attr() -> ctypes.Array:
    return ctypes.create_string_buffer(ATTR_SIZE)


def _addr(buf) -> int:
    return ctypes.addressof(buf)


# ---- maps --------------------------------------------------------------------

def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               name: str = "", flags: int = 0) -> int:
    """A new map; returns its fd (O_CLOEXEC, as every bpf() fd)."""
    a = _attr()
    struct.pack_into("=IIIII", a, 0, map_type, key_size, value_size, max_entries, flags)
    nm = name.encode()[:15]
    a[28:28 + len(nm)] = nm                          # map_name @28, 16 bytes
    return sys_bpf(BPF_MAP_CREATE, a, f"bpf(MAP_CREATE {name or map_type})")


def map_update_u32(map_fd: int, key: int, value: int, flags: int = BPF_ANY) -> None:
    """map[key] = value, both u32 (an XSKMAP's value is a socket fd)."""
    k = ctypes.c_uint32(key)
    v = ctypes.c_uint32(value)
    a = _attr()
    struct.pack_into("=IIQQQ", a, 0, map_fd, 0, _addr(k), _addr(v), flags)
    sys_bpf(BPF_MAP_UPDATE_ELEM, a, f"bpf(MAP_UPDATE_ELEM key {key})")


def map_delete_u32(map_fd: int, key: int) -> bool:
    """Delete map[key]; False when it was not there."""
    k = ctypes.c_uint32(key)
    a = _attr()
    struct.pack_into("=IIQ", a, 0, map_fd, 0, _addr(k))
    try:
        sys_bpf(BPF_MAP_DELETE_ELEM, a, f"bpf(MAP_DELETE_ELEM key {key})")
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return True


# ---- programs -----------------------------------------------------------------

def prog_load(insns: bytes, license: str = "GPL", name: str = "",
              prog_type: int = BPF_PROG_TYPE_XDP) -> int:
    """Load a program (its raw bpf_insn bytes); returns its fd.

    The first try has no verifier log: a log buffer that turns out too small
    makes even a valid program fail with ENOSPC. On failure it loads again
    with a 1 MiB log so the error carries the verifier's words.
    """
    if len(insns) % 8 or not insns:
        raise ValueError("a BPF program is a non-empty multiple of 8 bytes")
    code = ctypes.create_string_buffer(bytes(insns), len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    what = f"bpf(PROG_LOAD {name or 'xdp'})"

    def attempt(log_level, log):
        a = _attr()
        struct.pack_into("=IIQQIIQ", a, 0, prog_type, len(insns) // 8, _addr(code), _addr(lic),
                         log_level, len(log) if log is not None else 0,
                         _addr(log) if log is not None else 0)
        nm = name.encode()[:15]
        a[48:48 + len(nm)] = nm                      # prog_name @48
        return sys_bpf(BPF_PROG_LOAD, a, what)

    try:
        return attempt(0, None)
    except BpfError as first:
        if first.errno not in (errno.EACCES, errno.EINVAL):
            raise
        log = ctypes.create_string_buffer(1 << 20)
        try:
            fd = attempt(1, log)
        except BpfError as e:
            text = log.value.decode(errors="replace").strip()
            lines = [ln for ln in text.splitlines() if ln.strip()]
            raise BpfError(e.errno, what, " | ".join(lines[-6:])) from None
        return fd        # loads with a log: keep it (should not happen)


def obj_info(fd: int) -> dict:
    """{'type', 'id', 'name'} of a program fd (struct bpf_prog_info)."""
    info = ctypes.create_string_buffer(256)
    a = _attr()
    struct.pack_into("=IIQ", a, 0, fd, len(info), _addr(info))
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, a, "bpf(OBJ_GET_INFO_BY_FD)")
    ptype, pid = struct.unpack_from("=II", info, 0)
    # bpf_prog_info: type, id, tag[8], jited_prog_len, xlated_prog_len,
    # jited_prog_insns, xlated_prog_insns, load_time, created_by_uid,
    # nr_map_ids, map_ids, name[16] @64
    name = info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    return {"type": ptype, "id": pid, "name": name}


def prog_get_fd_by_id(prog_id: int) -> int:
    a = _attr()
    struct.pack_into("=I", a, 0, prog_id)
    return sys_bpf(BPF_PROG_GET_FD_BY_ID, a, f"bpf(PROG_GET_FD_BY_ID {prog_id})")


def link_create_xdp(prog_fd: int, ifindex: int, flags: int) -> int:
    """Attach an XDP program to an interface with a bpf_link; returns the
    link fd. Closing the last fd of the link detaches the program."""
    a = _attr()
    struct.pack_into("=IIII", a, 0, prog_fd, ifindex, BPF_XDP, flags)
    return sys_bpf(BPF_LINK_CREATE, a, "bpf(LINK_CREATE xdp)")


# ---- netlink: what XDP program an interface has ---------------------------------

def _nlattrs(buf: bytes, off: int, end: int):
    while off + 4 <= end:
        ln, ty = struct.unpack_from("=HH", buf, off)
        if ln < 4:
            break
        yield ty & 0x3fff, buf[off + 4:off + ln]
        off += (ln + 3) & ~3


def _nl_request(msg_type: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
    """One rtnetlink request; the list of (type, payload) replies. Raises
    BpfError for an NLMSG_ERROR with a non-zero error (with the extack text)."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    try:
        for opt in (_NETLINK_CAP_ACK, _NETLINK_EXT_ACK):
            try:
                s.setsockopt(_SOL_NETLINK, opt, 1)
            except OSError:
                pass
        s.bind((0, 0))
        seq = 1
        hdr = struct.pack("=IHHII", 16 + len(body), msg_type, flags, seq, 0)
        s.send(hdr + body)
        out = []
        while True:
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                ln, ty, fl, sq, _pid = struct.unpack_from("=IHHII", data, off)
                if ln < 16:
                    return out
                payload = data[off + 16:off + ln]
                if ty == _NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload, 0)[0]
                    if err:
                        msg = ""
                        if fl & _NLM_F_ACK_TLVS:
                            for aty, aval in _nlattrs(payload, 20, len(payload)):
                                if aty == _NLMSGERR_ATTR_MSG:
                                    msg = aval.split(b"\0", 1)[0].decode(errors="replace")
                        raise BpfError(err, "netlink", msg)
                    return out
                if ty == _NLMSG_DONE:
                    return out
                out.append((ty, payload))
                if not flags & _NLM_F_ACK:
                    return out
                off += (ln + 3) & ~3
    finally:
        s.close()


def xdp_query(ifindex: int) -> dict:
    """The XDP state of an interface: {'attached': 'none'|'native'|'generic'|...,
    'prog_id': int (0: none), 'drv_prog_id', 'skb_prog_id'}."""
    body = struct.pack("=BBHiII", socket.AF_UNSPEC, 0, 0, ifindex, 0, 0)
    res = {"attached": "none", "prog_id": 0, "drv_prog_id": 0, "skb_prog_id": 0, "hw_prog_id": 0}
    for ty, payload in _nl_request(_RTM_GETLINK, _NLM_F_REQUEST, body):
        if ty != _RTM_NEWLINK:
            continue
        for aty, aval in _nlattrs(payload, 16, len(payload)):
            if aty != _IFLA_XDP:
                continue
            for xty, xval in _nlattrs(aval, 0, len(aval)):
                if xty == _IFLA_XDP_ATTACHED:
                    res["attached"] = ATTACHED_NAMES.get(xval[0], str(xval[0]))
                elif xty == _IFLA_XDP_PROG_ID:
                    res["prog_id"] = struct.unpack_from("=I", xval)[0]
                elif xty == _IFLA_XDP_DRV_PROG_ID:
                    res["drv_prog_id"] = struct.unpack_from("=I", xval)[0]
                elif xty == _IFLA_XDP_SKB_PROG_ID:
                    res["skb_prog_id"] = struct.unpack_from("=I", xval)[0]
                elif xty == _IFLA_XDP_HW_PROG_ID:
                    res["hw_prog_id"] = struct.unpack_from("=I", xval)[0]
    if res["prog_id"] == 0:
        res["prog_id"] = res["drv_prog_id"] or res["skb_prog_id"] or res["hw_prog_id"]
    return res


def netlink_set_xdp(ifindex: int, prog_fd: int, flags: int = 0) -> None:
    """Attach (prog_fd >= 0) or detach (prog_fd = -1) an XDP program the old
    way, by RTM_SETLINK/IFLA_XDP, as `ip link set dev X xdp ...` does.
    Detach with the same mode flag (SKB/DRV) the program was attached with.
    Such an attachment outlives the process: pypdk itself attaches by link."""
    inner = struct.pack("=HHi", 8, _IFLA_XDP_FD, prog_fd)
    if flags:
        inner += struct.pack("=HHI", 8, _IFLA_XDP_FLAGS, flags)
    attr = struct.pack("=HH", 4 + len(inner), _IFLA_XDP | _NLA_F_NESTED) + inner
    body = struct.pack("=BBHiII", socket.AF_UNSPEC, 0, 0, ifindex, 0, 0) + attr
    _nl_request(_RTM_SETLINK, _NLM_F_REQUEST | _NLM_F_ACK, body)
