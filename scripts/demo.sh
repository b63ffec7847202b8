#!/usr/bin/env bash
# Set up (or reuse) .venv and run the main job.
# The KLIP demo on the bundled prior arrives with issue #6; until then this shows the command line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
echo "napari-klip $(.venv/bin/python -c 'import napari_klip; print(napari_klip.__version__)') is installed in .venv."
echo "The demo on a bundled prior is not built yet (issue #6); here is the command line:"
echo
exec .venv/bin/napari-klip --help
