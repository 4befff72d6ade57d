"""Fine-tuning after recomposition, in LDR's two modes, through the one training loop of ``training/loop.py``.

- ``unconstrained`` ("w/o const"): the recomposed plain timm ViT is trained; every layer has its own parameters.
  Works for any weight generator.
- ``constrained`` ("w/ const"): only the k learngenes (plus the shared non-block parameters) train and every layer
  is recomputed from them at every step (``GeneratedViT`` over ``generator.resized(...)``); the result is then
  recomposed once into a plain timm ViT. Needs a generator with ``resized`` (LDR).

Fine-tuned models are saved with ``learngene_deploy.models.io.save_model`` (``.safetensors`` with their architecture in
the metadata), so they rebuild without pickle and can serve as distillation teachers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from learngene_deploy.data import DataSplits
from learngene_deploy.errors import ConfigError
from learngene_deploy.learngene.base import GeneratedViT, WeightGenerator
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.training.loop import Dist, TrainConfig, TrainResult, current_dist, evaluate, train

Mode = Literal["unconstrained", "constrained"]


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
