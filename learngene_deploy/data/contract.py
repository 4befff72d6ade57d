"""The preprocessing contract: exactly how an input image becomes the model's input, as data.

Every consumer applies the one transform built from a :class:`Preprocessing` (:func:`eval_transform`): training
evaluation, the build's gates, golden images and INT8 calibration, and ``lgdeploy predict`` on a deployed model
(:meth:`Preprocessing.preprocess`). The rule, in order:

1. decode (:func:`load_image`): Pillow, EXIF-rotated, converted to RGB as torchvision's loader does (16-bit grayscale
   reduced to its high byte, palette transparency and alpha dropped); a JPEG is decoded at the smallest DCT scale
   whose shorter side is still >= ``resize_size`` (``Image.draft``). With ``grayscale`` the image is converted to
   Pillow's "L" luma (ITU-R 601-2) and replicated to three channels;
2. uint8 pixels / 255 (``value_range`` [0, 1]), float32;
3. the shorter side resized to ``resize_size`` in float32 by torch (``interpolation``, antialiased, values clamped
   to [0, 1]), then the centred ``img_size`` square cut out: ``crop_pct = img_size / resize_size`` (1.0 keeps the
   whole shorter side; timm's evaluation default is 0.875 with ``resize_size = floor(img_size / crop_pct)``);
4. ``(x - mean) / std`` per channel; output C x S x S float32, channels in ``channel_order`` (RGB).

The resize runs on float32 tensors rather than on Pillow's uint8 images so that in-memory uint8 sources (the
built-ins) and decoded files follow one code path bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from learngene_deploy._fs import read_regular
from learngene_deploy.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
CONTRACT_VERSION = 1
MAX_IMAGE_BYTES = 256 << 20  # one image file; larger is no photo (a symlink to a disk image, a video, ...)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input (see the module docstring for the rule); ``to_dict`` is its record."""

    img_size: int
    resize_size: int  # the shorter side is resized to this, then the centred img_size square is cut out
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    grayscale: bool = False  # convert to luma and replicate to 3 channels (the built-in grayscale sources)
    channel_order: str = "RGB"
    value_range: tuple[float, float] = (0.0, 1.0)  # uint8 pixels are scaled to this range before mean/std
    in_chans: int = 3

    def __post_init__(self) -> None:
        if not (isinstance(self.img_size, int) and 0 < self.img_size <= self.resize_size):
            msg = (
                f"preprocessing needs 0 < img_size <= resize_size, not {self.img_size} and {self.resize_size}; "
                "resize the shorter side to at least the crop size."
            )
            raise DataError(msg)
        if self.interpolation not in INTERPOLATIONS:
            msg = f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}."
            raise DataError(msg)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            msg = f"mean and std need 3 values each, std positive (got {self.mean} and {self.std}); pass RGB values."
            raise DataError(msg)
        if (self.channel_order, tuple(self.value_range), self.in_chans) != ("RGB", (0.0, 1.0), 3):
            msg = (
                f"only RGB input scaled to [0, 1] with 3 channels is supported, not {self.channel_order} "
                f"{tuple(self.value_range)} {self.in_chans}; record a contract this version writes."
            )
            raise DataError(msg)

    @property
    def crop_pct(self) -> float:
        return self.img_size / self.resize_size

    @classmethod
    def imagenet(cls, img_size: int, *, crop_pct: float = 0.875, interpolation: str = "bicubic") -> Preprocessing:
        """The seeds' (DeiT) evaluation recipe: bicubic, ImageNet mean/std, ``resize_size = floor(S / crop_pct)``."""
        return cls(img_size, math.floor(img_size / crop_pct), interpolation, IMAGENET_MEAN, IMAGENET_STD)

    @classmethod
    def grayscale_builtin(cls, img_size: int) -> Preprocessing:
        """The built-in grayscale sources (and the shipped learngenes): bilinear, mean = std = 0.5, no crop."""
        return cls(img_size, img_size, "bilinear", (0.5,) * 3, (0.5,) * 3, grayscale=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (lists for tuples, ``crop_pct`` added for readers; ``from_dict`` ignores it)."""
        record = {"version": CONTRACT_VERSION, **dataclasses.asdict(self), "crop_pct": round(self.crop_pct, 6)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Preprocessing:
        """The contract written by :meth:`to_dict`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(record) - fields - {"version", "crop_pct"}):
            msg = f"unknown preprocessing keys {', '.join(unknown)}; valid keys are {', '.join(sorted(fields))}."
            raise DataError(msg)
        if (version := record.get("version", CONTRACT_VERSION)) != CONTRACT_VERSION:
            msg = f"preprocessing contract version {version} is not {CONTRACT_VERSION}; upgrade learngene-deploy."
            raise DataError(msg)
        if missing := sorted({"img_size", "resize_size"} - set(record)):
            raise DataError(f"the preprocessing record lacks {', '.join(missing)}; write it with to_dict().")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in fields}
        return cls(**values)

    def transform(self) -> EvalTransform:
        return eval_transform(self)

    def preprocess(self, images: Iterable[Image.Image | str | Path | np.ndarray]) -> np.ndarray:
        """PIL images, image files or uint8 arrays (H x W or H x W x 3) as one N x 3 x S x S float32 batch."""
        transform = self.transform()
        batch = [transform(im) for im in images]
        if not batch:
            return np.zeros((0, self.in_chans, self.img_size, self.img_size), np.float32)
        return torch.stack(batch).numpy()


def load_image(source: str | Path | bytes, *, draft: int | None = None, where: str | None = None) -> Image.Image:
    """A file (path or its bytes) decoded as an RGB Pillow image (rule 1 of the module docstring).

    Raises:
        DataError: the bytes are no image Pillow can read, or are truncated; names ``where`` (default: the path).
    """
    where = where or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        raw = source if isinstance(source, bytes) else read_regular(source, limit=MAX_IMAGE_BYTES)
        with Image.open(BytesIO(raw)) as opened:
            if draft:
                opened.draft("RGB", (draft, draft))  # JPEG: a reduced DCT scale whose sides stay >= draft
            img = ImageOps.exif_transpose(opened)
            if img.mode.startswith("I"):  # 16-bit grayscale: keep the high byte rather than clip at 255
                img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int64) >> 8, 0, 255).astype(np.uint8))
            img = img.convert("RGBA" if img.mode == "P" and "transparency" in img.info else img.mode).convert("RGB")
            img.load()
            return img
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" names a buffer, not the problem
        why = "not an image format Pillow can read" if isinstance(e, Image.UnidentifiedImageError) else str(e)
        error = DataError(f"cannot read image {where} ({why}); remove or replace the file.")
        error.why = why  # type: ignore[attr-defined]  # the reason alone, for a message that names the file itself
        raise error from e


class EvalTransform:
    """The contract's transform: a PIL image, a file path or a uint8 array (H x W or H x W x 3) -> C x S x S."""

    def __init__(self, contract: Preprocessing) -> None:
        from torchvision.transforms import InterpolationMode

        self.contract = contract
        self._mode = InterpolationMode(contract.interpolation)
        self._mean = list(contract.mean)
        self._std = list(contract.std)

    def __call__(self, image: Image.Image | str | Path | np.ndarray) -> torch.Tensor:
        import torchvision.transforms.v2.functional as TF

        c = self.contract
        if isinstance(image, (str, Path)):
            image = load_image(image, draft=c.resize_size)
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("L") if c.grayscale else image.convert("RGB"))
        if c.grayscale and image.ndim == 3:
            image = np.asarray(Image.fromarray(image).convert("L"))
        x = torch.from_numpy(np.array(image))  # a copy: IDX arrays are read-only views of the file
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        x = x.float().div_(255)
        if min(x.shape[-2:]) != c.resize_size:
            x = TF.resize(x, [c.resize_size], interpolation=self._mode, antialias=True)
            if self._mode is not self._mode.BILINEAR:
                x = x.clamp_(0, 1)  # bicubic overshoots; Pillow's uint8 resize clamps the same way
        x = TF.center_crop(x, [c.img_size, c.img_size])
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        return TF.normalize(x, self._mean, self._std)

    def batch(self, images: np.ndarray) -> torch.Tensor:
        """``images`` (uint8 N x H x W, or N x H x W x 3) -> N x C x S x S, equal to stacking ``self(image)``."""
        import torchvision.transforms.v2.functional as TF

        c = self.contract
        if images.ndim != 3 + (not c.grayscale) or (images.ndim == 4 and images.shape[-1] != 3):
            return torch.stack([self(image) for image in images])  # e.g. RGB arrays under a grayscale contract
        x = torch.from_numpy(np.array(images))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        x = x.float().div_(255)
        if min(x.shape[-2:]) != c.resize_size:
            x = TF.resize(x, [c.resize_size], interpolation=self._mode, antialias=True)
            if self._mode is not self._mode.BILINEAR:
                x = x.clamp_(0, 1)
        x = TF.center_crop(x, [c.img_size, c.img_size])
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return TF.normalize(x, self._mean, self._std)

    def __repr__(self) -> str:
        return f"EvalTransform({self.contract})"


def eval_transform(contract: Preprocessing) -> EvalTransform:
    """The one evaluation transform of ``contract`` (the same for training evaluation, gates and predict)."""
    return EvalTransform(contract)
