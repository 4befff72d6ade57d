"""Training augmentation presets, as data: ``deit`` (the seeds' recipe), ``light`` (the brief fine-tune) and ``none``.

A :class:`Preset` holds every knob; change one with ``PRESETS["deit"].replace(mixup=0.0)``. The training loop calls
:func:`train_transform` (per image, in the DataLoader workers; timm's ``create_transform``) and :func:`mixup_fn`
(per batch, in the loop; timm's ``Mixup``). Label smoothing lives inside Mixup when Mixup is on (seeds-spec pitfall
12: the targets are then soft, use ``timm.loss.SoftTargetCrossEntropy``); without Mixup the loop applies
``label_smoothing`` in its cross-entropy. ``drop_path`` and ``ema`` are the model's and the loop's to apply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from learngene_deploy.data.contract import INTERPOLATIONS, EvalTransform, Preprocessing, eval_transform
from learngene_deploy.errors import DataError


@dataclass(frozen=True)
class Preset:
    """Augmentation and regularisation knobs (timm ``create_transform`` / ``Mixup`` argument names in comments)."""

    name: str
    scale: tuple[float, float] | None = None  # RandomResizedCrop area range (scale); None: no augmentation at all
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # RandomResizedCrop aspect range (ratio)
    hflip: float = 0.0  # probability of a horizontal flip (hflip)
    auto_augment: str | None = None  # timm policy string, e.g. "rand-m9-mstd0.5-inc1" (auto_augment)
    color_jitter: float = 0.0  # used only without auto_augment (color_jitter)
    re_prob: float = 0.0  # random erasing probability (re_prob), per-pixel noise (re_mode "pixel")
    re_mode: str = "pixel"
    re_count: int = 1
    interpolation: str | None = None  # of the random crop; None: the contract's
    mixup: float = 0.0  # Mixup alpha (mixup_alpha)
    cutmix: float = 0.0  # CutMix alpha (cutmix_alpha)
    mixup_prob: float = 1.0  # probability of mixing a batch at all (prob)
    switch_prob: float = 0.5  # probability of CutMix instead of Mixup when both are on (switch_prob)
    mixup_mode: str = "batch"  # "batch", "pair" or "elem" (mode)
    label_smoothing: float = 0.0  # inside Mixup when it is on, else in the loop's cross-entropy
    drop_path: float = 0.0  # stochastic depth rate of the model
    ema: float | None = None  # model EMA decay (e.g. 0.99996); None: off

    def __post_init__(self) -> None:
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise DataError(f"preset scale must satisfy 0 < low <= high <= 1, not {self.scale}; use e.g. (0.08, 1).")
        for key in ("hflip", "re_prob", "mixup_prob", "switch_prob", "label_smoothing", "drop_path"):
            if not 0 <= getattr(self, key) <= 1:
                raise DataError(f"preset {key} must lie in [0, 1], not {getattr(self, key)}; pass a probability.")
        if min(self.mixup, self.cutmix, self.color_jitter) < 0:
            raise DataError("preset mixup, cutmix and color_jitter must be >= 0; pass 0 to turn one off.")
        if self.interpolation not in (None, *INTERPOLATIONS):
            msg = f"unknown preset interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}."
            raise DataError(msg)
        if self.ema is not None and not 0 < self.ema < 1:
            raise DataError(f"preset ema must lie strictly between 0 and 1, not {self.ema}; DeiT uses 0.99996.")
        if self.scale is None and (self.hflip or self.auto_augment or self.color_jitter or self.re_prob):
            msg = f"preset {self.name!r} augments images but has no crop scale; set scale, e.g. (0.08, 1)."
            raise DataError(msg)

    @property
    def augments(self) -> bool:
        return self.scale is not None

    def replace(self, **changes: Any) -> Preset:
        """A copy with ``changes`` (unknown knobs are an error naming the valid ones)."""
        valid = [f.name for f in dataclasses.fields(self)]
        if unknown := sorted(set(changes) - set(valid)):
            raise DataError(f"unknown preset knob(s) {', '.join(unknown)}; valid knobs are {', '.join(valid)}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


PRESETS: dict[str, Preset] = {
    "deit": Preset(
        "deit",
        scale=(0.08, 1.0),
        hflip=0.5,
        auto_augment="rand-m9-mstd0.5-inc1",
        re_prob=0.25,
        interpolation="bicubic",
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
        drop_path=0.1,
    ),
    "light": Preset("light", scale=(0.5, 1.0), hflip=0.5, label_smoothing=0.1),
    "none": Preset("none"),
}


def get_preset(preset: str | Preset) -> Preset:
    """A preset by name (``deit``, ``light``, ``none``) or the preset itself."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise DataError(f"unknown augmentation preset {preset!r}; use one of {', '.join(PRESETS)}.")
    return PRESETS[preset]


RECIPES = ("auto", *PRESETS)  # auto: deit for image sources, none for the in-memory grayscale built-ins


def _knob_value(preset: Preset, key: str, text: str) -> Any:
    """``text`` as the type of knob ``key`` (floats, ints, strings, None as "none", tuples as "a,b")."""
    current = getattr(preset, key)
    default = next(f.default for f in dataclasses.fields(preset) if f.name == key)
    if text.strip().lower() in ("none", "off", "") and key in ("scale", "auto_augment", "interpolation", "ema"):
        return None
    try:
        if key in ("scale", "ratio"):
            low, high = (float(v) for v in text.split(","))
            return (low, high)
        if key in ("re_count",):
            return int(text)
        if key in ("name", "re_mode", "mixup_mode", "auto_augment", "interpolation"):
            return text
        return float(text)
    except ValueError as e:
        example = "0.08,1" if key in ("scale", "ratio") else (current if current is not None else default)
        msg = f"recipe knob {key}={text!r} is not a valid value; pass e.g. {key}={example}."
        raise DataError(msg) from e


def resolve_recipe(name: str | Preset, overrides: Sequence[str] = (), *, images: bool = True) -> Preset:
    """The preset ``name`` (``auto``: ``deit`` for image sources, else ``none``) with ``KEY=VALUE`` overrides.

    Raises:
        DataError: unknown preset, malformed override, unknown knob or a value out of range (one sentence each).
    """
    if isinstance(name, str) and name == "auto":
        name = "deit" if images else "none"
    preset = get_preset(name)
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise DataError(f"recipe override {item!r} is not KEY=VALUE; pass e.g. --aug mixup=0.2.")
        if key not in {f.name for f in dataclasses.fields(preset)} or key == "name":
            valid = ", ".join(f.name for f in dataclasses.fields(preset) if f.name != "name")
            raise DataError(f"unknown recipe knob {key!r}; valid knobs are {valid}.")
        changes[key] = _knob_value(preset, key, text)
    return preset.replace(**changes) if changes else preset


def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize, with 0 bits kept giving the black image older Pillow gave (Pillow 13 raises instead)."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def _posterize_keeps_zero_bits(transform: Any) -> None:
    """Point the RandAugment posterize ops inside ``transform`` at :func:`_posterize`.

    RandAugment "inc1" maps magnitude 10 to "keep 0 bits"; with "mstd0.5" about 1 in 1,000 images draws it, and
    Pillow >= 13 rejects 0 bits ("bits must be between or equal to 1 and 8"), which would stop a training run at an
    image that is not bad. Older Pillow (what the seeds trained with) returned a black image; so does this.
    """
    from timm.data.auto_augment import RandAugment

    for t in getattr(transform, "transforms", ()):
        if isinstance(t, RandAugment):
            for op in t.ops:
                if op.name.startswith("Posterize"):
                    op.aug_fn = _posterize


class TrainTransform:
    """timm's training transform on an RGB Pillow image (uint8 arrays and grayscale contracts converted first)."""

    def __init__(self, preset: Preset, contract: Preprocessing) -> None:
        from timm.data import create_transform

        self.preset, self.contract = preset, contract
        self._timm = create_transform(
            contract.img_size,
            is_training=True,
            scale=preset.scale,
            ratio=preset.ratio,
            hflip=preset.hflip,
            color_jitter=preset.color_jitter,
            auto_augment=preset.auto_augment,
            interpolation=preset.interpolation or contract.interpolation,
            mean=contract.mean,
            std=contract.std,
            re_prob=preset.re_prob,
            re_mode=preset.re_mode,
            re_count=preset.re_count,
        )

        _posterize_keeps_zero_bits(self._timm)

    def __call__(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        if self.contract.grayscale:
            image = image.convert("L")
        return self._timm(image.convert("RGB"))

    def __repr__(self) -> str:
        return f"TrainTransform({self.preset.name}, {self._timm})"


def train_transform(preset: str | Preset, contract: Preprocessing) -> Callable[[Any], torch.Tensor]:
    """The per-image training transform: the contract's eval transform for a preset that does not augment."""
    preset = get_preset(preset)
    return TrainTransform(preset, contract) if preset.augments else eval_transform(contract)


def mixup_fn(preset: str | Preset, num_classes: int) -> Callable[..., Any] | None:
    """timm's batch ``Mixup`` (images, int labels) -> (mixed images, soft targets); None when the preset mixes not."""
    from timm.data import Mixup

    preset = get_preset(preset)
    if not (preset.mixup or preset.cutmix) or not preset.mixup_prob:
        return None
    return Mixup(
        mixup_alpha=preset.mixup,
        cutmix_alpha=preset.cutmix,
        prob=preset.mixup_prob,
        switch_prob=preset.switch_prob,
        mode=preset.mixup_mode,
        label_smoothing=preset.label_smoothing,
        num_classes=num_classes,
    )


__all__ = [
    "PRESETS",
    "RECIPES",
    "EvalTransform",
    "Preset",
    "TrainTransform",
    "get_preset",
    "mixup_fn",
    "resolve_recipe",
    "train_transform",
]
