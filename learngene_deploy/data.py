"""Built-in, offline image data: ``digits`` (scikit-learn) and ``fashion-mnist`` (IDX files).

Images are grayscale; they are scaled to [0, 1], resized to ``img_size`` (bilinear), normalised with mean 0.5 and
std 0.5 and repeated to 3 channels (a stride-0 view, so memory holds one channel). Splits are deterministic:
Fashion-MNIST validates on its official 10k test set; digits holds out a seeded ``val_fraction``.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from learngene_deploy.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}
BUILTIN = ("digits", "fashion-mnist")
MEAN, STD = 0.5, 0.5


@dataclass(frozen=True)
class DataSplits:
    """Train and validation splits as ``TensorDataset(images (N,3,S,S) float32, labels (N,) int64)``."""

    train: TensorDataset
    val: TensorDataset
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)  # name, source, sizes, preprocessing, fingerprint

    @property
    def in_chans(self) -> int:
        return int(self.train.tensors[0].shape[1])


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file (optionally .gz) as a uint8 array; ``magic`` is 2051 for images, 2049 for labels."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        msg = f"cannot read IDX file {path} ({e}); re-install dataset-fashion-mnist or replace the file."
        raise DataError(msg) from e
    ndim = magic - 2048
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        msg = f"{path} is not an IDX {'image' if ndim == 3 else 'label'} file (bad magic number); check the directory."
        raise DataError(msg)
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        msg = f"{path} holds {data.size} values but its header says {shape}; the file is truncated, replace it."
        raise DataError(msg)
    return data.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    msg = (
        f"{directory} has no {stem}[.gz]; a Fashion-MNIST directory holds the four IDX files "
        f"({', '.join(IDX_FILES.values())}); install them with `apt-get install dataset-fashion-mnist`."
    )
    raise DataError(msg)


def _load_idx_dir(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arrays = {
        k: _read_idx(_find_idx(directory, stem), 2051 if "images" in k else 2049) for k, stem in IDX_FILES.items()
    }
    return arrays["train_images"], arrays["train_labels"], arrays["val_images"], arrays["val_labels"]


def _load_digits(val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).numpy()
    n_val = round(len(labels) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    return images[train], labels[train], images[val], labels[val]


def _subset(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(labels):
        return images, labels
    keep = np.sort(torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).numpy()[:limit])
    return images[keep], labels[keep]


def _to_tensors(images: np.ndarray, labels: np.ndarray, img_size: int) -> TensorDataset:
    x = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)
    x = x.sub_(MEAN).div_(STD).expand(-1, 3, -1, -1)
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


def load_data(
    source: str | Path,
    *,
    img_size: int,
    val_fraction: float = 0.2,
    seed: int = 0,
    train_limit: int | None = None,
    val_limit: int | None = None,
) -> DataSplits:
    """Load a built-in dataset (``digits``, ``fashion-mnist``) or a directory holding the four IDX files.

    Args:
        source: built-in name or directory path.
        img_size: output height and width in pixels.
        val_fraction: held-out fraction for datasets without an official test split (digits).
        seed: seed of the split and of the subsets.
        train_limit: keep a seeded subset of at most this many training images.
        val_limit: keep a seeded subset of at most this many validation images.
    """
    name = str(source)
    if name == "digits":
        arrays = _load_digits(val_fraction, seed)
    elif name == "fashion-mnist" or Path(name).is_dir():
        directory = FASHION_MNIST_DIR if name == "fashion-mnist" else Path(name)
        if not directory.is_dir():
            msg = (
                f"Fashion-MNIST is not installed ({directory} is missing); install it with "
                "`apt-get install dataset-fashion-mnist` or pass a directory holding the four IDX files."
            )
            raise DataError(msg)
        arrays = _load_idx_dir(directory)
    else:
        msg = f"unknown data source {name!r}; use one of {', '.join(BUILTIN)} or a directory holding the IDX files."
        raise DataError(msg)
    train_x, train_y = _subset(arrays[0], arrays[1], train_limit, seed)
    val_x, val_y = _subset(arrays[2], arrays[3], val_limit, seed + 1)
    digest = hashlib.sha256()
    for a in (train_x, train_y, val_x, val_y):
        digest.update(np.ascontiguousarray(a).tobytes())
    num_classes = int(max(train_y.max(), val_y.max())) + 1
    info = {
        "name": name if name in BUILTIN else "idx-directory",
        "source": name,
        "train_size": len(train_y),
        "val_size": len(val_y),
        "num_classes": num_classes,
        "img_size": img_size,
        "channels": 3,
        "mean": MEAN,
        "std": STD,
        "seed": seed,
        "fingerprint": digest.hexdigest()[:16],
    }
    return DataSplits(_to_tensors(train_x, train_y, img_size), _to_tensors(val_x, val_y, img_size), num_classes, info)
