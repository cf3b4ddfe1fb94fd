"""ICMP errors the vRouter sends back to a VM, golden: TTL expired (time exceeded) and a
packet too big once encapsulated (fragmentation needed, with the next-hop MTU)."""
from scapy.all import Ether, IP, UDP, ICMP, Raw

from pypdk.testing.frames import ip_cksum_ok
from tests.apps.vrouter.harness import VR_MAC, VM3_MAC, VM3_IP, base, l3_tables


def test_ttl_expired_dropped_with_time_exceeded(node):
    base(node)
    p = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7", ttl=1) / UDP(sport=33434, dport=33434)
    node.setup({3: [p, p.copy()]})
    l3_tables(node.vr)
    out = node.run()
    assert not out[0]
    assert len(out[3]) == 2
    e = out[3][0]
    assert e[ICMP].type == 11 and e[IP].dst == VM3_IP and e[Ether].dst == VM3_MAC and ip_cksum_ok(e[IP])
    assert node.vr.dropstats()["ttl_exceeded"] == 2 and node.vr.dropstats(3)["ttl_exceeded"] == 2


def test_too_big_after_encap_gets_frag_needed(node):
    base(node)
    df = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7", flags="DF") / UDP(sport=1, dport=2) / Raw(b"j" * 1472)
    nodf = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=1, dport=2) / Raw(b"j" * 1472)
    fits = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / UDP(sport=1, dport=2) / Raw(b"j" * 1440)
    node.setup({3: [df, nodf, fits]})
    l3_tables(node.vr)
    out = node.run()
    assert len(out[0]) == 1 and out[0][0][IP].len == 20 + 8 + 4 + 1468
    assert len(out[3]) == 1
    e = out[3][0]
    assert e[ICMP].type == 3 and e[ICMP].code == 4 and e[ICMP].nexthopmtu == 1500 - 32
    assert node.vr.dropstats()["mtu_exceeded"] == 2

