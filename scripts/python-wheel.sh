#!/usr/bin/env bash
# Builds the Python module's wheel with maturin (installed once into a small venv in
# $HOME/.cache/m2ib/maturin-venv) against the setup script's libtorch, in the shared target
# folder (run under scripts/with-libtorch.sh: `./just wheel`). Prints the wheel's path last, so
#   pip install "$(./just wheel | tail -1)"
# installs it into whichever Python runs pip. The wheel carries the embedded default model.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:?run under scripts/with-libtorch.sh}"
PY=${PYTHON:-python3}
BIN=$(scripts/pinned-venv.sh "$HOME/.cache/m2ib/maturin-venv" maturin==1.15.0)
# The embedded default travels inside the wheel (m2ib.load("tiny-shapes") finds it there); the
# copy is removed again after the build.
MODELS=crates/python/python/m2ib/models
rm -rf "$MODELS"
mkdir -p "$MODELS"
cp -r data/tiny-shapes-clip "$MODELS/"
trap 'rm -rf "$MODELS"' EXIT
OUT="$CARGO_TARGET_DIR/wheels"
rm -f "$OUT"/m2ib-*.whl
"$BIN/maturin" build --release -q -m crates/python/Cargo.toml -i "$(command -v "$PY")" --out "$OUT" >&2
ls "$OUT"/m2ib-*.whl | head -1
