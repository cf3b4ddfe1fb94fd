"""DPDK mode's VM ports: a virtual vif on a vhost-user socket (`net_vhost`).

In TF's DPDK mode the vRouter serves each VM's virtio-net device itself: QEMU
connects to a Unix socket the vRouter listens on, `uvh_vif_<name>` in the
vRouter's socket directory (`/var/run/vrouter` by default; `pypdk-run
apps/vrouter -- --vhost-dir DIR`, or `VRouter(..., vhost_dir=DIR)`), and hands
over the guest's memory and rings. A vif's port may be spelled

    vhostuser:NAME[,client=1,reconnect=1]      the socket DIR/uvh_vif_NAME
    vhostuser:/path/to.sock[,...]              that socket
    net_vhost<N>,iface=PATH[,...]              a --vdev spec, as for any port

The vif's `queues` become the port's `queues=` (the queue pairs the guest is
offered, SingleQ or MultiQ) unless the spec says otherwise. The datapath is the
one every vif has: the port's rx queues are dealt to the forwarding lcores, and
traffic to a multi-queue VM takes the tx queue of its inner flow's hash.
"""
from __future__ import annotations

import os

from pypdk.errors import UsageError

VHOST_DIR = "/var/run/vrouter"
PREFIX = "vhostuser:"
SOCKET_PREFIX = "uvh_vif_"


def socket_path(name: str, vhost_dir: str = VHOST_DIR) -> str:
    """TF's socket of the VM interface `name` (its tap name, e.g. tapdeadbeef-01)."""
    return os.path.join(vhost_dir, SOCKET_PREFIX + name)


def is_vhost(port) -> bool:
    return isinstance(port, str) and (port.startswith(PREFIX) or port.split(",", 1)[0].startswith("net_vhost"))


def spec(port: str, vif_id: int, queues: int, vhost_dir: str = VHOST_DIR) -> str:
    """The --vdev spec of a vhost-user vif port (see the module doc); the socket's
    directory is made if it does not exist."""
    if port.startswith(PREFIX):
        where, *keys = port[len(PREFIX):].split(",")
        if not where or where.endswith("/"):
            raise UsageError(f"port {port!r} names no socket",
                             'write port = "vhostuser:vm1" (the socket uvh_vif_vm1) or a socket path')
        path = where if "/" in where else socket_path(where, vhost_dir)
        parts = [_free_name(vif_id), f"iface={path}", *(k for k in keys if k)]
    else:
        parts = [p for p in port.split(",") if p]
    keys = {p.split("=", 1)[0] for p in parts[1:]}
    if "queues" not in keys:
        parts.append(f"queues={queues}")
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k == "iface" and v:
            os.makedirs(os.path.dirname(os.path.abspath(v)), exist_ok=True)
    return ",".join(parts)


def _free_name(vif_id: int) -> str:
    """net_vhost<vif id>, or the next of net_vhost<id + 256 k> no open port has (a vif whose
    socket changes opens its new port before it closes the old one)."""
    from pypdk.pmd.ethdev import ports
    taken = {p.name for p in ports()}
    n = vif_id
    while f"net_vhost{n}" in taken:
        n += 256
    return f"net_vhost{n}"


def socket_info(dev) -> dict | None:
    """What `vif --get` shows of a vhost-user port: its socket, mode, connection,
    the queue pairs offered and the port's link; None for any other port."""
    if getattr(dev, "driver", None) != "net_vhost":
        return None
    i = dev.info()
    return {"type": "unix", "path": i["iface"], "mode": "client" if i["client"] else "server",
            "connected": bool(i["connected"]), "queues": i["queues"], "link_up": bool(dev.link["up"])}
