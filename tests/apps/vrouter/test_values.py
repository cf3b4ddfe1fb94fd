"""The vRouter's value parsers (apps/vrouter/values.py) and the names the dp exports."""
import ipaddress

import pytest

from pypdk.errors import UsageError

from apps.vrouter import values


def test_mac_parsed_from_text_or_bytes_and_printed_back():
    assert values.parse_mac("02:00:00:00:01:0A") == bytes.fromhex("02000000010a")
    assert values.parse_mac(bytes(6)) == bytes(6)
    assert values.mac_str(bytes.fromhex("02000000010a")) == "02:00:00:00:01:0a"


@pytest.mark.parametrize("bad", ["02:00:00:00:01", "02-00-00-00-01-03", "02:00:00:00:01:zz", 5])
def test_bad_mac_names_the_field(bad):
    with pytest.raises(UsageError) as e:
        values.parse_mac(bad, "dmac")
    assert e.value.problem == f"dmac {bad!r} is not a MAC address"


def test_addresses_and_prefixes():
    assert values.parse_ip4("192.168.50.2") == ipaddress.IPv4Address("192.168.50.2")
    assert values.parse_ip6("fd00::3") == ipaddress.IPv6Address("fd00::3")
    assert str(values.parse_prefix("fd00:2::/64")) == "fd00:2::/64"
    with pytest.raises(UsageError, match="dip '192.168.50' is not an IPv4 address"):
        values.parse_ip4("192.168.50", "dip")
    with pytest.raises(UsageError, match="prefix '10.1.2.1/24' is not a prefix"):
        values.parse_prefix("10.1.2.1/24")       # host bits set


def test_ports_ints_bools_and_choices():
    assert values.parse_ports(None, "dst_port") == (0, 65535)
    assert values.parse_ports(5001, "dst_port") == (5001, 5001)
    assert values.parse_ports("5000-5010", "dst_port") == (5000, 5010)
    for bad in ("5010-5000", "70000", "http"):
        with pytest.raises(UsageError, match="dst_port"):
            values.parse_ports(bad, "dst_port")
    assert values.check_int(7, 0, 10, "vrf") == 7
    for bad in (True, 11, "7", 7.0):
        with pytest.raises(UsageError, match=r"vrf .* is not an integer in 0..10"):
            values.check_int(bad, 0, 10, "vrf")
    with pytest.raises(UsageError, match="policy 1 is not true or false"):
        values.check_bool(1, "policy")
    with pytest.raises(UsageError) as e:
        values.choice("gre", {"mplsoudp": 1, "vxlan": 3}, "encap")
    assert e.value.line() == "encap 'gre' is unknown; use one of: mplsoudp, vxlan"


def test_the_model_speaks_the_dp_enums_and_serves_every_whitelisted_operation():
    from apps.vrouter.ctl.server import OPS
    from apps.vrouter.dp import router
    from apps.vrouter.vrouter import VRouter
    assert router.VIF_TYPES == {"fabric": 0, "vhost": 1, "virtual": 2, "agent": 3}
    assert list(router.NH_TYPES) == ["discard", "receive", "encap", "tunnel", "ecmp", "resolve", "composite"]
    assert router.LIMITS["nhs"] == 4096 and router.LIMITS["vifs"] == 256
    assert [op for op in OPS if not callable(getattr(VRouter, op, None))] == []
