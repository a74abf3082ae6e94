#!/usr/bin/env bash
# A small Python venv with exactly the given pins, made once: `scripts/pinned-venv.sh DIR PIN...`
# (re)makes DIR when its recorded pins differ, then prints DIR/bin. Used by python-test.sh and
# python-wheel.sh.
set -euo pipefail
VENV=$1
shift
PY=${PYTHON:-python3}
if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$*" ]; then
  echo "pinned-venv: making $VENV ($*)" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$@"
  echo "$*" > "$VENV/.pins"
fi
echo "$VENV/bin"
