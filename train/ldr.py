"""Train LDR learngenes: the same code as ``lgdeploy train ldr``, runnable under torchrun.

    python train/ldr.py --data fashion-mnist --out runs/ldr                      # one process (CPU or one GPU)
    torchrun --nproc_per_node=4 train/ldr.py --data fashion-mnist --out runs/ldr  # DDP, NCCL on GPUs, gloo on CPU

Every option of ``lgdeploy train ldr --help`` is accepted.
"""

from __future__ import annotations

import sys

from learngene_deploy.cli import app

if __name__ == "__main__":
    app(["train", "ldr", *sys.argv[1:]], prog_name="train/ldr.py")
