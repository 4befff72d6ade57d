"""What a build ships when its compile is left to the target: the status, and the gate and calibration sets.

Kept apart from :mod:`~learngene_deploy.pipeline.stages` (which writes them) and
:mod:`~learngene_deploy.pipeline.deferred` (which reads them on the target), so that neither imports the other.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

AWAITING_COMPILE = "awaiting-compile"
GATES_FILE = "gates.npz"  # the target's gate set: images (float16), PyTorch logits of exactly those, labels
CALIBRATION_FILE = "calibration.npz"  # INT8 only: fine-tune (training) images and labels, never the gate images


def defer(ctx: Any, profile: Any, reason: str) -> dict[str, Any]:
    """Write the gate set (and INT8 calibration set) into the artifact; the manifest's ``deferred`` record.

    Images are stored as float16 (half the bytes of float32 at 224 px) and the reference logits are computed on
    exactly the stored values, so the target compares like with like.
    """
    gates = ctx.gates
    images = gates.x_val.astype(np.float16)
    exact = images.astype(np.float32)
    np.savez(ctx.root / GATES_FILE, images=images, logits=ctx.reference(exact), labels=gates.y_val)
    record: dict[str, Any] = {
        "reason": reason,
        "runtime": dataclasses.asdict(profile.runtime),
        "gates": {"file": GATES_FILE, "images": len(images), "reference": "pytorch", "dtype": "float16"},
        "calibration": None,
        "completed": None,
    }
    if profile.runtime.precision == "int8" or profile.runtime.backend == "auto":
        y_cal = gates.y_cal if gates.y_cal is not None else np.zeros(len(gates.x_cal), np.int64)
        np.savez(ctx.root / CALIBRATION_FILE, images=gates.x_cal.astype(np.float16), labels=y_cal)
        record["calibration"] = {"file": CALIBRATION_FILE, "images": len(gates.x_cal), "source": "fine-tune data"}
    ctx.log(
        "compile",
        f"deferred ({reason}): model.onnx, {len(images)} gate images"
        + (f" and {len(gates.x_cal)} calibration images" if record["calibration"] else "")
        + " ship for `lgdeploy compile` on the target",
    )
    return record
