#!/usr/bin/env bash
# Set up (or reuse) .venv with the test extras and run the whole test suite on the CPU.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k operators`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"
exec .venv/bin/python -m pytest "$@"
