#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install napari-klip into it.
# Idempotent: a second run reinstalls nothing unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
stamp_wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)-${extras}"
if [ "$(cat .venv/.napari-klip-stamp 2>/dev/null)" != "$stamp_wanted" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # torch 2.14.1 / torchvision 0.29.1 are the newest releases this machine kind installs from its
    # local wheel store; pinning them keeps pip from downloading a multi-GB build.
    .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
    if [ -n "$extras" ]; then
        .venv/bin/python -m pip install -q -e ".[${extras}]"
    else
        .venv/bin/python -m pip install -q -e .
    fi
    echo "$stamp_wanted" > .venv/.napari-klip-stamp
fi
