#!/usr/bin/env bash
# Install byzdask (editable) with its test extras. On machines whose pip has the CPU build of
# torch 2.13.0 on local disk, install that first when no torch is present, so that pip does not
# resolve torch to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "torch==2.13.0" || "$PY" -m pip install -q "torch>=2.2"
fi
extras="test,experiments,docs,hpc"
"$PY" -m pip install -q -e ".[${extras}]"
