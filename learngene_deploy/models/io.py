"""Model files: a plain timm ViT (or any timm model, e.g. a CNN teacher) as ``.safetensors`` with what rebuilds it.

A fine-tuned model rebuilds from its file alone (``load_model``), without pickle, so it can be shipped, compared or
serve as a distillation teacher. Model file I/O lives with the models rather than with fine-tuning so that loading a
teacher does not import the training code that in turn needs the teacher.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learngene_deploy._fs import atomic_path
from learngene_deploy.errors import LearngeneError
from learngene_deploy.models.vit import ArchSpec, build_vit

MODEL_FORMAT = "lgdeploy-model"
# What a non-ViT model file may pass to ``timm.create_model`` besides its name: nothing that loads or downloads.
TIMM_KWARGS = {"num_classes", "in_chans", "output_stride", "drop_path_rate", "drop_rate"}


def save_model(path: str | Path, model: nn.Module, arch: ArchSpec, info: dict[str, Any] | None = None) -> Path:
    """Save a plain timm ViT as ``.safetensors`` with its architecture (and ``info``) in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    header = {"format": MODEL_FORMAT, "arch": json.dumps(arch.to_dict()), "info": json.dumps(info or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def save_timm_model(
    path: str | Path, model: nn.Module, name: str, kwargs: dict[str, Any], info: dict[str, Any] | None = None
) -> Path:
    """Save any timm model (``timm.create_model(name, **kwargs)``) as ``.safetensors`` that ``load_model`` rebuilds."""
    from safetensors.torch import save_file

    path = Path(path)
    _check_timm(name, kwargs, path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    header = {
        "format": MODEL_FORMAT,
        "timm": json.dumps({"name": name, "kwargs": kwargs}),
        "info": json.dumps(info or {}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def _check_timm(name: Any, kwargs: Any, path: str | Path) -> None:
    """A timm model name and creation keywords that are safe to pass on (no pretrained download, no file paths)."""
    ok = isinstance(name, str) and isinstance(kwargs, dict) and set(kwargs) <= TIMM_KWARGS
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in kwargs.values())
    if not ok:
        msg = (
            f"{path}: the model's 'timm' metadata must name a timm model and only numeric keywords among "
            f"{sorted(TIMM_KWARGS)}, got {name!r} with {kwargs!r}; re-save it with lgdeploy."
        )
        raise LearngeneError(msg)


def read_model_info(path: str | Path) -> dict[str, Any]:
    """The ``info`` a model file records (its training provenance), without loading its tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        info = json.loads(header.get("info") or "{}")
    except (SafetensorError, OSError, ValueError) as e:
        from learngene_deploy.learngene.io import unreadable_message

        raise LearngeneError(unreadable_message(path, e, what="model")) from e
    return info if isinstance(info, dict) else {}


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a model saved by ``save_model`` (a timm ViT) or ``save_timm_model`` (any timm model)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        from learngene_deploy.learngene.io import unreadable_message

        raise LearngeneError(unreadable_message(path, e, what="model")) from e
    if header.get("format") != MODEL_FORMAT:
        msg = f"{path} is not a model file written by lgdeploy (no '{MODEL_FORMAT}' metadata); pass such a file."
        raise LearngeneError(msg)
    if "timm" in header:
        import timm

        try:
            spec = json.loads(header["timm"])
        except ValueError as e:
            raise LearngeneError(f"{path}: the model's 'timm' metadata is not JSON ({e}); re-save it.") from e
        name, kwargs = (spec.get("name"), spec.get("kwargs")) if isinstance(spec, dict) else (None, None)
        _check_timm(name, kwargs, path)
        if not timm.is_model(name):
            raise LearngeneError(f"{path} names timm model {name!r}, which this timm ({timm.__version__}) lacks.")
        model = timm.create_model(name, pretrained=False, **kwargs)
    else:
        model = build_vit(ArchSpec.from_dict(json.loads(header["arch"])))
    try:
        with torch.no_grad():
            model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:200]  # one line, however many tensors torch lists
        msg = f"{path}: its tensors do not fit the model its metadata describes ({detail}); re-save it."
        raise LearngeneError(msg) from e
    return model
