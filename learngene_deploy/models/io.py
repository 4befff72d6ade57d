"""Model files: a plain timm ViT as ``.safetensors`` with its architecture in the metadata.

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


def save_model(path: str | Path, model: nn.Module, arch: ArchSpec, info: dict[str, Any] | None = None) -> Path:
    """Save a plain timm ViT as ``.safetensors`` with its architecture (and ``info``) in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    header = {"format": MODEL_FORMAT, "arch": json.dumps(arch.to_dict()), "info": json.dumps(info or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a timm ViT saved by ``save_model``."""
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
    model = build_vit(ArchSpec.from_dict(json.loads(header["arch"])))
    with torch.no_grad():
        model.load_state_dict(state)
    return model
