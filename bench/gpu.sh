#!/usr/bin/env bash
# GPU benchmark of Seedance at the base preset: prints one JSON object on stdout (progress on stderr).
#
#     bench/gpu.sh                 # from anywhere; runs in the repository root
#     bench/gpu.sh --budget-s 300  # extra arguments go to bench/gpu_bench.py (see its --help)
#
# Installs nothing: it uses .venv/bin/python when the repository has one, else python3 (torch 2.11+, diffusers).
# Finishes in under 8 minutes: bench/gpu_bench.py stops its parts at a 7-minute deadline, and a hard timeout
# stops it at 7m40s (it then still prints the figures measured so far, exit status 124). Exit status 2: no CUDA GPU.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi

"$PY" - <<'PYCHECK' 2>/dev/null
import sys
try:
    import torch
except Exception:
    sys.exit(3)
sys.exit(0 if torch.cuda.is_available() and torch.cuda.device_count() > 0 else 1)
PYCHECK
case $? in
  0) ;;
  3) echo "error: $PY cannot import torch; bench/gpu.sh needs a python with torch and diffusers" >&2; exit 2 ;;
  *) echo "error: no CUDA GPU found; bench/gpu.sh is for GPU machines" >&2; exit 2 ;;
esac

exec timeout --signal=TERM --kill-after=5 460 "$PY" bench/gpu_bench.py --device cuda "$@"
