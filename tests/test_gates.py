"""Verification gates: logit comparison between stages and the INT8 accuracy-drop gate."""

from __future__ import annotations

import numpy as np
import pytest

from learngene_deploy.errors import ConfigError, VerificationError
from learngene_deploy.gates import (
    TOLERANCES,
    Tolerance,
    check,
    check_accuracy,
    compare,
    gate,
    torch_logits,
)
from learngene_deploy.models.vit import ArchSpec

ARCH = ArchSpec(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def models():
    """A tiny ViT, an exact copy, and a copy with one weight matrix perturbed."""
    import copy

    import torch

    from learngene_deploy.models.vit import build_vit

    torch.manual_seed(0)
    model = build_vit(ARCH).eval()
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.blocks[1].mlp.fc2.weight.add_(0.05 * torch.randn_like(perturbed.blocks[1].mlp.fc2.weight))
    return model, copy.deepcopy(model), perturbed


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((32, 3, 32, 32), dtype=np.float32)


def test_identical_models_pass_the_fp32_gate(models, images) -> None:
    model, copy_, _ = models
    result = check(torch_logits(model), torch_logits(copy_), images, reference="pytorch", candidate="copy")
    assert result.passed and result.failures == ()
    assert result.max_abs_diff == 0.0 and result.top1_agreement == 1.0 and result.cosine == pytest.approx(1.0)
    assert result.num_images == 32 and result.tolerance == TOLERANCES["fp32"]
    gate(result)  # does not raise
    assert result.to_dict()["passed"] is True


def test_perturbed_model_fails_with_a_one_sentence_message(models, images) -> None:
    model, _, perturbed = models
    result = check(torch_logits(model), torch_logits(perturbed), images, reference="pytorch", candidate="onnx")
    assert not result.passed
    assert any("max abs diff" in f for f in result.failures)
    with pytest.raises(VerificationError) as info:
        gate(result)
    message = str(info.value)
    assert message.startswith("onnx does not match pytorch on 32 images (max abs diff")
    assert message.count(". ") == 0 and message.endswith(".")


def test_each_limit_is_checked_and_none_skips_it() -> None:
    ref = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    cand = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 2.1]])  # first image flips its argmax
    strict = compare(ref, cand, reference="a", candidate="b", tolerance=Tolerance(0.01, 0.01, 1.0, 0.999))
    assert len(strict.failures) == 4
    assert strict.top1_agreement == 0.5
    lenient = compare(ref, cand, reference="a", candidate="b", tolerance=Tolerance(None, None, 0.5, None))
    assert lenient.passed


def test_shape_mismatch_is_always_fatal() -> None:
    with pytest.raises(VerificationError, match=r"shape \(2, 4\).*\(2, 3\)"):
        compare(np.zeros((2, 3)), np.zeros((2, 4)), reference="a", candidate="b", tolerance=Tolerance(None, None, None))


def test_int8_accuracy_gate() -> None:
    labels = np.arange(100) % 10
    onehot = np.eye(10)[labels]
    wrong = np.eye(10)[(labels + 1) % 10]
    fp32 = lambda x: onehot[: len(x)]  # noqa: E731 - stages are plain callables
    two_wrong = lambda x: np.concatenate([wrong[:2], onehot[2 : len(x)]])  # noqa: E731
    x = np.zeros((100, 3, 4, 4), dtype=np.float32)

    ok = check_accuracy(fp32, fp32, x, labels, reference="fp32", candidate="int8")
    assert ok.passed and ok.drop_points == 0.0 and ok.reference_accuracy == 1.0
    gate(ok)

    bad = check_accuracy(fp32, two_wrong, x, labels, reference="fp32", candidate="int8")
    assert bad.drop_points == pytest.approx(2.0) and not bad.passed
    with pytest.raises(VerificationError, match=r"a drop of 2\.00 points over the 1-point limit"):
        gate(bad)
    assert check_accuracy(fp32, two_wrong, x, labels, reference="a", candidate="b", max_drop_points=2.0).passed


def test_labels_must_match_images() -> None:
    with pytest.raises(ConfigError, match="one integer label per validation image"):
        check_accuracy(np.asarray, np.asarray, np.zeros((3, 1)), np.zeros(2), reference="a", candidate="b")
