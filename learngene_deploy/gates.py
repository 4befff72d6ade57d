"""Numeric gates between pipeline stages (PyTorch -> ONNX -> simplified -> compiled).

:func:`check` runs two stages on the same inputs (real validation images, passed in by the caller) and
compares their logits: max and mean absolute difference, top-1 agreement and cosine similarity, each
against an optional limit in a :class:`Tolerance`. :func:`check_accuracy` compares the accuracy of a
quantized model with the fp32 model's on labelled data. Both return frozen results that record what was
compared; :func:`gate` turns a failed result into a one-sentence :class:`VerificationError`.

Example:
    >>> result = check(torch_fn, runner, images, reference="pytorch", candidate="onnx", tolerance=TOLERANCES["fp32"])
    >>> gate(result)  # raises VerificationError when outside tolerance
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from learngene_deploy.errors import ConfigError, VerificationError

if TYPE_CHECKING:
    import torch

# N x C x H x W float32 -> N x classes logits, for any N: a torch_logits(model) or a backend Runner
# (runners split N into the model's static batch themselves).
LogitsFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """Limits a candidate's logits must meet against the reference's; ``None`` skips that metric."""

    max_abs: float | None = 1e-4  # largest |candidate - reference| over all logits
    mean_abs: float | None = None  # mean |candidate - reference|
    top1_agreement: float | None = 1.0  # fraction of images whose argmax matches, at least
    cosine: float | None = None  # mean per-image cosine similarity of the logit vectors, at least


# Defaults per precision of the candidate. fp32 stages differ only by summation order; fp16 and int8
# are judged by agreement and direction, since their absolute error scales with the logits' magnitude.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-4, top1_agreement=1.0),
    "fp16": Tolerance(max_abs=None, top1_agreement=0.95, cosine=0.999),
    "int8": Tolerance(max_abs=None, top1_agreement=0.85, cosine=0.98),
}


@dataclass(frozen=True)
class CheckResult:
    """Outcome of comparing two stages' logits on the same images."""

    reference: str  # stage the candidate is compared against, e.g. "pytorch"
    candidate: str  # stage under test, e.g. "onnxruntime-int8"
    num_images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # fraction in [0, 1]
    cosine: float  # mean per-image cosine similarity
    tolerance: Tolerance
    failures: tuple[str, ...]  # one phrase per limit that was missed; empty when passed

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failures": list(self.failures), "passed": self.passed}


@dataclass(frozen=True)
class AccuracyResult:
    """Top-1 accuracy of a candidate (e.g. int8) against the reference (fp32) on labelled images."""

    reference: str
    candidate: str
    num_images: int
    reference_accuracy: float  # fraction in [0, 1]
    candidate_accuracy: float
    max_drop_points: float  # allowed drop, percentage points

    @property
    def drop_points(self) -> float:
        """Accuracy lost by the candidate, in percentage points (negative when it gained)."""
        return 100.0 * (self.reference_accuracy - self.candidate_accuracy)

    @property
    def passed(self) -> bool:
        return self.drop_points <= self.max_drop_points + 1e-9

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drop_points": self.drop_points, "passed": self.passed}


def torch_logits(model: torch.nn.Module) -> LogitsFn:
    """Wrap a PyTorch model as a stage: float32 NumPy in, NumPy logits out, eval mode, no grad, on its device."""
    import torch

    device = next(model.parameters()).device

    def run(x: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                return (
                    model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)).float().cpu().numpy()
                )
        finally:
            model.train(was_training)

    return run


def compare(
    reference_logits: np.ndarray,
    candidate_logits: np.ndarray,
    *,
    reference: str,
    candidate: str,
    tolerance: Tolerance,
) -> CheckResult:
    """Compare two stages' logits for the same images.

    Args:
        reference_logits: N x classes logits of the trusted stage.
        candidate_logits: N x classes logits of the stage under test.
        reference: name of the trusted stage (for messages and the manifest).
        candidate: name of the stage under test.
        tolerance: limits to check.

    Returns:
        The metrics and the list of missed limits.

    Raises:
        VerificationError: the two outputs have different shapes (always fatal, whatever the tolerance).
    """
    ref = np.asarray(reference_logits, dtype=np.float64)
    cand = np.asarray(candidate_logits, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 2:
        msg = (
            f"{candidate} returned logits of shape {cand.shape} but {reference} returned {ref.shape}; "
            "both stages must map the same N images to N x classes logits, so check the export's input size and batch."
        )
        raise VerificationError(msg)
    diff = np.abs(cand - ref)
    agreement = float(np.mean(cand.argmax(1) == ref.argmax(1)))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = float(np.mean(np.sum(ref * cand, axis=1) / np.maximum(norms, 1e-12)))
    max_abs, mean_abs = float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0
    t = tolerance
    failures = []
    if t.max_abs is not None and not max_abs <= t.max_abs:
        failures.append(f"max abs diff {max_abs:.3g} > {t.max_abs:g}")
    if t.mean_abs is not None and not mean_abs <= t.mean_abs:
        failures.append(f"mean abs diff {mean_abs:.3g} > {t.mean_abs:g}")
    if t.top1_agreement is not None and not agreement >= t.top1_agreement:
        failures.append(f"top-1 agreement {agreement:.1%} < {t.top1_agreement:.1%}")
    if t.cosine is not None and not cosine >= t.cosine:
        failures.append(f"cosine similarity {cosine:.5f} < {t.cosine:g}")
    return CheckResult(
        reference=reference,
        candidate=candidate,
        num_images=len(ref),
        max_abs_diff=max_abs,
        mean_abs_diff=mean_abs,
        top1_agreement=agreement,
        cosine=cosine,
        tolerance=tolerance,
        failures=tuple(failures),
    )


def check(
    reference_stage: LogitsFn,
    candidate_stage: LogitsFn,
    inputs: np.ndarray,
    *,
    reference: str,
    candidate: str,
    tolerance: Tolerance | None = None,
) -> CheckResult:
    """Run two stages on the same images and compare their logits.

    Args:
        reference_stage: the trusted stage, e.g. ``torch_logits(model)`` or a backend runner's ``run``.
        candidate_stage: the stage under test.
        inputs: N x C x H x W float32 images, preprocessed as the model expects.
        reference: name of the trusted stage.
        candidate: name of the stage under test.
        tolerance: limits to check (default: ``TOLERANCES["fp32"]``).

    Returns:
        The comparison; pass it to :func:`gate` to stop on failure.
    """
    ref, cand = reference_stage(inputs), candidate_stage(inputs)
    return compare(ref, cand, reference=reference, candidate=candidate, tolerance=tolerance or TOLERANCES["fp32"])


def check_accuracy(
    reference_stage: LogitsFn,
    candidate_stage: LogitsFn,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    reference: str,
    candidate: str,
    max_drop_points: float = 1.0,
) -> AccuracyResult:
    """Measure the top-1 accuracy of both stages on labelled images (for INT8 against fp32).

    Args:
        reference_stage: the fp32 stage.
        candidate_stage: the quantized stage.
        inputs: N x C x H x W float32 validation images.
        labels: N integer class labels.
        reference: name of the fp32 stage.
        candidate: name of the quantized stage.
        max_drop_points: allowed accuracy drop in percentage points (1.0 = one point).

    Returns:
        Both accuracies and the limit; pass it to :func:`gate` to stop on failure.
    """
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(inputs) or len(labels) == 0:
        msg = f"got {len(inputs)} images but {len(labels)} labels; pass one integer label per validation image."
        raise ConfigError(msg)
    ref, cand = reference_stage(inputs).argmax(1), candidate_stage(inputs).argmax(1)
    return AccuracyResult(
        reference=reference,
        candidate=candidate,
        num_images=len(labels),
        reference_accuracy=float(np.mean(ref == labels)),
        candidate_accuracy=float(np.mean(cand == labels)),
        max_drop_points=max_drop_points,
    )


def gate(result: CheckResult | AccuracyResult) -> None:
    """Raise :class:`VerificationError` when ``result`` did not pass; return silently otherwise."""
    if result.passed:
        return
    if isinstance(result, AccuracyResult):
        msg = (
            f"{result.candidate} accuracy is {result.candidate_accuracy:.1%} against {result.reference_accuracy:.1%} "
            f"for {result.reference} on {result.num_images} images, a drop of {result.drop_points:.2f} points over "
            f"the {result.max_drop_points:g}-point limit; calibrate on more or more representative images, use a "
            "higher precision, or raise the limit."
        )
    else:
        msg = (
            f"{result.candidate} does not match {result.reference} on {result.num_images} images "
            f"({'; '.join(result.failures)}); inspect that stage (exporter, simplifier, precision) or loosen the "
            "tolerance if the difference is expected."
        )
    raise VerificationError(msg)
