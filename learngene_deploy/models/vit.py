"""Architecture specs and the one ViT implementation the toolkit uses: timm's.

A recomposed model is a normal ``timm.models.vision_transformer.VisionTransformer``; the training-time
models of both learngene methods are the same timm ViT used as a *skeleton* whose parameters come
from a weight generator (``torch.func.functional_call(skeleton, generator(), x)``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from learngene_deploy.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from timm.models.vision_transformer import VisionTransformer

Layout = Literal["avg", "cls"]

# Per-block tensor names inside a timm ViT block (fused qkv, pre-LN, MLP ratio 4).
BLOCK_TENSORS: tuple[str, ...] = (
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to build one timm ViT.

    ``layout="avg"`` is the TLEG/LeTs layout (no class token, mean-pooled patch tokens, ``fc_norm``);
    ``layout="cls"`` is the DeiT layout (class token, final ``norm``, token pooling).
    """

    img_size: int  # input height = width, pixels
    patch_size: int  # patch height = width, pixels
    in_chans: int  # input channels
    num_classes: int  # classifier outputs
    embed_dim: int  # token width D
    depth: int  # number of transformer blocks L
    num_heads: int  # attention heads (embed_dim % num_heads == 0)
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio * embed_dim
    layout: Layout = "avg"

    def __post_init__(self) -> None:
        for key in ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                msg = f"architecture field '{key}' must be a positive integer, got {value!r}."
                raise ConfigError(msg)
        if self.img_size % self.patch_size:
            msg = (
                f"image size {self.img_size} is not a multiple of patch size {self.patch_size}; "
                "choose sizes where img_size % patch_size == 0."
            )
            raise ConfigError(msg)
        if self.embed_dim % self.num_heads:
            msg = (
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}; "
                "choose a width that is a multiple of the head count."
            )
            raise ConfigError(msg)
        if self.layout not in ("avg", "cls"):
            msg = f"layout must be 'avg' or 'cls', got {self.layout!r}."
            raise ConfigError(msg)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + (1 if self.layout == "cls" else 0)

    @property
    def name(self) -> str:
        """Stable short name, e.g. ``vit_d6_e192_h3_p4_32_avg``."""
        return f"vit_d{self.depth}_e{self.embed_dim}_h{self.num_heads}_p{self.patch_size}_{self.img_size}_{self.layout}"

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            msg = f"unknown architecture field(s) {', '.join(unknown)}; valid fields are {', '.join(sorted(names))}."
            raise ConfigError(msg)
        return cls(**data)

    def timm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``timm.models.vision_transformer.VisionTransformer``."""
        common = dict(
            img_size=self.img_size,
            patch_size=self.patch_size,
            in_chans=self.in_chans,
            num_classes=self.num_classes,
            embed_dim=self.embed_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            qkv_bias=True,
        )
        if self.layout == "avg":
            return {**common, "class_token": False, "global_pool": "avg", "fc_norm": True}
        return {**common, "class_token": True, "global_pool": "token"}


def build_vit(arch: ArchSpec, *, device: str | torch.device | None = None) -> VisionTransformer:
    """Build a freshly initialised timm VisionTransformer for ``arch``."""
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(**arch.timm_kwargs())
    if device is not None:
        model = model.to(device)
    return model


def block_key(index: int, tensor: str) -> str:
    """State-dict key of one block tensor, e.g. ``block_key(3, "mlp.fc1.weight")``."""
    return f"blocks.{index}.{tensor}"


def count_parameters(module: torch.nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
