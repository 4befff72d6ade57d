"""Lazy, map-style image datasets and the listing of each source kind; nothing here decodes an image up front.

Every dataset keeps only an index (file names, row numbers or tar offsets, and int64 labels) and decodes one image
per ``__getitem__`` (in a DataLoader worker when used through :func:`learngene_deploy.data.make_loader`), so memory
does not grow with the images. ``dataset[i]`` is ``(float32 C x S x S tensor, int label)``.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from learngene_deploy._fs import read_regular
from learngene_deploy.data.contract import MAX_IMAGE_BYTES, EvalTransform, Preprocessing, eval_transform, load_image
from learngene_deploy.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
BadImagePolicy = Literal["error", "skip"]


class BadImage(NamedTuple):
    """An image that could not be read or transformed: what a dataset returns instead of raising in a worker."""

    where: str
    why: str

    def error(self) -> DataError:
        msg = f"cannot read image {self.where} ({self.why}); remove or replace the file, or pass on_bad_image='skip'."
        return DataError(msg)


class ImageDataset(Dataset):
    """Base of the lazy datasets: ``rows`` index the source's items, ``labels`` are their classes (int64)."""

    in_memory = False

    def __init__(self, rows: np.ndarray, labels: np.ndarray, contract: Preprocessing) -> None:
        self.rows = np.asarray(rows)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.contract = contract
        self.transform: Callable[[Any], torch.Tensor] = eval_transform(contract)
        self.on_bad_image: BadImagePolicy = "error"

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, row: Any) -> Image.Image | np.ndarray:
        raise NotImplementedError

    def where(self, i: int) -> str:
        """A name of item ``i`` for messages (a path, ``split[row]`` or ``shard.tar:key``)."""
        raise NotImplementedError

    def key(self, i: int) -> str:
        """Item ``i``'s identity in the fingerprint: its name within the source and its size in bytes."""
        raise NotImplementedError

    def raw(self, i: int) -> bytes:
        """Item ``i``'s encoded bytes (for the fingerprint)."""
        raise NotImplementedError

    def sample(self, i: int) -> tuple[torch.Tensor, int] | BadImage:
        """Item ``i`` transformed, or a :class:`BadImage` naming it (never raises for a bad file)."""
        try:
            return self.transform(self._read(self.rows[i])), int(self.labels[i])
        except DataError as e:
            return BadImage(self.where(i), getattr(e, "why", str(e)))
        except Exception as e:  # any failure on one file is reported with its name, not a traceback
            return BadImage(self.where(i), f"{type(e).__name__}: {e}")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        item = self.sample(i)
        if isinstance(item, BadImage):
            raise item.error()
        return item

    def subset(self, keep: np.ndarray) -> ImageDataset:
        """A copy holding items ``keep`` (positions in this dataset), sharing the source."""
        other = copy.copy(self)
        other.rows, other.labels = self.rows[keep], self.labels[keep]
        return other

    def with_transform(self, transform: Callable[[Any], torch.Tensor]) -> ImageDataset:
        """A copy that applies ``transform`` (e.g. ``train_transform(preset, contract)``) to the decoded image."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def with_bad_images(self, policy: BadImagePolicy) -> ImageDataset:
        """A copy whose loader skips (``"skip"``, counted) or stops at (``"error"``) an unreadable image."""
        if policy not in ("error", "skip"):
            raise DataError(f"on_bad_image must be 'error' or 'skip', not {policy!r}.")
        other = copy.copy(self)
        other.on_bad_image = policy
        return other

    @property
    def evaluates(self) -> bool:
        return isinstance(self.transform, EvalTransform)


class ArrayImages(ImageDataset):
    """In-memory uint8 images (N x H x W grayscale or N x H x W x 3): the small built-ins and IDX directories."""

    in_memory = True

    def __init__(self, images: np.ndarray, labels: np.ndarray, contract: Preprocessing, name: str) -> None:
        super().__init__(np.arange(len(images)), labels, contract)
        self.images, self.name = images, name

    def _read(self, row: Any) -> np.ndarray:
        return self.images[row]

    def where(self, i: int) -> str:
        return f"{self.name}[{self.rows[i]}]"

    def batch(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``positions`` evaluation-transformed at once (equal to stacking ``self[i]``; needs ``evaluates``)."""
        if not self.evaluates:
            raise DataError("ArrayImages.batch applies the contract's transform only; use dataset[i] to augment.")
        rows = self.rows[positions]
        return self.transform.batch(self.images[rows]), torch.from_numpy(self.labels[positions])  # type: ignore[attr-defined]


class FileImages(ImageDataset):
    """Image files below ``root`` (relative POSIX paths stored as bytes: no per-file Python objects to copy)."""

    def __init__(self, root: Path, paths: np.ndarray, sizes: np.ndarray, labels: np.ndarray, contract: Preprocessing):
        super().__init__(np.arange(len(paths)), labels, contract)
        self.root, self.paths, self.sizes = root, paths, sizes

    def path(self, i: int) -> Path:
        return self.root / os.fsdecode(self.paths[self.rows[i]])

    def _read(self, row: Any) -> Image.Image:
        return load_image(self.root / os.fsdecode(self.paths[row]), draft=self.contract.resize_size)

    def where(self, i: int) -> str:
        return str(self.path(i))

    def key(self, i: int) -> str:
        name = self.paths[self.rows[i]].decode("utf-8", "backslashreplace")  # a non-UTF-8 file name hashes too
        return f"{name}\0{self.sizes[self.rows[i]]}"

    def raw(self, i: int) -> bytes:
        path = self.path(i)
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IMAGE_BYTES:  # it changed since the listing
                raise ValueError("no longer a regular file of at most MAX_IMAGE_BYTES")
            return path.read_bytes()
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image {path} ({e}); remove or replace the file.") from e


class HFImages(ImageDataset):
    """Rows of a memory-mapped Hugging Face ``Dataset`` whose image column is cast to undecoded bytes."""

    def __init__(self, table: Any, column: str, split: str, root: Path, labels: np.ndarray, contract: Preprocessing):
        super().__init__(np.arange(len(labels)), labels, contract)
        self.table, self.column, self.split, self.root = table, column, split, root
        self.arrow_bytes = sum(os.path.getsize(f["filename"]) for f in table.cache_files)

    def _bytes(self, row: int) -> bytes:
        record = self.table[int(row)][self.column]
        if record["bytes"] is not None:
            return record["bytes"]
        try:
            return read_regular(record["path"], limit=MAX_IMAGE_BYTES)  # a path may name a FIFO or /dev/zero
        except (OSError, ValueError, TypeError) as e:
            what = getattr(e, "strerror", None) or e
            raise DataError(f"cannot read image {record['path']!r} ({what}); remove it from the dataset.") from e

    def _read(self, row: Any) -> Image.Image:
        where = f"{self.split}[{row}] of {self.root}"
        return load_image(self._bytes(row), draft=self.contract.resize_size, where=where)

    def where(self, i: int) -> str:
        return f"{self.split}[{self.rows[i]}] of {self.root}"

    def key(self, i: int) -> str:
        return f"{self.split}[{self.rows[i]}]\0{self.arrow_bytes}"

    def raw(self, i: int) -> bytes:
        return self._bytes(self.rows[i])


class TarImages(ImageDataset):
    """Samples of WebDataset tar shards, read by offset (``rows`` index :attr:`index`: shard, offset, size)."""

    def __init__(self, shards: list[Path], index: np.ndarray, keys: np.ndarray, labels: np.ndarray, contract):
        super().__init__(np.arange(len(labels)), labels, contract)
        self.shards, self.index, self.keys = shards, index, keys

    def _bytes(self, row: int) -> bytes:
        shard, offset, size = (int(v) for v in self.index[row])
        with open(self.shards[shard], "rb") as f:
            f.seek(offset)
            return f.read(size)

    def _read(self, row: Any) -> Image.Image:
        return load_image(self._bytes(row), draft=self.contract.resize_size, where=self._where_row(row))

    def key(self, i: int) -> str:
        row = self.rows[i]
        return f"{self.shards[int(self.index[row][0])].name}:{self.keys[row].decode()}\0{self.index[row][2]}"

    def raw(self, i: int) -> bytes:
        return self._bytes(self.rows[i])

    def _where_row(self, row: int) -> str:
        return f"{self.shards[int(self.index[row][0])]}:{self.keys[row].decode()}"

    def where(self, i: int) -> str:
        return self._where_row(self.rows[i])


# --- listing ----------------------------------------------------------------------------------------------------
def visible(name: str) -> bool:
    return not name.startswith(".") and name != "__MACOSX"


def subdirs(directory: Path) -> list[Path]:
    """Visible sub-directories of ``directory``, including symbolic links to directories (see :func:`dir_links`)."""
    return sorted(p for p in directory.iterdir() if visible(p.name) and p.is_dir())


def dir_links(directory: Path) -> list[Path]:
    """Visible entries of ``directory`` that are symbolic links to directories (never followed by a listing)."""
    return sorted(p for p in directory.iterdir() if visible(p.name) and p.is_symlink() and p.is_dir())


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[tuple[Path, int, tuple[int, int]]]:
    """Regular files (or links to them) below ``folder`` ending in ``suffixes``, sorted, with their sizes and
    (device, inode).

    Written here because ``os.walk(followlinks=True)`` loops forever on a directory symlink cycle and lists FIFOs,
    sockets and devices, whose reading would hang. Symbolic links to directories are not followed (a link to ``/``
    would walk the whole disk), each real directory is entered once (by device and inode), only ``stat.S_ISREG``
    files are read (a ``.png`` that is a FIFO or a link to ``/dev/zero`` is not an image), and a file larger than
    ``MAX_IMAGE_BYTES`` is refused. A name with an image suffix that is not a regular file (a FIFO, a device, a
    link to one, a broken or looping link) is refused by name rather than skipped in silence.

    Raises:
        DataError: an image file is larger than ``MAX_IMAGE_BYTES``, or an image name is not a regular file.
    """
    seen: set[tuple[int, int]] = set()
    stack, found = [folder], []
    while stack:
        directory = stack.pop()
        try:
            st = directory.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if not visible(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.name.lower().endswith(suffixes) and not entry.is_dir():
                    st = entry.stat()
                    if not stat.S_ISREG(st.st_mode):
                        msg = (
                            f"{entry.path} is named like an image but is {_kind(st.st_mode)}, which lgdeploy never "
                            "reads (it could block or never end); remove it from the data directory."
                        )
                        raise DataError(msg)
                    if st.st_size > MAX_IMAGE_BYTES:
                        msg = (
                            f"{entry.path} is {st.st_size} bytes, more than an image file may be ({MAX_IMAGE_BYTES} "
                            "bytes); remove it from the data directory."
                        )
                        raise DataError(msg)
                    found.append((Path(entry.path), st.st_size, (st.st_dev, st.st_ino)))
            except OSError as e:  # a dangling link or a link loop is reported; a file that vanished is not data
                if entry.is_symlink() and entry.name.lower().endswith(suffixes):
                    msg = (
                        f"{entry.path} is a symbolic link that leads to no file ({e.strerror or e}); remove it or "
                        "point it at the image."
                    )
                    raise DataError(msg) from e
                continue
    return sorted(found)


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, for a message."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


class Listing(NamedTuple):
    """What a source holds, before any decode: its classes, and its splits (``val`` None: hold one out)."""

    classes: list[str]
    train: ImageDataset
    val: ImageDataset | None
    val_name: str | None


def _folder_split(
    directory: Path, root: Path, classes: list[str] | None, files_seen: dict[tuple[int, int], Path]
) -> tuple[list[str], list[Path], list[int], list[int]]:
    if links := dir_links(directory):
        msg = (
            f"class folder {links[0]} is a symbolic link to a directory, which lgdeploy does not follow (a link can "
            "lead anywhere, even to /); replace it with the folder itself (or a copy)."
        )
        raise DataError(msg)
    found = [p.name for p in subdirs(directory)]
    if classes is None and len(found) < 2:
        msg = (
            f"{directory} has {len(found)} class folder(s) ({', '.join(found) or 'none'}); an ImageFolder needs at "
            "least two sub-folders, one per class, with images inside."
        )
        raise DataError(msg)
    if classes is not None and set(found) != set(classes):
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        parts = [f"classes that training lacks ({', '.join(extra)})"] if extra else []
        parts += [f"no folder for training classes ({', '.join(missing)})"] if missing else []
        msg = (
            f"validation folder {directory} has {' and '.join(parts)}; give train and validation the same class "
            "folders, or remove the validation folder to hold out a stratified split."
        )
        raise DataError(msg)
    for name in found:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            msg = (
                f"class folder {directory / name!r} has a name that is not valid UTF-8, and class names travel in the "
                "manifest and the ONNX metadata as text; rename the folder."
            )
            raise DataError(msg) from None
    classes = found if classes is None else classes
    paths, sizes, labels = [], [], []
    for label, name in enumerate(classes):
        files = list_files(directory / name, IMAGE_EXTENSIONS)
        if not files:
            msg = (
                f"class folder {directory / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}); add images to it "
                "or remove it."
            )
            raise DataError(msg)
        for path, _size, identity in files:
            if identity in files_seen:
                msg = (
                    f"{path} and {files_seen[identity]} are the same file (a link); a dataset must hold each image "
                    "once, or it is counted twice and can land in both training and validation; remove one of them."
                )
                raise DataError(msg)
            files_seen[identity] = path
        paths += [f for f, _, _ in files]
        sizes += [s for _, s, _ in files]
        labels += [label] * len(files)
    return classes, [p.relative_to(root) for p in paths], sizes, labels


VAL_DIRS = ("val", "validation", "test")


def imagefolder(root: Path, contract: Preprocessing) -> Listing:
    """An ImageFolder, with its ``train``/``val`` (or ``validation``, ``test``) sub-directories when it has them."""
    names = {p.name for p in subdirs(root)}
    layout = [("train", root / "train")] if "train" in names and names <= {"train", *VAL_DIRS} else [("train", root)]
    val_name = next((n for n in VAL_DIRS if n in names), None) if layout[0][1] != root else None
    if val_name:
        layout.append(("val", root / val_name))
    classes: list[str] | None = None
    sets: dict[str, FileImages] = {}
    files_seen: dict[tuple[int, int], Path] = {}
    for split, directory in layout:
        classes, paths, sizes, labels = _folder_split(directory, root, classes, files_seen)
        rel = np.array([os.fsencode(p.as_posix()) for p in paths], dtype=bytes)  # any file name the OS allows
        sets[split] = FileImages(root, rel, np.array(sizes, np.int64), np.array(labels, np.int64), contract)
    assert classes is not None
    return Listing(classes, sets["train"], sets.get("val"), val_name)


HF_VAL_SPLITS = ("validation", "val", "valid", "test")


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


def huggingface(root: Path, contract: Preprocessing, image_column: str | None, label_column: str | None) -> Listing:
    """A ``save_to_disk`` directory (memory-mapped Arrow): a Dataset (split later) or a DatasetDict with ``train``."""
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
    sets = {}
    for split, name in (("train", "train"), ("val", val_name)):
        if name is None:
            continue
        table = splits[name].select_columns([image_col]).cast_column(image_col, datasets.Image(decode=False))
        sets[split] = HFImages(table, image_col, name, root, np.array(labels[name], dtype=np.int64), contract)
    return Listing(classes, sets["train"], sets.get("val"), val_name)


def _read_classes(directory: Path) -> list[str] | None:
    """``classes.txt`` (one name a line, line i = class i) or ``classes.json`` (a list, or a name -> index map)."""
    for name in ("classes.txt", "classes.json"):
        path = directory / name
        if not path.is_file():
            continue
        try:
            text = read_regular(path, limit=MAX_CLASSES_BYTES).decode("utf-8")
            if name == "classes.txt":
                return [line.strip() for line in text.splitlines() if line.strip()]
            value = json.loads(text)
            if isinstance(value, dict) and all(_index_like(v) for v in value.values()):
                return [n for n, _ in sorted(value.items(), key=lambda kv: int(kv[1]))]
            if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
                return [str(v) for v in value]
        except (OSError, ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            why = "nested too deeply" if isinstance(e, RecursionError) else e
            raise DataError(f"cannot read {path} ({why}); write it as UTF-8 text (one class name a line).") from e
        raise DataError(f"{path} is neither a list of names nor a name -> index map; fix it.")
    return None


MAX_CLASSES_BYTES = 16 << 20


def _index_like(value: Any) -> bool:
    """A class index in classes.json: an integer, or a string of digits."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isdigit())


MAX_CLS_BYTES = 4096  # a class entry is an index or a name


def _index_shard(path: Path) -> tuple[list[tuple[int, int]], list[str], list[str]]:
    """(offset, size) of each sample's image, its key and its raw ``cls`` text, in the order of the shard.

    Our own tar index (tarfile reads only the headers): webdataset streams shards sequentially, which ties the order
    to the worker count and cannot resume mid-epoch; offsets make the shards a map-style dataset. Sample keys and
    extensions follow webdataset's rule (``base_plus_ext``: the key ends at the first dot of the file name).
    """
    from webdataset.tariterators import base_plus_ext

    images: dict[str, tuple[int, int]] = {}
    labels: dict[str, str] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = base_plus_ext(member.name)
                if key is None or not visible(Path(key).name):
                    continue
                if key not in images and key not in labels:
                    order.append(key)
                ext = ext.lower()
                if ext == "cls":
                    if member.size > MAX_CLS_BYTES:
                        msg = (
                            f"{member.name} in shard {path} is {member.size} bytes, more than a class entry may be "
                            f"({MAX_CLS_BYTES} bytes: an index or a name); write the shard with short .cls entries."
                        )
                        raise DataError(msg)
                    labels[key] = tar.extractfile(member).read().decode().strip()  # type: ignore[union-attr]
                elif "." + ext in IMAGE_EXTENSIONS and key not in images:
                    if member.size > MAX_IMAGE_BYTES:
                        msg = (
                            f"{member.name} in shard {path} is {member.size} bytes, more than an image may be "
                            f"({MAX_IMAGE_BYTES} bytes); write the shard without it."
                        )
                        raise DataError(msg)
                    images[key] = (member.offset_data, member.size)
    except (OSError, tarfile.TarError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the tar shard {path} ({e}); write the shard again (plain .tar, no gzip).") from e
    for key in order:
        if key not in images or key not in labels:
            missing = "an image" if key not in images else "a cls entry"
            msg = f"sample {key} of shard {path} lacks {missing}; each sample needs an image and a .cls class entry."
            raise DataError(msg)
    return [images[k] for k in order], order, [labels[k] for k in order]


def webdataset_shards(
    shards: dict[str, list[Path]], contract: Preprocessing, classes_dir: Path, val_name: str | None
) -> Listing:
    """WebDataset tar shards per split ("train", optionally "val"); labels from each sample's ``.cls`` entry.

    The class rule: with ``classes.txt``/``classes.json`` in ``classes_dir`` its names are the classes, and a ``cls``
    holds an index into them or a name among them; without, integer ``cls`` values are the class indices (names
    "0".."max") and any other text makes the class names (sorted, index = position).
    """
    names = _read_classes(classes_dir)
    raw: dict[str, tuple[np.ndarray, list[str], list[str]]] = {}
    for split, paths in shards.items():
        index, keys, labels = [], [], []
        for s, path in enumerate(paths):
            spans, shard_keys, shard_labels = _index_shard(path)
            index += [(s, off, size) for off, size in spans]
            keys += shard_keys
            labels += shard_labels
        raw[split] = (np.array(index, dtype=np.int64).reshape(-1, 3), keys, labels)
    values = [v for _, _, labels in raw.values() for v in labels]
    if not raw["train"][2]:
        msg = f"the training shards in {classes_dir} hold no samples; write samples (key.jpg + key.cls) into them."
        raise DataError(msg)
    numeric = all(v.lstrip("-").isdigit() for v in values)
    if names is None:
        names = [str(i) for i in range(max(int(v) for v in values) + 1)] if numeric else sorted(set(values))
    lookup = {n: i for i, n in enumerate(names)}
    sets = {}
    for split, (index, keys, labels) in raw.items():
        ids = [int(v) if v.lstrip("-").isdigit() else lookup.get(v, -1) for v in labels]
        if bad := [(k, v) for k, v, i in zip(keys, labels, ids, strict=True) if not 0 <= i < len(names)]:
            msg = (
                f"{len(bad)} {split} samples have a cls outside the {len(names)} classes (e.g. {bad[0][0]}: "
                f"{bad[0][1]!r}); fix the .cls entries or list every class in {classes_dir / 'classes.txt'}."
            )
            raise DataError(msg)
        key_bytes = np.array([k.encode() for k in keys], dtype=bytes)
        sets[split] = TarImages(shards[split], index, key_bytes, np.array(ids, dtype=np.int64), contract)
    if len(names) < 2:
        raise DataError(f"the shards in {classes_dir} hold {len(names)} class(es); a classifier needs at least two.")
    return Listing(names, sets["train"], sets.get("val"), val_name)
