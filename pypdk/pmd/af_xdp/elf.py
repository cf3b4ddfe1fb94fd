"""The BPF ELF loader of net_af_xdp: a user's `xdp_prog=PATH` object, parsed.

A BPF ELF object as `clang -O2 -g -target bpf -c prog.c` writes it: one XDP
function in a section (named `xdp*`, or the only executable section), maps
declared in the BTF-defined `.maps` section or the legacy `maps` section
(`struct bpf_map_def`), a `license` section. It must declare an XSKMAP named
`xsks_map` (4-byte key and value); pypdk puts socket i at key
start_queue + i, as for the built-in program. We parse the ELF ourselves (no
libbpf): section headers, the symbol table, the `.rel<section>` relocations
of type R_BPF_64_64 (a `ld_imm64` that loads a map), the map definitions
(`_legacy_maps`, or `_btf_maps` from the `.BTF` section's DATASEC). The
result, a `BpfObject`, is what prog.load_object creates maps for and loads.
Not supported (clear UsageError naming the file): calls to other functions
(.text, relocation R_BPF_64_32), global data (.data/.rodata/.bss
relocations), map-in-map, pinned maps, CO-RE.

Layouts: the ELF64 header and section header (System V gABI, `<elf.h>`),
`Elf64_Sym` (24 bytes), `Elf64_Rel` (16 bytes); BTF kinds and records from
the kernel's include/uapi/linux/btf.h and Documentation/bpf/btf.rst.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pypdk.errors import UsageError
from pypdk.pmd.af_xdp import bpf

XSKS_MAP = "xsks_map"

# ELF constants (the parts a BPF object uses)
_LD_IMM64 = 0x18                   # BPF_LD | BPF_IMM | BPF_DW: the only map-loading instruction
_EM_BPF = 247
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB, _SHT_REL, _SHT_NOBITS = 1, 2, 3, 9, 8
_SHF_EXECINSTR = 0x4
_STT_SECTION, _STT_FUNC = 3, 2
_R_BPF_64_64 = 1
_R_BPF_64_32 = 10

MAP_TYPE_NAMES = {1: "hash", 2: "array", 5: "percpu_hash", 6: "percpu_array",
                   9: "lru_hash", 17: "xskmap", 14: "devmap", 16: "cpumap"}


@dataclass
class MapDef:
    """A map the object declares."""
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    offset: int = 0          # where its definition sits in its section (relocations point here)


@dataclass
class BpfObject:
    """A parsed BPF ELF object: one program, its maps and map relocations."""
    path: str
    section: str
    insns: bytes
    license: str
    maps: dict = field(default_factory=dict)     # name -> MapDef
    relocs: list = field(default_factory=list)   # (instruction index, map name)


@dataclass
class _Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


def _bad(path: str, what: str, fix: str = "") -> UsageError:
    return UsageError(f"xdp_prog={path}: {what}",
                      fix or "give a BPF object built with `clang -O2 -g -target bpf -c prog.c` "
                             "that has one XDP function and an XSKMAP named xsks_map")


def _cstr(data: bytes, off: int) -> str:
    end = data.find(b"\0", off)
    return data[off:end if end >= 0 else len(data)].decode(errors="replace")


def parse_elf(path: str) -> BpfObject:
    """Parse a BPF ELF object (see the module docstring for what is understood).

    Raises:
        UsageError: unreadable file, not a little-endian 64-bit BPF ELF, no XDP
            function, an unsupported relocation or map declaration.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise _bad(path, "no such file", "give the path of a compiled BPF object (.o)") from None
    except OSError as e:
        raise _bad(path, f"cannot read it ({e.strerror})", "check the path and its permissions") from None
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise _bad(path, "not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise _bad(path, "not a 64-bit little-endian ELF", "compile with -target bpf (bpfel) on x86_64")
    (e_machine,) = struct.unpack_from("<H", data, 18)
    if e_machine != _EM_BPF:
        raise _bad(path, f"ELF machine {e_machine} is not BPF (247)", "compile with clang -target bpf")
    e_shoff, = struct.unpack_from("<Q", data, 40)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 58)
    if e_shentsize != 64 or e_shoff + e_shnum * 64 > len(data) or e_shstrndx >= e_shnum:
        raise _bad(path, "truncated or corrupt section table")
    raw = []
    for i in range(e_shnum):
        (nm, ty, fl, _addr, off, size, link, info, _align, entsize) = struct.unpack_from(
            "<IIQQQQIIQQ", data, e_shoff + i * 64)
        if ty != _SHT_NOBITS and off + size > len(data):
            raise _bad(path, f"section {i} runs past the end of the file")
        raw.append((nm, ty, fl, off, size, link, info, entsize))
    shstr = raw[e_shstrndx]
    names = data[shstr[3]:shstr[3] + shstr[4]]
    secs = [_Section(i, _cstr(names, r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7])
            for i, r in enumerate(raw)]
    by_name = {s.name: s for s in secs}

    def body(s: _Section) -> bytes:
        return data[s.offset:s.offset + s.size]

    # symbols
    symtab = next((s for s in secs if s.type == _SHT_SYMTAB), None)
    if symtab is None:
        raise _bad(path, "no symbol table (was it stripped?)", "do not strip the object")
    strtab = body(secs[symtab.link])
    symdata = body(symtab)
    syms = []
    for off in range(0, len(symdata) - 23, 24):
        st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", symdata, off)
        syms.append((_cstr(strtab, st_name), st_info & 0xf, st_shndx, st_value, st_size))

    # the program section
    execs = [s for s in secs if s.type == _SHT_PROGBITS and s.flags & _SHF_EXECINSTR and s.size]
    xdp = [s for s in execs if s.name.startswith("xdp")]
    if len(xdp) == 1:
        prog = xdp[0]
    elif not xdp and len(execs) == 1:
        prog = execs[0]
    elif not execs:
        raise _bad(path, "no program in it (no executable section)")
    else:
        raise _bad(path, f"several program sections ({', '.join(s.name for s in execs)})",
                   "keep one XDP function per object (SEC(\"xdp\"))")
    funcs = [s for s in syms if s[1] == _STT_FUNC and s[2] == prog.index]
    if len(funcs) > 1:
        raise _bad(path, f"section {prog.name} has {len(funcs)} functions",
                   "keep one XDP function per section (mark helpers __always_inline)")
    if prog.size % 8:
        raise _bad(path, f"section {prog.name} is not a whole number of instructions")
    insns = bytearray(body(prog))

    lic_sec = by_name.get("license")
    license = _cstr(body(lic_sec), 0) if lic_sec is not None and lic_sec.size else ""

    obj = BpfObject(path, prog.name, b"", license)
    maps_by_sec: dict[int, list[MapDef]] = {}
    if "maps" in by_name:
        s = by_name["maps"]
        maps_by_sec[s.index] = _legacy_maps(path, body(s), [x for x in syms if x[2] == s.index
                                                          and x[1] != _STT_SECTION])
    if ".maps" in by_name:
        s = by_name[".maps"]
        btf = by_name.get(".BTF")
        if btf is None:
            raise _bad(path, "maps in .maps but no .BTF section to describe them",
                       "compile with -g (clang -O2 -g -target bpf)")
        maps_by_sec[s.index] = _btf_maps(path, body(btf))
    for lst in maps_by_sec.values():
        for m in lst:
            if m.name in obj.maps:
                raise _bad(path, f"map {m.name!r} is declared twice")
            obj.maps[m.name] = m

    # relocations of the program section
    for rel in secs:
        if rel.type != _SHT_REL or rel.info != prog.index:
            continue
        rd = body(rel)
        for off in range(0, len(rd) - 15, 16):
            r_offset, r_info = struct.unpack_from("<QQ", rd, off)
            rtype, symi = r_info & 0xffffffff, r_info >> 32
            if symi >= len(syms):
                raise _bad(path, f"relocation to symbol {symi} that does not exist")
            sname, stype, sshndx, svalue, _ = syms[symi]
            target = secs[sshndx].name if sshndx < len(secs) else f"#{sshndx}"
            idx = r_offset // 8
            if rtype == _R_BPF_64_32:
                raise _bad(path, f"calls another function ({sname or target})",
                           "make helpers static __always_inline: pypdk loads one function")
            if rtype != _R_BPF_64_64:
                raise _bad(path, f"relocation type {rtype} at instruction {idx} is not supported")
            if sshndx not in maps_by_sec:
                raise _bad(path, f"instruction {idx} refers to {sname or target!r} in section "
                                 f"{target} (global data is not supported)",
                           "keep state in maps declared in SEC(\".maps\")")
            if r_offset % 8 or idx + 1 >= len(insns) // 8 or insns[r_offset] != _LD_IMM64:
                raise _bad(path, f"map relocation at byte {r_offset} is not on a ld_imm64 instruction")
            # A relocation against the section symbol carries the map's offset
            # in the instruction's imm (REL has no addend field).
            where = svalue
            if stype == _STT_SECTION:
                where += struct.unpack_from("<i", insns, r_offset + 4)[0]
            m = next((m for m in maps_by_sec[sshndx] if m.offset == where), None)
            if m is None:
                raise _bad(path, f"instruction {idx} refers to offset {where} of {target}, "
                                 "where no map is declared")
            obj.relocs.append((idx, m.name))
    obj.insns = bytes(insns)
    xsk = obj.maps.get(XSKS_MAP)
    if xsk is None:
        raise _bad(path, f"no map named {XSKS_MAP} (maps: {', '.join(obj.maps) or 'none'})",
                   "declare struct { __uint(type, BPF_MAP_TYPE_XSKMAP); __type(key, __u32); "
                   "__type(value, __u32); __uint(max_entries, 64); } xsks_map SEC(\".maps\");")
    if xsk.type != bpf.BPF_MAP_TYPE_XSKMAP:
        raise _bad(path, f"{XSKS_MAP} is a {MAP_TYPE_NAMES.get(xsk.type, xsk.type)} map, not an XSKMAP",
                   "declare it with __uint(type, BPF_MAP_TYPE_XSKMAP)")
    if xsk.key_size != 4 or xsk.value_size != 4:
        raise _bad(path, f"{XSKS_MAP} has key/value sizes {xsk.key_size}/{xsk.value_size}",
                   "use __type(key, __u32) and __type(value, __u32)")
    if not any(name == XSKS_MAP for _, name in obj.relocs):
        raise _bad(path, f"the program never uses {XSKS_MAP}",
                   f"redirect with bpf_redirect_map(&{XSKS_MAP}, ctx->rx_queue_index, XDP_PASS)")
    return obj


def _legacy_maps(path: str, data: bytes, syms) -> list[MapDef]:
    """`SEC("maps") struct bpf_map_def NAME = {type, key_size, value_size,
    max_entries, map_flags}` (u32 each; libbpf allows trailing fields that are zero)."""
    out = []
    for name, _t, _shndx, value, size in sorted(syms, key=lambda s: s[3]):
        if value + 20 > len(data):
            raise _bad(path, f"map {name!r} in section maps is shorter than struct bpf_map_def")
        mtype, ks, vs, me, fl = struct.unpack_from("<IIIII", data, value)
        size = size or 20
        if any(data[value + 20:value + size]):
            raise _bad(path, f"map {name!r} uses bpf_map_def fields past map_flags",
                       "declare it in SEC(\".maps\") with BTF instead")
        out.append(MapDef(name, mtype, ks, vs, me, fl, value))
    return out


# BTF kinds (include/uapi/linux/btf.h) and the size of what follows each btf_type
_BTF_INT, _BTF_PTR, _BTF_ARRAY, _BTF_STRUCT, _BTF_UNION, _BTF_ENUM, _BTF_FWD = 1, 2, 3, 4, 5, 6, 7
_BTF_TYPEDEF, _BTF_VOLATILE, _BTF_CONST, _BTF_RESTRICT, _BTF_FUNC, _BTF_FUNC_PROTO = 8, 9, 10, 11, 12, 13
_BTF_VAR, _BTF_DATASEC, _BTF_FLOAT, _BTF_DECL_TAG, _BTF_TYPE_TAG, _BTF_ENUM64 = 14, 15, 16, 17, 18, 19
_SIZED = {_BTF_INT, _BTF_STRUCT, _BTF_UNION, _BTF_ENUM, _BTF_FLOAT, _BTF_ENUM64, _BTF_DATASEC}
_MODIFIERS = {_BTF_TYPEDEF, _BTF_VOLATILE, _BTF_CONST, _BTF_RESTRICT, _BTF_TYPE_TAG}


def _btf_types(path: str, btf: bytes):
    """[(kind, name, size_or_type, extra)] indexed by type id (0 = void)."""
    if len(btf) < 24:
        raise _bad(path, ".BTF is truncated")
    magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", btf, 0)
    if magic != 0xEB9F:
        raise _bad(path, f".BTF has magic {magic:#x}, not 0xeb9f (big-endian object?)")
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", btf, 8)
    types_b = btf[hdr_len + type_off:hdr_len + type_off + type_len]
    strs = btf[hdr_len + str_off:hdr_len + str_off + str_len]
    types = [(0, "", 0, None)]
    off = 0
    while off + 12 <= len(types_b):
        name_off, info, st = struct.unpack_from("<III", types_b, off)
        off += 12
        kind, vlen = (info >> 24) & 0x1f, info & 0xffff
        extra = None
        if kind == _BTF_INT or kind == _BTF_VAR or kind == _BTF_DECL_TAG:
            off += 4
        elif kind == _BTF_ARRAY:
            extra = struct.unpack_from("<III", types_b, off)     # type, index_type, nelems
            off += 12
        elif kind in (_BTF_STRUCT, _BTF_UNION):
            extra = [(_cstr(strs, struct.unpack_from("<I", types_b, off + 12 * i)[0]),
                      struct.unpack_from("<I", types_b, off + 12 * i + 4)[0]) for i in range(vlen)]
            off += 12 * vlen
        elif kind == _BTF_ENUM or kind == _BTF_FUNC_PROTO:
            off += 8 * vlen
        elif kind == _BTF_DATASEC:
            extra = [struct.unpack_from("<III", types_b, off + 12 * i) for i in range(vlen)]
            off += 12 * vlen
        elif kind == _BTF_ENUM64:
            off += 12 * vlen
        elif kind not in (_BTF_PTR, _BTF_FWD, _BTF_TYPEDEF, _BTF_VOLATILE, _BTF_CONST,
                          _BTF_RESTRICT, _BTF_FUNC, _BTF_FLOAT, _BTF_TYPE_TAG):
            raise _bad(path, f".BTF has a type of unknown kind {kind}")
        types.append((kind, _cstr(strs, name_off), st, extra))
    return types


def _btf_maps(path: str, btf: bytes) -> list[MapDef]:
    """Maps of the `.maps` DATASEC: each VAR is a struct whose members encode
    the definition (`__uint(x, N)` is `int (*x)[N]`, `__type(key, T)` is `T *key`)."""
    types = _btf_types(path, btf)

    def skip_mods(t):
        while types[t][0] in _MODIFIERS:
            t = types[t][2]
        return t

    def size_of(t, depth=0):
        if depth > 32:
            raise _bad(path, ".BTF type chain too deep")
        t = skip_mods(t)
        kind, _n, st, extra = types[t]
        if kind in _SIZED:
            return st
        if kind == _BTF_PTR:
            return 8
        if kind == _BTF_ARRAY:
            return extra[2] * size_of(extra[0], depth + 1)
        raise _bad(path, f".BTF type {t} (kind {kind}) has no size")

    sec = next((t for t in types if t[0] == _BTF_DATASEC and t[1] == ".maps"), None)
    if sec is None:
        raise _bad(path, ".BTF has no DATASEC for .maps", "compile with -g")
    out = []
    for var_id, offset, _size in sec[3]:
        kind, name, vtype, _ = types[var_id]
        if kind != _BTF_VAR:
            continue
        st = skip_mods(vtype)
        if types[st][0] != _BTF_STRUCT:
            raise _bad(path, f"map {name!r} is not a struct in .BTF")
        d = {"type": 0, "key_size": 0, "value_size": 0, "max_entries": 0, "map_flags": 0}
        for mname, mtype in types[st][3]:
            mt = skip_mods(mtype)
            if types[mt][0] != _BTF_PTR:
                raise _bad(path, f"map {name!r}: member {mname!r} is not a __uint/__type pointer")
            target = skip_mods(types[mt][2])
            if mname in d:                              # __uint(mname, N): int (*)[N]
                if types[target][0] != _BTF_ARRAY:
                    raise _bad(path, f"map {name!r}: {mname} is not declared with __uint()")
                d[mname] = types[target][3][2]
            elif mname == "key":
                d["key_size"] = size_of(target)
            elif mname == "value":
                d["value_size"] = size_of(target)
            elif mname == "pinning":
                if types[target][0] == _BTF_ARRAY and types[target][3][2]:
                    raise _bad(path, f"map {name!r} asks to be pinned",
                               "drop __uint(pinning, ...): pypdk does not pin maps")
            else:
                raise _bad(path, f"map {name!r}: member {mname!r} is not supported",
                           "use type, key/key_size, value/value_size, max_entries, map_flags")
        out.append(MapDef(name, d["type"], d["key_size"], d["value_size"], d["max_entries"],
                          d["map_flags"], offset))
    return out
