"""Image data for ``--data``: built-ins, ImageFolder directories, IDX directories and Hugging Face datasets.

Sources, resolved in this order:

* ``digits`` (scikit-learn, 1,797 8x8 images; a seeded ``val_fraction`` is held out) and ``fashion-mnist`` (the Debian
  package ``dataset-fashion-mnist``; validates on the official 10k test set).
* A directory with ``dataset_dict.json`` or ``state.json`` + ``dataset_info.json``: a Hugging Face ``datasets``
  directory written by ``save_to_disk`` (optional extra ``hf``; read with ``load_from_disk``, never downloads). The
  image column is the one ``Image`` feature and the label column the one ``ClassLabel`` feature (else ``image``/``img``
  and ``label``/``labels``/``fine_label``; or pass ``image_column``/``label_column``). A ``DatasetDict`` trains on
  ``train`` and validates on ``validation``, ``val``, ``valid`` or ``test``, the first present.
* A directory holding the four IDX files (``train-images-idx3-ubyte[.gz]`` ...).
* An ImageFolder: one sub-folder per class (index = position among the sorted names) with images inside, nested
  folders allowed (jpg, jpeg, png, bmp, gif, webp, tif, tiff, any case; names starting with ``.`` and ``__MACOSX``
  are ignored). If the only sub-folders are ``train`` and ``val``/``validation``/``test`` (each with class
  sub-folders), those are the splits (the first validation name present wins).

Without an explicit validation split, a seeded, stratified ``val_fraction`` of every class (at least one image per
class of two or more) is held out. Grayscale IDX/digits images are scaled to [0, 1], resized (bilinear, antialiased)
and repeated to 3 channels (a stride-0 view). Other images are decoded with Pillow, EXIF-rotated and converted to RGB
(grayscale replicated, 16-bit reduced to its high byte, alpha dropped as torchvision's loader does); then the centred
square of side min(w, h) is resized to ``img_size`` (bilinear, antialiased). That equals "resize the shorter side,
centre-crop", the usual evaluation transform: it keeps the aspect ratio instead of squashing objects, and is easy to
reproduce on the device. All images end as float32 N x 3 x S x S, normalised with mean 0.5 and std 0.5. Image
sources are held in memory, at most ``MAX_TENSOR_BYTES`` (4 GiB) of float32 tensors per load: a larger source gets a
seeded subset (with a warning; ``info["capped_from"]`` records the full sizes); ``train_limit``/``val_limit`` choose
smaller subsets, and are applied before any image is decoded.

``info["fingerprint"]`` identifies the data used: for built-ins the sha256 of the uint8 arrays of both splits, for
image sources the sha256 over every used image's split, relative path (HF: ``split[row]``), label and sha256 of its
file bytes. It changes when a file, its name, its class or the split changes, not with ``img_size``, and not when
the directory is moved.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
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
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
VAL_DIRS = ("val", "validation", "test")
HF_VAL_SPLITS = ("validation", "val", "valid", "test")
MAX_TENSOR_BYTES = 4 * 2**30
KINDS = (
    "class sub-folders (ImageFolder), the four IDX files (train-images-idx3-ubyte ...) or a Hugging Face "
    "save_to_disk directory (dataset_dict.json or state.json)"
)


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


def _keep(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded subset of at most ``limit`` of ``n`` items; None keeps all."""
    if limit is None or limit >= n:
        return None
    return np.sort(torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()[:limit])


def _subset(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    keep = _keep(len(labels), limit, seed)
    return (images, labels) if keep is None else (images[keep], labels[keep])


def _to_tensors(images: np.ndarray, labels: np.ndarray, img_size: int) -> TensorDataset:
    x = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)
    x = x.sub_(MEAN).div_(STD).expand(-1, 3, -1, -1)
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


class _Image(NamedTuple):
    """One image to decode: ``key`` enters the fingerprint, ``where`` the error messages."""

    key: str
    label: int
    read: Callable[[], bytes]
    where: str


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__MACOSX"


def _subdirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and _visible(p.name))


def _class_images(folder: Path, label: int, root: Path) -> list[_Image]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if _visible(d)]
        files += [Path(dirpath, f) for f in filenames if _visible(f) and f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        msg = f"class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); add images to it or remove it."
        raise DataError(msg)
    return [_Image(f.relative_to(root).as_posix(), label, f.read_bytes, str(f)) for f in sorted(files)]


def _folder_split(directory: Path, root: Path, classes: list[str] | None = None) -> tuple[list[str], list[_Image]]:
    """Classes and images of one ImageFolder split; a validation split reuses the training ``classes``."""
    found = [p.name for p in _subdirs(directory)]
    if classes is None and len(found) < 2:
        msg = (
            f"{directory} has {len(found)} class folder(s) ({', '.join(found) or 'none'}); an ImageFolder needs at "
            "least two sub-folders, one per class, with images inside."
        )
        raise DataError(msg)
    classes = found if classes is None else classes
    if unknown := sorted(set(found) - set(classes)):
        msg = (
            f"validation folder {directory} has classes that training lacks ({', '.join(unknown)}); add them to the "
            "training folder or remove them."
        )
        raise DataError(msg)
    images = [im for label, c in enumerate(classes) if c in found for im in _class_images(directory / c, label, root)]
    if not images:
        msg = f"validation folder {directory} has no class sub-folders; sort its images into one sub-folder per class."
        raise DataError(msg)
    return classes, images


def _imagefolder(root: Path) -> tuple[list[str], list[_Image], list[_Image] | None, str | None]:
    """An ImageFolder, with its ``train``/``val`` (or ``validation``, ``test``) sub-directories when it has them."""
    names = {p.name for p in _subdirs(root)}
    if "train" in names and names <= {"train", *VAL_DIRS} and _subdirs(root / "train"):
        classes, train = _folder_split(root / "train", root)
        val_dir = next((n for n in VAL_DIRS if n in names), None)
        return classes, train, _folder_split(root / val_dir, root, classes)[1] if val_dir else None, val_dir
    return (*_folder_split(root, root), None, None)


def _hf_column(root: Path, features: Any, wanted: str | None, kind: type, names: tuple[str, ...], what: str) -> str:
    """The column given, else the only column of feature type ``kind``, else the first of ``names`` present."""
    typed = [c for c, f in features.items() if isinstance(f, kind)]
    if wanted is None and len(typed) == 1:
        return typed[0]
    choice = wanted or next((n for n in names if n in (typed or features)), None)
    if choice not in features:
        msg = (
            f"cannot tell which column of {root} holds the {what}s (columns: {', '.join(features)}); "
            f"pass {what}_column=<name>."
        )
        raise DataError(msg)
    return choice


def _hf_bytes(dataset: Any, column: str, row: int) -> bytes:
    record = dataset[row][column]
    return record["bytes"] if record["bytes"] is not None else Path(record["path"]).read_bytes()


def _huggingface(
    root: Path, image_column: str | None, label_column: str | None
) -> tuple[list[str], list[_Image], list[_Image] | None, str | None]:
    """A ``save_to_disk`` directory: a Dataset (split later) or a DatasetDict with a train split."""
    try:
        import datasets
    except ImportError as e:
        msg = (
            f"{root} is a Hugging Face datasets directory but the `datasets` package is not installed; "
            "install it with `pip install 'learngene-deploy[hf]'`."
        )
        raise DataError(msg) from e
    try:
        loaded = datasets.load_from_disk(str(root))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot load the Hugging Face dataset {root} ({e}); write it again with save_to_disk.") from e
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if "train" not in splits:
        msg = f"Hugging Face dataset {root} has no train split (it has {', '.join(splits)}); save one named train."
        raise DataError(msg)
    val_name = next((s for s in HF_VAL_SPLITS if s in splits), None)
    features = splits["train"].features
    image_col = _hf_column(root, features, image_column, datasets.Image, ("image", "img"), "image")
    if not isinstance(features[image_col], datasets.Image):
        msg = f"column {image_col!r} of {root} does not hold images (it is {features[image_col]}); pass image_column."
        raise DataError(msg)
    label_names = ("label", "labels", "fine_label")
    label_col = _hf_column(root, features, label_column, datasets.ClassLabel, label_names, "label")
    labels = {s: list(splits[s][label_col]) for s in ("train", val_name) if s}
    values = [v for vs in labels.values() for v in vs]
    if isinstance(features[label_col], datasets.ClassLabel):
        classes = list(features[label_col].names)
    elif all(isinstance(v, str) for v in values):
        classes = sorted(set(values))
        index = {c: i for i, c in enumerate(classes)}
        labels = {s: [index[v] for v in vs] for s, vs in labels.items()}
    elif all(isinstance(v, int) for v in values):
        classes = [str(i) for i in range(max(values) + 1)]
    else:
        msg = f"label column {label_col!r} of {root} holds no class labels, integers or strings; pass label_column."
        raise DataError(msg)
    for split, ids in labels.items():
        if bad := [i for i in ids if not 0 <= i < len(classes)]:
            msg = (
                f"split {split} of {root} has {len(bad)} labels outside 0..{len(classes) - 1} (e.g. {bad[0]}; -1 marks "
                "unlabelled rows); label them or save the dataset without that split."
            )
            raise DataError(msg)
    if len(classes) < 2:
        msg = f"Hugging Face dataset {root} has {len(classes)} class(es) in {label_col!r}; it needs at least two."
        raise DataError(msg)

    def images(split: str) -> list[_Image]:
        ds = splits[split].select_columns([image_col]).cast_column(image_col, datasets.Image(decode=False))
        return [
            _Image(f"{split}[{i}]", y, partial(_hf_bytes, ds, image_col, i), f"{split}[{i}] of {root}")
            for i, y in enumerate(labels[split])
        ]

    return classes, images("train"), images(val_name) if val_name else None, val_name


def _stratified(images: list[_Image], val_fraction: float, seed: int) -> tuple[list[_Image], list[_Image]]:
    """Seeded split holding out ``val_fraction`` of every class (at least one of each class of two or more)."""
    if not 0 < val_fraction < 1:
        msg = f"val_fraction must lie strictly between 0 and 1, not {val_fraction}; pass e.g. 0.2."
        raise DataError(msg)
    generator = torch.Generator().manual_seed(seed)
    labels = np.array([im.label for im in images])
    is_val = np.zeros(len(images), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_val = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        is_val[members[torch.randperm(len(members), generator=generator).numpy()[:n_val]]] = True
    if not is_val.any():
        msg = "every class has a single image, so none can be held out for validation; add images to the classes."
        raise DataError(msg)
    return [images[i] for i in np.flatnonzero(~is_val)], [images[i] for i in np.flatnonzero(is_val)]


def _decode(image: _Image, img_size: int) -> tuple[np.ndarray, bytes]:
    """RGB pixels (img_size x img_size x 3, uint8) of the centred square crop, and the sha256 of the file bytes."""
    try:
        raw = image.read()
        with Image.open(BytesIO(raw)) as opened:
            opened.draft("RGB", (img_size, img_size))  # JPEG: decode at a reduced scale that is still >= img_size
            img = ImageOps.exif_transpose(opened)
            if img.mode.startswith("I"):  # 16-bit grayscale: keep the high byte rather than clip at 255
                img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int64) >> 8, 0, 255).astype(np.uint8))
            img = img.convert("RGBA" if img.mode == "P" and "transparency" in img.info else img.mode).convert("RGB")
            w, h = img.size
            side = min(w, h)
            box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
            pixels = np.asarray(img.resize((img_size, img_size), Image.Resampling.BILINEAR, box=box))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" names a buffer, not the problem
        why = "not an image format Pillow can read" if isinstance(e, UnidentifiedImageError) else str(e)
        raise DataError(f"cannot read image {image.where} ({why}); remove or replace the file.") from e
    return pixels, hashlib.sha256(raw).digest()


def _image_tensors(images: list[_Image], img_size: int, pool: ThreadPoolExecutor) -> tuple[TensorDataset, list[bytes]]:
    pixels = np.empty((len(images), img_size, img_size, 3), dtype=np.uint8)
    digests = []
    for i, (array, digest) in enumerate(pool.map(partial(_decode, img_size=img_size), images)):
        pixels[i] = array
        digests.append(digest)
    x = torch.empty(len(images), 3, img_size, img_size).copy_(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    labels = torch.tensor([im.label for im in images], dtype=torch.int64)
    return TensorDataset(x.div_(255).sub_(MEAN).div_(STD), labels), digests


def _image_splits(
    name: str,
    kind: str,
    loaded: tuple[list[str], list[_Image], list[_Image] | None, str | None],
    *,
    img_size: int,
    val_fraction: float,
    seed: int,
    train_limit: int | None,
    val_limit: int | None,
) -> DataSplits:
    """Split, subset, cap, decode and fingerprint an ImageFolder or Hugging Face source."""
    classes, train, val, val_name = loaded
    if val is None:
        train, val = _stratified(train, val_fraction, seed)
    full = {"train": len(train), "val": len(val)}
    n_train = len(train) if train_limit is None else min(train_limit, len(train))
    n_val = len(val) if val_limit is None else min(val_limit, len(val))
    room = max(2, MAX_TENSOR_BYTES // (12 * img_size**2))  # float32 images of 3 x S x S
    capped = n_train + n_val > room
    if capped:
        n_val = min(n_val, max(1, room // 5))
        n_train = min(n_train, room - n_val)
        warnings.warn(
            f"{name}: {full['train']} + {full['val']} images exceed {MAX_TENSOR_BYTES / 2**30:g} GiB as float32 "
            f"tensors at img_size {img_size}; using a seeded subset of {n_train} training and {n_val} validation "
            "images (train_limit and val_limit choose smaller ones).",
            stacklevel=3,
        )
    train = train if (keep := _keep(len(train), n_train, seed)) is None else [train[i] for i in keep]
    val = val if (keep := _keep(len(val), n_val, seed + 1)) is None else [val[i] for i in keep]
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        try:
            train_set, train_digests = _image_tensors(train, img_size, pool)
            val_set, val_digests = _image_tensors(val, img_size, pool)
        except DataError:
            pool.shutdown(cancel_futures=True)
            raise
    digest = hashlib.sha256("\0".join(classes).encode())
    for split, images, digests in (("train", train, train_digests), ("val", val, val_digests)):
        for image, file_digest in zip(images, digests, strict=True):
            digest.update(f"\0{split}\0{image.key}\0{image.label}\0".encode() + file_digest)
    info = {
        "name": kind,
        "source": name,
        "train_size": len(train),
        "val_size": len(val),
        "num_classes": len(classes),
        "classes": classes,
        "img_size": img_size,
        "channels": 3,
        "mean": MEAN,
        "std": STD,
        "seed": seed,
        "split": f"train / {val_name}" if val_name else f"stratified, val_fraction {val_fraction}",
        "preprocessing": f"RGB, EXIF-rotated, centred square crop, bilinear resize to {img_size}, /255, (x-0.5)/0.5",
        "fingerprint": digest.hexdigest()[:16],
    }
    if capped:
        info["capped_from"] = full
    return DataSplits(train_set, val_set, len(classes), info)


def _array_splits(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    img_size: int,
    seed: int,
    train_limit: int | None,
    val_limit: int | None,
) -> DataSplits:
    """Subset and fingerprint the uint8 grayscale arrays of a built-in or IDX source."""
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
        "preprocessing": f"grayscale /255, bilinear resize to {img_size}, (x-0.5)/0.5, repeated to 3 channels",
        "fingerprint": digest.hexdigest()[:16],
    }
    return DataSplits(_to_tensors(train_x, train_y, img_size), _to_tensors(val_x, val_y, img_size), num_classes, info)


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
) -> DataSplits:
    """Load a built-in dataset or a directory (Hugging Face ``save_to_disk``, four IDX files, or ImageFolder).

    Args:
        source: built-in name (``digits``, ``fashion-mnist``) or directory path.
        img_size: output height and width in pixels.
        val_fraction: held-out fraction of sources without a validation split (stratified except for digits).
        seed: seed of the split and of the subsets.
        train_limit: keep a seeded subset of at most this many training images.
        val_limit: keep a seeded subset of at most this many validation images.
        image_column: Hugging Face column holding the images (default: the only ``Image`` feature).
        label_column: Hugging Face column holding the labels (default: the only ``ClassLabel`` feature).

    Raises:
        DataError: the source is missing, unknown, unreadable or unusable; the message says how to fix it.
    """
    name = str(source)
    limits: dict[str, Any] = {"img_size": img_size, "seed": seed, "train_limit": train_limit, "val_limit": val_limit}
    if name == "digits":
        return _array_splits(name, _load_digits(val_fraction, seed), **limits)
    if name == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            msg = (
                f"Fashion-MNIST is not installed ({FASHION_MNIST_DIR} is missing); install it with "
                "`apt-get install dataset-fashion-mnist` or pass a directory holding the four IDX files."
            )
            raise DataError(msg)
        return _array_splits(name, _load_idx_dir(FASHION_MNIST_DIR), **limits)
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
    images = {**limits, "val_fraction": val_fraction}
    if "dataset_dict.json" in files or {"state.json", "dataset_info.json"} <= files:
        return _image_splits(name, "huggingface", _huggingface(path, image_column, label_column), **images)
    if any(f.startswith(tuple(stem.split("-idx")[0] for stem in IDX_FILES.values())) for f in files):
        return _array_splits(name, _load_idx_dir(path), **limits)
    if _subdirs(path):
        return _image_splits(name, "imagefolder", _imagefolder(path), **images)
    loose = sum(f.lower().endswith(IMAGE_EXTENSIONS) for f in files)
    msg = (
        f"{path} holds {loose} images but no class sub-folders; move them into one sub-folder per class (ImageFolder)."
        if loose
        else f"{path} holds none of {KINDS}; point at such a directory or use a built-in name ({builtins})."
    )
    raise DataError(msg)
