"""Train a LeTs learngene: the same code as ``lgdeploy train lets``, runnable under torchrun.

    python train/lets.py --data fashion-mnist --out runs/lets                      # one process (CPU or one GPU)
    torchrun --nproc_per_node=4 train/lets.py --data fashion-mnist --out runs/lets  # DDP, NCCL on GPUs, gloo on CPU

Every option of ``lgdeploy train lets --help`` is accepted.
"""

from __future__ import annotations

import sys

from learngene_deploy.cli import app

if __name__ == "__main__":
    app(["train", "lets", *sys.argv[1:]], prog_name="train/lets.py")
