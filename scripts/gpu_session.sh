#!/usr/bin/env bash
# One GPU session in one device call (runs ON the device machine; docs/benchmarks.md,
# "A GPU session in one call"). Prepare first, here: scripts/gpu_prepare.sh. Then:
#
#   run(command="set -o pipefail; timeout -k 10 570 bash scripts/gpu_session.sh", carry=[".whl", "gpu_data"], timeout_s=600)
#
# Phases (each bounded by its own time limit, and all of them by GPU_SESSION_TOTAL_MINUTES
# counted from the script's start; a phase that fails or runs out of time is reported and the
# next one runs):
#   0. install the carried wheels into $GPU_SESSION_SITE, print nvidia-smi and torch's CUDA facts;
#   a. train a liver prior (OrganAMNIST label 6, 28², network small, bf16, batch 256) for
#      GPU_SESSION_TRAIN_MINUTES (`napari-klip train --time-limit`), then its held-out loss per
#      band beside the bundled CPU prior's on the same val slices (`napari-klip info --heldout`);
#   b. benchmarks/liver_lesions.py with the new prior at 8 samples x 100 steps: val first, then
#      as many test slices as the rest of GPU_SESSION_LESION_MINUTES allows (at most 50 + 100);
#   c. benchmarks/klip_speed.py --device cuda, benchmarks/throughput.py --device cuda --cuda-graphs;
#   d. the bundled CPU prior through (b) with the same counts, only if the time left allows;
#   e. pack: the prior folder (without checkpoint.pt) as a tar split into 15 MiB parts, every
#      JSON and phase log in results.tar.gz, SHA256SUMS, session.log — at most 8 files in $OUT.
#      scripts/gpu_unpack.sh reassembles them here.
#
# Dry run on a CPU (CUDA-only phases are skipped with a line saying so):
#   GPU_SESSION_DEVICE=cpu GPU_SESSION_NETWORK=tiny GPU_SESSION_BATCH=8 GPU_SESSION_TRAIN_MINUTES=0.2 \
#   GPU_SESSION_LESION_SAMPLES=2 GPU_SESSION_LESION_STEPS=4 GPU_SESSION_LESION_VAL="2 2" \
#   GPU_SESSION_HELDOUT_IMAGES=16 PYTHON=.venv/bin/python OUT=/tmp/gpuout bash scripts/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"

: "${OUT:?set OUT to the folder whose files come back}"
DEVICE="${GPU_SESSION_DEVICE:-cuda}"
PYTHON="${PYTHON:-python3}"
SITE="${GPU_SESSION_SITE:-/tmp/site}"
TOTAL_MINUTES="${GPU_SESSION_TOTAL_MINUTES:-9.0}"
TRAIN_MINUTES="${GPU_SESSION_TRAIN_MINUTES:-2.5}"
LESION_MINUTES="${GPU_SESSION_LESION_MINUTES:-2.5}"
SPEED_MINUTES="${GPU_SESSION_SPEED_MINUTES:-1.25}"
THROUGHPUT_MINUTES="${GPU_SESSION_THROUGHPUT_MINUTES:-1.5}"
PACK_RESERVE_S="${GPU_SESSION_PACK_RESERVE_S:-20}"
NETWORK="${GPU_SESSION_NETWORK:-small}"
BATCH="${GPU_SESSION_BATCH:-256}"
TRAIN_STEPS="${GPU_SESSION_TRAIN_STEPS:-50000}"
LR="${GPU_SESSION_LR:-3e-4}"
EMA="${GPU_SESSION_EMA:-0.999}"
PRECISION="${GPU_SESSION_PRECISION:-bf16}"
HELDOUT_IMAGES="${GPU_SESSION_HELDOUT_IMAGES:-500}"
LESION_SAMPLES="${GPU_SESSION_LESION_SAMPLES:-8}"
LESION_STEPS="${GPU_SESSION_LESION_STEPS:-100}"
LESION_VAL="${GPU_SESSION_LESION_VAL:-20 20}"
LESION_TEST_MAX_OOD="${GPU_SESSION_LESION_TEST_MAX_OOD:-100}"
THROUGHPUT_IMAGES="${GPU_SESSION_THROUGHPUT_IMAGES:-256}"
THROUGHPUT_REPEATS="${GPU_SESSION_THROUGHPUT_REPEATS:-1}"  # its per-slice paths dominate: 2 x 256 images one by one
PART_SIZE="${GPU_SESSION_PART_SIZE:-15m}"  # split size of the prior archive (each returned file <= 16 MiB)
THREADS="${GPU_SESSION_THREADS:-4}"  # torch CPU threads of the lesion benchmark (its host-side work)
PRIOR_NAME="${GPU_SESSION_PRIOR_NAME:-liver28-${NETWORK}-gpu}"
CPU_PRIOR="src/napari_klip/data/priors/organamnist-liver28-tiny-cpu"
DATA="gpu_data/liver28.npz"
WORK="runs/gpu-session"          # scratch (ignored by git); results/ is what comes back as results.tar.gz
RESULTS="$WORK/results"
PRIOR_DIR="runs/$PRIOR_NAME"

minutes_to_s() { awk -v m="$1" 'BEGIN {printf "%d", m * 60}'; }
TOTAL_S=$(minutes_to_s "$TOTAL_MINUTES")
left_s() { echo $((TOTAL_S - SECONDS - PACK_RESERVE_S)); }
phase() { echo; echo "=== [$(date -u +%H:%M:%S), ${SECONDS} s] $*"; }
# bounded RUN_S CMD...: CMD under `timeout`, at most RUN_S seconds and never past the session's end
bounded() {
    local want=$1 left; shift
    left=$(left_s)
    [ "$want" -gt "$left" ] && want=$left
    if [ "$want" -lt 5 ]; then
        echo "skipped (no time left in GPU_SESSION_TOTAL_MINUTES=$TOTAL_MINUTES): $*" >&2
        return 124
    fi
    echo "+ (limit ${want} s) $*" >&2
    timeout -k 10 "$want" "$@"
    local status=$?
    [ $status -eq 124 ] && echo "!! stopped at its ${want} s limit: $1 ..." >&2
    [ $status -ne 0 ] && [ $status -ne 124 ] && echo "!! exit status $status: $*" >&2
    return $status
}

# ----------------------------------------------------------------------------------- phases

install_and_facts() {
    phase "0. wheels and facts (device $DEVICE)"
    if ls .whl/*.whl > /dev/null 2>&1; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
            || { echo "!! wheel install failed"; return 1; }
    else
        echo "no .whl/ here: using the installed packages"
    fi
    export PYTHONPATH="$REPO/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1
    command -v nvidia-smi > /dev/null && nvidia-smi || echo "nvidia-smi: not here"
    cat gpu_data/prepared.txt 2>/dev/null
    "$PYTHON" - "$DEVICE" <<'EOF' 2>&1 | tee "$RESULTS/facts.txt"
import os, platform, sys
import torch, diffusers, napari_klip
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__} from {os.path.dirname(diffusers.__file__)}")
print(f"napari_klip from {os.path.dirname(napari_klip.__file__)}; cpus {os.cpu_count()}")
try:
    import lpips  # noqa: F401
    print("lpips imports")
except Exception as error:  # reported, not fatal: no phase here needs it
    print(f"lpips does not import: {error!r}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"cuda: {torch.cuda.get_device_name(0)}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}, bf16 {torch.cuda.is_bf16_supported()}")
elif sys.argv[1] == "cuda":
    sys.exit("torch sees no CUDA device")
else:
    print("cuda: not available (dry run on the CPU)")
EOF
}

train_prior() {
    phase "a. train $PRIOR_DIR: network $NETWORK, batch $BATCH, $PRECISION, lr $LR, ema $EMA, $TRAIN_MINUTES min"
    rm -rf "$PRIOR_DIR"
    local limit=$(( $(minutes_to_s "$TRAIN_MINUTES") + 60 ))  # start-up and writing the prior
    bounded "$limit" "$PYTHON" -m napari_klip.cli train --data "$DATA:train_images" --labels 6 --out "$PRIOR_DIR" \
        --image-size 28 --network "$NETWORK" --steps "$TRAIN_STEPS" --batch-size "$BATCH" --lr "$LR" --warmup-steps 200 \
        --ema "$EMA" --precision "$PRECISION" --device "$DEVICE" --seed 0 --checkpoint-every 2000 --log-every 100 \
        --time-limit "$TRAIN_MINUTES" \
        --description "OrganAMNIST train split, liver (class 6) only, 6164 slices, 28x28 native; scripts/gpu_session.sh" \
        2>&1 | tee "$RESULTS/train.log"
    cp "$PRIOR_DIR/training_log.json" "$PRIOR_DIR/napari_klip_prior.json" "$RESULTS/" 2>/dev/null
    [ -f "$PRIOR_DIR/unet/diffusion_pytorch_model.safetensors" ]
}

heldout() {
    phase "a'. held-out loss per band, $HELDOUT_IMAGES val liver slices, new prior vs $CPU_PRIOR"
    local model name
    for model in "$PRIOR_DIR" "$CPU_PRIOR"; do
        name=$(basename "$model")
        [ -d "$model/unet" ] || { echo "no prior at $model"; continue; }
        bounded 90 "$PYTHON" -m napari_klip.cli info "$model" --heldout "$DATA:val_images" --labels 6 \
            --max-images "$HELDOUT_IMAGES" --device "$DEVICE" > "$RESULTS/heldout_$name.json" \
            && "$PYTHON" -c "import json, sys
r = json.load(open(sys.argv[1]))
print(sys.argv[2], ' | '.join(f\"t {b['timesteps']}: {b['loss']:.4f} ± {b['standard_error']:.4f}\" for b in r['heldout_denoising_loss']))" \
                "$RESULTS/heldout_$name.json" "$name"
    done
}

# lesions MODEL TAG BUDGET_S [TEST_ID TEST_OOD]: val maps first, then as many test slices as fit
lesions() {
    local model=$1 tag=$2 budget=$3 test_id=${4:-} test_ood=${5:-}
    local cache="$WORK/maps-$tag" log="$RESULTS/liver_lesions_$tag.log" start=$SECONDS
    local common=("$PYTHON" benchmarks/liver_lesions.py --model "$model" --data "$DATA" --device "$DEVICE"
                  --samples "$LESION_SAMPLES" --steps "$LESION_STEPS" --n-val $LESION_VAL --maps-cache "$cache" --threads "$THREADS")
    rm -rf "$cache"
    bounded "$budget" "${common[@]}" --n-test 1 1 --splits val --out "$RESULTS/unused.json" 2>&1 | tee "$log" || return 1
    local val_images per_image spent left
    val_images=$(awk -v v="$LESION_VAL" 'BEGIN {split(v, n, " "); print n[1] + 2 * n[2]}')
    spent=$((SECONDS - start))
    # seconds per image from the script's own progress lines ("60/60 images, 45 s"), else the whole run
    per_image=$(grep -oE '[0-9]+/[0-9]+ images, [0-9]+ s' "$log" | tail -n 1 | awk '{split($1, n, "/"); print ($3 + 1) / n[1]}')
    [ -n "$per_image" ] || per_image=$(awk -v s="$spent" -v n="$val_images" 'BEGIN {print s / n}')
    left=$((budget - spent))
    [ "$left" -gt "$(left_s)" ] && left=$(left_s)
    if [ -z "$test_ood" ]; then
        # 1 clean : 2 OOD slices, each OOD slice scored twice (lesion, star): 2.5 images per OOD slice;
        # 40 s for start-up and the evaluation over all settings (31 s on a shared 2-core CPU)
        test_ood=$(awk -v l="$left" -v p="$per_image" -v m="$LESION_TEST_MAX_OOD" 'BEGIN {
            n = int((l - 40) / (2.5 * p)); if (n > m) n = m; n -= n % 2; print n }')
        test_id=$((test_ood / 2))
    fi
    echo "val took ${spent} s (${per_image} s per image); test: $test_id clean + $test_ood OOD slices in the ${left} s left" | tee -a "$log"
    if [ "$test_ood" -lt 2 ]; then
        echo "!! no time for the test split; val maps are in $cache (not packed)"
        return 1
    fi
    LESION_TEST_COUNTS="$test_id $test_ood"
    # test set 4: slices no session has looked at (sets 0-3 were reported on the CPU, docs/benchmarks.md)
    bounded "$left" "${common[@]}" --n-test "$test_id" "$test_ood" --test-set 4 --splits test \
        --out "$RESULTS/liver_lesions_$tag.json" 2>&1 | tee -a "$log" | tail -n 20
}

speed() {
    phase "c. CUDA speed: benchmarks/klip_speed.py, benchmarks/throughput.py"
    if [ "$DEVICE" != cuda ]; then
        echo "skipped: CUDA-only phase (GPU_SESSION_DEVICE=$DEVICE)"
        return 0
    fi
    bounded "$(minutes_to_s "$SPEED_MINUTES")" "$PYTHON" benchmarks/klip_speed.py --device cuda 2>&1 | tee "$RESULTS/klip_speed_cuda.txt"
    bounded "$(minutes_to_s "$THROUGHPUT_MINUTES")" "$PYTHON" benchmarks/throughput.py --device cuda --cuda-graphs \
        --images "$THROUGHPUT_IMAGES" --repeats "$THROUGHPUT_REPEATS" --data-dir gpu_data/throughput --out "$RESULTS/throughput_cuda.json" \
        > "$RESULTS/throughput_cuda.log" 2>&1
    tail -n 5 "$RESULTS/throughput_cuda.log"
}

pack() {
    phase "e. pack into $OUT"
    local staging="$WORK/pack"
    rm -rf "$staging" && mkdir -p "$staging"
    if [ -f "$PRIOR_DIR/unet/diffusion_pytorch_model.safetensors" ]; then
        # checkpoint.pt (weights, EMA and AdamW state, ~4x the prior) cannot come back: 64 MiB in all
        tar -czf "$staging/prior.tar.gz" --exclude=checkpoint.pt -C runs "$PRIOR_NAME"
        split -b "$PART_SIZE" -d "$staging/prior.tar.gz" "$OUT/prior.tar.gz.part-"
    else
        echo "no trained prior to pack"
    fi
    rm -f "$RESULTS/unused.json"
    tar -czf "$OUT/results.tar.gz" -C "$WORK" results
    (cd "$OUT" && sha256sum prior.tar.gz.part-* results.tar.gz 2>/dev/null > SHA256SUMS)
    local count
    count=$(ls "$OUT" | wc -l)  # session.log (being written) included
    ls -l "$OUT"
    echo "files in \$OUT: $count (limit 8), $(du -sh "$OUT" | cut -f1) in all"
    [ "$count" -le 8 ] || echo "!! more than 8 files: not all will come back"
}

main() {
    echo "gpu_session: $(date -u +%Y-%m-%dT%H:%M:%SZ), device $DEVICE, total budget $TOTAL_MINUTES min"
    rm -rf "$WORK"  # a warm machine keeps ignored folders between calls: no stale results
    mkdir -p "$RESULTS" "$OUT"
    local ok=1
    install_and_facts || ok=0
    if [ $ok -eq 1 ]; then
        train_prior || echo "!! training left no prior"
        heldout
        if [ -d "$PRIOR_DIR/unet" ]; then
            phase "b. liver lesions, new prior $PRIOR_DIR, $LESION_SAMPLES samples x $LESION_STEPS steps"
            lesions "$PRIOR_DIR" gpu-prior "$(minutes_to_s "$LESION_MINUTES")"
        fi
        speed
        phase "d. liver lesions, bundled CPU prior, same settings (only if time allows)"
        if [ -n "${LESION_TEST_COUNTS:-}" ]; then
            # its val run costs what the new prior's did: per-image time x (val + test images) + start-up
            local need
            need=$(awk -v p="$(grep -oE '[0-9.]+ s per image' "$RESULTS/liver_lesions_gpu-prior.log" | head -n 1 | cut -d' ' -f1)" \
                -v v="$LESION_VAL" -v t="$LESION_TEST_COUNTS" 'BEGIN {
                split(v, a, " "); split(t, b, " "); printf "%d", p * (a[1] + 2 * a[2] + b[1] + 2 * b[2]) + 60 }')
            if [ "$need" -lt "$(left_s)" ]; then
                lesions "$CPU_PRIOR" cpu-prior "$need" $LESION_TEST_COUNTS
            else
                echo "skipped: needs about ${need} s, $(left_s) s left"
            fi
        else
            echo "skipped: the new prior's lesion run did not finish"
        fi
    fi
    pack
    echo "gpu_session: done at ${SECONDS} s ($(date -u +%H:%M:%S))"
}

mkdir -p "$OUT"
main 2>&1 | tee "$OUT/session.log"
