#!/usr/bin/env bash
# Installs libtorch 2.13.0 (the version tch 0.26 expects) into one fixed folder outside the clone,
# from PyPI wheels (download.pytorch.org is unreachable here). Idempotent: a second run only
# checks the marker file. See ../shared/LIBTORCH.md for why each step exists.
#
#   M2IB_TORCH=cpu  (default) ~490 MB CPU-only folder: $HOME/.cache/m2ib/libtorch-2.13.0-cpu
#   M2IB_TORCH=cuda full torch wheel in a venv:    $HOME/.cache/m2ib/libtorch-2.13.0-cu13
# Prints the folder on its last line so callers can `LIBTORCH=$(scripts/setup-libtorch.sh | tail -1)`.
set -euo pipefail

VERSION=2.13.0
KIND=${M2IB_TORCH:-cpu}
CACHE=${M2IB_CACHE:-$HOME/.cache/m2ib}
PY=${PYTHON:-python3}

log() { echo "setup-libtorch: $*" >&2; }

case "$KIND" in
cpu)
  DEST="$CACHE/libtorch-$VERSION-cpu"
  if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
  log "installing CPU libtorch $VERSION into $DEST"
  WORK=$(mktemp -d "$CACHE.tmp.XXXXXX" 2>/dev/null || { mkdir -p "$CACHE"; mktemp -d "$CACHE/tmp.XXXXXX"; })
  trap 'rm -rf "$WORK"' EXIT
  PLAT=(--python-version 3.11 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  WHEELS="$CACHE/wheels"
  mkdir -p "$WHEELS"
  for spec in "torch==$VERSION" "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cupti==13.0.85"; do
    name=${spec%%==*}; name=${name//-/_}; ver=${spec##*==}
    if ! ls "$WHEELS/${name}-${ver}-"*.whl >/dev/null 2>&1; then
      "$PY" -m pip download -q --no-deps --only-binary=:all: "${PLAT[@]}" -d "$WHEELS" "$spec"
    fi
  done
  NEW="$WORK/libtorch"
  mkdir -p "$NEW/lib"
  # Only the headers and three libraries are needed from the 527 MB wheel.
  "$PY" - "$(ls "$WHEELS"/torch-$VERSION-*.whl | head -1)" "$NEW" <<'PYEOF'
import os, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
libs = {"torch/lib/libc10.so", "torch/lib/libtorch_cpu.so", "torch/lib/libgomp.so.1"}
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("torch/include/") and not n.endswith("/"):
            out = os.path.join(dest, "include", n[len("torch/include/"):])
        elif n in libs:
            out = os.path.join(dest, "lib", os.path.basename(n))
        else:
            continue
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(n) as src, open(out, "wb") as f:
            while chunk := src.read(1 << 20):
                f.write(chunk)
PYEOF
  "$PY" - "$WHEELS" "$NEW/lib" <<'PYEOF'
import glob, os, sys, zipfile
wheels, dest = sys.argv[1], sys.argv[2]
for pat, lib in [("nvidia_cuda_runtime-*.whl", "libcudart.so.13"), ("nvidia_cuda_cupti-*.whl", "libcupti.so.13")]:
    whl = sorted(glob.glob(os.path.join(wheels, pat)))[0]
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith("/" + lib))
        with open(os.path.join(dest, lib), "wb") as out:
            out.write(z.read(name))
PYEOF
  # The wheel's libtorch.so needs libtorch_cuda.so; a stub that links only the CPU parts, as the
  # official CPU zip ships.
  echo 'void m2ib_libtorch_stub(void) {}' > "$WORK/stub.c"
  cc -shared -fPIC -o "$NEW/lib/libtorch.so" "$WORK/stub.c" -Wl,--no-as-needed -L"$NEW/lib" -ltorch_cpu -lc10 -Wl,-rpath,'$ORIGIN'
  echo "$VERSION" > "$NEW/build-version"
  touch "$NEW/.complete"
  rm -rf "$DEST"
  mv "$NEW" "$DEST"
  log "done"
  echo "$DEST"
  ;;
cuda)
  DEST="$CACHE/libtorch-$VERSION-cu13"
  if [ -f "$DEST/.complete" ]; then echo "$DEST/torch"; exit 0; fi
  log "installing full torch $VERSION (CUDA 13, ~5.4 GB) into $DEST"
  rm -rf "$DEST"
  "$PY" -m venv "$DEST/venv"
  "$DEST/venv/bin/pip" install -q "torch==$VERSION"
  TORCH_DIR=$("$DEST/venv/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')
  ln -sfn "$TORCH_DIR" "$DEST/torch"
  touch "$DEST/.complete"
  echo "$DEST/torch"
  ;;
*)
  log "M2IB_TORCH must be 'cpu' or 'cuda', not '$KIND'"; exit 2 ;;
esac
