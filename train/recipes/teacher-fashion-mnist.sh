#!/usr/bin/env bash
# Step 1 of the shipped Fashion-MNIST learngenes: the distillation teacher, a timm ResNet-10-T (4.9M parameters,
# 5x the LeTs Aux-Net) trained from timm's initialisation on the 60k training images.
# One command, resumable: run it again with --resume after an interruption. Wall time goes into the file's metadata.
#   bash train/recipes/teacher-fashion-mnist.sh [--resume] [more lgdeploy train teacher flags]
set -euo pipefail
exec lgdeploy train teacher --data fashion-mnist --out "${OUT:-runs/teacher-fashion-mnist}" \
    --model resnet10t --img-size 28 --epochs 6 --batch-size 128 --lr 2e-3 --recipe none --seed 0 "$@"
