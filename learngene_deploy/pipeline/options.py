"""What ``lgdeploy build`` can be told (the command line and the Python API fill the same options)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from learngene_deploy.names import Exporter, Simplifier


@dataclass(frozen=True)
class BuildOptions:
    """Everything `lgdeploy build` can be told; defaults give the offline main job."""

    profile: str
    learngene: str | None = None  # file or shipped name (default: the shipped learngene)
    data: str | None = None  # ImageFolder dir, built-in name or IDX dir (default: fashion-mnist, else digits)
    finetune_steps: int | None = None  # optimiser steps of the brief fine-tune (default 150)
    finetune_epochs: float | None = None  # alternatively, passes over the training split
    finetune_lr: float = 3e-4
    finetune_batch: int = 64
    train_limit: int | None = None  # at most this many training images (a seeded subset); None: every image
    recipe: str = "auto"  # fine-tune augmentation: auto (light on image sources, none on built-ins), light, deit, none
    keep_finetuned: bool = False  # ship the fine-tuned weights even when they score below the recomposed ones
    aug: tuple[str, ...] = ()  # KEY=VALUE overrides of the preset's knobs
    workers: int | None = None  # DataLoader workers (default: 0 for in-memory data, else min(8, CPUs))
    on_bad_image: str = "error"  # an unreadable image stops the build (error) or is left out and counted (skip)
    size: tuple[tuple[str, int], ...] | None = None  # pin this size, e.g. (("depth", 6), ("width", 64)); None: choose
    backend: str | None = None  # override the profile's runtime backend
    precision: str | None = None  # override the profile's precision
    out: Path | None = None  # artifact directory (default artifacts/<profile>)
    force: bool = False  # replace an existing artifact directory
    checkpoint_every: int = 50  # fine-tune checkpoint interval in steps (0: only at the end); a re-run resumes
    exporter: Exporter = "dynamo"
    simplifier: Simplifier = "onnxsim"
    dynamic_batch: bool = False
    verify_images: int = 256  # validation images used by the numeric gates
    max_abs: float = 1e-4  # fp32 gate: largest logit difference
    min_agreement: float | None = None  # top-1 agreement limit (default per precision)
    max_int8_drop: float = 1.0  # INT8 gate: accuracy drop against fp32, percentage points
    calibration_images: int = 300
    int8_fallback: str | None = None  # "fp32": ship the fp32 twin when INT8 is not faster (default: fail the build)
    defer_compile: bool = False  # write model.onnx and its gate set; `lgdeploy compile` finishes it on the target
    bench_runs: int = 50
    bench_rounds: int = 3
    bench_min_time_s: float = 1.0
    seed: int = 0
    progress: bool = True  # the fine-tune's progress bar on stderr
