"""The ethdev layer with net_null and net_ring: life cycle, bursts, stats,
devargs errors that name the key, ports crossed and looped back."""
import pytest

import pypdk.pmd
from pypdk.errors import StateError, UsageError
from pypdk.pmd import devargs


pytestmark = pytest.mark.pypdk_pool(size=2048, cache_size=64)      # the `pool` fixture


def test_split_spec_gives_name_driver_and_keys():
    assert devargs.split_spec("net_tap0,iface=tap0,queues=2") == (
        "net_tap0", "net_tap", {"iface": "tap0", "queues": "2"})
    assert devargs.split_spec("net_af_xdp1,iface=eth1")[1] == "net_af_xdp"


@pytest.mark.parametrize("spec, needle", [
    ("", "empty --vdev"),
    ("tap0", "not a device name"),
    ("net_null0,size", "not key=value"),
    ("net_null0,size=1,size=2", "given twice"),
    ("net_null0,bogus=1", "unknown key 'bogus'"),
    ("net_null0,size=abc", "bad value 'abc' for key 'size'"),
    ("net_nosuch0", "unknown driver 'net_nosuch'"),
    ("net_null0,copy=maybe", "key 'copy'"),
])
def test_bad_specs_are_one_line_errors_naming_the_key(eal_no_huge, spec, needle):
    with pytest.raises(UsageError) as e:
        pypdk.pmd.open(spec)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert pypdk.pmd.ports() == []


def test_unknown_key_error_lists_the_valid_keys(eal_no_huge):
    with pytest.raises(UsageError, match="valid keys: copy, no-rx, size"):
        pypdk.pmd.open("net_null0,sizes=64")


def test_null_port_life_cycle_and_stats(pool):
    port = pypdk.pmd.open("net_null0", size=100)
    assert port.state == "probed" and port.driver == "net_null" and port.port_id == 0
    with pytest.raises(StateError):
        port.start()                       # not configured
    port.setup(pool, nb_rxq=2, nb_txq=2).start()
    assert port.info()["nb_rx_queues"] == 2 and port.link["up"]
    got = port.rx_burst(0, 32) + port.rx_burst(1, 16)
    assert len(got) == 48 and all(m.pkt_len == 100 and m.port == 0 for m in got)
    assert port.tx_burst(1, got) == 48
    st = port.stats()
    assert (st["ipackets"], st["ibytes"], st["opackets"], st["obytes"]) == (48, 4800, 48, 4800)
    xs = port.xstats()
    assert xs["rx_q0_packets"] == 32 and xs["rx_q1_packets"] == 16 and xs["tx_q1_packets"] == 48
    port.stop()
    assert port.rx_burst(0, 32) == []      # a stopped port gives nothing
    port.stats_reset()
    assert port.stats()["ipackets"] == 0
    port.close()
    assert port.state == "closed" and pypdk.pmd.ports() == []


def test_null_copy_writes_the_template_and_counts_nombuf(pool):
    port = pypdk.pmd.open("net_null0,size=64,copy=1").setup(pool)
    port.start()
    m = port.rx_burst(0, 1)[0]
    assert m.bytes()[:6] == b"\xff" * 6 and m.bytes()[12:14] == b"\x08\x00"
    m.free()
    hoard = pool.alloc_bulk(pool.avail_count)
    assert port.rx_burst(0, 32) == []
    assert port.stats()["rx_nombuf"] == 32
    for h in hoard:
        h.free()


def test_queue_out_of_range_and_too_many_queues(pool):
    port = pypdk.pmd.open("net_null0")
    with pytest.raises(UsageError, match="rx queues"):
        port.configure(nb_rxq=99)
    port.setup(pool).start()
    with pytest.raises(UsageError, match="rx queue 3 does not exist"):
        port.rx_burst(3, 1)


def test_two_ports_of_one_name_are_refused(pool):
    pypdk.pmd.open("net_null0")
    with pytest.raises(UsageError, match="already open"):
        pypdk.pmd.open("net_null0")


def test_ring_loopback_receives_what_it_sends(pool):
    port = pypdk.pmd.open("net_ring0,loopback=1,size=64").setup(pool)
    port.start()
    pkts = pool.alloc_bulk(5)
    for i, m in enumerate(pkts):
        m.append(bytes([i]) * 60)
    assert port.tx_burst(0, pkts) == 5
    back = port.rx_burst(0, 32)
    assert [m.bytes()[0] for m in back] == [0, 1, 2, 3, 4]
    for m in back:
        m.free()


def test_ring_ports_crossed_send_to_each_other(pool):
    a = pypdk.pmd.open("net_ring0,size=64").setup(pool)
    b = pypdk.pmd.open("net_ring1,peer=net_ring0,size=64").setup(pool)
    a.start()
    b.start()
    m = pool.alloc()
    m.append(b"from a")
    assert a.tx_burst(0, [m]) == 1
    assert a.rx_burst(0, 8) == []          # not looped back
    got = b.rx_burst(0, 8)
    assert [g.bytes() for g in got] == [b"from a"]
    assert b.tx_burst(0, got) == 1
    back = a.rx_burst(0, 8)
    assert [g.bytes() for g in back] == [b"from a"]
    back[0].free()


def test_ring_full_refuses_the_rest_and_the_caller_keeps_it(pool):
    port = pypdk.pmd.open("net_ring0,size=8").setup(pool)
    port.start()
    pkts = pool.alloc_bulk(10)
    sent = port.tx_burst(0, pkts)
    assert sent == 7                       # a ring of 8 slots holds 7
    assert port.xstats()["tx_q0_ring_full"] == 3
    for m in pkts[sent:]:
        m.free()                           # DPDK semantics: the rest is ours
    port.close()                           # and close gives back what the rings hold


def test_ring_peer_must_exist(eal_no_huge):
    with pytest.raises(UsageError, match="not an open net_ring port"):
        pypdk.pmd.open("net_ring1,peer=net_ring7")


# ---- the driver template: one shape for every driver -------------------------------

def _virtual_ports(tmp_path):
    return [pypdk.pmd.open("net_null0"), pypdk.pmd.open("net_ring0"),
            pypdk.pmd.open(f"net_pcap0,tx_pcap={tmp_path / 'out.pcap'}")]


def test_link_and_info_have_the_same_keys_for_every_driver(pool, tmp_path):
    for port in _virtual_ports(tmp_path):
        with port:
            assert tuple(port.link) == pypdk.pmd.LINK_KEYS
            info = port.info()
            assert tuple(info)[:len(pypdk.pmd.INFO_KEYS)] == pypdk.pmd.INFO_KEYS
            assert info["iface"] is None and info["ifindex"] is None and info["socket_id"] == -1
            assert info["mac"] == pypdk.pmd.mac_str(port.mac) == f"02:70:64:6b:00:{port.port_id:02x}"
    assert pypdk.pmd.ports() == []


def test_mtu_and_promiscuous_change_through_the_setters_only(pool):
    with pypdk.pmd.open("net_null0") as port:
        port.mtu = 9000                    # the same call as set_mtu(9000)
        assert port.mtu == 9000 and port.info()["mtu"] == 9000
        with pytest.raises(UsageError, match="MTU 10 is out of range"):
            port.mtu = 10
        assert port.mtu == 9000
        port.set_promiscuous(False)
        assert port.promiscuous is False
        port.promiscuous = True
        assert port.info()["promiscuous"] is True
        with pytest.raises(AttributeError):
            port.mac = bytes(6)            # the MAC is the driver's
    assert port.state == "closed"


def test_a_probe_that_fails_leaves_no_port_and_frees_the_id(eal_no_huge):
    with pytest.raises(UsageError, match="size 5 is out of range"):
        pypdk.pmd.open("net_null3,size=5")
    assert pypdk.pmd.ports() == []
    with pypdk.pmd.open("net_null3") as port:
        assert port.port_id == 0


def test_queues_set_up_again_and_per_queue_xstats_of_the_driver(pool):
    with pypdk.pmd.open("net_ring0,size=8") as port:
        port.setup(pool, nb_rxq=2, nb_txq=2)
        port.setup(pool, nb_rxq=2, nb_txq=2)          # the same queue memory, re-initialised
        port.start()
        pkts = pool.alloc_bulk(9)
        assert port.tx_burst(1, pkts) == 7
        for m in pkts[7:]:
            m.free()
        xs = port.xstats()
        assert xs["tx_q1_ring_full"] == 2 and xs["tx_q0_ring_full"] == 0
        assert "rx_q0_ring_full" not in xs
