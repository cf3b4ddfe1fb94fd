"""`pypdk-run APP_DIR [EAL options] [runner options] [-- APP options]`.

The command line only: the options (spelled as DPDK spells them where it
has them), and the one place where an error becomes one line on stderr and
exit status 2. The run itself is pypdk/runner.py; the counters and their
display pypdk/stats.py.

    pypdk-run apps/l2fwd -l 0-1 --vdev net_null0 --vdev net_null1 --stats-period 1
    pypdk-run apps/l2fwd -l 0-1 --no-huge --vdev net_pcap0,rx_pcap=in.pcap \\
        --vdev net_pcap1,tx_pcap=out.pcap --duration 2 --stats-json run.json -- --no-mac-updating

Exit status: 0 after a clean stop (--duration, Ctrl-C, SIGTERM, or every
task returned), 2 for an error the user can fix (bad option, lcore not on
this machine, unknown app, bad or unreachable device, too few hugepages),
1 when an lcore task failed or on a bug (with its traceback).
"""
from __future__ import annotations

import logging
import sys

import click

from pypdk.errors import PypdkError

EPILOG = ("App options go after `--` (pypdk-run APP_DIR -- --help lists them). "
          "Examples: pypdk-run apps/l2fwd -l 0-1 --vdev net_null0 --vdev net_null1 --stats-period 1")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog=EPILOG)
@click.argument("app_dir", metavar="APP_DIR")
@click.argument("app_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- APP OPTIONS]")
@click.option("-l", "--lcores", metavar="LIST",
              help="lcores to use: 0-3, 0,2,4, (0-3)@1 (default: every cpu this process may use)")
@click.option("--main-lcore", type=int, metavar="N", help="the lcore running pypdk-run (default: the lowest)")
@click.option("-m", "memory", type=int, metavar="MB", help="hugepage memory in MB (all nodes)")
@click.option("--socket-mem", metavar="MB[,MB...]", help="hugepage memory in MB per NUMA node")
@click.option("--huge-dir", metavar="DIR", help="hugetlbfs mount for memory files (default: memfd)")
@click.option("--no-huge", is_flag=True, help="ordinary 4 KiB pages instead of hugepages")
@click.option("--file-prefix", default="pypdk", show_default=True, metavar="NAME",
              help="prefix of hugepage file names")
@click.option("--vdev", "vdevs", multiple=True, metavar="SPEC",
              help="a virtual device, repeatable; port ids 0,1,... in order "
                   "(net_null0, net_ring0, net_pcap0,rx_pcap=in.pcap, net_tap0,iface=tap0)")
@click.option("-a", "--allow", multiple=True, metavar="BDF", help="a PCI device bound to vfio-pci (BDF[,key=value...]), repeatable; its port follows the --vdev ports")
@click.option("--log-level", default="warning", show_default=True,
              help="debug, info, notice, warning, error or critical")
@click.option("--duration", type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="stop by itself after this long")
@click.option("--stats-period", type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="show live per-port rates this often")
@click.option("--stats-json", metavar="PATH", help="write final per-port and per-lcore counters here")
def command(app_dir, app_args, lcores, main_lcore, memory, socket_mem, huge_dir, no_huge, file_prefix,
            vdevs, allow, log_level, duration, stats_period, stats_json):
    """Run the pypdk app in APP_DIR (a directory holding app.py) on the given lcores and ports."""
    from pypdk.runner import RunConfig, AppHelp, run
    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    cfg = RunConfig(app_dir=app_dir, app_args=list(app_args), lcores=lcores, main_lcore=main_lcore,
                    memory=memory, socket_mem=socket_mem, huge_dir=huge_dir, no_huge=no_huge,
                    file_prefix=file_prefix, vdevs=list(vdevs), allow=list(allow), log_level=log_level,
                    duration=duration, stats_period=stats_period, stats_json=stats_json)
    try:
        return run(cfg)
    except AppHelp as e:
        return e.code


def fail(line: str) -> int:
    """The one way pypdk-run reports an error: one line on stderr, status 2."""
    print(f"pypdk-run: {line}", file=sys.stderr, flush=True)
    return 2


def main(argv=None) -> None:
    """Console entry point (pyproject: pypdk-run = "pypdk.cli:main")."""
    try:
        rc = command.main(args=argv, prog_name="pypdk-run", standalone_mode=False)
    except PypdkError as e:
        rc = fail(e.line())
    except click.exceptions.NoSuchOption as e:
        rc = fail(f"{e.format_message().rstrip('.')}; see pypdk-run --help (app options go after --)")
    except click.ClickException as e:
        rc = fail(f"{e.format_message().rstrip('.')}; see pypdk-run --help")
    except (click.exceptions.Abort, KeyboardInterrupt):
        # Ctrl-C before the run installed its handlers (while loading the app).
        rc = 130
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
