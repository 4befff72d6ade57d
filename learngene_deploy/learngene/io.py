"""Learngene files: ONE ``.safetensors`` file holding a weight generator's tensors plus JSON metadata.

The safetensors header carries three string entries: ``format`` (``"lgdeploy-learngene"``), ``format_version`` and
``learngene``, a JSON document::

    {"format_version": 1, "method": "ldr", "generator": {... WeightGenerator.metadata() ...},
     "arch": {... training-time ArchSpec ...}, "sizes": {... supported sizes ...},
     "training": {"data": {..., "fingerprint": ...}, "teacher": ..., "seed": ..., "steps": ..., "wall_time_s": ...,
                  "augmentation": {... the recipe's Preset ...}},
     "preprocessing": {... Preprocessing.to_dict(): size, resize/crop, interpolation, mean/std ...},
     "classes": ["T-shirt/top", ...],
     "accuracy": [{"depth": 4, "genes": 2, "params": 123456, "top1": 0.83}, ...],
     "tensors_sha256": "...", "toolkit_version": "..."}

A file rebuilds its generator from this metadata alone: ``method`` selects the ``WeightGenerator`` subclass whose
``method`` class attribute matches (its module is imported from ``METHOD_MODULES``), ``from_metadata`` builds the
empty generator and the tensors are loaded strictly into it. Nothing is ever pickled.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from learngene_deploy._fs import atomic_path
from learngene_deploy._schema import SchemaError, check_depth, load_dataclass, spec
from learngene_deploy._version import __version__
from learngene_deploy.errors import LearngeneError
from learngene_deploy.names import METHOD_MODULES

if TYPE_CHECKING:  # torch is imported where tensors are touched: `read_metadata` (select, info) stays light
    import torch

    from learngene_deploy.data.contract import Preprocessing
    from learngene_deploy.learngene.base import WeightGenerator

FORMAT = "lgdeploy-learngene"
FORMAT_VERSION = 1

# --- the metadata's schema: types and ranges, checked before anything is built or allocated -----------------------
MAX_DEPTH = 1024  # transformer blocks
MAX_WIDTH = 16384  # token width
MAX_GENES = 1024  # learngenes of an LDR file
MAX_SIZES = 100_000  # rows of the accuracy table, sizes of the grid
MAX_CLASSES = 100_000  # class names


@dataclass(frozen=True, kw_only=True)
class ArchMeta:
    """A training-time architecture (``ArchSpec``) as a learngene file records it."""

    img_size: int = spec("input height = width, pixels", ge=1, le=4096)
    patch_size: int = spec("patch size, pixels", ge=1, le=4096)
    in_chans: int = spec("input channels", ge=1, le=64)
    num_classes: int = spec("classifier outputs", ge=1, le=100_000)
    embed_dim: int = spec("token width", ge=1, le=MAX_WIDTH)
    depth: int = spec("transformer blocks", ge=1, le=MAX_DEPTH)
    num_heads: int = spec("attention heads", ge=1, le=MAX_WIDTH)
    mlp_ratio: float = spec("MLP hidden width / token width", default=4.0, gt=0, le=64)
    layout: Literal["avg", "cls"] = spec("token layout", default="avg")


@dataclass(frozen=True, kw_only=True)
class DepthRange:
    min: int = spec("smallest depth", default=1, ge=1, le=MAX_DEPTH)
    max: int | None = spec("largest depth (null: the training depth)", default=None, ge=1, le=MAX_DEPTH)


@dataclass(frozen=True, kw_only=True)
class SizesMeta:
    """The sizes a learngene supports."""

    depth: DepthRange | None = spec("depth range", default=None)
    genes: list[int] | None = spec("LDR learngene counts", default=None, ge=1, le=MAX_GENES, max_items=MAX_GENES)
    width: list[int] | None = spec("LeTs widths", default=None, ge=1, le=MAX_WIDTH, max_items=1024)
    strategy: list[str] | None = spec("LeTs row-selection strategies", default=None, max_items=64)


@dataclass(frozen=True, kw_only=True)
class AccuracyRow:
    """One size of the accuracy table."""

    depth: int = spec("depth", ge=1, le=MAX_DEPTH)
    genes: int | None = spec("LDR learngenes", default=None, ge=1, le=MAX_GENES)
    width: int | None = spec("LeTs width", default=None, ge=1, le=MAX_WIDTH)
    strategy: str | None = spec("LeTs row selection", default=None)
    params: int | None = spec("parameters", default=None, ge=0)
    top1: float | None = spec("direct top-1 accuracy, 0..1", default=None, ge=0, le=1)


@dataclass(frozen=True, kw_only=True)
class LdrGeneratorMeta:
    """An LDR generator's settings."""

    arch: ArchMeta = spec("training-time architecture")
    genes: int = spec("learngenes", ge=1, le=MAX_GENES)
    basis: str = spec("polynomial basis")
    offset: int = spec("index offset of the basis", ge=0, le=MAX_DEPTH)
    position: str = spec("layer position rule", default="paper")


@dataclass(frozen=True, kw_only=True)
class LetsGeneratorMeta:
    """A LeTs generator's settings."""

    img_size: int = spec("input height = width, pixels", ge=1, le=4096)
    patch_size: int = spec("patch size, pixels", ge=1, le=4096)
    in_chans: int = spec("input channels", ge=1, le=64)
    num_classes: int = spec("classifier outputs", ge=1, le=100_000)
    head_dim: int = spec("width of one attention head", ge=1, le=MAX_WIDTH)
    learngene_depth: int = spec("learngene blocks", ge=1, le=MAX_DEPTH)
    learngene_dim: int = spec("learngene width", ge=1, le=MAX_WIDTH)
    aux_depth: int = spec("Aux-Net blocks", ge=1, le=MAX_DEPTH)
    aux_dim: int = spec("Aux-Net width", ge=1, le=MAX_WIDTH)
    mlp_ratio: float = spec("MLP hidden width / token width", default=4.0, gt=0, le=64)
    tie_rows: bool = spec("share width-transformation rows", default=True)


@dataclass(frozen=True, kw_only=True)
class LearngeneMeta:
    """The JSON metadata of a learngene file."""

    format_version: int = spec("metadata format version", ge=1, le=FORMAT_VERSION)
    method: str = spec("learngene method", choices=("ldr", "lets"))
    generator: dict[str, Any] = spec("the weight generator's settings (checked by building it without memory)")
    arch: ArchMeta = spec("training-time architecture")
    sizes: SizesMeta | None = spec("supported sizes", default=None)
    training: dict[str, Any] = spec("provenance", default=None)
    accuracy: list[AccuracyRow] = spec("accuracy table", default=None, max_items=MAX_SIZES)
    preprocessing: dict[str, Any] | None = spec("input contract (Preprocessing.to_dict)", default=None)
    classes: list[str] | None = spec("class names in output order", default=None, max_items=MAX_CLASSES)
    tensors_sha256: str | None = spec("sha256 of the tensors", default=None, pattern=r"[0-9a-f]{64}")
    toolkit_version: str | None = spec("version of lgdeploy that wrote it", default=None)


def check_metadata(meta: Any, path: Path) -> None:
    """Validate learngene metadata (types, ranges, sizes and nesting) before anything is built from it.

    Raises:
        LearngeneError: one sentence naming the file, the field and the valid range.
    """
    if isinstance(meta, dict) and meta.get("method") not in METHOD_MODULES:
        method = meta.get("method")
        msg = f"unknown learngene method {method!r}; valid methods are {', '.join(sorted(METHOD_MODULES))}."
        raise LearngeneError(msg)
    try:
        if not isinstance(meta, dict):
            raise SchemaError("", f"the metadata must be a JSON object, not {type(meta).__name__}")
        check_depth(meta)
        checked = load_dataclass(LearngeneMeta, meta)
        generator_schema = LdrGeneratorMeta if checked.method == "ldr" else LetsGeneratorMeta
        generator = load_dataclass(generator_schema, checked.generator, prefix="generator.")
        if isinstance(generator, LdrGeneratorMeta):  # a size may use at most the learngenes the file holds
            claimed = [("sizes.genes", g) for g in ((checked.sizes.genes if checked.sizes else None) or [])]
            claimed += [(f"accuracy[{i}].genes", r.genes) for i, r in enumerate(checked.accuracy or []) if r.genes]
            for key, genes in claimed:
                if genes > generator.genes:
                    msg = f"'{key}' is {genes}, more than the {generator.genes} learngenes of 'generator.genes'"
                    raise SchemaError(key, msg)
        grid = checked.sizes
        if grid is not None and grid.depth is not None:
            depths = (grid.depth.max or checked.arch.depth) - grid.depth.min + 1
            count = depths * max(len(grid.genes or [1]), len(grid.width or [1]))
            if count > MAX_SIZES:
                raise SchemaError("sizes", f"'sizes' describes {count} sizes, more than the {MAX_SIZES} allowed")
    except SchemaError as e:
        msg = f"{path} has incomplete or malformed learngene metadata: {e}; re-create the file with lgdeploy."
        raise LearngeneError(msg) from e


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def generator_class(method: str) -> type[WeightGenerator]:
    """The WeightGenerator subclass registered for ``method`` (``"ldr"``, ``"lets"``)."""
    from learngene_deploy.learngene.base import WeightGenerator

    if method not in METHOD_MODULES:
        msg = f"unknown learngene method {method!r}; valid methods are {', '.join(sorted(METHOD_MODULES))}."
        raise LearngeneError(msg)
    importlib.import_module(METHOD_MODULES[method])
    for sub in _subclasses(WeightGenerator):
        if getattr(sub, "method", None) == method:
            return sub
    msg = f"module {METHOD_MODULES[method]} defines no WeightGenerator with method = {method!r}; reinstall the package."
    raise LearngeneError(msg)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes of ``tensors`` in sorted-name order."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def save_learngene(
    path: str | Path,
    generator: WeightGenerator,
    *,
    training: dict[str, Any] | None = None,
    accuracy: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``generator`` and its metadata to one ``.safetensors`` file (atomically: temp file, then rename).

    Args:
        path: destination file.
        generator: the trained weight generator.
        training: provenance (data fingerprint, teacher, seed, steps, wall time, recipe ...).
        accuracy: accuracy-table rows, one per size (size keys plus ``top1``, ``params``).

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in generator.state_dict().items()}
    sizes = generator.supported_sizes() if hasattr(generator, "supported_sizes") else None
    meta = {
        "format_version": FORMAT_VERSION,
        "method": generator.method,
        "generator": generator.metadata(),
        "arch": generator.train_arch.to_dict(),
        "sizes": sizes,
        "training": training or {},
        # the input contract and the class names in output order, machine-readable (from the training data)
        "preprocessing": (training or {}).get("data", {}).get("preprocessing"),
        "classes": (training or {}).get("data", {}).get("classes"),
        "accuracy": accuracy or [],
        "tensors_sha256": tensors_digest(tensors),
        "toolkit_version": __version__,
    }
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "learngene": json.dumps(meta)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip container, and a pickle stream (protocol >= 2)


def unreadable_message(path: str | Path, error: BaseException, what: str = "learngene") -> str:
    """One sentence for a file that safetensors cannot open: a pickle/PyTorch file is refused as such.

    Only called after opening failed, so a safetensors file whose header length happens to start with 0x80
    is never mistaken for pickle.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head.startswith(PICKLE_MAGIC):
        return (
            f"{path} is a PyTorch/pickle file, but only .safetensors {what} files written by lgdeploy are accepted "
            "(loading pickle can run arbitrary code); pass the .safetensors file lgdeploy wrote."
        )
    return (
        f"{path} is not a readable safetensors file ({error}); it is truncated or corrupt, re-create or re-download it."
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a learngene file, without loading its tensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        msg = f"learngene file {path} {what}; pass the path of a .safetensors file written by lgdeploy."
        raise LearngeneError(msg)
    try:
        with safe_open(str(path), framework="numpy") as f:  # the header only; "pt" would import torch
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise LearngeneError(unreadable_message(path, e)) from e
    if header.get("format") != FORMAT or "learngene" not in header:
        msg = (
            f"{path} is a safetensors file but not a learngene (no '{FORMAT}' metadata); pass one written by lgdeploy."
        )
        raise LearngeneError(msg)
    try:
        meta = json.loads(header["learngene"])
        version = int(meta["format_version"])
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        msg = f"{path} has malformed learngene metadata ({type(e).__name__}: {e}); re-create the file."
        raise LearngeneError(msg) from e
    if version > FORMAT_VERSION:
        msg = (
            f"{path} uses learngene format version {version} but this lgdeploy reads up to {FORMAT_VERSION}; "
            "upgrade learngene-deploy."
        )
        raise LearngeneError(msg)
    missing = [k for k in ("method", "generator", "arch") if k not in meta]
    if missing:
        msg = f"{path} metadata lacks {', '.join(missing)}; re-create the file with lgdeploy."
        raise LearngeneError(msg)
    check_metadata(meta, path)
    return meta


def _check_shapes(path: Path, method: str, want: dict[str, tuple[int, ...]]) -> None:
    """The tensors the metadata claims must be the file's tensors, name for name and shape for shape (read from the
    safetensors header, nothing loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - safe_open is no dict
    except (SafetensorError, OSError, ValueError) as e:
        raise LearngeneError(unreadable_message(path, e)) from e
    if want != have:
        problems = sorted(set(want) ^ set(have)) + sorted(k for k in set(want) & set(have) if want[k] != have[k])
        msg = (
            f"{path} tensors do not match its {method} metadata ({len(problems)} mismatched, e.g. "
            f"{', '.join(problems[:3])}); the file was edited or written by an incompatible version, re-create it."
        )
        raise LearngeneError(msg)


def load_learngene(path: str | Path, *, device: str | torch.device = "cpu") -> WeightGenerator:
    """Rebuild the weight generator stored in a learngene file from its metadata alone.

    Raises:
        LearngeneError: the file is missing, truncated or corrupt, or its tensors do not match its metadata.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    cls = generator_class(meta["method"])
    with torch.device("meta"):  # shapes only, no memory: a file claiming a huge model is refused before allocation
        try:
            shapes = {k: tuple(v.shape) for k, v in cls.from_metadata(meta["generator"]).state_dict().items()}
        except (TypeError, ValueError, RuntimeError, NotImplementedError) as e:
            msg = f"{path} has learngene metadata that builds no {meta['method']} generator ({e}); re-create the file."
            raise LearngeneError(msg) from e
    _check_shapes(path, meta["method"], shapes)
    generator = cls.from_metadata(meta["generator"])
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        msg = f"{path} has unreadable tensor data ({e}); it is truncated or corrupt, re-create or re-download it."
        raise LearngeneError(msg) from e
    expected = meta.get("tensors_sha256")
    if expected is not None and tensors_digest(tensors) != expected:
        msg = f"{path} tensor data does not match its recorded checksum; the file is corrupt, re-create or re-fetch it."
        raise LearngeneError(msg)
    want = {k: tuple(v.shape) for k, v in generator.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in tensors.items()}
    if want != have:
        problems = sorted(set(want) ^ set(have)) + sorted(k for k in set(want) & set(have) if want[k] != have[k])
        msg = (
            f"{path} tensors do not match its {meta['method']} metadata ({len(problems)} mismatched, e.g. "
            f"{', '.join(problems[:3])}); the file was edited or written by an incompatible version, re-create it."
        )
        raise LearngeneError(msg)
    generator.load_state_dict(tensors, strict=True)
    return generator.to(device)


LEGACY_GRAYSCALE_DATA = ("digits", "fashion-mnist", "idx-directory")


def learngene_contract(meta: dict[str, Any]) -> Preprocessing:
    """The preprocessing a learngene was trained with: its recorded contract or, for files written before contracts
    were recorded, the one its training data implied (grayscale 0.5/0.5 for the built-ins, DeiT's otherwise)."""
    from learngene_deploy.data.contract import Preprocessing

    record = meta.get("preprocessing") or (meta.get("training") or {}).get("data", {}).get("preprocessing")
    if record:
        return Preprocessing.from_dict(record)
    img_size = int(meta["arch"]["img_size"])
    data_name = (meta.get("training") or {}).get("data", {}).get("name")
    if data_name in LEGACY_GRAYSCALE_DATA or data_name is None:
        return Preprocessing.grayscale_builtin(img_size)
    return Preprocessing.imagenet(img_size)


def learngene_classes(meta: dict[str, Any]) -> list[str]:
    """Class names of a learngene's head in output order: recorded, or those of the built-in it was trained on."""
    data = (meta.get("training") or {}).get("data") or {}
    recorded = meta.get("classes") or data.get("classes")
    if recorded:
        return [str(c) for c in recorded]
    if data.get("name") in ("digits", "fashion-mnist"):
        from learngene_deploy.data.splits import FASHION_MNIST_CLASSES

        return list(FASHION_MNIST_CLASSES) if data["name"] == "fashion-mnist" else [str(i) for i in range(10)]
    return []
