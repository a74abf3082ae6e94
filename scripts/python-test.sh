#!/usr/bin/env bash
# The Python module's tests (crates/python/tests), as `./just test` runs them: the extension is
# built with the same profile, target folder and LIBTORCH as the Rust tests (run this under
# scripts/with-libtorch.sh), put beside the package's .py files in a folder under the target
# directory, and imported from there by pytest in a small venv (numpy, pytest, pandas, pyarrow, pillow)
# made once in $HOME/.cache/m2ib/pytest-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:?run under scripts/with-libtorch.sh}"
BIN=$(scripts/pinned-venv.sh "${M2IB_PYTEST_VENV:-$HOME/.cache/m2ib/pytest-venv}" \
  numpy==2.4.6 pytest==9.2.0 pandas==3.1.1 pyarrow==26.0.1 pillow==12.3.0)
# The whole workspace with the Python crate's feature on: the features every other crate gets
# are then those of `cargo test --workspace`, so only pyo3, numpy and the extension are built
# here (`-p m2ib-python` would build tch and the m2ib crates a second time, with other features);
# the m2ib binary the parity tests call is the one the Rust tests use.
cargo build -q --workspace --features m2ib-python/extension-module
PKG="$CARGO_TARGET_DIR/python-dev"
rm -rf "$PKG"
mkdir -p "$PKG/m2ib"
for f in crates/python/python/m2ib/*.py; do ln -s "$PWD/$f" "$PKG/m2ib/"; done
ln -s "$CARGO_TARGET_DIR/debug/lib_m2ib.so" "$PKG/m2ib/_m2ib.so"
export PYTHONPATH="$PKG" M2IB_CLI="$CARGO_TARGET_DIR/debug/m2ib"
exec "$BIN/python" -m pytest -q -p no:cacheprovider crates/python/tests "$@"
