#!/usr/bin/env bash
# One calibration run of the ablation operating point (examples/dcmfnet/ablations/calibration.md):
# train the full model on one thread, then score its last.pt on val, and on val with shuffled expressions
# (the control that tells reading the expression from guessing from the image).
#
#   run.sh OUT_ROOT NAME CONFIG SEED [key=value overrides...]
#
# `python -m dcmfnet` (not the console script) so that PYTHONPATH picks the snapshot's code.
# Run it from a snapshot of a commit (git worktree add), so edits to a working tree cannot reach a run in flight;
# the commit is written into OUT_ROOT/NAME/commit.txt. CPU time (user + system) is the cost measure: time.txt.
set -euo pipefail
out_root=$1 name=$2 config=$3 seed=$4
shift 4
dir=$out_root/$name
mkdir -p "$dir"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse HEAD > "$dir/commit.txt"
printf '%s\n' "$config" "train.seed=$seed" "$@" > "$dir/overrides.txt"
/usr/bin/time -f "train_elapsed_s=%e train_cpu_s=%U+%S" -o "$dir/time.txt" \
    python -m dcmfnet train --config "$config" --output-dir "$dir" train.seed="$seed" train.progress_bar=false "$@" > "$dir/train.log" 2>&1
/usr/bin/time -a -f "eval_elapsed_s=%e eval_cpu_s=%U+%S" -o "$dir/time.txt" \
    python -m dcmfnet evaluate --checkpoint "$dir/last.pt" --output-json "$dir/val.json" > "$dir/eval.log" 2>&1
/usr/bin/time -a -f "shuffled_elapsed_s=%e shuffled_cpu_s=%U+%S" -o "$dir/time.txt" \
    python -m dcmfnet evaluate --checkpoint "$dir/last.pt" --shuffle-expressions --output-json "$dir/val_shuffled.json" >> "$dir/eval.log" 2>&1
echo "done $name" >> "$dir/time.txt"
