"""Distillation teachers: a learngene or model file of this project, or a timm model with local weights.

Nothing is downloaded at run time: a timm teacher is built with ``pretrained=False`` and loaded from a file the user
names, read with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from learngene_deploy.errors import ConfigError


def load_teacher(spec: str, *, checkpoint: str | Path | None = None, num_classes: int) -> nn.Module:
    """A distillation teacher: a learngene or model file of this project, or a timm model name plus a local checkpoint.

    Args:
        spec: path of a ``.safetensors`` file written by lgdeploy (a learngene is recomposed at its training size;
            a fine-tuned model is rebuilt from its metadata), or a timm model name.
        checkpoint: weights of the timm model (``.safetensors``, or a torch file read with ``weights_only=True``,
            optionally wrapped in ``{"model": ...}`` / ``{"state_dict": ...}``).
        num_classes: classes of the student; a timm teacher is built with this head size.
    """
    from learngene_deploy.learngene.io import FORMAT, load_learngene
    from learngene_deploy.models.io import load_model

    if Path(spec).is_file():
        from safetensors import SafetensorError, safe_open

        from learngene_deploy.learngene.io import unreadable_message

        try:
            with safe_open(spec, framework="pt") as f:
                is_learngene = (f.metadata() or {}).get("format") == FORMAT
        except (SafetensorError, OSError, ValueError) as e:
            raise ConfigError(unreadable_message(spec, e, what="learngene or model")) from e
        return load_learngene(spec).recompose() if is_learngene else load_model(spec)
    import timm

    if not timm.is_model(spec):
        msg = (
            f"teacher {spec!r} is neither a file nor a timm model name; pass a learngene/model file or e.g. 'resnet18'."
        )
        raise ConfigError(msg)
    if checkpoint is None or not Path(checkpoint).is_file():
        msg = (
            f"timm teacher {spec!r} needs its weights as a local file (--teacher-checkpoint), got {checkpoint!r}; "
            "nothing is downloaded at run time."
        )
        raise ConfigError(msg)
    teacher = timm.create_model(spec, pretrained=False, num_classes=num_classes)
    if str(checkpoint).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(checkpoint))
    else:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict", "state_dict_ema"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
    try:
        teacher.load_state_dict(state)
    except RuntimeError as e:
        msg = f"checkpoint {checkpoint} does not fit timm model {spec!r} with {num_classes} classes ({e}); check both."
        raise ConfigError(msg) from e
    return teacher
