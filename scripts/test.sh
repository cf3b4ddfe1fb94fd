#!/usr/bin/env bash
# Set up from nothing (scripts/setup.sh) and run the whole test suite, as root.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then     # root is needed; re-run through sudo where there is one
    command -v sudo >/dev/null && exec sudo -E bash "$0" "$@"
    echo "$(basename "$0"): run this as root (there is no sudo here)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
# VM tests boot QEMU guests: QEMU, busybox and Debian's kernel, unpacked (not installed);
# the SR-IOV tests' QEMU 10 (igb) from bookworm-backports, unpacked beside (the system's stays).
"$PY" -m pypdk.testing.vm prepare --qemu10
exec "$PY" -m pytest tests -q -p no:cacheprovider "$@"
