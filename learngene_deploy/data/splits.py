"""``load_data``: resolve a source to lazy train/validation datasets with their contract, classes and fingerprint."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from learngene_deploy._fs import read_regular
from learngene_deploy.data import sources
from learngene_deploy.data.contract import Preprocessing, eval_transform
from learngene_deploy.data.sources import (
    IMAGE_EXTENSIONS,
    VAL_DIRS,
    ArrayImages,
    BadImagePolicy,
    ImageDataset,
    Listing,
    subdirs,
)
from learngene_deploy.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}
BUILTIN = ("digits", "fashion-mnist")
FINGERPRINT_FILES = 256  # sources with more items hash the bytes of this many, evenly spaced in the sorted list
KINDS = (
    "class sub-folders (ImageFolder), WebDataset .tar shards, the four IDX files (train-images-idx3-ubyte ...) or a "
    "Hugging Face save_to_disk directory (dataset_dict.json or state.json)"
)


@dataclass(frozen=True)
class DataSplits:
    """Train and validation datasets (``ds[i]`` = (float32 3 x S x S, int label)), decoded lazily.

    Both apply the contract's evaluation transform; the training loop swaps in an augmentation with
    ``data.train.with_transform(train_transform(preset, data.preprocessing))``.
    """

    train: ImageDataset
    val: ImageDataset
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)  # name, source, sizes, classes, preprocessing, fingerprint
    class_names: tuple[str, ...] = ()
    preprocessing: Preprocessing | None = None

    @property
    def in_chans(self) -> int:
        return self.preprocessing.in_chans if self.preprocessing else 3

    def arrays(
        self, split: Literal["train", "val"], limit: int | None = None, *, workers: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first ``limit`` images of ``split`` (default all), eval-transformed: float32 N x 3 x S x S, int64 N.

        For the build's numeric gates, golden images and INT8 calibration. Decoded by a DataLoader with ``workers``;
        images skipped as unreadable (``on_bad_image="skip"``) are replaced by the ones after them.
        """
        from learngene_deploy.data.loader import make_loader

        dataset = {"train": self.train, "val": self.val}[split]
        if self.preprocessing is not None:
            dataset = dataset.with_transform(eval_transform(self.preprocessing))
        n = len(dataset) if limit is None else min(limit, len(dataset))
        size = self.preprocessing.img_size if self.preprocessing else 0
        xs, ys, have = [], [], 0
        if n:
            loader = make_loader(dataset, batch_size=min(n, 256), shuffle=False, workers=workers, pin_memory=False)
            for images, labels in loader:
                xs.append(images[: n - have].numpy())
                ys.append(labels[: n - have].numpy())
                have += len(xs[-1])
                if have >= n:
                    break
        if not xs:
            return np.zeros((0, 3, size, size), np.float32), np.zeros(0, np.int64)
        return np.ascontiguousarray(np.concatenate(xs), dtype=np.float32), np.concatenate(ys).astype(np.int64)


# --- built-ins and IDX directories ----------------------------------------------------------------------------------
MAX_IDX_BYTES = 1 << 30  # Fashion-MNIST's training images are 47 MB


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file (optionally .gz) as a uint8 array; ``magic`` is 2051 for images, 2049 for labels."""
    try:
        raw = read_regular(path, limit=MAX_IDX_BYTES)
        if path.suffix == ".gz":
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                raw = f.read(MAX_IDX_BYTES + 1)
            if len(raw) > MAX_IDX_BYTES:
                raise ValueError(f"it inflates to more than {MAX_IDX_BYTES} bytes")
    except (OSError, EOFError, ValueError, gzip.BadGzipFile) as e:
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
    for split in ("train", "val"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels) or not len(labels) or 0 in images.shape:
            msg = (
                f"the {split} IDX files in {directory} hold {len(images)} images of {images.shape[1:]} pixels and "
                f"{len(labels)} labels; each split needs the same, non-zero number of both, so replace the files."
            )
            raise DataError(msg)
    classes = np.union1d(arrays["train_labels"], arrays["val_labels"])
    if len(np.unique(arrays["train_labels"])) < 2:
        msg = (
            f"the IDX training labels in {directory} hold {len(np.unique(arrays['train_labels']))} class(es) "
            f"({', '.join(map(str, classes[:5]))}); a classifier needs at least two, so add images of other classes."
        )
        raise DataError(msg)
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


def _keep(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded subset of at most ``limit`` of ``n`` items; None keeps all."""
    if limit is None or limit >= n:
        return None
    return np.sort(torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()[:limit])


def _subset(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    keep = _keep(len(labels), limit, seed)
    return (images, labels) if keep is None else (images[keep], labels[keep])


def _array_splits(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    img_size: int,
    seed: int,
    train_limit: int | None,
    val_limit: int | None,
) -> DataSplits:
    """Subset and fingerprint the uint8 grayscale arrays of a built-in or IDX source (kept in memory as uint8)."""
    train_x, train_y = _subset(arrays[0], arrays[1], train_limit, seed)
    val_x, val_y = _subset(arrays[2], arrays[3], val_limit, seed + 1)
    digest = hashlib.sha256()
    for a in (train_x, train_y, val_x, val_y):
        digest.update(np.ascontiguousarray(a).tobytes())
    num_classes = int(max(train_y.max(), val_y.max())) + 1
    classes = FASHION_MNIST_CLASSES if name == "fashion-mnist" else tuple(str(i) for i in range(num_classes))
    contract = Preprocessing.grayscale_builtin(img_size)
    info = {
        "name": name if name in BUILTIN else "idx-directory",
        "source": name,
        "train_size": len(train_y),
        "val_size": len(val_y),
        "num_classes": num_classes,
        "classes": list(classes),
        "img_size": img_size,
        "channels": 3,
        "seed": seed,
        "preprocessing": contract.to_dict(),
        "fingerprint": digest.hexdigest()[:16],
    }
    train = ArrayImages(train_x, train_y.astype(np.int64), contract, f"{name} train")
    val = ArrayImages(val_x, val_y.astype(np.int64), contract, f"{name} val")
    return DataSplits(train, val, num_classes, info, classes, contract)


# --- image sources --------------------------------------------------------------------------------------------------
def stratified(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (train, val) of a seeded split holding out ``val_fraction`` of every class (>= 1 of each of >= 2)."""
    if not 0 < val_fraction < 1:
        msg = f"val_fraction must lie strictly between 0 and 1, not {val_fraction}; pass e.g. 0.2."
        raise DataError(msg)
    generator = torch.Generator().manual_seed(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_val = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        is_val[members[torch.randperm(len(members), generator=generator).numpy()[:n_val]]] = True
    if not is_val.any():
        msg = "every class has a single image, so none can be held out for validation; add images to the classes."
        raise DataError(msg)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def fingerprint(classes: list[str], splits: dict[str, ImageDataset]) -> str:
    """sha256 of the class names and, per split, every item's name, size and label, in order; plus file bytes.

    Cheap on purpose (no pass over every byte of a large dataset before the first step): the bytes of every item
    are hashed when the source has at most ``FINGERPRINT_FILES`` items in all, else those of ``FINGERPRINT_FILES``
    items evenly spaced over the concatenated splits (positions ``round(k * (n - 1) / (FINGERPRINT_FILES - 1))``).
    A large dataset whose content changes with name and size kept may therefore keep its fingerprint.
    """
    digest = hashlib.sha256("\0".join(classes).encode())
    items = [(split, ds, i) for split, ds in splits.items() for i in range(len(ds))]
    for split, ds, i in items:
        digest.update(f"\0{split}\0{ds.key(i)}\0{ds.labels[i]}".encode())
    n = len(items)
    sample = range(n) if n <= FINGERPRINT_FILES else np.unique(np.round(np.linspace(0, n - 1, FINGERPRINT_FILES)))
    for k in sample:
        split, ds, i = items[int(k)]
        try:
            digest.update(hashlib.sha256(ds.raw(i)).digest())
        except OSError as e:
            raise DataError(f"cannot read {ds.where(i)} ({e}); check its permissions or remove it.") from e
    return digest.hexdigest()[:16]


def _image_splits(
    name: str,
    kind: str,
    listing: Listing,
    *,
    img_size: int,
    val_fraction: float,
    seed: int,
    train_limit: int | None,
    val_limit: int | None,
    on_bad_image: BadImagePolicy,
) -> DataSplits:
    """Split and subset (index arrays only, no decode) and fingerprint an image source."""
    classes, train, val, val_name = listing
    if val is None:
        keep_train, keep_val = stratified(train.labels, val_fraction, seed)
        train, val = train.subset(keep_train), train.subset(keep_val)
    if (keep := _keep(len(train), train_limit, seed)) is not None:
        train = train.subset(keep)
    if (keep := _keep(len(val), val_limit, seed + 1)) is not None:
        val = val.subset(keep)
    train, val = train.with_bad_images(on_bad_image), val.with_bad_images(on_bad_image)
    contract = train.contract
    info = {
        "name": kind,
        "source": name,
        "train_size": len(train),
        "val_size": len(val),
        "num_classes": len(classes),
        "classes": classes,
        "img_size": img_size,
        "channels": 3,
        "seed": seed,
        "split": f"train / {val_name}" if val_name else f"stratified, val_fraction {val_fraction}",
        "preprocessing": contract.to_dict(),
        "fingerprint": fingerprint(classes, {"train": train, "val": val}),
    }
    return DataSplits(train, val, len(classes), info, tuple(classes), contract)


def _tar_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.tar") if sources.visible(p.name) and p.is_file())


def _webdataset(source: str, contract: Preprocessing) -> Listing | None:
    """The shards of ``source`` (a brace pattern, a directory of ``*.tar``, or one with ``train``/``val`` of them)."""
    if "{" in source and ".tar" in source:
        from webdataset.shardlists import expand_urls

        shards = [Path(p).expanduser() for p in expand_urls(source)]
        if missing := [p for p in shards if not p.is_file()]:
            msg = f"{len(missing)} shards of {source} do not exist (e.g. {missing[0]}); check the brace pattern."
            raise DataError(msg)
        return sources.webdataset_shards({"train": shards}, contract, shards[0].parent, None)
    path = Path(source).expanduser()
    if not path.is_dir():
        return None
    if top := _tar_files(path):
        return sources.webdataset_shards({"train": top}, contract, path, None)
    if (path / "train").is_dir() and (train := _tar_files(path / "train")):
        val_name = next((n for n in VAL_DIRS if (path / n).is_dir() and _tar_files(path / n)), None)
        shards = {"train": train, **({"val": _tar_files(path / val_name)} if val_name else {})}
        return sources.webdataset_shards(shards, contract, path, val_name)
    return None


def load_data(
    source: str | Path,
    *,
    img_size: int,
    val_fraction: float = 0.2,
    seed: int = 0,
    train_limit: int | None = None,
    val_limit: int | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    preprocessing: Preprocessing | None = None,
    on_bad_image: BadImagePolicy = "error",
) -> DataSplits:
    """Resolve a built-in name or a directory to lazy datasets (see the package docstring for the rules).

    Args:
        source: built-in name (``digits``, ``fashion-mnist``), a directory, or a brace pattern of ``.tar`` shards.
        img_size: output height and width in pixels.
        val_fraction: held-out fraction of sources without a validation split (stratified except for digits).
        seed: seed of the split and of the subsets.
        train_limit: keep a seeded subset of at most this many training images (chosen before any decode).
        val_limit: keep a seeded subset of at most this many validation images.
        image_column: Hugging Face column holding the images (default: the only ``Image`` feature).
        label_column: Hugging Face column holding the labels (default: the only ``ClassLabel`` feature).
        preprocessing: the contract for image sources (default ``Preprocessing.imagenet(img_size)``); the grayscale
            built-ins and IDX directories always use ``Preprocessing.grayscale_builtin(img_size)``.
        on_bad_image: ``"error"`` stops at an unreadable image naming it, ``"skip"`` leaves it out of its batch and
            counts it (:attr:`Loader.bad_images`).

    Raises:
        DataError: the source is missing, unknown, unreadable or unusable; the message says how to fix it.
    """
    name = str(source)
    if not name.strip():
        raise DataError("the data source is empty; pass digits, fashion-mnist or a data directory.")
    limits: dict[str, Any] = {"img_size": img_size, "seed": seed, "train_limit": train_limit, "val_limit": val_limit}
    if name == "digits":
        return _array_splits(name, _load_digits(val_fraction, seed), **limits)
    if name == "fashion-mnist":
        directory = FASHION_MNIST_DIR
        if not directory.is_dir():
            msg = (
                f"Fashion-MNIST is not installed ({directory} is missing); install it with "
                "`apt-get install dataset-fashion-mnist` or pass a directory holding the four IDX files."
            )
            raise DataError(msg)
        return _array_splits(name, _load_idx_dir(directory), **limits)
    contract = preprocessing or Preprocessing.imagenet(img_size)
    if contract.img_size != img_size:
        raise DataError(f"preprocessing.img_size {contract.img_size} differs from img_size {img_size}; pass one size.")
    images: dict[str, Any] = {**limits, "val_fraction": val_fraction, "on_bad_image": on_bad_image}
    if (shards := _webdataset(name, contract)) is not None:
        return _image_splits(name, "webdataset", shards, **images)
    path = Path(name).expanduser()
    builtins = ", ".join(BUILTIN)
    if not path.exists():
        if "/" in name or os.sep in name or name.startswith((".", "~")):
            msg = f"data directory {path} does not exist; check the path or use a built-in name ({builtins})."
        else:
            msg = (
                f"unknown data source {name!r}, neither a built-in ({builtins}) nor an existing directory; "
                f"use a built-in name or a directory holding {KINDS}."
            )
        raise DataError(msg)
    if not path.is_dir():
        msg = f"{path} is a file, not a directory; use a built-in name ({builtins}) or a directory holding {KINDS}."
        raise DataError(msg)
    files = {p.name for p in path.iterdir()}
    if "dataset_dict.json" in files or {"state.json", "dataset_info.json"} <= files:
        listing = sources.huggingface(path, contract, image_column, label_column)
        return _image_splits(name, "huggingface", listing, **images)
    if any(f.startswith(tuple(stem.split("-idx")[0] for stem in IDX_FILES.values())) for f in files):
        return _array_splits(name, _load_idx_dir(path), **limits)
    if subdirs(path):
        return _image_splits(name, "imagefolder", sources.imagefolder(path, contract), **images)
    loose = sum(f.lower().endswith(IMAGE_EXTENSIONS) for f in files)
    msg = (
        f"{path} holds {loose} images but no class sub-folders; move them into one sub-folder per class (ImageFolder)."
        if loose
        else f"{path} holds none of {KINDS}; point at such a directory or use a built-in name ({builtins})."
    )
    raise DataError(msg)
