#!/usr/bin/env bash
# Recipe of the shipped LeTs learngene (learngene_deploy/learngenes/lets-fashion-mnist.safetensors).
# Reproduce with one command from the repository root:  bash train/recipes/lets-fashion-mnist.sh [OUT_DIR]
# Needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist). About 5-10 minutes on 2 CPU cores.
# Learngene 4 layers x 48 wide, Aux-Net 8 x 96 (head dim 16), 28 px Fashion-MNIST, patch 7, 3 epochs, no teacher
# (cross-entropy; pass --teacher to distil). The accuracy table covers every depth 1-8 x width 48/64/80/96.
set -euo pipefail
out=${1:-runs/lets-fashion-mnist}
lgdeploy train lets --data fashion-mnist --out "$out" \
  --img-size 28 --patch-size 7 --head-dim 16 \
  --learngene-depth 4 --learngene-dim 48 --aux-depth 8 --aux-dim 96 \
  --epochs 3 --batch-size 128 --lr 2e-3 --seed 0
