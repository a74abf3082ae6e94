#!/usr/bin/env bash
# The `m2ib` binary of the test build, built if needed, then run with the arguments given (run
# under scripts/with-libtorch.sh). One build serves the tests and the runs: the workspace is
# built as `./just test` builds it (dev profile, the same features), so a run after the tests
# compiles nothing, and a fresh machine pays for one build, not a second release build. The dev
# profile optimises (opt-level 1, dependencies 2) and the tensor maths is libtorch's own, so runs
# are as fast as with a release binary (experiments/smoke.toml: 2 min 48 s vs 2 min 44 s, every
# value bit-identical). `./just build` still makes the release binary, for copying elsewhere.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
: "${CARGO_TARGET_DIR:?run under scripts/with-libtorch.sh}"
cargo build -q --manifest-path "$root/Cargo.toml" --workspace --features m2ib-python/extension-module
exec "$CARGO_TARGET_DIR/debug/m2ib" "$@"
