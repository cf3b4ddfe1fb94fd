#!/usr/bin/env bash
# Set up from nothing (scripts/setup.sh) and run the whole test suite, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
# VM tests boot QEMU guests: QEMU, busybox and Debian's kernel, unpacked (not installed).
"$PY" -m pypdk.testing.vm prepare
exec "$PY" -m pytest tests -q -p no:cacheprovider "$@"
