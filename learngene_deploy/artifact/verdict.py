"""Pass/fail of an artifact's budgets, in one place: judged at build time and again by each target measurement.

Budgets belong to the target device. When the profile is not the machine the build runs on (``host: false``), the
latency budget is judged on the *predicted* target latency and the build machine's measurement is recorded
separately; a later ``lgdeploy bench`` on the target replaces the prediction (:func:`judge_measured`). For a
``host: true`` profile (``cpu-host``) the build's own measurement decides.
"""

from __future__ import annotations

from typing import Any


def latency_miss_note(
    measured_ms: float, budget_ms: float, predicted_ms: float, predicted_source: str, profile: str
) -> str | None:
    """Why a measured latency missed its budget, and what to do about it; ``None`` when it met the budget.

    ``predicted_source`` is where selection's prediction came from: ``"measured"`` or ``"fit"`` (the profile's
    latency table) or ``"roofline"`` (no table).
    """
    if measured_ms <= budget_ms:
        return None
    head = f"measured {measured_ms:.3g} ms against the {budget_ms:g} ms budget"
    calibrate = f"`lgdeploy profiles calibrate {profile} --out FILE`"
    if predicted_ms > budget_ms:
        return f"{head}; the size was already predicted over it ({predicted_ms:.3g} ms)."
    if predicted_source == "roofline":
        return (
            f"{head}, where the uncalibrated roofline estimate was {predicted_ms:.3g} ms; calibrate the device "
            f"({calibrate}, run on it) and reference the table from the profile, so selection predicts from "
            "measurements."
        )
    return (
        f"{head}, {measured_ms / predicted_ms - 1:.0%} above the {predicted_ms:.3g} ms its latency table "
        f"predicted; if the device was busier or hotter than when it was calibrated, re-measure it idle with "
        f"`lgdeploy bench`, otherwise re-calibrate it ({calibrate})."
    )


def judge_measured(
    verdict: dict[str, Any],
    measured_ms: float,
    budget_ms: float,
    *,
    basis: str,
    predicted_ms: float,
    predicted_source: str,
    profile: str,
) -> dict[str, Any]:
    """Update a latency verdict in place from a measurement on the target (an earlier miss note no longer applies)."""
    verdict.update(value_ms=measured_ms, basis=basis, passed=measured_ms <= budget_ms)
    verdict.pop("note", None)
    note = latency_miss_note(measured_ms, budget_ms, predicted_ms, predicted_source, profile)
    if note:
        verdict["note"] = note
    return verdict


def judge(
    profile: Any,
    predicted_ms: float,
    predicted_source: str,
    predicted_mb: float,
    stats: dict[str, Any] | None,
    files_mb: float,
) -> dict[str, Any]:
    """Pass/fail of every budget at build time, with what each verdict is based on."""
    b = profile.budgets
    key = f"p{b.percentile}_ms"
    measured = stats.get(key) if stats else None
    latency: dict[str, Any] = {"budget_ms": b.latency_ms, "percentile": b.percentile}
    if profile.host and measured is not None:
        judge_measured(
            latency,
            measured,
            b.latency_ms,
            basis=f"measured {key} on this machine (the profile's device)",
            predicted_ms=predicted_ms,
            predicted_source=predicted_source,
            profile=profile.name,
        )
    else:
        basis = "predicted for the target device (this machine is not the target)"
        latency.update(value_ms=predicted_ms, basis=basis, passed=predicted_ms <= b.latency_ms)
    memory = stats.get("model_rss_mb") if (profile.host and stats) else None
    return {
        "latency": latency,
        "memory": {
            "budget_mb": b.memory_mb,
            "value_mb": memory if memory is not None else predicted_mb,
            "basis": "measured model RSS on this machine" if memory is not None else "predicted weights + activations",
            "passed": (memory if memory is not None else predicted_mb) <= b.memory_mb,
        },
        "model_size": {
            "budget_mb": b.model_size_mb,
            "value_mb": files_mb,
            "basis": "size of the compiled model files",
            "passed": files_mb <= b.model_size_mb,
        },
    }
