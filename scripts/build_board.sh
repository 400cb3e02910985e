#!/usr/bin/env bash
# Rebuild the committed leaderboard (leaderboard/): evaluate the board's models into result files,
# add them as entries, draw the gradient galleries and render leaderboard/README.md.
# Zoo models missing from the model store are trained first (a few minutes each on a CPU; the
# gnorm, smooth and especially pgd regimes take longer).
#
#   scripts/build_board.sh                                                  # every model below
#   MODELS_synthetic="bayes resnet18-synthetic-standard-0" scripts/build_board.sh    # a subset
#
# Environment: PAGBENCH (the CLI; default `pagbench` on PATH), NUM_IMAGES (500), DEVICE (cpu),
# GALLERY_IMAGES (4), FRESH=1 to delete the rebuilt datasets' entries and galleries first (e.g.
# after the dataset changed; otherwise entries of models not listed here stay on the board).
set -euo pipefail
cd "$(dirname "$0")/.."
# Nothing to pin here: zoo training pins its CPU thread count (the recipe's cpu_threads) and its
# CPU kernels (AVX2, at `import pagbench`), so the weights are the same on any x86-64 machine.
pagbench="${PAGBENCH:-pagbench}"
num_images="${NUM_IMAGES:-500}"
device="${DEVICE:-cpu}"
gallery_images="${GALLERY_IMAGES:-4}"

# Per dataset: the references (Bayes-optimal where one exists, the standard ResNet18) and a sweep
# of each robust-training regime over its default strengths (`pagbench trainers`).
sweep() {  # sweep DATASET REGIME STRENGTH... -> zoo model names
    local dataset=$1 regime=$2
    shift 2
    for strength in "$@"; do printf 'resnet18-%s-%s-%s ' "$dataset" "$regime" "$strength"; done
}
python="$(dirname "$(command -v "$pagbench")")/python"
grid() {  # grid REGIME -> the sweep grid of `pagbench sweep --preset cpu` (plugins/zoo/recipes.py)
    "$python" -c "import sys; from pagbench_plugins.zoo.recipes import GRIDS; print(' '.join(f'{s:g}' for s in GRIDS['cpu'][sys.argv[1]]))" "$1"
}
zoo() {  # zoo DATASET -> standard model and the regime sweeps (the same models as the sweeps)
    printf 'resnet18-%s-standard-0 ' "$1"
    for regime in noise gnorm smooth pgd; do
        # shellcheck disable=SC2046
        sweep "$1" "$regime" $(grid "$regime")
    done
}
declare -A board=(
    [synthetic]="${MODELS_synthetic:-bayes $(zoo synthetic)}"
    # digits-distractor joins the board when its models are listed (its zoo sweep takes hours on a
    # CPU): e.g. MODELS_digits_distractor="$(zoo digits-distractor)" NUM_IMAGES=397
    [digits-distractor]="${MODELS_digits_distractor:-}"
)

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
registered="$("$pagbench" datasets)"
built=()
for dataset in synthetic digits-distractor; do
    if ! grep -Eq "^[│|] $dataset +[│|]" <<<"$registered"; then
        echo "skipping $dataset: no such dataset registered" >&2
        continue
    fi
    models=()
    for model in ${board[$dataset]}; do models+=(--model "$model"); done
    if [ ${#models[@]} -eq 0 ]; then
        echo "skipping $dataset: no models listed" >&2
        continue
    fi
    echo "== $dataset: ${board[$dataset]}" >&2
    "$pagbench" evaluate --dataset "$dataset" "${models[@]}" --num-images "$num_images" --device "$device" \
        --no-progress --output-dir "$results" >/dev/null
    if [ "${FRESH:-0}" = 1 ]; then
        rm -rf "leaderboard/entries/$dataset" "leaderboard/galleries/$dataset"
    fi
    built+=(--dataset "$dataset")
done
[ ${#built[@]} -gt 0 ] || { echo "nothing evaluated" >&2; exit 1; }
"$pagbench" leaderboard add "$results"/*/*.json
"$pagbench" leaderboard gallery "${built[@]}" --num-images "$gallery_images" --device "$device"
"$pagbench" leaderboard build
