"""Launched by tests/test_training.py under ``torchrun --nproc_per_node=2``: trains LDR on digits with DDP (gloo)
and writes each rank's final generator weights to ``OUT/rank{R}.safetensors`` so the test can compare them.

With a second argument (an ImageFolder), trains LeTs on it with the deit recipe and a DataLoader worker per rank
instead: each rank reads its own DistributedSampler share, augments and mixes it."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from learngene_deploy.data import load_data
from learngene_deploy.learngene.ldr import LDRGenerator
from learngene_deploy.learngene.lets import LeTsGenerator
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.training.loop import Phase, TrainConfig, distributed
from learngene_deploy.training.recipes import train_learngene

if __name__ == "__main__":
    out = Path(sys.argv[1])
    with distributed("cpu") as env:
        assert env.world == 2, "expected torchrun --nproc_per_node=2"
        torch.manual_seed(env.rank)  # different on purpose: DDP must broadcast rank 0's initial weights
        if len(sys.argv) > 2:
            data = load_data(sys.argv[2], img_size=16, val_fraction=0.25)
            gen = LeTsGenerator(
                img_size=16, patch_size=8, in_chans=3, num_classes=data.num_classes, head_dim=8, learngene_depth=2,
                learngene_dim=8, aux_depth=4, aux_dim=16,
            )  # fmt: skip
            cfg = TrainConfig(out=out, max_steps=3, batch_size=8, progress=False, recipe="deit", workers=1)
            train_learngene(gen, data, cfg, out_file=out / "lg.safetensors", sizes=[{"depth": 4, "width": 16}], env=env)
        else:
            data = load_data("digits", img_size=16, train_limit=256, val_limit=64)
            arch = ArchSpec(img_size=16, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=2, num_heads=2)
            gen = LDRGenerator(arch, 2)
            stages = [Phase("g1", lambda: gen.set_stage(1)), Phase("g2", lambda: gen.set_stage(2, 1))]
            cfg = TrainConfig(out=out, max_steps=2, batch_size=32, progress=False, ckpt_interval=1)
            sizes = [{"depth": 2, "genes": 2}]
            train_learngene(gen, data, cfg, out_file=out / "lg.safetensors", phases=stages, sizes=sizes, env=env)
        save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(out / f"rank{env.rank}.safetensors"))
