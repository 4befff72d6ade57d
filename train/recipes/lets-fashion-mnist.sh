#!/usr/bin/env bash
# Step 2 of the shipped Fashion-MNIST learngenes: the LeTs learngene (4 x 48, grown through an 8 x 96 Aux-Net),
# distilled from step 1's teacher with DeiT's soft distillation (alpha = 1, pure KD), as in the paper.
# One command, resumable: run it again with --resume after an interruption. Wall time goes into the file's metadata.
#   bash train/recipes/teacher-fashion-mnist.sh && bash train/recipes/lets-fashion-mnist.sh [--resume]
# Then ship it: cp runs/lets-fashion-mnist/learngene.safetensors learngene_deploy/learngenes/lets-fashion-mnist.safetensors
set -euo pipefail
TEACHER="${TEACHER:-runs/teacher-fashion-mnist/teacher.safetensors}"
exec lgdeploy train lets --data fashion-mnist --out "${OUT:-runs/lets-fashion-mnist}" \
    --img-size 28 --patch-size 7 --head-dim 16 --learngene-depth 4 --learngene-dim 48 --aux-depth 8 --aux-dim 96 \
    --epochs 10 --batch-size 128 --lr 2e-3 --teacher "$TEACHER" --recipe none --seed 0 "$@"
