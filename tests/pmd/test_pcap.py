"""net_pcap: files written by scapy and tcpdump replay byte for byte; files we
write are read by scapy and tshark; bad files fail at open; no mbuf leaks."""
import struct
import subprocess
import time
from decimal import Decimal

import pytest
from scapy.all import Ether, IP, UDP, Raw, PcapWriter, PcapNgWriter, rdpcap, wrpcap

import pypdk.pmd
from pypdk.errors import UsageError
from pypdk.mempool import PktMbufPool
from pypdk.testing import netns as nsh


pytestmark = pytest.mark.pypdk_pool(size=2048)      # the `pool` fixture


def frames(n=40, big=()):
    """Varied UDP frames (ports off any dissector tshark knows); `big`: extra sizes."""
    out = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
           IP(src="10.1.0.1", dst=f"10.1.{i // 250}.{i % 250 + 1}") /
           UDP(sport=40000 + i, dport=41000) / Raw(bytes((i + k) & 0xff for k in range(i * 7 % 300)))
           for i in range(n)]
    for size in big:
        out.append(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() /
                   UDP(sport=40000, dport=41000) / Raw(b"J" * (size - 42)))
    return out


def rx_all(port, n=32, limit=100000):
    got = []
    while len(got) < limit:
        b = port.rx_burst(0, n)
        if not b:
            break
        got.extend(b)
    return got


def timestamp_ns(m):
    return m.timestamp


def bytes_and_free(mbufs):
    out = [m.bytes() for m in mbufs]
    for m in mbufs:
        m.free()
    return out


# ---- writers for what scapy does not write: big-endian pcap and pcapng --------

def write_pcap_be(path, pkts, nano=False):
    with open(path, "wb") as f:
        f.write(struct.pack(">IHHiIII", 0xa1b23c4d if nano else 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(pkts):
            b = bytes(p)
            f.write(struct.pack(">IIII", 1700000000 + i, i * 1000, len(b), len(b)) + b)


def _ng_block(bo, btype, body):
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def write_pcapng_be(path, pkts, simple=False):
    """Big-endian pcapng: SHB, an IDB with if_tsresol=9 (ns), EPBs or SPBs,
    plus a Name Resolution Block the reader must skip."""
    bo = ">"
    shb = struct.pack(bo + "IHHq", 0x1a2b3c4d, 1, 0, -1)
    opts = struct.pack(bo + "HHB3x", 9, 1, 9) + struct.pack(bo + "HH", 0, 0)
    idb = struct.pack(bo + "HHI", 1, 0, 0) + opts
    out = [_ng_block(bo, 0x0a0d0d0a, shb), _ng_block(bo, 1, idb),
           _ng_block(bo, 4, struct.pack(bo + "HH", 0, 0))]
    for i, p in enumerate(pkts):
        b = bytes(p)
        if simple:
            out.append(_ng_block(bo, 3, struct.pack(bo + "I", len(b)) + b))
        else:
            ts = 1700000000_000000000 + i
            out.append(_ng_block(bo, 6, struct.pack(bo + "IIIII", 0, ts >> 32, ts & 0xffffffff,
                                                    len(b), len(b)) + b))
    with open(path, "wb") as f:
        f.write(b"".join(out))


def write_file(kind, path, pkts):
    if kind == "pcap-us":
        wrpcap(str(path), pkts)
    elif kind == "pcap-ns":
        w = PcapWriter(str(path), nano=True)
        w.write(pkts)
        w.close()
    elif kind == "pcapng":
        w = PcapNgWriter(str(path))
        w.write(pkts)
        w.close()
    elif kind == "pcap-us-be":
        write_pcap_be(path, pkts)
    elif kind == "pcap-ns-be":
        write_pcap_be(path, pkts, nano=True)
    elif kind == "pcapng-be":
        write_pcapng_be(path, pkts)
    elif kind == "pcapng-be-spb":
        write_pcapng_be(path, pkts, simple=True)


# ---- reading ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["pcap-us", "pcap-ns", "pcapng", "pcap-us-be", "pcap-ns-be",
                                  "pcapng-be", "pcapng-be-spb"])
def test_replays_every_byte_of_a_file(pool, tmp_path, kind):
    pkts = frames(60, big=(1514, 9000))
    path = tmp_path / f"in.{kind}"
    write_file(kind, path, pkts)
    port = pypdk.pmd.open(f"net_pcap0,rx_pcap={path}").setup(pool)
    port.start()
    got = rx_all(port)
    assert [m.port for m in got] == [port.port_id] * len(pkts)
    assert got[-1].nb_segs == 5                    # 9000 bytes in 2048-byte segments
    if kind == "pcapng-be-spb":                    # a Simple Packet Block has no time
        want_ts = [0] * len(pkts)
    else:                                          # scapy's reading of the same file
        want_ts = [int(Decimal(str(p.time)) * 10**9) for p in rdpcap(str(path))]
    assert [timestamp_ns(m) for m in got] == want_ts
    assert bytes_and_free(got) == [bytes(p) for p in pkts]
    assert port.rx_burst(0, 32) == []              # end of file: nothing more
    st = port.stats()
    assert st["ipackets"] == len(pkts)
    assert st["ibytes"] == sum(len(p) for p in pkts)
    assert st["ierrors"] == st["rx_nombuf"] == 0
    assert port.info()["rx_pcap_packets"] == len(pkts)
    port.close()
    assert pool.in_use_count == 0


@pytest.mark.parametrize("kind", ["pcap-ns", "pcapng-be"])
def test_pcapfile_index_reads_a_file_without_a_port(tmp_path, kind):
    from pypdk.pmd.pcapfile import PcapIndex
    pkts = frames(10)
    path = tmp_path / f"in.{kind}"
    write_file(kind, path, pkts)
    ix = PcapIndex()
    ix.load(str(path), "in")
    assert ix.fmt == ("pcap-ns" if kind == "pcap-ns" else "pcapng") and len(ix) == len(pkts)
    want_ts = [int(Decimal(str(p.time)) * 10**9) for p in rdpcap(str(path))]
    assert [ix.packet(i) for i in range(len(ix))] == list(zip(want_ts, map(bytes, pkts)))
    assert not ix.truncated and ix.skipped_empty == 0
    with pytest.raises(IndexError):
        ix.packet(len(ix))
    with pytest.raises(UsageError, match="^in=.*: no such file"):
        PcapIndex().load(str(tmp_path / "nothing"), "in")


def test_reads_what_tcpdump_captured(pool, tmp_path, netns_factory):
    path = tmp_path / "tcpdump.pcap"
    ns1, ns2 = netns_factory(), netns_factory()
    with nsh.veth_pair(ns_b=ns2) as (a, b):
        nsh.move_link(a, ns1)
        nsh.add_addr(a, "10.66.0.1/24", ns1)
        nsh.add_addr(b, "10.66.0.2/24", ns2)
        dump = nsh.ns_popen(ns1, "tcpdump", "-i", a, "-w", str(path), "-c", "8", "-U",
                            "--time-stamp-precision=nano")
        try:
            for _ in range(20):                     # until tcpdump has its 8 packets
                if dump.poll() is not None:
                    break
                nsh.ping(ns1, "10.66.0.2", count=2, wait=1, interval=0.2)
            dump.wait(timeout=30)
        finally:
            if dump.poll() is None:
                dump.kill()
                dump.wait()
    assert dump.returncode == 0, dump.stderr.read()
    want = [bytes(p) for p in rdpcap(str(path))]
    assert len(want) == 8
    port = pypdk.pmd.open("net_pcap0", rx_pcap=str(path)).setup(pool)
    assert port.info()["rx_pcap_format"] == "pcap-ns"
    port.start()
    assert bytes_and_free(rx_all(port)) == want
    port.close()


def test_infinite_rx_loops_over_the_file(pool, tmp_path):
    pkts = frames(3)
    path = tmp_path / "loop.pcap"
    wrpcap(str(path), pkts)
    port = pypdk.pmd.open(f"net_pcap0,rx_pcap={path},infinite_rx=1").setup(pool)
    port.start()
    got = []
    for _ in range(4):
        got += bytes_and_free(port.rx_burst(0, 5))
    assert got == [bytes(pkts[i % 3]) for i in range(20)]
    assert port.xstats()["rx_pcap_passes"] == 7
    assert port.stats()["ipackets"] == 20


def test_packet_needing_too_many_segments_is_an_ierror(eal_no_huge, tmp_path):
    # 32-byte segments: a 9000-byte frame needs 282 (> 256 per burst): dropped.
    small = PktMbufPool(nsh.unique_name("tiny"), 1024, data_room=32)
    try:
        pkts = frames(3, big=(9000,)) + frames(2)
        path = tmp_path / "jumbo.pcap"
        wrpcap(str(path), pkts)
        port = pypdk.pmd.open(f"net_pcap0,rx_pcap={path}").setup(small)
        port.start()
        got = rx_all(port)
        assert max(m.nb_segs for m in got) > 1
        assert bytes_and_free(got) == [bytes(p) for p in pkts[:3] + pkts[4:]]
        st = port.stats()
        assert (st["ipackets"], st["ierrors"]) == (5, 1)
        assert port.xstats()["rx_oversized"] == 1
        port.close()
        assert small.in_use_count == 0
    finally:
        pypdk.pmd.close_all()
        small.close()


def test_short_pool_counts_rx_nombuf_and_loses_nothing(eal_no_huge, tmp_path):
    small = PktMbufPool(nsh.unique_name("few"), 8, cache_size=0)
    try:
        pkts = frames(20)
        path = tmp_path / "many.pcap"
        wrpcap(str(path), pkts)
        port = pypdk.pmd.open(f"net_pcap0,rx_pcap={path}").setup(small)
        port.start()
        held = []
        while True:                                 # keep every mbuf: the pool runs dry
            b = port.rx_burst(0, 32)                # (a short pool gives a smaller burst)
            if not b:
                break
            held += b
        assert 0 < len(held) <= 8                   # only 8 mbufs exist
        assert port.stats()["rx_nombuf"] >= 1
        got = bytes_and_free(held)
        while True:
            b = port.rx_burst(0, 32)
            if not b:
                break
            got += bytes_and_free(b)
        assert got == [bytes(p) for p in pkts]
        port.close()
        assert small.in_use_count == 0
    finally:
        pypdk.pmd.close_all()
        small.close()


def test_file_cut_short_is_read_to_its_last_whole_record(pool, tmp_path):
    pkts = frames(5)
    path = tmp_path / "cut.pcap"
    wrpcap(str(path), pkts)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    port = pypdk.pmd.open("net_pcap0", rx_pcap=str(path)).setup(pool)
    assert port.info()["rx_pcap_truncated"] is True
    port.start()
    assert bytes_and_free(rx_all(port)) == [bytes(p) for p in pkts[:4]]


# ---- bad input ----------------------------------------------------------------

def test_not_a_capture_file_is_a_usage_error_naming_it(pool, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a capture file, just some text\n")
    with pytest.raises(UsageError, match=r"notes\.txt.*not a pcap or pcapng"):
        pypdk.pmd.open(f"net_pcap0,rx_pcap={path}")
    assert pypdk.pmd.ports() == []                 # nothing left behind


def test_missing_file_and_non_ethernet_link_type(pool, tmp_path):
    with pytest.raises(UsageError, match=r"nothere\.pcap: no such file"):
        pypdk.pmd.open(f"net_pcap0,rx_pcap={tmp_path}/nothere.pcap")
    raw = tmp_path / "raw_ip.pcap"
    raw.write_bytes(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 101))
    with pytest.raises(UsageError, match=r"raw_ip\.pcap: link type 101 is not Ethernet"):
        pypdk.pmd.open(f"net_pcap0,rx_pcap={raw}")
    corrupt = tmp_path / "corrupt.pcapng"
    corrupt.write_bytes(struct.pack("<IIIHHq", 0x0a0d0d0a, 29, 0x1a2b3c4d, 1, 0, -1) + b"\0" * 16)
    with pytest.raises(UsageError, match=r"corrupt\.pcapng: corrupt pcapng"):
        pypdk.pmd.open(f"net_pcap0,rx_pcap={corrupt}")
    assert pypdk.pmd.ports() == []


def test_live_interface_keys_point_to_af_packet(pool, tmp_path):
    with pytest.raises(UsageError, match="net_af_packet"):
        pypdk.pmd.open("net_pcap0,iface=eth0")
    with pytest.raises(UsageError, match="rx_pcap"):
        pypdk.pmd.open("net_pcap0")
    assert pypdk.pmd.ports() == []


# ---- writing ------------------------------------------------------------------

def tshark(path):
    p = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    for bad in ("alformed", "cut short", "isn't a capture file", "unknown"):
        assert bad not in p.stdout + p.stderr
    return [line for line in p.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("ns", [False, True])
def test_written_file_is_read_by_scapy_and_tshark(pool, tmp_path, ns):
    pkts = frames(50, big=(1514, 9000))
    src, dst = tmp_path / "in.pcap", tmp_path / "out.pcap"
    wrpcap(str(src), pkts)
    port = pypdk.pmd.open(f"net_pcap0,rx_pcap={src},tx_pcap={dst},tx_pcap_ns={int(ns)}")
    port.setup(pool).start()
    sent = 0
    while True:
        burst = port.rx_burst(0, 16)
        if not burst:
            break
        sent += port.tx_burst(0, burst)            # tx takes them all and frees them
    assert sent == len(pkts) and pool.in_use_count == 0
    port.stop()                                     # the file is complete from here on
    magic = struct.unpack("=I", dst.read_bytes()[:4])[0]
    assert magic == (0xa1b23c4d if ns else 0xa1b2c3d4)
    assert [bytes(p) for p in rdpcap(str(dst))] == [bytes(p) for p in pkts]
    assert len(tshark(dst)) == len(pkts)
    st = port.stats()
    assert st["opackets"] == st["ipackets"] == len(pkts)
    assert st["obytes"] == st["ibytes"] == sum(len(p) for p in pkts)
    assert st["oerrors"] == 0
    port.close()


def test_chained_mbufs_are_written_whole_and_close_flushes(pool, tmp_path):
    dst = tmp_path / "chain.pcap"
    port = pypdk.pmd.open("net_pcap0", tx_pcap=str(dst)).setup(pool)
    port.start()
    frame = bytes(frames(8)[7])
    head, tail = pool.alloc(), pool.alloc()
    head.append(frame[:20])
    tail.append(frame[20:])
    head.chain(tail)
    assert head.nb_segs == 2
    assert port.tx_burst(0, [head]) == 1
    assert port.rx_burst(0, 32) == []              # no rx_pcap: rx gives nothing
    port.close()                                    # without stop: close flushes too
    assert [bytes(p) for p in rdpcap(str(dst))] == [frame]
    assert len(tshark(dst)) == 1


def test_snaplen_cuts_written_packets_keeping_the_original_length(pool, tmp_path):
    dst = tmp_path / "snap.pcap"
    port = pypdk.pmd.open(f"net_pcap0,tx_pcap={dst},snaplen=100").setup(pool)
    port.start()
    frame = bytes(frames(1, big=(600,))[-1])
    m = pool.alloc()
    m.append(frame)
    assert port.tx_burst(0, [m]) == 1
    port.close()
    data = dst.read_bytes()
    assert struct.unpack("=I", data[16:20])[0] == 100              # header snaplen
    assert struct.unpack("=II", data[32:40]) == (100, 600)         # caplen, orig_len
    assert [bytes(p) for p in rdpcap(str(dst))] == [frame[:100]]
