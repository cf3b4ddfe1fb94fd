#!/usr/bin/env bash
# The main job, from nothing (root): set up, then run the demo.
# Today: apps/l2fwd forwarding a ping between two network namespaces through
# two tap devices, with live stats; then the ring/mempool perf figures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
exec "$PY" -m apps.l2fwd.demo "$@"
