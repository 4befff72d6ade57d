#!/usr/bin/env bash
# TLEG for the comparison of docs/results.md section 4 (not shipped): LDR's linear basis {1, x} with 2 learngenes of
# a 6 x 96 ViT trained together (SCT), with CE + KL (1:1) against step 1's teacher, for the same 2,808 steps
# (6 epochs) as the shipped LDR learngene, so that LDR, TLEG and LeTs are compared at one teacher and one budget.
# One command, resumable: run it again with --resume after an interruption. Wall time goes into the file's metadata.
#   bash train/recipes/teacher-fashion-mnist.sh && bash train/recipes/tleg-fashion-mnist.sh [--resume]
#   python -m benchmarks.init_comparison --tleg runs/tleg-fashion-mnist/learngene.safetensors
set -euo pipefail
TEACHER="${TEACHER:-runs/teacher-fashion-mnist/teacher.safetensors}"
exec lgdeploy train ldr --data fashion-mnist --out "${OUT:-runs/tleg-fashion-mnist}" \
    --img-size 28 --patch-size 7 --embed-dim 96 --depth 6 --num-heads 6 --layout avg --genes 2 --sct \
    --basis linear --epochs 6 --batch-size 128 --lr 2e-3 --teacher "$TEACHER" --recipe none --seed 0 "$@"
