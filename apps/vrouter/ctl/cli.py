"""`pypdk-vrouter`: the operator's tools for a running vRouter, in the spirit of TF's.

    pypdk-vrouter vif --list                 # every vif with its RX/TX counters (per queue)
    pypdk-vrouter vif --get 3
    pypdk-vrouter rt --dump 1 --family inet  # inet | inet6 | bridge
    pypdk-vrouter nh --list | --get 12
    pypdk-vrouter mpls --dump
    pypdk-vrouter vxlan --dump
    pypdk-vrouter flow -l
    pypdk-vrouter dropstats [--vif 3]
    pypdk-vrouter vrfstats --get 1
    pypdk-vrouter top                        # live per-vif rates, refreshed in place
    pypdk-vrouter rxq [--show | --rebalance] # rx queue -> lcore map, busy share (pmd-rxq-show)
    pypdk-vrouter --json vif --list          # the control op's JSON result, for scripts

and the add/delete forms (`vif --add 3 --type virtual --port ... --vrf 1
--mac ... --ip ...`, `nh --add 12 --type tunnel --encap mplsoudp --dip
...`, `rt --add --vrf 1 --prefix 10.1.1.3/32 --nh 12 --label 20`, `rt
--delete ...`, `mpls --add 20 --nh 3`, `vxlan --add 5000 --vrf 1`, `nbr
--add IP MAC`, `policy --add 3 --action drop --proto tcp --dst-port 5001`,
`fip --add 3 203.0.113.10`...).

Each subcommand is one control-socket request (apps/vrouter/ctl/server.py),
i.e. one `VRouter` operation (apps/vrouter/vrouter.py): the CLI parses and
prints, the vRouter validates and applies. An error is one line on stderr
and exit status 2 (a refused request prints the vRouter's reason).

Which vRouter: `--socket PATH`, else `--file-prefix P` (the vRouter started
with `pypdk-run --file-prefix P`: /run/pypdk/P/vrouter.sock), else `--name
NAME` (/run/pypdk/vrouter-NAME.sock), else $PYPDK_VROUTER_SOCKET, else the
only socket under /run/pypdk.

An install (`pip install -e .`) puts it on the PATH as the `pypdk-vrouter`
console script (`main` below); without one, run it as
`python -m apps.vrouter.ctl.cli` from the source tree, or through
`scripts/pypdk-vrouter` from anywhere.
"""
from __future__ import annotations

import json
import os
import sys
import time

import click

from pypdk.errors import PypdkError, UsageError

from apps.vrouter.dp.router import ENCAPS, NH_TYPES, RULE_ACTIONS, VIF_MODES, VIF_TYPES

from . import show
from .server import SOCKET_DIR, CtlClient, default_path, prefix_path, running_sockets

FAMILIES = {"inet": 4, "inet6": 6, "bridge": "bridge"}


def find_socket(path: str | None, name: str | None, file_prefix: str | None = None) -> str:
    """The control socket to use (see the module doc for the order)."""
    if path:
        return path
    if file_prefix:
        return prefix_path(file_prefix)
    if name:
        return default_path(name)
    env = os.environ.get("PYPDK_VROUTER_SOCKET")
    if env:
        return env
    found = running_sockets()
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise UsageError(f"no vRouter control socket in {SOCKET_DIR}",
                         "start a vRouter (pypdk-run apps/vrouter ...) or give --socket PATH")
    raise UsageError(f"{len(found)} vRouters run here ({', '.join(found)})",
                     "pick one with --file-prefix P, --name NAME or --socket PATH")


class Ctx:
    def __init__(self, socket_path, name, as_json, file_prefix=None):
        self.socket_path = socket_path
        self.name = name
        self.file_prefix = file_prefix
        self.json = as_json
        self._client = None

    @property
    def client(self) -> CtlClient:
        if self._client is None:
            self._client = CtlClient(find_socket(self.socket_path, self.name, self.file_prefix)).connect()
        return self._client

    def call(self, op: str, **args):
        return self.client.call(op, **{k: v for k, v in args.items() if v is not None})

    def out(self, result, lines_fn=None):
        """Print a result: JSON with --json, else the human lines (or 'ok')."""
        if self.json:
            click.echo(json.dumps(result, indent=2, sort_keys=True))
        elif lines_fn is not None:
            click.echo("\n".join(lines_fn(result)))
        elif result is not None:
            click.echo(json.dumps(result, sort_keys=True))


pass_ctx = click.make_pass_decorator(Ctx)


def _one_of(**modes) -> str:
    """The one selected mode among mutually exclusive options, else a usage error."""
    chosen = [k for k, v in modes.items() if not (v is None or v is False or v == ())]   # vif 0 counts
    names = ", ".join("--" + k.replace("_", "-") for k in modes)
    if len(chosen) != 1:
        raise click.UsageError(f"give exactly one of {names}")
    return chosen[0]


def _ints(text: str | None, what: str):
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint=what) from None


def _port(text: str | None):
    """A port is a number or a range ("5000-5010"); the vRouter checks the bounds."""
    if text is None:
        return None
    return int(text) if text.isdigit() else text


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--socket", "socket_path", metavar="PATH", help="the vRouter's control socket")
@click.option("--file-prefix", metavar="P",
              help="the vRouter run with pypdk-run --file-prefix P (socket /run/pypdk/P/vrouter.sock)")
@click.option("--name", metavar="NAME", help="the vRouter run with --name NAME (socket /run/pypdk/vrouter-NAME.sock)")
@click.option("--json", "as_json", is_flag=True, help="print the raw JSON result (for scripts)")
@click.pass_context
def cli(ctx, socket_path, file_prefix, name, as_json):
    """Inspect and program a running pypdk vRouter (TF vRouter tool words)."""
    ctx.obj = Ctx(socket_path, name, as_json, file_prefix)


# ---- vif ----------------------------------------------------------------------------

@cli.command()
@click.option("--list", "list_", is_flag=True, help="every vif with its counters")
@click.option("--get", type=int, metavar="ID", help="one vif")
@click.option("--add", type=int, metavar="ID", help="add (or change) vif ID")
@click.option("--delete", type=int, metavar="ID", help="delete vif ID")
@click.option("--type", "vtype", type=click.Choice(list(VIF_TYPES)), help="(--add)")
@click.option("--port", metavar="SPEC", help="(--add) a --vdev spec, e.g. net_tap3,iface=tapvm3")
@click.option("--vrf", type=int, help="(--add)")
@click.option("--mac", help="(--add) the VM's MAC")
@click.option("--ip", help="(--add) the VM's IPv4 address")
@click.option("--ip6", help="(--add) the VM's IPv6 address")
@click.option("--mtu", type=int, help="(--add)")
@click.option("--policy/--no-policy", default=None, help="(--add) flows and policy on this vif")
@click.option("--mode", type=click.Choice(list(VIF_MODES)), help="(--add)")
@click.option("--queues", type=int, help="(--add) queues of the port")
@click.option("--distribute/--no-distribute", default=None,
              help="(--add) hand what it receives to the forwarding lcores by inner flow hash")
@pass_ctx
def vif(c, list_, get, add, delete, vtype, port, vrf, mac, ip, ip6, mtu, policy, mode, queues, distribute):
    """vRouter interfaces: --list | --get ID | --add ID ... | --delete ID."""
    mode_ = _one_of(list=list_, get=get, add=add, delete=delete)
    if mode_ == "list":
        c.out(c.call("vif_list"), show.vif_list)
    elif mode_ == "get":
        c.out(c.call("vif_get", id=get), show.vif_block)
    elif mode_ == "add":
        if vtype is None:
            raise click.UsageError("vif --add needs --type")
        c.out(c.call("vif_add", id=add, type=vtype, port=port, vrf=vrf, mac=mac, ip=ip, ip6=ip6, mtu=mtu,
                     policy=policy, mode=mode, queues=queues, distribute=distribute), show.vif_block)
    else:
        c.out(c.call("vif_del", id=delete))


# ---- nh -----------------------------------------------------------------------------

@cli.command()
@click.option("--list", "list_", is_flag=True, help="every nexthop")
@click.option("--get", type=int, metavar="ID", help="one nexthop")
@click.option("--add", type=int, metavar="ID", help="add (or change) nexthop ID")
@click.option("--delete", type=int, metavar="ID", help="delete nexthop ID")
@click.option("--type", "ntype", type=click.Choice(list(NH_TYPES)), help="(--add)")
@click.option("--vif", type=int, help="(--add encap) output vif")
@click.option("--encap", type=click.Choice(list(ENCAPS)), help="(--add tunnel)")
@click.option("--dip", help="(--add tunnel) the remote vRouter's underlay IP")
@click.option("--members", metavar="ID,ID", help="(--add ecmp|composite) member nexthops")
@click.option("--dmac", help="(--add encap) the destination MAC")
@pass_ctx
def nh(c, list_, get, add, delete, ntype, vif, encap, dip, members, dmac):
    """Nexthops: --list | --get ID | --add ID --type T ... | --delete ID."""
    mode_ = _one_of(list=list_, get=get, add=add, delete=delete)
    if mode_ == "list":
        c.out(c.call("nh_list"), show.nh_list)
    elif mode_ == "get":
        c.out(c.call("nh_get", id=get), lambda n: show.nh_list([n]))
    elif mode_ == "add":
        if ntype is None:
            raise click.UsageError("nh --add needs --type")
        c.out(c.call("nh_add", id=add, type=ntype, vif=vif, encap=encap, dip=dip,
                     members=_ints(members, "--members"), dmac=dmac), lambda n: show.nh_list([n]))
    else:
        c.out(c.call("nh_del", id=delete))


# ---- rt -----------------------------------------------------------------------------

@cli.command()
@click.option("--dump", type=int, metavar="VRF", help="the routes of VRF")
@click.option("--add", "add_", is_flag=True, help="add (or change) a route (--vrf, --prefix|--mac, --nh)")
@click.option("--delete", is_flag=True, help="delete a route (--vrf, --prefix|--mac)")
@click.option("-f", "--family", type=click.Choice(list(FAMILIES)), default="inet", show_default=True)
@click.option("--vrf", type=int, help="(--add/--delete)")
@click.option("--prefix", help="(--add/--delete) e.g. 10.1.1.3/32")
@click.option("--mac", help="(--add/--delete, bridge) e.g. 02:00:00:00:01:03")
@click.option("--nh", "nh_", type=int, help="(--add) the nexthop")
@click.option("--label", type=int, help="(--add) the MPLS label pushed through a tunnel")
@click.option("--vni", type=int, help="(--add, bridge) the VNI through a vxlan tunnel")
@pass_ctx
def rt(c, dump, add_, delete, family, vrf, prefix, mac, nh_, label, vni):
    """Routes: --dump VRF [--family inet|inet6|bridge] | --add ... | --delete ..."""
    mode_ = _one_of(dump=dump, add=add_, delete=delete)
    bridge = family == "bridge" or mac is not None
    if mode_ == "dump":
        if family == "bridge":
            res = c.call("bridge_dump", vrf=dump)
        else:
            res = c.call("route_dump", vrf=dump, family=FAMILIES[family])
        c.out(res, lambda r: show.rt_dump(r, dump, family))
        return
    if vrf is None:
        raise click.UsageError(f"rt --{mode_} needs --vrf")
    if bridge and mac is None:
        raise click.UsageError("a bridge route needs --mac")
    if not bridge and prefix is None:
        raise click.UsageError(f"rt --{mode_} needs --prefix (or --mac for a bridge route)")
    if mode_ == "add":
        if nh_ is None:
            raise click.UsageError("rt --add needs --nh")
        if bridge:
            c.out(c.call("bridge_add", vrf=vrf, mac=mac, nh=nh_, vni=vni))
        else:
            c.out(c.call("route_add", vrf=vrf, prefix=prefix, nh=nh_, label=label))
    elif bridge:
        c.out(c.call("bridge_del", vrf=vrf, mac=mac))
    else:
        c.out(c.call("route_del", vrf=vrf, prefix=prefix))


# ---- mpls, vxlan, neighbours ------------------------------------------------------------

@cli.command()
@click.option("--dump", is_flag=True, help="the label table")
@click.option("--add", type=int, metavar="LABEL", help="map LABEL to --nh")
@click.option("--delete", type=int, metavar="LABEL")
@click.option("--nh", "nh_", type=int, help="(--add)")
@pass_ctx
def mpls(c, dump, add, delete, nh_):
    """The MPLS input label map: --dump | --add LABEL --nh ID | --delete LABEL."""
    mode_ = _one_of(dump=dump, add=add, delete=delete)
    if mode_ == "dump":
        c.out(c.call("mpls_dump"), show.mpls_dump)
    elif mode_ == "add":
        if nh_ is None:
            raise click.UsageError("mpls --add needs --nh")
        c.out(c.call("mpls_add", label=add, nh=nh_))
    else:
        c.out(c.call("mpls_del", label=delete))


@cli.command()
@click.option("--dump", is_flag=True, help="the VNI table")
@click.option("--add", type=int, metavar="VNI", help="map VNI to --vrf")
@click.option("--delete", type=int, metavar="VNI")
@click.option("--vrf", type=int, help="(--add)")
@pass_ctx
def vxlan(c, dump, add, delete, vrf):
    """The VXLAN table: --dump | --add VNI --vrf VRF | --delete VNI."""
    mode_ = _one_of(dump=dump, add=add, delete=delete)
    if mode_ == "dump":
        c.out(c.call("vxlan_dump"), show.vxlan_dump)
    elif mode_ == "add":
        if vrf is None:
            raise click.UsageError("vxlan --add needs --vrf")
        c.out(c.call("vxlan_add", vni=add, vrf=vrf))
    else:
        c.out(c.call("vxlan_del", vni=delete))


@cli.command()
@click.option("--list", "list_", is_flag=True, help="the underlay neighbours")
@click.option("--add", nargs=2, metavar="IP MAC", help="a static neighbour")
@click.option("--delete", metavar="IP")
@pass_ctx
def nbr(c, list_, add, delete):
    """Underlay neighbours (learnt by ARP, or static): --list | --add IP MAC | --delete IP."""
    mode_ = _one_of(list=list_, add=add, delete=delete)
    if mode_ == "list":
        c.out(c.call("neighbor_list"), show.neighbor_list)
    elif mode_ == "add":
        c.out(c.call("neighbor_add", ip=add[0], mac=add[1]))
    else:
        c.out(c.call("neighbor_del", ip=delete))


# ---- policy, floating IPs --------------------------------------------------------------

@cli.command()
@click.option("--list", "list_", type=int, metavar="VIF", help="the rules of VIF")
@click.option("--add", type=int, metavar="VIF", help="append a rule to VIF's policy")
@click.option("--clear", type=int, metavar="VIF", help="remove every rule of VIF")
@click.option("--action", type=click.Choice(list(RULE_ACTIONS)), help="(--add)")
@click.option("--proto", help="(--add) tcp, udp, icmp, icmp6 or a number")
@click.option("--src", help="(--add) source prefix")
@click.option("--dst", help="(--add) destination prefix")
@click.option("--src-port", help="(--add) port or range")
@click.option("--dst-port", help="(--add) port or range")
@click.option("--mirror-vif", type=int, help="(--add mirror)")
@pass_ctx
def policy(c, list_, add, clear, action, proto, src, dst, src_port, dst_port, mirror_vif):
    """Per-vif policy rules (first match wins, default allow)."""
    mode_ = _one_of(list=list_, add=add, clear=clear)
    if mode_ == "list":
        c.out(c.call("policy_list", vif=list_),
              lambda rs: show.table(["Action", "Proto", "Src", "Dst", "Sport", "Dport"],
                                    [[r.get("action"), r.get("proto"), r.get("src"), r.get("dst"),
                                      r.get("src_port"), r.get("dst_port")] for r in rs],
                                    f"Policy of vif {list_}"))
    elif mode_ == "add":
        if action is None:
            raise click.UsageError("policy --add needs --action")
        pr = int(proto) if proto is not None and proto.isdigit() else proto
        c.out(c.call("policy_add", vif=add, action=action, proto=pr, src=src, dst=dst,
                     src_port=_port(src_port), dst_port=_port(dst_port), mirror_vif=mirror_vif))
    else:
        c.out(c.call("policy_clear", vif=clear))


@cli.command()
@click.option("--add", nargs=2, type=(int, str), metavar="VIF PUBLIC", help="give VIF a floating IP")
@click.option("--delete", metavar="PUBLIC", help="remove a floating IP")
@pass_ctx
def fip(c, add, delete):
    """Floating IPs (1:1 NAT of a VM to an underlay address): --add VIF PUBLIC | --delete PUBLIC."""
    mode_ = _one_of(add=add, delete=delete)
    if mode_ == "add":
        c.out(c.call("fip_add", vif=add[0], public=add[1]))
    else:
        c.out(c.call("fip_del", public=delete))


# ---- flows and statistics --------------------------------------------------------------

@cli.command()
@click.option("-l", "--list", "list_", is_flag=True, help="the flow table")
@pass_ctx
def flow(c, list_):
    """The flow table: -l."""
    _one_of(list=list_)
    c.out(c.call("flow_list"), show.flow_list)


@cli.command()
@click.option("--vif", type=int, help="one vif's drops (default: the whole vRouter)")
@pass_ctx
def dropstats(c, vif):
    """Packets dropped, by reason (non-zero reasons only)."""
    c.out(c.call("dropstats", vif=vif), lambda d: show.dropstats(d, vif))


@cli.command()
@click.option("--get", type=int, metavar="VRF", required=True)
@pass_ctx
def vrfstats(c, get):
    """A VRF's counters by path (encaps, decaps, floods, proxies...)."""
    c.out(c.call("vrfstats", vrf=get), lambda d: show.vrfstats(d, get))


@cli.command()
@click.option("--show", "show_", is_flag=True, help="each lcore's rx queues and their busy share (default)")
@click.option("--rebalance", is_flag=True, help="deal the rx queues again by measured load")
@pass_ctx
def rxq(c, show_, rebalance):
    """Forwarding lcores and their rx queues (OVS's pmd-rxq-show / pmd-rxq-rebalance).

    The busy share of a queue is the part of its lcore's time spent on its
    bursts since the previous --show (or --rebalance)."""
    if show_ and rebalance:
        raise click.UsageError("give one of --show, --rebalance")
    c.out(c.call("rxq_rebalance" if rebalance else "rxq_show"), show.rxq_show)


@cli.command()
@click.option("--period", type=click.FloatRange(0.1), default=1.0, show_default=True, metavar="SECONDS")
@click.option("--count", type=click.IntRange(1), default=None, metavar="N", help="stop after N refreshes")
@pass_ctx
def top(c, period, count):
    """Live per-vif rx/tx rates and drops, refreshed in place (Ctrl-C ends)."""
    tty = sys.stdout.isatty() and not c.json
    prev, t_prev = c.call("vif_list"), time.monotonic()
    n = 0
    try:
        while count is None or n < count:
            time.sleep(period)
            cur, t = c.call("vif_list"), time.monotonic()
            if c.json:
                click.echo(json.dumps({"dt": t - t_prev, "vifs": cur}, sort_keys=True))
            else:
                title = f"pypdk vRouter — per-vif rates over {t - t_prev:.1f} s ({time.strftime('%H:%M:%S')})"
                lines = show.vif_rates(prev, cur, t - t_prev, title)
                if tty:
                    sys.stdout.write("\x1b[H\x1b[J")
                click.echo("\n".join(lines))
                if not tty:
                    click.echo("")
            sys.stdout.flush()
            prev, t_prev = cur, t
            n += 1
    except KeyboardInterrupt:
        pass


def fail(line: str) -> int:
    print(f"pypdk-vrouter: {line}", file=sys.stderr, flush=True)
    return 2


def main(argv=None) -> None:
    """Entry point (the pypdk-vrouter console script, python -m apps.vrouter.ctl.cli, scripts/pypdk-vrouter)."""
    try:
        rc = cli.main(args=argv, prog_name="pypdk-vrouter", standalone_mode=False)
    except PypdkError as e:
        rc = fail(e.line())
    except click.ClickException as e:
        rc = fail(f"{e.format_message().rstrip('.')}; see pypdk-vrouter {'' if not e.ctx else e.ctx.info_name + ' '}--help"
                  .replace("pypdk-vrouter pypdk-vrouter", "pypdk-vrouter"))
    except (click.exceptions.Abort, KeyboardInterrupt):
        rc = 130
    except BrokenPipeError:
        rc = 0
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
