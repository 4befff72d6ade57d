"""Confirm a selection by measuring sizes near the budget on this machine (``lgdeploy select --measure``).

A calibrated table predicts; on a profile whose device is this machine (``host: true``) the sizes that matter
can also be timed directly. Each pass of :func:`confirm` measures the current choice (if not measured yet)
together with up to ``limit`` unmeasured better-ranked sizes that the guard band alone ruled out (predicted
within one band above the budget), in one interleaved measurement, and selects again with every measurement
in place of its prediction. A measured size must still fit with the table's guard band, so a confirmed
choice is held to the same odds as a predicted one. If the choice's own measurement misses, selection steps
down and the next pass measures the new choice. At most ``passes`` passes run.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learngene_deploy.errors import ProfileError
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.sizing.latency import LatencyPredictor, predictor_for
from learngene_deploy.sizing.select import Candidate, Prediction, Selection, rank_key, select

MEASURED = "measured here"

Measure = Callable[[list[ArchSpec]], list[float]]  # architectures -> latency in ms at the profile's percentile


@dataclass(frozen=True)
class WithMeasurements:
    """A predictor whose measured sizes report their measurement instead of a prediction."""

    base: LatencyPredictor
    measured: dict[str, float]  # ArchSpec.name -> ms
    kind: str = "table+measured"

    @property
    def margin(self) -> float:
        return self.base.margin

    @property
    def margin_confidence(self) -> float | None:
        return self.base.margin_confidence

    def predict(self, arch: ArchSpec) -> tuple[float, str]:
        if arch.name in self.measured:
            return self.measured[arch.name], MEASURED
        return self.base.predict(arch)


def contenders(selection: Selection, budget_ms: float, limit: int, skip: set[str] = frozenset()) -> list[Prediction]:
    """The best-ranked unmeasured sizes above the choice that only the guard band ruled out.

    Those are the sizes predicted within one band above the budget: if the table overestimates them by as
    much as its typical error, they fit. Sizes named in ``skip`` (already measured) are left out.
    """
    chosen = selection.chosen
    band = chosen.latency_margin
    above = [
        p
        for p in selection.predictions
        if rank_key(p) > rank_key(chosen)
        and p.candidate.arch.name not in skip
        and all(m.startswith("latency") for m in p.misses)
        and p.latency_ms <= budget_ms * (1 + band)
    ]
    return sorted(above, key=rank_key, reverse=True)[:limit]


def confirm(
    candidates: list[Candidate],
    profile: Any,
    measure: Measure,
    *,
    predictor: LatencyPredictor | None = None,
    limit: int = 3,
    passes: int = 3,
    progress: Callable[[str], None] | None = None,
) -> Selection:
    """Select, then measure the choice and up to ``limit`` better-ranked near-budget sizes, and select again.

    Raises:
        ProfileError: the profile is not this machine, or has no measured latency table.
        SelectionError: nothing fits (before or after the measurements).
    """
    if not profile.host:
        msg = (
            f"--measure times sizes on this machine, but profile '{profile.name}' describes another device "
            "(host: false); run it on the device itself with a profile marked host: true, like cpu-host."
        )
        raise ProfileError(msg)
    predictor = predictor or predictor_for(profile)
    if predictor.kind != "table":
        msg = (
            f"--measure needs a measured latency table (its guard band sets how close to the budget a measured size "
            f"may go); run `lgdeploy profiles calibrate {profile.name} --out FILE` and reference it as latency_table."
        )
        raise ProfileError(msg)
    measured: dict[str, float] = {}
    selection = select(candidates, profile, predictor=predictor)
    budget = profile.budgets.latency_ms
    for _ in range(passes):
        todo = [p.candidate.arch for p in [selection.chosen, *contenders(selection, budget, limit, set(measured))]]
        todo = [a for a in dict.fromkeys(todo) if a.name not in measured]
        if not todo:
            break
        if progress is not None:
            progress(f"measuring {len(todo)} size(s) near the {budget:g} ms budget: {', '.join(a.name for a in todo)}")
        measured |= dict(zip((a.name for a in todo), measure(todo), strict=True))
        selection = select(candidates, profile, predictor=WithMeasurements(predictor, dict(measured)))
    timed = ", ".join(f"{name} {ms:.3g} ms" for name, ms in measured.items())
    state = (
        "confirmed by measurement"
        if selection.chosen.latency_source == MEASURED
        else "not measured (the measurement passes ran out)"
    )
    note = f"choice {state} on this machine: {timed}"
    return Selection(
        profile=selection.profile,
        predictor=selection.predictor,
        chosen=selection.chosen,
        predictions=selection.predictions,
        notes=(*selection.notes, note),
    )


def measure_here(profile: Any, *, runs: int = 50, rounds: int = 3) -> Measure:
    """Time random-weight models of the given sizes with the profile's runtime, as calibration does."""
    from learngene_deploy.sizing.calibrate import measure, percentile_key

    def run(archs: list[ArchSpec]) -> list[float]:
        workdir = Path(tempfile.mkdtemp(prefix="lgdeploy-confirm-"))
        try:
            points = measure(archs, profile, workdir, runs=runs, rounds=rounds)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        key = percentile_key(profile.budgets.percentile)
        return [float(p[key]) for p in points]

    return run
