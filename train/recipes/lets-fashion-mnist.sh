#!/usr/bin/env bash
# Step 2 of the shipped Fashion-MNIST learngenes: the LeTs learngene (4 x 48, grown through an 8 x 96 Aux-Net),
# distilled from step 1's teacher with DeiT's soft distillation (alpha = 1, pure KD), as in the paper, for 20 epochs
# (9,360 steps; 3,359 s on one core of an idle Zen 4 VM; 10 epochs gave 89.02 % at 8 x 96, 20 give 90.20 %).
# One command, resumable: run it again with --resume after an interruption. Wall time goes into the file's metadata.
#   bash train/recipes/teacher-fashion-mnist.sh && bash train/recipes/lets-fashion-mnist.sh [--resume]
# Then ship it: cp runs/lets-fashion-mnist/learngene.safetensors learngene_deploy/learngenes/lets-fashion-mnist.safetensors
set -euo pipefail
TEACHER="${TEACHER:-runs/teacher-fashion-mnist/teacher.safetensors}"
exec lgdeploy train lets --data fashion-mnist --out "${OUT:-runs/lets-fashion-mnist}" \
    --img-size 28 --patch-size 7 --head-dim 16 --learngene-depth 4 --learngene-dim 48 --aux-depth 8 --aux-dim 96 \
    --epochs 20 --batch-size 128 --lr 2e-3 --teacher "$TEACHER" --recipe none --seed 0 "$@"
