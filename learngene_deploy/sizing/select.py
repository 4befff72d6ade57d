"""Pick the size that fits a device: the most accurate candidate that meets every budget.

Ties in accuracy are broken by lower predicted latency. Candidates without a known accuracy are ranked by
parameter count (bigger assumed better) after every candidate with a known accuracy, and the selection says
so. When nothing fits, :class:`SelectionError` names the closest candidate and the budget it misses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from learngene_deploy.errors import SelectionError
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.sizing import cost as costs
from learngene_deploy.sizing.latency import (
    FastestPredictor,
    LatencyPredictor,
    TablePredictor,
    other_machine,
    predictor_for,
)


@dataclass(frozen=True)
class Candidate:
    """One size a learngene can recompose: the recompose arguments, the architecture, the known accuracy."""

    size: dict[str, Any]  # keyword arguments of WeightGenerator.generate, e.g. {"depth": 6, "genes": 2}
    arch: ArchSpec
    accuracy: float | None = None  # direct top-1 from the learngene's accuracy table, 0..1

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.size.items())


@dataclass(frozen=True)
class Prediction:
    """Predicted cost of one candidate on one profile, and whether it fits."""

    candidate: Candidate
    params: int
    flops: float
    weight_mb: float
    memory_mb: float
    latency_ms: float
    latency_source: str  # "roofline" | "measured" | "fit"
    latency_margin: float  # guard band applied in the latency check (0 for the roofline)
    misses: tuple[str, ...]  # budgets it misses, as short phrases
    overshoot: float  # largest predicted/budget ratio over all budgets (<= 1 when it fits)
    pareto: bool = False  # on the accuracy/latency Pareto front among all candidates
    latency_runtime: str | None = None  # backend auto: the runtime whose calibrated table predicted the latency

    @property
    def fits(self) -> bool:
        return not self.misses

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "size": c.size,
            "arch": c.arch.to_dict(),
            "params": self.params,
            "gflops": self.flops / 1e9,
            "weight_mb": self.weight_mb,
            "memory_mb": self.memory_mb,
            "latency_ms": self.latency_ms,
            "latency_source": self.latency_source,
            "latency_margin": self.latency_margin,
            "accuracy": c.accuracy,
            "fits": self.fits,
            "misses": list(self.misses),
            "pareto": self.pareto,
            "latency_runtime": self.latency_runtime,
        }


@dataclass(frozen=True)
class Selection:
    """The chosen candidate and the full table it was chosen from."""

    profile: str
    predictor: str  # "roofline" | "table"
    chosen: Prediction
    predictions: tuple[Prediction, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    budget_use: dict[str, Any] | None = None  # set when the learngene, not the device, limits the choice
    pinned: bool = False  # the size was given (--size), not chosen: it may miss a budget

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "predictor": self.predictor,
            "chosen": self.chosen.to_dict(),
            "candidates": [p.to_dict() for p in self.predictions],
            "notes": list(self.notes),
            "budget_use": self.budget_use,
            "pinned": self.pinned,
        }


UNDERUSED = 0.25  # a chosen size predicted under this share of the latency budget, with nothing larger to offer


def budget_use(predictions: list[Prediction], chosen: Prediction, latency_budget_ms: float) -> dict[str, Any] | None:
    """When the learngene offers nothing that would use the device: the chosen and largest sizes' budget shares.

    Returned only when the chosen size is predicted under ``UNDERUSED`` of the latency budget and no candidate misses
    the latency budget, i.e. a larger learngene (not a faster device or a looser budget) is what would use the device.
    """
    if any(p.latency_ms * (1 + max(0.0, p.latency_margin)) > latency_budget_ms for p in predictions):
        return None  # some size is too slow: the budget, not the learngene, bounds the choice
    share = chosen.latency_ms / latency_budget_ms
    if share >= UNDERUSED:
        return None
    largest = max(predictions, key=lambda p: (p.flops, p.params, p.candidate.accuracy or 0.0))
    return {
        "limited_by": "learngene",
        "threshold": UNDERUSED,
        "chosen": chosen.candidate.label,
        "chosen_share": share,
        "largest": largest.candidate.label,
        "largest_params": largest.params,
        "largest_latency_ms": largest.latency_ms,
        "largest_share": largest.latency_ms / latency_budget_ms,
        "latency_budget_ms": latency_budget_ms,
    }


def budget_use_line(use: dict[str, Any]) -> str:
    """The one line ``select`` and ``build`` print for :func:`budget_use`."""
    return (
        f"the learngene, not the device, limits this choice: its largest size, {use['largest']} "
        f"({use['largest_params'] / 1e6:.2f}M parameters), is predicted at {use['largest_latency_ms']:.3g} ms, "
        f"{use['largest_share']:.0%} of the {use['latency_budget_ms']:g} ms budget; a larger learngene would use "
        "more of the device (README: 'When the learngene is the limit')"
    )


def predict(candidate: Candidate, profile: Any, predictor: LatencyPredictor) -> Prediction:
    """Cost, latency and budget check of one candidate."""
    b, rt = profile.budgets, profile.runtime
    arch = candidate.arch
    if b.input_size != "native" and b.input_size != arch.img_size:
        arch = arch.replace(img_size=b.input_size)
    c = costs.estimate(arch, batch=b.batch, precision=rt.precision, backend=rt.backend)
    latency, source = predictor.predict(arch)
    runtime_for = getattr(predictor, "runtime_for", None)
    margin = max(0.0, predictor.margin)
    guarded = latency * (1 + margin)
    band = f" (+{margin:.0%} margin)" if margin else ""
    checks = [
        ("latency", guarded, b.latency_ms, f"latency {latency:.3g} ms{band} > {b.latency_ms:g} ms p{b.percentile}"),
        ("memory", c.memory_mb, b.memory_mb, f"memory {c.memory_mb:.3g} MB > {b.memory_mb:g} MB"),
        ("size", c.weight_mb, b.model_size_mb, f"model size {c.weight_mb:.3g} MB > {b.model_size_mb:g} MB"),
    ]
    return Prediction(
        candidate=candidate,
        params=c.params,
        flops=c.flops,
        weight_mb=c.weight_mb,
        memory_mb=c.memory_mb,
        latency_ms=latency,
        latency_source=source,
        latency_margin=margin,
        misses=tuple(text for _, value, budget, text in checks if value > budget),
        overshoot=max(value / budget for _, value, budget, _ in checks),
        latency_runtime=runtime_for(arch) if runtime_for is not None else None,
    )


def _pareto(predictions: list[Prediction]) -> list[Prediction]:
    """Mark candidates no other candidate beats on both rank (accuracy, else parameters) and latency (lower)."""

    def score(p: Prediction) -> tuple[int, float]:
        return _rank_key(p)[:2]  # selection's own ranking: known accuracy, else parameter count

    def dominates(q: Prediction, p: Prediction) -> bool:
        at_least_as_good = score(q) >= score(p) and q.latency_ms <= p.latency_ms
        return at_least_as_good and (score(q) > score(p) or q.latency_ms < p.latency_ms)

    return [replace(p, pareto=not any(dominates(q, p) for q in predictions)) for p in predictions]


def _rank_key(p: Prediction) -> tuple[int, float, float]:
    known = p.candidate.accuracy is not None
    quality = p.candidate.accuracy if known else float(p.params)
    return (1 if known else 0, quality, -p.latency_ms)


def pareto_front(candidates: list[Candidate], profile: Any, predictor: LatencyPredictor) -> list[Prediction]:
    """The candidates selection can choose under some latency budget, the profile's other budgets as they are.

    Those are the candidates within the memory and model-size budgets that are on the rank/latency Pareto front
    among them: every other one is beaten by one that ranks at least as high and is predicted no slower, so no
    latency budget makes it the choice. Fastest first.
    """
    b = profile.budgets
    allowed = [
        p
        for p in (predict(c, profile, predictor) for c in candidates)
        if p.memory_mb <= b.memory_mb and p.weight_mb <= b.model_size_mb
    ]
    return sorted((p for p in _pareto(allowed) if p.pareto), key=lambda p: p.latency_ms)


def select(candidates: list[Candidate], profile: Any, *, predictor: LatencyPredictor | None = None) -> Selection:
    """Predict every candidate on ``profile`` and choose the most accurate one that meets every budget.

    Raises:
        SelectionError: no candidates, or none fits (the message names the closest and what it misses).
    """
    if not candidates:
        msg = "the learngene offers no candidate sizes; check its metadata with `lgdeploy learngene info FILE`."
        raise SelectionError(msg)
    predictor = predictor or predictor_for(profile)
    predictions = _pareto([predict(c, profile, predictor) for c in candidates])
    fitting = [p for p in predictions if p.fits]
    if not fitting:
        closest = min(predictions, key=lambda p: p.overshoot)
        msg = (
            f"no size of this learngene fits profile '{profile.name}': the closest, {closest.candidate.label} "
            f"({closest.params / 1e6:.2f}M parameters), misses {'; '.join(closest.misses)}; "
            "relax the budget in the profile, choose a lower precision, or use a smaller learngene."
        )
        raise SelectionError(msg)
    chosen = max(fitting, key=_rank_key)
    notes = []
    if chosen.candidate.accuracy is None:
        notes.append("the learngene has no accuracy table: the largest fitting size was chosen")
    if predictor.margin:
        odds = (
            f"set so that a chosen size meets its budget with about {predictor.margin_confidence:.0%} probability"
            if predictor.margin_confidence
            else "set from the fit's median error"
        )
        notes.append(
            f"latency must fit with a {predictor.margin:.0%} guard band ({odds}, judged by the calibration fit's "
            "errors on sizes it was not fitted to)"
        )
    if predictor.kind == "table" and chosen.latency_source == "fit":
        notes.append(
            "the chosen size was not timed in calibration, so its latency comes from the table's fitted model; "
            f"re-run `lgdeploy profiles calibrate {profile.name}` with a larger --front to time it"
        )
    notes += _auto_notes(profile, predictor, chosen)
    if isinstance(predictor, (TablePredictor, FastestPredictor)) and getattr(profile, "host", False):
        elsewhere = other_machine(predictor.table.host)
        if elsewhere:
            notes.append(
                f"the latency table was measured on another machine ({elsewhere}), but '{profile.name}' is the "
                f"machine lgdeploy runs on; re-run `lgdeploy profiles calibrate {profile.name}` here"
            )
    if predictor.kind == "roofline":
        notes.append(_roofline_note(profile))
    use = budget_use(predictions, chosen, profile.budgets.latency_ms)
    if use is not None:
        notes.insert(0, budget_use_line(use))
    return Selection(
        profile=profile.name,
        predictor=predictor.kind,
        chosen=chosen,
        predictions=tuple(predictions),
        notes=tuple(notes),
        budget_use=use,
    )


def pinned_misses_line(chosen: Prediction) -> str:
    """The note on a pinned size predicted to miss a budget (the build adds that it builds it anyway)."""
    return f"pinned size {chosen.candidate.label} is predicted to miss the budget ({'; '.join(chosen.misses)})"


def pin(
    candidates: list[Candidate], size: Candidate, profile: Any, *, predictor: LatencyPredictor | None = None
) -> Selection:
    """Predict every candidate on ``profile`` like :func:`select`, but take ``size`` (one of ``candidates``) as the
    chosen one, whether or not it fits; the notes say it was pinned and, when it misses a budget, which."""
    predictor = predictor or predictor_for(profile)
    predictions = _pareto([predict(c, profile, predictor) for c in candidates])
    chosen = next(p for p in predictions if p.candidate is size)
    notes = [f"size {size.label} was pinned (--size), not chosen"]
    if not chosen.fits:
        notes.append(pinned_misses_line(chosen))
    if predictor.kind == "roofline":
        notes.append(_roofline_note(profile))
    return Selection(
        profile=profile.name,
        predictor=predictor.kind,
        chosen=chosen,
        predictions=tuple(predictions),
        notes=tuple(notes),
        pinned=True,
    )


def _roofline_note(profile: Any) -> str:
    return (
        "latency is a roofline estimate from the profile's device facts; "
        f"run `lgdeploy profiles calibrate {profile.name}` on the device for measured numbers"
    )


def _auto_notes(profile: Any, predictor: LatencyPredictor, chosen: Prediction) -> list[str]:
    """What ``runtime.backend: auto``'s prediction used: the fastest runtime's table, or the runtime-blind roofline."""
    from learngene_deploy.names import AUTO_BACKEND

    if profile.runtime.backend != AUTO_BACKEND:
        return []
    if not isinstance(predictor, FastestPredictor):
        return [
            "backend auto: latency is predicted without knowing which runtime the build will ship (the roofline "
            "does not depend on it); calibrate this machine to predict from each runtime's measurements"
        ]
    from learngene_deploy.backends.choice import installed_auto_backends

    notes = [
        f"backend auto: each size is predicted by the fastest of the calibrated runtimes "
        f"({', '.join(predictor.runtimes)}); the chosen size by {chosen.latency_runtime}'s table"
    ]
    missing = [b for b in installed_auto_backends(profile) if b not in predictor.runtimes]
    if missing:
        notes.append(
            f"the latency table has no {', '.join(missing)} measurements, so a build that ships "
            f"{' or '.join(missing)} may run faster than predicted; re-run `lgdeploy profiles calibrate "
            f"{profile.name}` to measure every installed runtime"
        )
    return notes
