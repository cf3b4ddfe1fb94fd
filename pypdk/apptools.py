"""Console scripts of the reference apps, which live in the source tree (apps/).

An editable install (`pip install -e .`, what scripts/setup.sh does) leaves
pypdk in the checkout, so the apps sit beside it; a wheel ships pypdk
alone, and these commands then say where the apps are to be found.
"""
import os
import sys


def _apps_root() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, "apps", "vrouter")):
        print("pypdk-vrouter: the apps are not beside this pypdk install; install pypdk from "
              "its source tree with `pip install -e .` or run scripts/pypdk-vrouter there",
              file=sys.stderr)
        sys.exit(2)
    return root


def vrouter_main() -> None:
    """`pypdk-vrouter`: the vRouter's operator tool (apps/vrouter/ctl/cli.py)."""
    root = _apps_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    from apps.vrouter.ctl.cli import main
    main()
