"""The weight-generator interface shared by every learngene method.

A weight generator is an ``nn.Module`` that owns the learngene parameters (plus the method's own
coefficients or transformation matrices) and produces the *complete* parameter dict of a timm
``VisionTransformer`` (keys exactly as in ``VisionTransformer.state_dict()``). Training, recomposition,
evaluation and export all run through the same timm ViT:

    out = torch.func.functional_call(skeleton, generator(), (images,))

Recomposition is "run the generator once for the target size and load the result into a fresh timm ViT";
training runs ``GeneratedViT``, the generator driving a parameterless skeleton of its training architecture.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from learngene_deploy.models.vit import ArchSpec, build_vit

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer


class WeightGenerator(nn.Module, ABC):
    """Owns learngene parameters and generates timm ViT parameter dicts from them."""

    method: ClassVar[str]  # "ldr" | "lets"

    @property
    @abstractmethod
    def train_arch(self) -> ArchSpec:
        """Architecture of the training-time network (LDR: the constrained net; LeTs: the Aux-Net)."""

    @abstractmethod
    def forward(self) -> dict[str, torch.Tensor]:
        """Parameters of ``train_arch`` as a timm state dict, differentiable w.r.t. the learngene."""

    @abstractmethod
    def generate(self, **size: Any) -> tuple[ArchSpec, dict[str, torch.Tensor]]:
        """Architecture and parameters of a recomposed model of the requested size (method-specific keys)."""

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description from which ``from_metadata`` rebuilds an identical empty generator."""

    @classmethod
    @abstractmethod
    def from_metadata(cls, meta: dict[str, Any]) -> WeightGenerator:
        """Rebuild a generator with the right shapes (values are then loaded from the learngene file)."""

    def recompose(self, **size: Any) -> VisionTransformer:
        """A plain timm VisionTransformer of the requested size, initialised from the learngene."""
        arch, params = self.generate(**size)
        model = build_vit(arch)
        with torch.no_grad():  # load_state_dict copies into the model's own tensors; strict raises on any mismatch
            model.load_state_dict({k: v.detach() for k, v in params.items()}, strict=True)
        return model


def skeleton_forward(skeleton: nn.Module, params: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """Run a timm ViT skeleton with externally generated parameters."""
    return torch.func.functional_call(skeleton, params, (images,))


class GeneratedViT(nn.Module):
    """A weight generator driving a timm ViT skeleton: ``functional_call(skeleton, generator(), images)``.

    The skeleton lives on the meta device and is not a registered submodule, so the only parameters (for the
    optimiser, DDP and the state dict) are the generator's.
    """

    def __init__(self, generator: WeightGenerator) -> None:
        super().__init__()
        self.generator = generator
        with torch.device("meta"):
            self.__dict__["skeleton"] = build_vit(generator.train_arch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return skeleton_forward(self.skeleton, self.generator(), images)

    def train(self, mode: bool = True) -> GeneratedViT:
        """Train/eval mode for the generator and the skeleton (its dropout and drop-path layers)."""
        super().train(mode)
        self.skeleton.train(mode)
        return self
