"""pypdk-devbind: network devices, their drivers, IOMMU groups and NUMA nodes; bind to vfio-pci.

    pypdk-devbind --status                      # every network device (and what pypdk drives)
    pypdk-devbind --bind vfio-pci 0000:00:04.0  # detach the kernel driver, give it to vfio-pci
    pypdk-devbind --bind kernel 0000:00:04.0    # back to the kernel's own driver (also: --unbind)
    pypdk-devbind --sriov-numvfs 0000:00:04.0 2 # an SR-IOV PF's VFs (--status lists them under it)

Errors are one line with the fix, exit status 2.
"""
from __future__ import annotations

import json
import sys

import click

from pypdk.eal import pci
from pypdk.errors import PypdkError


def _pypdk_driver(dev: pci.PciDevice) -> str:
    from pypdk.pmd import pci_driver
    mod = pci_driver(dev.vendor, dev.device)
    return mod.DRIVER if mod is not None else "-"


def _row(dev: pci.PciDevice) -> dict:
    return {"bdf": dev.bdf, "id": f"{dev.vendor:04x}:{dev.device:04x}", "driver": dev.driver,
            "iommu_group": dev.iommu_group, "numa_node": dev.numa_node, "interfaces": dev.net,
            "pypdk": _pypdk_driver(dev), "physfn": dev.physfn, "virtfns": dev.virtfns,
            "sriov_numvfs": dev.sriov_numvfs, "sriov_totalvfs": dev.sriov_totalvfs}


def _group(r: dict) -> str:
    return str(r["iommu_group"]) if r["iommu_group"] is not None else "none"


def status(as_json: bool = False, out=None) -> None:
    out = out or sys.stdout
    rows = [_row(d) for d in pci.devices(network_only=True)]
    if as_json:
        print(json.dumps(rows, indent=2), file=out)
        return
    vfio = [r for r in rows if r["driver"] == "vfio-pci"]
    kernel = [r for r in rows if r["driver"] not in (None, "vfio-pci")]
    other = [r for r in rows if r["driver"] is None]
    by_bdf = {r["bdf"]: r for r in rows}

    def section(title, items):
        print(title, file=out)
        print("=" * len(title), file=out)
        if not items:
            print("<none>", file=out)
        for r in items:
            extra = f" if={','.join(r['interfaces'])}" if r["interfaces"] else ""
            if r["sriov_totalvfs"]:
                extra += f" vfs={r['sriov_numvfs']}/{r['sriov_totalvfs']}"
            if r["physfn"]:
                extra += f" VF of {r['physfn']}"
            print(f"{r['bdf']} '{r['id']}' drv={r['driver'] or 'none'} iommu_group={_group(r)} "
                  f"numa_node={r['numa_node']} pypdk={r['pypdk']}{extra}", file=out)
            for i, vf in enumerate(r["virtfns"]):       # a PF's VFs, one line each, under it
                v = by_bdf.get(vf) or _row(pci.device(vf))
                vif = f" if={','.join(v['interfaces'])}" if v["interfaces"] else ""
                print(f"    virtfn{i} {vf} '{v['id']}' drv={v['driver'] or 'none'} "
                      f"iommu_group={_group(v)} pypdk={v['pypdk']}{vif}", file=out)
        print(file=out)

    section("Network devices using vfio-pci (pypdk can drive them)", vfio)
    section("Network devices using kernel drivers", kernel)
    section("Network devices without a driver", other)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-s", "--status", "show", is_flag=True, help="list network devices, drivers, IOMMU groups, NUMA nodes")
@click.option("--json", "as_json", is_flag=True, help="with --status: as JSON")
@click.option("-b", "--bind", "driver", metavar="DRIVER", help="bind the devices to DRIVER (vfio-pci, or 'kernel')")
@click.option("-u", "--unbind", is_flag=True, help="detach the devices from their driver")
@click.option("--sriov-numvfs", "numvfs", type=(str, int), metavar="PF N",
              help="give the SR-IOV physical function PF N virtual functions (0 removes them)")
@click.argument("devices", nargs=-1)
def command(show, as_json, driver, unbind, numvfs, devices):
    """Show network devices and bind them to vfio-pci for pypdk (or back)."""
    if (driver or unbind) and not devices:
        raise click.UsageError("give the devices' PCI addresses (pypdk-devbind --status lists them)")
    if numvfs:
        pf = pci.set_num_vfs(*numvfs)
        vfs = ", ".join(f"virtfn{i} {vf}" for i, vf in enumerate(pf.virtfns))
        click.echo(f"{pf.bdf}: {len(pf.virtfns)} VFs{': ' + vfs if vfs else ''}")
    for bdf in devices:
        if unbind:
            pci.unbind(bdf)
        elif driver:
            dev = pci.bind(bdf, None if driver == "kernel" else driver)
            click.echo(f"{dev.bdf}: {dev.driver or 'no driver'}")
    if show or not (driver or unbind or numvfs):
        status(as_json)


def main(argv=None) -> None:
    try:
        command.main(args=argv, prog_name="pypdk-devbind", standalone_mode=False)
    except click.exceptions.Exit as e:
        raise SystemExit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"pypdk-devbind: {e.format_message()}", err=True)
        raise SystemExit(2)
    except PypdkError as e:
        click.echo(f"pypdk-devbind: {e.line()}", err=True)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
