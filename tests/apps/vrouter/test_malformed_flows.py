"""Malformed input is counted under its drop reason (no crash, no leak); flows,
policy and floating IPs; the config loader's errors."""
import pytest
from scapy.all import Ether, IP, UDP, TCP, Raw, Dot1Q, GRE
from scapy.layers.vxlan import VXLAN
from scapy.contrib.mpls import MPLS

from pypdk.errors import UsageError
from pypdk.testing.frames import ip_cksum_ok
from tests.apps.vrouter.harness import (
    VR_MAC, UNDERLAY, REMOTE, REMOTE_MAC, FABRIC_MAC, base, l3_tables, mpls_udp, VM3_MAC, VM3_IP,
    VM4_IP)


def outer(payload, **ipkw):
    return Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src=REMOTE, dst=UNDERLAY, **ipkw) / payload


def test_malformed_inputs_counted_by_reason(node):
    base(node)
    inner = IP(src="10.1.2.5", dst=VM3_IP) / UDP(sport=1, dport=2)
    good = mpls_udp(17, inner)
    bad_cksum = outer(UDP(sport=1, dport=6635) / MPLS(label=17, s=1) / inner, chksum=0x1234)
    trunc = bytes(good)[:14 + 20 + 8 + 2]
    bad_ihl = bytearray(bytes(good))
    bad_ihl[14] = 0x43
    frag = outer(UDP(sport=1, dport=6635) / MPLS(label=17, s=1) / inner, flags="MF")
    vlan = Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / Dot1Q(vlan=5) / IP(src=REMOTE, dst=UNDERLAY) / UDP()
    vm = [Ether(src=VM3_MAC, dst=VR_MAC) / Dot1Q(vlan=7) / IP(src=VM3_IP, dst=VM4_IP) / UDP(),
          Ether(src=VM3_MAC, dst=VR_MAC)[:1] if False else Raw(b"\x02" * 10),
          Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=VM4_IP, chksum=1) / UDP(),
          Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="172.16.0.1") / UDP(),             # no route
          Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst=VM4_IP, options=b"\x01\x01\x01\x00") / UDP(),  # options: fine
          Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.9") / UDP() / Raw(b"J" * 8000)]  # jumbo
    fab = [good, bad_cksum, Raw(trunc), Raw(bytes(bad_ihl)), mpls_udp(99, inner), frag, vlan,
           outer(UDP(sport=1, dport=4789) / VXLAN(vni=4242) / Ether()),
           outer(GRE(proto=0x8847) / MPLS(label=555, s=1) / inner)]
    node.setup({0: fab, 3: vm})
    vr = node.vr
    l3_tables(vr)
    out = node.run()
    d = vr.dropstats()
    print({k: v for k, v in d.items() if v}, vr.dropstats(3))
    assert d["checksum_error"] == 2
    assert d["invalid_packet"] == 3          # truncated, bad IHL, 10-byte frame
    assert d["invalid_label"] == 2
    assert d["invalid_vni"] == 1
    assert d["fragments"] == 1
    assert d["vlan"] == 1                    # from the VM; the fabric's tagged frame goes to the host
    assert d["no_route"] == 1
    assert d["mtu_exceeded"] == 1
    assert len(out[3]) == 1 and len(out[4]) == 1 and out[4][0][IP].options
    assert vr.dropstats(0)["invalid_label"] == 2 and vr.dropstats(3)["no_route"] == 1


def test_policy_drop_and_flows(node):
    base(node, policy=True)
    allowed = [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / TCP(sport=1000, dport=80, flags="S")] * 3
    denied = [Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="10.1.2.7") / TCP(sport=1001, dport=5001)] * 2
    reply = [mpls_udp(17, IP(src="10.1.2.7", dst=VM3_IP) / TCP(sport=80, dport=1000, flags="SA"))]
    node.setup({3: allowed + denied, 0: reply})
    vr = node.vr
    l3_tables(vr)
    vr.policy_add(3, "drop", proto="tcp", dst="10.1.2.0/24", dst_port=5001)
    out = node.run()
    assert len(out[0]) == 3 and len(out[3]) == 1
    assert vr.dropstats()["flow_action_drop"] == 2
    flows = vr.flow_list()
    fwd = [f for f in flows if f["dport"] == 80 and f["src"] == VM3_IP]
    assert len(fwd) == 1 and fwd[0]["action"] == "forward" and fwd[0]["packets"] == 3
    rev = [f for f in flows if f["sport"] == 80 and f["dst"] == VM3_IP]
    assert len(rev) == 1 and rev[0]["packets"] == 1 and rev[0]["rflow"] == fwd[0]["index"]
    drops = [f for f in flows if f["dport"] == 5001]
    assert drops[0]["action"] == "drop" and drops[0]["packets"] == 2


def test_floating_ip_dnat_and_snat(node):
    base(node)
    node.specs[3][1]["policy"] = True
    ping = Ether(src=REMOTE_MAC, dst=FABRIC_MAC) / IP(src="198.51.100.7", dst="192.168.100.10") / TCP(sport=5555, dport=22, flags="S")
    back = Ether(src=VM3_MAC, dst=VR_MAC) / IP(src=VM3_IP, dst="198.51.100.7") / TCP(sport=22, dport=5555, flags="SA")
    node.setup({0: [ping]})
    vr = node.vr
    l3_tables(vr)
    vr.nh_add(50, "encap", vif=0, dmac=REMOTE_MAC)
    vr.route_add(0, "0.0.0.0/0", 50)
    vr.fip_add(3, "192.168.100.10")
    vr.poll_until_idle()
    vr.dp.poll()
    out = node
    # the reply goes in after the forward flow exists
    from scapy.all import wrpcap
    res = node.finish()
    p = res[3][0]
    assert p[IP].dst == VM3_IP and p[Ether].dst == VM3_MAC and ip_cksum_ok(p[IP])
    ref = p[IP].copy()
    ref[TCP].chksum = None
    assert IP(bytes(ref))[TCP].chksum == p[TCP].chksum
    flows = vr.flow_list()
    assert any(f["action"] == "nat" and f["nat_ip"] == VM3_IP for f in flows)
    assert any(f["action"] == "nat" and f["nat_ip"] == "192.168.100.10" and f["src"] == VM3_IP for f in flows)


def test_api_rejects_invalid_requests_and_changes_nothing(node):
    base(node)
    node.setup({})
    vr = node.vr
    l3_tables(vr)
    before = vr.route_dump(1)
    with pytest.raises(UsageError, match="nh 99 does not exist"):
        vr.route_add(1, "10.5.0.0/16", 99)
    with pytest.raises(UsageError, match="not a prefix"):
        vr.route_add(1, "10.5.0.1/16", 20)
    with pytest.raises(UsageError, match="is used by route"):
        vr.nh_del(20)
    with pytest.raises(UsageError, match="dip '192.168.50' is not an IPv4 address"):
        vr.nh_add(25, "tunnel", encap="mplsoudp", dip="192.168.50")
    with pytest.raises(UsageError, match="encap 'ipip' is unknown"):
        vr.nh_add(25, "tunnel", encap="ipip", dip="1.2.3.4")
    assert vr.route_dump(1) == before and 25 not in [n["id"] for n in vr.nh_list()]
    vr.route_del(1, "10.1.3.0/24")
    vr.nh_del(21)
    assert [r["prefix"] for r in vr.route_dump(1)] == ["10.1.1.3/32", "10.1.1.4/32", "10.1.2.0/24"]
    node.finish()


CONFIG = '''
[vrouter]
mac = "00:00:5e:00:01:00"
underlay_ip = "192.168.50.1"
[[vif]]
id = 0
type = "fabric"
port = "net_null0"
[[vif]]
id = 3
type = "virtual"
port = "net_null1"
vrf = 1
mac = "02:00:00:00:01:03"
ip = "10.1.1.3"
policy = true
[[nh]]
id = 10
type = "encap"
vif = 3
[[nh]]
id = 20
type = "tunnel"
encap = "mplsoudp"
dip = "192.168.50.2"
[[nh]]
id = 30
type = "ecmp"
members = [20, 21]
[[nh]]
id = 21
type = "tunnel"
encap = "mplsogre"
dip = "192.168.50.3"
[[route]]
vrf = 1
prefix = "10.1.2.0/24"
nh = 30
label = 100
[[mpls]]
label = 17
nh = 10
[[vxlan]]
vni = 5000
vrf = 2
[[neighbor]]
ip = "192.168.50.2"
mac = "02:00:00:00:50:02"
[[policy]]
vif = 3
action = "drop"
proto = "tcp"
src = "0.0.0.0/0"
dst = "10.1.2.0/24"
dst_port = 5001
[[fip]]
vif = 3
public = "192.168.100.10"
'''


def test_config_loads_the_schema(tmp_path, pool):
    from apps.vrouter import config
    f = tmp_path / "vrouter.toml"
    f.write_text(CONFIG)
    vr = config.load(f, pool)
    try:
        assert [v["id"] for v in vr.vif_list()] == [0, 3]
        assert vr.route_dump(1) == [{"prefix": "10.1.2.0/24", "nh": 30, "label": 100}]
        assert vr.nh_get(20)["resolved"] and not vr.nh_get(21)["resolved"]
        assert vr.mpls_dump() == [{"label": 17, "nh": 10}] and vr.vxlan_dump() == [{"vni": 5000, "vrf": 2}]
        assert vr.vif_get(3)["fip"] == "192.168.100.10"
    finally:
        vr.close()


@pytest.mark.parametrize("edit, message", [
    (('dip = "192.168.50.2"', 'dip = "192.168.50"'),
     "config vrouter.toml: [[nh]] #2 (id 20): dip '192.168.50' is not an IPv4 address"),
    (('type = "encap"', 'type = "encapsulate"'), "[[nh]] #1 (id 10): type 'encapsulate' is unknown"),
    (('label = 100', 'label = 100\ncolour = 1'), "[[route]] #1: unknown field 'colour'"),
    (('mac = "00:00:5e:00:01:00"', 'mac = "zz"'), "[vrouter]: mac 'zz' is not a MAC address"),
    (('[[mpls]]', '[[mlps]]'), "unknown table [mlps]"),
    (('nh = 30', 'nh = 31'), "[[route]] #1: nh 31 does not exist"),
    (('vni = 5000', 'vrf = 2\nvni = "x"'), "not valid TOML"),
])
def test_config_errors_name_table_entry_and_field(tmp_path, pool, edit, message):
    from apps.vrouter import config
    f = tmp_path / "vrouter.toml"
    f.write_text(CONFIG.replace(*edit, 1))
    with pytest.raises(UsageError) as ei:
        config.load(f, pool)
    assert message in str(ei.value)
