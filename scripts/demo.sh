#!/usr/bin/env bash
# Set up (or reuse) .venv and run the main job: KLIP scores 8 real CT slices with inserted lesions
# (bundled OrganAMNIST sample) from simulated sparse-view CT, with the bundled prior, offline.
# Writes outputs/demo/demo.png and outputs/demo/result.json. Extra arguments go to
# `napari-klip demo` (e.g. --device cuda, --gui to open napari instead; --gui needs
# `bash scripts/setup_env.sh napari` first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/napari-klip demo --out outputs/demo --overwrite "$@"
