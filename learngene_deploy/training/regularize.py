"""The recipe's model-side regularisers: stochastic depth (timm ``DropPath``) and a weight EMA (timm ``ModelEmaV3``).

Both work on a plain timm ``VisionTransformer`` and on a ``GeneratedViT`` (whose timm skeleton is not a registered
submodule, so its blocks are reached through ``.skeleton`` and its train/eval mode is forwarded by ``GeneratedViT``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from learngene_deploy.errors import ConfigError


def _vit(model: nn.Module) -> nn.Module | None:
    """The ViT inside ``model`` (itself, a ``GeneratedViT``'s skeleton, or the first submodule with blocks)."""
    for module in model.modules():
        if "skeleton" in module.__dict__:
            return module.__dict__["skeleton"]
        if isinstance(getattr(module, "blocks", None), (nn.Sequential, nn.ModuleList)):
            return module
    return None


def set_drop_path(model: nn.Module, rate: float) -> None:
    """Stochastic depth rising linearly from 0 (first block) to ``rate`` (last block), as timm's ``drop_path_rate``.

    ``rate = 0`` puts ``nn.Identity`` back, so an exported model carries no trace of it.
    """
    from timm.layers import DropPath

    vit = _vit(model)
    blocks = vit.blocks if vit is not None else None
    if blocks is None:
        if rate:
            raise ConfigError(f"drop_path {rate} needs a ViT with .blocks; set drop_path=0 for this model.")
        return
    last = max(1, len(blocks) - 1)
    for i, block in enumerate(blocks):
        p = rate * i / last
        for name in ("drop_path1", "drop_path2"):
            if hasattr(block, name):
                setattr(block, name, DropPath(p) if p > 0 else nn.Identity())


def make_ema(model: nn.Module, decay: float | None) -> Any:
    """timm's ``ModelEmaV3`` over ``model``'s parameters and buffers, or None when ``decay`` is None."""
    if decay is None:
        return None
    if not 0 < decay < 1:
        raise ConfigError(f"ema decay must lie strictly between 0 and 1, not {decay}; DeiT uses 0.99996.")
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=decay)
