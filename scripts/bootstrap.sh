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
# BYZDASK_EXTRAS overrides the extras. By default: the test, experiment, docs and job-queue extras,
# and on Linux (where RAPIDS publishes wheels) the ucx extra, so that the UCX loopback test runs
# instead of skipping; distributed-ucxx pins dask/distributed to RAPIDS' release (DESIGN §10).
extras=${BYZDASK_EXTRAS:-"test,experiments,docs,hpc"}
if [ -z "${BYZDASK_EXTRAS:-}" ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64 | Linux-aarch64) extras="${extras},ucx" ;;
  esac
fi
if ! "$PY" -m pip install -q -e ".[${extras}]"; then
  case "$extras" in
    *,ucx)
      echo "bootstrap: installing the ucx extra failed; installing without it (the UCX test will skip)" >&2
      "$PY" -m pip install -q -e ".[${extras%,ucx}]" ;;
    *) exit 1 ;;
  esac
fi
