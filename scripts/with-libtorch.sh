#!/usr/bin/env bash
# Runs a command with libtorch installed (scripts/setup-libtorch.sh) and LIBTORCH and
# CARGO_TARGET_DIR pointing at fixed folders outside the clone, so that every clone (CI's too)
# shares one build and torch-sys never rebuilds because a path changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export LIBTORCH=$("$here/setup-libtorch.sh" | tail -1)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/m2ib/target-${M2IB_TORCH:-cpu}}
unset LIBTORCH_USE_PYTORCH
exec "$@"
