"""Fixtures shared by the backend conformance tests: one tiny ViT, its ONNX export and real digit images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learngene_deploy.models.vit import ArchSpec

TINY = ArchSpec(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=64, depth=2, num_heads=2)


def digit_images(n: int, *, offset: int = 0) -> np.ndarray:
    """``n`` sklearn digits (real 8x8 scans) upsampled to 3 x 32 x 32 float32, roughly zero-mean."""
    from sklearn.datasets import load_digits

    digits = load_digits().images[offset : offset + n].astype(np.float32) / 16.0
    big = np.kron(digits, np.ones((1, 4, 4), dtype=np.float32))
    return np.repeat((big[:, None] - 0.3) / 0.4, 3, axis=1)


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    from learngene_deploy.models.vit import build_vit

    torch.manual_seed(0)
    return build_vit(TINY).eval()


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory) -> Path:
    """The tiny model exported (dynamo, opset 18, static batch 1) and simplified, as the pipeline does."""
    from learngene_deploy.export import simplify, torch2onnx

    out = tmp_path_factory.mktemp("onnx")
    exported = torch2onnx(tiny_model, input_shape=(1, 3, 32, 32), out_path=out / "exported.onnx")
    return simplify(exported, out / "model.onnx").path


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """Validation images for the comparisons."""
    return digit_images(64)


@pytest.fixture(scope="session")
def calibration_images() -> np.ndarray:
    """Calibration images, disjoint from the validation images."""
    return digit_images(64, offset=1000)


@pytest.fixture(scope="session")
def reference_logits(tiny_model, images) -> np.ndarray:
    """PyTorch logits of the tiny model on the validation images (computed once)."""
    from learngene_deploy.gates import torch_logits

    return torch_logits(tiny_model)(images)


@pytest.fixture(scope="session")
def other_logits(images) -> np.ndarray:
    """Logits of a different random ViT of the same shape: a negative control no tolerance may accept."""
    import torch

    from learngene_deploy.gates import torch_logits
    from learngene_deploy.models.vit import build_vit

    torch.manual_seed(1)
    return torch_logits(build_vit(TINY).eval())(images)
