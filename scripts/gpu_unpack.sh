#!/usr/bin/env bash
# Unpack what scripts/gpu_session.sh sent back (runs HERE, after the device call).
#
#   bash scripts/gpu_unpack.sh FILES_AT [RESULTS_DIR]
#
# FILES_AT is the folder the device call's files came back to (its reply's files_at), holding
# session.log, results.tar.gz, SHA256SUMS and prior.tar.gz.part-NN. This checks the checksums,
# reassembles the trained prior into runs/<its name>/ (refusing to replace an existing folder),
# unpacks the JSONs and logs into RESULTS_DIR (default runs/gpu-session-<UTC time>/), and checks
# that the prior loads (`napari-klip info`). Nothing tracked by git is written: copy the JSONs
# you report into benchmarks/results/ yourself (docs/benchmarks.md, "A GPU session in one call").
set -euo pipefail
cd "$(dirname "$0")/.."

FROM="${1:?usage: gpu_unpack.sh FILES_AT [RESULTS_DIR]}"
RESULTS_DIR="${2:-runs/gpu-session-$(date -u +%Y%m%dT%H%M%SZ)}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"

[ -f "$FROM/SHA256SUMS" ] || { echo "gpu_unpack: no SHA256SUMS in $FROM (did the session reach its packing phase? see session.log)" >&2; exit 1; }
(cd "$FROM" && sha256sum -c --quiet SHA256SUMS)
echo "gpu_unpack: checksums match"

mkdir -p "$RESULTS_DIR"
tar -xzf "$FROM/results.tar.gz" -C "$RESULTS_DIR" --strip-components=1
cp "$FROM/session.log" "$RESULTS_DIR/" 2>/dev/null || true
echo "gpu_unpack: results in $RESULTS_DIR:"
ls -l "$RESULTS_DIR"

shopt -s nullglob
parts=("$FROM"/prior.tar.gz.part-*)
if [ ${#parts[@]} -eq 0 ]; then
    echo "gpu_unpack: no prior came back (see $RESULTS_DIR/session.log)"
    exit 0
fi
staging="$(mktemp -d runs/.gpu-unpack.XXXXXX)"
trap 'rm -rf "$staging"' EXIT
cat "${parts[@]}" | tar -xzf - -C "$staging"   # the glob sorts part-00, part-01, ... in order
name="$(ls "$staging")"
if [ "$(echo "$name" | wc -l)" -ne 1 ]; then
    echo "gpu_unpack: the prior archive should hold one folder, found: $name" >&2
    exit 1
fi
if [ -e "runs/$name" ]; then
    echo "gpu_unpack: runs/$name exists; move it away first (nothing replaced)" >&2
    exit 1
fi
mv "$staging/$name" "runs/$name"
echo "gpu_unpack: prior in runs/$name; checking that it loads:"
PYTHONPATH="$(pwd)/src${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m napari_klip.cli info "runs/$name" \
    | "$PYTHON" -c "import json, sys
r = json.load(sys.stdin)['prior']
t = r.get('training', {})
print(f\"  {r['path']}: {r['parameters']:,} parameters, image {r['image_size']}, {t.get('steps')} steps x {t.get('batch_size')}, \"
      f\"final loss {t.get('final_loss')}, {t.get('wall_time_s')} s on {t.get('hardware')}\")"
