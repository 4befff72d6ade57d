"""Learngene recipes: train a weight generator through the loop, measure its accuracy table, save the learngene.

``train_learngene`` is what every method shares: it trains a ``GeneratedViT`` over the generator and (rank 0) writes
the learngene file with its provenance and the direct top-1 of every recomposed size (``accuracy_table``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from learngene_deploy.data import DataSplits
from learngene_deploy.learngene.base import GeneratedViT, WeightGenerator
from learngene_deploy.training.loop import Dist, Phase, TrainConfig, TrainResult, current_dist, evaluate, train


def accuracy_table(
    generator: WeightGenerator,
    sizes: Sequence[dict[str, Any]],
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> list[dict[str, Any]]:
    """Direct top-1 of the recomposed model of every size (``generator.recompose(**size)``), with parameter counts."""
    rows = []
    for size in sizes:
        model = generator.recompose(**size)
        params = sum(p.numel() for p in model.parameters())
        rows.append({**size, "params": params, "top1": evaluate(model, dataset, batch_size=batch_size, device=device)})
    return rows


def train_learngene(
    generator: WeightGenerator,
    data: DataSplits,
    cfg: TrainConfig,
    *,
    out_file: str | Path,
    phases: Sequence[Phase] = (Phase("train"),),
    sizes: Sequence[dict[str, Any]] = (),
    teacher: nn.Module | None = None,
    teacher_name: str | None = None,
    recipe: dict[str, Any] | None = None,
    env: Dist | None = None,
) -> TrainResult:
    """Train a generator, then (rank 0) measure its accuracy table and save it as a learngene file.

    Args:
        generator: the weight generator to train.
        data: train split for training, val split for the accuracy table.
        cfg: loop options.
        out_file: learngene file written when the schedule has finished (not after ``stop_after``).
        phases: training phases (see ``train``).
        sizes: one ``recompose(**size)`` keyword dict per row of the accuracy table.
        teacher: distillation teacher; ``teacher_name`` is what the metadata records for it.
        recipe: the options of the run, stored in the metadata.
        env: rank/world/device; defaults to ``current_dist()``.
    """
    from learngene_deploy.learngene.io import save_learngene

    env = env or current_dist()
    result = train(GeneratedViT(generator), data, cfg, phases=phases, teacher=teacher, env=env)
    if result.finished and env.master:
        table = accuracy_table(generator, sizes, data.val, batch_size=cfg.eval_batch_size, device=env.device)
        training = {
            "data": data.info,
            "teacher": teacher_name,
            "distill": cfg.distill if teacher is not None else "ce",
            "temperature": cfg.temperature,
            "seed": cfg.seed,
            "steps": result.steps,
            "stages": [p.name for p in phases],
            "world_size": env.world,
            "device": env.device.type,
            "wall_time_s": round(result.wall_time_s, 2),
            "final_loss": result.final_loss,
            "recipe": recipe or {},
        }
        save_learngene(out_file, generator, training=training, accuracy=table)
    env.barrier()
    return result
