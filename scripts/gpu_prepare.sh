#!/usr/bin/env bash
# Prepare a GPU session (runs HERE, on the CPU machine, before the one device call of
# scripts/gpu_session.sh; docs/benchmarks.md, "A GPU session in one call").
#
#   * downloads the wheels the device machine lacks into .whl/ (diffusers, lpips and
#     importlib_metadata at the versions of this project's environment, and their needs that the
#     device image does not hold or holds too old: lazy-importer, zipp);
#   * makes sure .whl/ and gpu_data/ are ignored (.git/info/exclude), so they travel only when a
#     device call names them in `carry`;
#   * writes gpu_data/ (scripts/gpu_data.py): the OrganAMNIST liver slices of every split and the
#     small throughput stacks, cut from ../shared/data (which does not travel);
#   * prints what would travel (tracked + untracked-not-ignored files + .whl + gpu_data) and fails
#     above GPU_PREPARE_MAX_MIB (default 60; the device's limit is 64 MiB).
#
# Run it from the checkout the device call sends (the session's own checkout, e.g. /work/main):
#   PYTHON=.venv/bin/python bash scripts/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
SHARED="${GPU_PREPARE_SHARED:-../shared/data}"
MAX_MIB="${GPU_PREPARE_MAX_MIB:-60}"

version_of() {  # the version installed in the project's environment, else the fallback given
    "$PYTHON" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: print(sys.argv[2])" "$1" "$2"
}

# 1. ignore what only travels when carried
exclude="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
for entry in /.whl/ /gpu_data/; do
    grep -qxF "$entry" "$exclude" 2>/dev/null || echo "$entry" >> "$exclude"
done
for path in .whl gpu_data; do
    if ! git check-ignore -q "$path/x"; then
        echo "gpu_prepare: $path/ is not ignored by git; it would travel twice" >&2
        exit 1
    fi
done

# 2. wheels: one version of each, for CPython 3.12 on x86-64 (the device image's python3)
wheels=(
    "diffusers==$(version_of diffusers 0.42.1)"
    "lpips==$(version_of lpips 0.1.4)"
    "importlib_metadata==$(version_of importlib_metadata 10.2.0)"
    "lazy-importer==$(version_of lazy-importer 0.1.0)"  # importlib_metadata >= 9 needs it; not on the image
    "zipp==$(version_of zipp 4.1.2)"                    # importlib_metadata needs zipp >= 3.20; the image's version is unknown
)
rm -rf .whl
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
echo "gpu_prepare: downloading ${wheels[*]}"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "${wheels[@]}"
ls -l .whl

# 3. the session's data
"$PYTHON" scripts/gpu_data.py --shared "$SHARED" --out gpu_data
{
    echo "prepared: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- src benchmarks scripts || echo ' (with uncommitted changes)')"
    echo "wheels: ${wheels[*]}"
} > gpu_data/prepared.txt

# 4. what would travel
tree_bytes=$( { git ls-files -z --cached --others --exclude-standard; } \
    | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}')
carried_bytes=$(du -sb .whl gpu_data | awk '{s += $1} END {print s + 0}')
total=$((tree_bytes + carried_bytes))
awk -v t="$tree_bytes" -v c="$carried_bytes" -v a="$total" 'BEGIN {
    printf "gpu_prepare: would travel %.1f MiB = working tree %.1f MiB + carried .whl and gpu_data %.1f MiB\n",
        a / 2^20, t / 2^20, c / 2^20 }'
if [ "$total" -gt $((MAX_MIB * 1024 * 1024)) ]; then
    echo "gpu_prepare: more than ${MAX_MIB} MiB would travel (limit 64 MiB); remove untracked files or carry less" >&2
    exit 1
fi
echo "gpu_prepare: ready; device call: run with carry [\".whl\", \"gpu_data\"] (docs/benchmarks.md)"
