#!/usr/bin/env bash
# Recipe of the shipped LDR learngene (learngene_deploy/learngenes/ldr-fashion-mnist.safetensors).
# Reproduce with one command from the repository root:  bash train/recipes/ldr-fashion-mnist.sh [OUT_DIR]
# Needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist). About 5-10 minutes on 2 CPU cores.
# 4 Chebyshev learngenes for a 6-layer, 96-wide ViT (6 heads), 28 px Fashion-MNIST, patch 7, trained incrementally
# (ICT stages 1, 2, 4 learngenes; 1 epoch per stage), no teacher (cross-entropy; pass --teacher to distil).
# Avg-pool layout (no class token): with the paper's T_n indexing layer 1 is an all-zero block, which a class-token
# model cannot get past at depth 1; mean-pooled patch tokens keep depth-1 models useful.
set -euo pipefail
out=${1:-runs/ldr-fashion-mnist}
lgdeploy train ldr --data fashion-mnist --out "$out" \
  --img-size 28 --patch-size 7 --embed-dim 96 --depth 6 --num-heads 6 \
  --layout avg --genes 4 --stages 1,2,4 --basis chebyshev \
  --epochs 1 --batch-size 128 --lr 2e-3 --seed 0
