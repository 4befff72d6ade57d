"""Options of the training recipes (``train_ldr``, ``train_lets``, ``train_teacher``): one field per flag of
``lgdeploy train``.

Kept apart from the recipes, and free of torch, so that the command line takes its defaults from here (one source
for both) without importing torch for ``--help``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with paths as strings, in their order: the run's options as a learngene's metadata records them."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


@dataclass(kw_only=True)
class RecipeOptions:
    """What every recipe takes: data, run directory, loop options (per phase), teacher, limits and device."""

    data: str  # digits, fashion-mnist or a directory (see ``load_data``)
    out: Path  # run directory: the learngene file and checkpoint.pt go here
    img_size: int = 28
    patch_size: int = 4
    epochs: float = 1.0  # per phase
    max_steps: int | None = None  # per phase (overrides epochs)
    batch_size: int = 128  # global
    lr: float = 8e-4  # peak, per phase
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of each phase's steps
    teacher: str | None = None  # learngene/model file of lgdeploy, or a timm model name
    teacher_checkpoint: Path | None = None  # local weights of a timm teacher
    temperature: float = 1.0
    seed: int = 0  # initialisation, split and data order
    resume: bool = False  # continue exactly from out/checkpoint.pt
    ckpt_interval: int = 200  # checkpoint every N steps (0: at the end)
    stop_after: int | None = None  # stop after this global step (resume later)
    train_limit: int | None = None
    val_limit: int | None = None
    recipe: str = "auto"  # augmentation preset: auto (deit on image sources, none on built-ins), deit, light, none
    aug: list[str] | None = None  # KEY=VALUE overrides of the preset's knobs, e.g. ["mixup=0.2", "ema=0.9998"]
    workers: int | None = None  # DataLoader workers (default: 0 for in-memory data, else min(8, CPUs))
    on_bad_image: str = "error"  # error: stop at an unreadable image; skip: leave it out and count it
    compile: bool = False  # torch.compile the model for training
    device: str | None = None  # cpu or cuda[:i] (default: cuda when available)
    progress: bool = True

    def record(self) -> dict[str, Any]:
        """The options as the learngene's metadata records them (``training.recipe``)."""
        return plain(asdict(self))


@dataclass(kw_only=True)
class LDROptions(RecipeOptions):
    """LDR: the training ViT, the learngenes, their basis, and the ICT stages (or SCT)."""

    embed_dim: int = 64
    depth: int = 4  # training depth L
    num_heads: int = 2
    layout: str = "cls"  # avg (no class token, mean pool) or cls (DeiT)
    genes: int = 4  # learngenes N
    stages: str | None = None  # ICT cumulative counts, e.g. "1,2,4,8,12" (default 1,2,4..N)
    sct: bool = False  # train all learngenes at once (one phase)
    basis: str = "chebyshev"  # chebyshev, legendre, taylor, fourier or linear (TLEG)
    offset: int | None = None  # index offset: 1 = T_n (paper), 0 = T_(n-1); default per basis
    position: str = "paper"  # layer position: paper (l-1)/L, unit, centered
    table_genes: str | None = None  # learngene counts in the accuracy table (default: the stages)


@dataclass(kw_only=True)
class LeTsOptions(RecipeOptions):
    """LeTs: the learngene, its Aux-Net, and the depths x widths of the accuracy table."""

    lr: float = 1e-3
    head_dim: int = 16  # channels per attention head (every width is a multiple)
    learngene_depth: int = 4  # learngene layers L_g (even)
    learngene_dim: int = 32  # learngene width D_g
    aux_depth: int = 8  # Aux-Net layers, a multiple of L_g (paper: 2 L_g)
    aux_dim: int = 64  # Aux-Net width (>= D_g)
    tie_rows: bool = True  # share G rows between Aux layers 2i and 2i+1 (paper)
    table_depths: str | None = None  # e.g. "4,6,8" (default: 1..aux depth)
    table_widths: str | None = None  # e.g. "32,64" (default: every supported width)


@dataclass(kw_only=True)
class TeacherOptions(RecipeOptions):
    """A distillation teacher: any timm model trained on the data by the same loop (``lgdeploy train teacher``)."""

    model: str = "resnet18"  # a timm model name (built with pretrained=False: nothing is downloaded)
    output_stride: int | None = None  # CNNs: 8 or 16 keeps a larger feature map on small images (dilated stages)
    drop_path: float = 0.0  # stochastic depth of the teacher (timm drop_path_rate)
    lr: float = 2e-3
    epochs: float = 10.0
