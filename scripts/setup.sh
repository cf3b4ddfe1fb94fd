#!/usr/bin/env bash
# Install what pypdk, its tests and its demo need on a fresh Debian 12 machine
# (run as root), build pypdk in place, and reserve hugepages. Idempotent.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then     # root is needed; re-run through sudo where there is one
    command -v sudo >/dev/null && exec sudo -E bash "$0" "$@"
    echo "$(basename "$0"): run this as root (there is no sudo here)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."

need_apt=()
for pkg in gcc iproute2 iputils-ping ethtool tshark tcpdump iperf3 dpdk dpdk-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    echo "setup: installing the Python headers"
    apt-get install -y -qq --no-install-recommends python3-dev >/dev/null
fi

here=$(pwd -P)
installed=$(cd / && "$PY" -c 'import os, pypdk; print(os.path.dirname(os.path.dirname(os.path.realpath(pypdk.__file__))))' 2>/dev/null || true)
if [ "$installed" = "$here" ] && "$PY" -c 'import Cython, pytest, scapy, pytest_benchmark' 2>/dev/null; then
    # Already installed (editable) from this tree: rebuild only what changed.
    echo "setup: pypdk is installed from this tree; rebuilding what changed"
    log=$(mktemp)
    "$PY" setup.py build_ext --inplace >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
    rm -f "$log"
else
    echo "setup: building pypdk (pip install -e '.[test]')"
    "$PY" -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
"$PY" -c 'import pypdk.ring.ring, pypdk.mempool.mbuf, pypdk.eal.lcore' \
    || { echo "setup: the build failed" >&2; exit 1; }

# Tests and the demo take pools from 2 MiB hugepages: make sure 512 (1 GiB) exist.
# A kernel that gives fewer (fragmented memory) is worth a warning, not a stop:
# the tests need far less, and the EAL says clearly if a run is short.
"$PY" -m pypdk.eal.hugepages --reserve 1G --at-least \
    || echo "setup: warning: could not reserve all of 1 GiB of hugepages (see above)" >&2
