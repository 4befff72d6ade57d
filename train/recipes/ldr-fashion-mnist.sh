#!/usr/bin/env bash
# Step 2b of the shipped Fashion-MNIST learngenes: four LDR learngenes (Chebyshev basis) of a 6 x 96 ViT, trained
# incrementally (ICT stages 1, 2, 4), each stage with CE + KL (1:1) against step 1's teacher, as in the paper.
# One command, resumable: run it again with --resume after an interruption. Wall time goes into the file's metadata.
#   bash train/recipes/teacher-fashion-mnist.sh && bash train/recipes/ldr-fashion-mnist.sh [--resume]
# Then ship it: cp runs/ldr-fashion-mnist/learngene.safetensors learngene_deploy/learngenes/ldr-fashion-mnist.safetensors
set -euo pipefail
TEACHER="${TEACHER:-runs/teacher-fashion-mnist/teacher.safetensors}"
exec lgdeploy train ldr --data fashion-mnist --out "${OUT:-runs/ldr-fashion-mnist}" \
    --img-size 28 --patch-size 7 --embed-dim 96 --depth 6 --num-heads 6 --layout avg --genes 4 --stages 1,2,4 \
    --epochs 2 --batch-size 128 --lr 2e-3 --teacher "$TEACHER" --recipe none --seed 0 "$@"
