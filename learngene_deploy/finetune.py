"""Fine-tuning after recomposition, in LDR's two modes, through the one training loop of ``training.py``.

- ``unconstrained`` ("w/o const"): the recomposed plain timm ViT is trained; every layer has its own parameters.
  Works for any weight generator.
- ``constrained`` ("w/ const"): only the k learngenes (plus the shared non-block parameters) train and every layer
  is recomputed from them at every step (``GeneratedViT`` over ``generator.resized(...)``); the result is then
  recomposed once into a plain timm ViT. Needs a generator with ``resized`` (LDR).

Fine-tuned models are saved as ``.safetensors`` with their architecture in the metadata (``save_model`` /
``load_model``), so they rebuild without pickle and can serve as distillation teachers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from learngene_deploy._fs import atomic_path
from learngene_deploy.data import DataSplits
from learngene_deploy.errors import ConfigError, LearngeneError
from learngene_deploy.learngene.base import WeightGenerator
from learngene_deploy.models.vit import ArchSpec, build_vit
from learngene_deploy.training import Dist, GeneratedViT, TrainConfig, TrainResult, current_dist, evaluate, train

Mode = Literal["unconstrained", "constrained"]
MODEL_FORMAT = "lgdeploy-model"


@dataclass
class Finetuned:
    model: nn.Module  # plain timm VisionTransformer (constrained: recomposed from the fine-tuned learngenes)
    arch: ArchSpec
    mode: Mode
    trainable_params: int  # parameters the optimiser updated
    top1: float  # direct top-1 on the validation split after fine-tuning
    result: TrainResult


def prepare(
    generator: WeightGenerator, mode: Mode, size: dict[str, Any], *, num_classes: int | None = None
) -> tuple[nn.Module, ArchSpec]:
    """The module to fine-tune and its architecture; a head of a different size is freshly initialised.

    Args:
        generator: trained weight generator.
        mode: ``"unconstrained"`` (plain recomposed ViT) or ``"constrained"`` (learngenes stay the parameters).
        size: size keywords of the generator (LDR: ``depth``, ``genes``).
        num_classes: classes of the downstream data (default: keep the learngene's head).
    """
    if mode == "unconstrained":
        arch, _ = generator.generate(**size)
        model = generator.recompose(**size)
        if num_classes is not None and num_classes != arch.num_classes:
            model.reset_classifier(num_classes)
            arch = arch.replace(num_classes=num_classes)
        return model, arch
    if mode == "constrained":
        if not hasattr(generator, "resized"):
            msg = f"method {generator.method!r} has no constrained fine-tuning; use mode 'unconstrained'."
            raise ConfigError(msg)
        resized = generator.resized(**size, num_classes=num_classes)
        return GeneratedViT(resized), resized.train_arch
    msg = f"unknown fine-tune mode {mode!r}; valid modes are unconstrained, constrained."
    raise ConfigError(msg)


def finetune(
    generator: WeightGenerator,
    data: DataSplits,
    cfg: TrainConfig,
    *,
    mode: Mode = "unconstrained",
    size: dict[str, Any] | None = None,
    teacher: nn.Module | None = None,
    env: Dist | None = None,
) -> Finetuned:
    """Recompose a model of ``size`` from ``generator`` and fine-tune it on ``data`` in ``mode``.

    Args:
        generator: trained weight generator.
        data: downstream train/val splits (a different class count re-initialises the head).
        cfg: loop options (``cfg.out`` holds the fine-tune's checkpoint).
        mode: ``"unconstrained"`` or ``"constrained"``.
        size: size keywords (default: the training size).
        teacher: optional distillation teacher.
        env: rank/world/device; defaults to ``current_dist()``.
    """
    env = env or current_dist()
    module, arch = prepare(generator, mode, size or {}, num_classes=data.num_classes)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    result = train(module, data, cfg, teacher=teacher, env=env)
    model = module.generator.recompose() if isinstance(module, GeneratedViT) else module
    top1 = evaluate(model, data.val, batch_size=cfg.eval_batch_size, device=env.device)
    return Finetuned(model, arch, mode, trainable, top1, result)


def save_model(path: str | Path, model: nn.Module, arch: ArchSpec, info: dict[str, Any] | None = None) -> Path:
    """Save a plain timm ViT as ``.safetensors`` with its architecture (and ``info``) in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    header = {"format": MODEL_FORMAT, "arch": json.dumps(arch.to_dict()), "info": json.dumps(info or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a timm ViT saved by ``save_model``."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        from learngene_deploy.learngene.io import unreadable_message

        raise LearngeneError(unreadable_message(path, e, what="model")) from e
    if header.get("format") != MODEL_FORMAT:
        msg = f"{path} is not a model file written by lgdeploy (no '{MODEL_FORMAT}' metadata); pass such a file."
        raise LearngeneError(msg)
    model = build_vit(ArchSpec.from_dict(json.loads(header["arch"])))
    with torch.no_grad():
        model.load_state_dict(state)
    return model
