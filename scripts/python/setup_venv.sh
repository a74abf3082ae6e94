#!/usr/bin/env bash
# The Python reference environment for regenerating golden files (never needed by `just test`).
# Lives outside the repo: $HOME/.cache/m2ib/pyref. About 6 GB (torch pulls CUDA wheels), ~3 min.
set -euo pipefail
VENV=${M2IB_PYREF:-$HOME/.cache/m2ib/pyref}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q torch==2.13.0 transformers==5.24.0 pillow numpy safetensors scipy scikit-image captum grad-cam scikit-learn
# OpenAI's own CLIP code (clip/model.py only: the reference of the OpenAI-format converter).
"$VENV/bin/pip" install -q --no-deps openai-clip==1.0.1
echo "$VENV/bin/python"
