"""The vRouter's fabric on a vfio-pci NIC, as the DPDK vRouter runs it (in a vIOMMU guest).

The guest's e1000 is bound to vfio-pci and is the fabric vif (`port = "0000:00:04.0"`); a VM
is a namespace on a tap vif inside the guest. The host, on the NIC's UDP wire, plays the
remote compute node: MPLSoUDP-encapsulated pings to the VM are decapsulated to it, and its
replies come back encapsulated with the remote's label, checked field by field with scapy.
"""
import json
import os
import tempfile
import time

import pytest
from scapy.all import Ether, ICMP, IP, UDP, Raw
from scapy.contrib.mpls import MPLS

from pypdk.testing import vm
from tests.apps.vrouter.harness import REMOTE, REMOTE_MAC, UNDERLAY, VM3_IP, VM3_MAC, VR_MAC

pytestmark = pytest.mark.vm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BDF, NIC_MAC = "0000:00:04.0", "52:54:00:00:00:04"
REMOTE_VM = "10.1.2.7"

CONFIG = f'''
[vrouter]
mac = "{VR_MAC}"
underlay_ip = "{UNDERLAY}"
[[vif]]
id = 0
type = "fabric"
port = "{BDF}"
mac = "{NIC_MAC}"
[[vif]]
id = 3
type = "virtual"
port = "net_tap3,iface=vm3tap"
vrf = 1
mac = "{VM3_MAC}"
ip = "{VM3_IP}"
[[nh]]
id = 10
type = "encap"
vif = 3
[[nh]]
id = 1
type = "discard"
[[nh]]
id = 20
type = "tunnel"
encap = "mplsoudp"
dip = "{REMOTE}"
[[neighbor]]
ip = "{REMOTE}"
mac = "{REMOTE_MAC}"
[[mpls]]
label = 17
nh = 10
[[route]]
vrf = 1
prefix = "{VM3_IP}/32"
nh = 10
[[route]]
vrf = 1
prefix = "10.1.2.0/24"
nh = 20
label = 100
[[route]]
vrf = 1
prefix = "0.0.0.0/0"
nh = 1
'''


def ping_in(seq):
    return (Ether(src=REMOTE_MAC, dst=NIC_MAC) / IP(src=REMOTE, dst=UNDERLAY) /
            UDP(sport=50000 + seq, dport=6635) / MPLS(label=17, s=1, ttl=64) /
            IP(src=REMOTE_VM, dst=VM3_IP) / ICMP(type=8, id=0x7070, seq=seq) / Raw(b"fabric-on-vfio" * 4))


def test_mplsoudp_from_the_host_reaches_a_vm_and_the_reply_comes_back_encapsulated():
    out = tempfile.mkdtemp(dir="/var/tmp", prefix="pdvf")
    cfg = os.path.join(out, "vrouter.toml")
    stats = os.path.join(out, "stats.json")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    try:
        with vm.UdpWire() as wire:
            with vm.Guest(cpus=2, mem=1024, devices=wire.nic("e1000", mac=NIC_MAC, addr="0x4"),
                          rw=[out]) as g:
                g.run(f"modprobe tun && python3 -m pypdk.devbind --bind vfio-pci {BDF} && "
                      "python3 -m pypdk.eal.hugepages --reserve 256M", cwd=ROOT, check=True)
                vr = g.spawn(f"exec python3 -m pypdk.cli apps/vrouter -l 0-1 --stats-json {stats} -- "
                             f"--config {cfg} --ctl-socket /run/vr.sock --no-agent", cwd=ROOT)
                deadline = time.monotonic() + 200
                while g.run("ip link show vm3tap >/dev/null 2>&1").rc != 0:
                    assert not vr.done() and time.monotonic() < deadline, vr.output()[-3000:]
                    time.sleep(1)
                g.run(f"ip netns add vm3 && ip link set vm3tap netns vm3 && "
                      f"ip -n vm3 link set vm3tap address {VM3_MAC} && ip -n vm3 link set lo up && "
                      f"ip -n vm3 addr add {VM3_IP}/24 dev vm3tap && ip -n vm3 link set vm3tap up && "
                      f"ip -n vm3 route add default via 10.1.1.1", check=True)
                time.sleep(3)                   # the e1000 blanks reception after RCTL.EN
                replies = []
                for seq in range(1, 31):
                    wire.send(bytes(ping_in(seq)))
                    replies += wire.recv_all(timeout=0.3, idle=0.2)
                replies += wire.recv_all(timeout=3)
                vr.signal()
                res = vr.wait(120)
                assert res.rc == 0, res.out[-3000:]
        with open(stats) as f:
            app = json.load(f)["app"]
    finally:
        for name in os.listdir(out):
            os.unlink(os.path.join(out, name))
        os.rmdir(out)

    echoes = []
    for raw in replies:
        p = Ether(raw)
        if MPLS not in p:
            continue
        # The outer headers the vRouter built: from its underlay address to the remote,
        # MPLSoUDP with the remote VM's label, a valid outer checksum.
        assert p[Ether].dst == REMOTE_MAC
        assert p[IP].src == UNDERLAY and p[IP].dst == REMOTE
        assert p[UDP].dport == 6635 and p[MPLS].label == 100 and p[MPLS].s == 1
        inner = IP(bytes(p[MPLS].payload))
        assert inner.src == VM3_IP and inner.dst == REMOTE_VM
        assert inner[ICMP].type == 0 and inner[ICMP].id == 0x7070
        assert bytes(inner[ICMP].payload) == b"fabric-on-vfio" * 4
        echoes.append(inner[ICMP].seq)
    # The first pings may go while the VM resolves its gateway; most must come back, once each.
    assert len(echoes) >= 25, (len(echoes), len(replies))
    assert len(set(echoes)) == len(echoes)
    vifs = app["vifs"]
    assert vifs["0"]["rx_packets"] >= 30 and vifs["0"]["tx_packets"] == len(echoes)
    assert vifs["3"]["tx_packets"] >= len(echoes)
    assert app["vrfstats"]["1"]["udp_mpls_decaps"] == 30
    assert app["vrfstats"]["1"]["udp_mpls_encaps"] == len(echoes)
