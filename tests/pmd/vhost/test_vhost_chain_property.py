"""Property test of the descriptor-chain walker over random descriptor tables.

Hypothesis writes random tables (addresses in, across, just outside and far
outside three regions; lengths of 0, small, large and any u32; any flags;
any `next`) and random indirect tables, then walks one chain with the
datapath's own walker (`virtq.walk_chain`, the code rx/tx bursts run). The
walk must end (within ring-size hops: the walker runs in C, a loop would
hang the test), hand out only chunks that lie wholly inside a mapped
region, and agree exactly with a plain-Python walk written from the virtio
spec's rules. The tables sit at the very end of a region, right before the
backend's guard page, so a read past them would fault the process.
"""
import os
import struct

from hypothesis import given, settings, strategies as st, HealthCheck

from pypdk.pmd.vhost.mem import MemTable
from pypdk.pmd.vhost.virtq import walk_chain

NEXT, WRITE, INDIRECT = 1, 2, 4
KB = 1024
# (gpa, size): A and B adjacent (a buffer may cross), C apart behind a hole.
REGIONS = [(0x10000, 64 * KB), (0x20000, 64 * KB), (0x100000, 64 * KB)]
MAX_SIZE = 64
RING_GPA = REGIONS[2][0] + REGIONS[2][1] - 16 * MAX_SIZE    # the table ends where C ends
IND_GPA = REGIONS[0][0] + 0x100                              # where indirect tables go

_fds = []
_views = []
for i, (gpa, size) in enumerate(REGIONS):
    fd = os.memfd_create(f"prop{i}", os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    _fds.append(fd)
    import mmap
    _views.append(mmap.mmap(fd, size))
MEM = MemTable.map([(gpa, size, 0x7f0000000000 + gpa, 0) for gpa, size in REGIONS],
                   [os.dup(fd) for fd in _fds])
BASES = [MEM.hva(gpa)[0] for gpa, _ in REGIONS]


def write(gpa, data):
    for (g, size), v in zip(REGIONS, _views):
        if g <= gpa and gpa + len(data) <= g + size:
            v[gpa - g:gpa - g + len(data)] = data
            return
    raise AssertionError("test layout")


def read(gpa, n):
    for (g, size), v in zip(REGIONS, _views):
        if g <= gpa and gpa + n <= g + size:
            return v[gpa - g:gpa - g + n]
    return None


def region_of(gpa):
    for g, size in REGIONS:
        if g <= gpa < g + size:
            return g, size
    return None


def oracle(size, head, want_write, indirect):
    """The spec's rules, in Python: (chunks as (gpa, len), fault or None)."""
    if head >= size:
        return [], "desc_index"
    table, tsize, hops, idx, more, in_ind = RING_GPA, size, 0, head, True, False
    chunks = []
    while True:
        if not more:
            return chunks, None
        if idx >= tsize:
            return chunks, "desc_index"
        if hops >= tsize:
            return chunks, "chain_too_long"
        addr, length, flags, nxt = struct.unpack("<QIHH", read(table + 16 * idx, 16))
        hops += 1
        if flags & INDIRECT:
            if in_ind:
                return chunks, "indirect_nested"
            if not indirect:
                return chunks, "indirect_off"
            if flags & NEXT or hops != 1:
                return chunks, "indirect_place"
            if length == 0 or length % 16 or length // 16 > size:
                return chunks, "indirect_len"
            r = region_of(addr)
            if r is None or addr + length > r[0] + r[1]:
                return chunks, "indirect_addr"
            table, tsize, hops, idx, more, in_ind = addr, length // 16, 0, 0, True, True
            continue
        if bool(flags & WRITE) != want_write:
            return chunks, "desc_dir"
        more, idx = bool(flags & NEXT), nxt
        gpa, left = addr, length
        while left:
            r = region_of(gpa)
            if r is None:
                return chunks, "desc_addr"
            n = min(left, r[0] + r[1] - gpa)
            chunks.append((gpa, n))
            gpa, left = gpa + n, left - n


# Addresses near every region edge, inside, and anywhere.
_edges = [e + d for g, s in REGIONS for e in (g, g + s) for d in (-17, -16, -1, 0, 1, 16)]
addrs = st.one_of(st.sampled_from(_edges), st.sampled_from([IND_GPA, IND_GPA + 8]),
                  st.integers(REGIONS[0][0], REGIONS[2][0] + REGIONS[2][1]),
                  st.integers(0, 2 ** 64 - 1))
lens = st.one_of(st.sampled_from([0, 1, 12, 16, 17, 48, 4096, 64 * KB, 2 ** 32 - 1]),
                 st.integers(0, 2 ** 32 - 1))
flags = st.integers(0, 7).map(lambda f: f) | st.integers(0, 0xffff)
nexts = st.one_of(st.integers(0, MAX_SIZE + 2), st.integers(0, 0xffff))
desc = st.tuples(addrs, lens, flags, nexts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size_log=st.integers(0, 6), table=st.lists(desc, min_size=MAX_SIZE, max_size=MAX_SIZE),
       ind=st.lists(desc, min_size=8, max_size=8), head=st.integers(0, MAX_SIZE + 1),
       want_write=st.booleans(), indirect=st.booleans())
def test_the_walker_ends_stays_inside_the_regions_and_follows_the_spec(size_log, table, ind, head,
                                                                      want_write, indirect):
    size = 1 << size_log
    write(RING_GPA, b"".join(struct.pack("<QIHH", *d) for d in table))
    write(IND_GPA, b"".join(struct.pack("<QIHH", *d) for d in ind))
    # The walker is given the table as the datapath has it: its last `size` entries
    # would not end at the guard page, so it gets the first `size` at RING_GPA.
    chunks, fault = walk_chain(MEM, MEM.hva(RING_GPA)[0], size, head, want_write, indirect)
    spans = []
    for p, n in chunks:
        inside = [(g, b) for (g, s), b in zip(REGIONS, BASES) if b <= p and p + n <= b + s]
        assert len(inside) == 1, f"chunk {p:#x}+{n} outside every region"
        g, b = inside[0]
        spans.append((g + p - b, n))
    assert (spans, fault) == oracle(size, head, want_write, indirect)
    # Within ring-size hops: at most `size` descriptors of the ring and of one
    # indirect table, each split at most once per region boundary.
    assert len(chunks) <= 2 * size * len(REGIONS)


def test_a_table_at_the_end_of_a_region_is_walked_to_its_last_entry():
    """The last descriptor of a ring that ends at the guard page is read, and
    next >= size is refused, not followed into the guard page."""
    size = MAX_SIZE
    ring = bytearray(16 * size)
    for i in range(size):
        struct.pack_into("<QIHH", ring, 16 * i, REGIONS[0][0], 4, NEXT, i + 1)   # the last: next = size
    write(RING_GPA, bytes(ring))
    chunks, fault = walk_chain(MEM, MEM.hva(RING_GPA)[0], size, 0, False, True)
    assert fault == "desc_index" and len(chunks) == size
