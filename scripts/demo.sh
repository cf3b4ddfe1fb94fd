#!/usr/bin/env bash
# The main job, from nothing (root): set the machine up, then run the vRouter demo:
# two compute nodes (one `pypdk-run apps/vrouter --lcores 0-1` each, in its own
# network namespace), two VMs each (namespaces on tap vifs), an MPLSoUDP overlay
# over a veth underlay; a ping and a 20 MB TCP transfer across it, the
# operator's view (vif --list, dropstats), then everything torn down.
# Options go to examples/vrouter_demo.py: --encap mplsoudp|mplsogre|vxlan, --mb N, --no-huge.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then     # root is needed; re-run through sudo where there is one
    command -v sudo >/dev/null && exec sudo -E bash "$0" "$@"
    echo "$(basename "$0"): run this as root (there is no sudo here)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
exec "$PY" -m examples.vrouter_demo "$@"
