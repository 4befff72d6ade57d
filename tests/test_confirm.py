"""`lgdeploy select --measure`: a choice confirmed, or corrected, by timing sizes near the budget on this machine.

The device is a deterministic stand-in (a known latency per size) so the selection logic can be checked exactly;
the real timing path runs in tests/test_sizing.py::test_calibrate_writes_a_table_that_select_uses.
"""

from __future__ import annotations

import dataclasses

import pytest

from learngene_deploy.errors import ProfileError
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.profile import load_profile
from learngene_deploy.sizing.confirm import MEASURED, confirm
from learngene_deploy.sizing.cost import count_params
from learngene_deploy.sizing.latency import FEATURES, LatencyTable, TablePredictor, features
from learngene_deploy.sizing.select import Candidate, select

COEF = {"const": 0.1, "blocks": 0.02, "linear_gflop": 10.0, "attention_gflop": 20.0, "activation_melem": 0.001}
BASE = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=1, num_heads=2)
CANDIDATES = [
    Candidate({"depth": d, "width": w}, BASE.replace(depth=d, embed_dim=w, num_heads=w // 32))
    for d in range(1, 13)
    for w in (64, 96, 128, 160, 192)
]
BAND = 0.05


def truth(arch: ArchSpec) -> float:
    return sum(COEF[k] * f for k, f in zip(FEATURES, features(arch, 1), strict=True))


def table_predictor(scale: float) -> TablePredictor:
    """A calibrated table that predicts ``scale`` x the true latency."""
    table = LatencyTable(
        profile="cpu-host", backend="onnxruntime", precision="fp32", threads=2, batch=1, percentile=90, points=[],
        coef={k: v * scale for k, v in COEF.items()}, margin=BAND, margin_confidence=0.9,
    )  # fmt: skip
    return TablePredictor(table, 90)


def device():
    calls: list[list[str]] = []

    def measure(archs: list[ArchSpec]) -> list[float]:
        calls.append([a.name for a in archs])
        return [truth(a) for a in archs]

    return measure, calls


def host(budget_ms: float):
    p = load_profile("cpu-host")
    return dataclasses.replace(
        p, budgets=dataclasses.replace(p.budgets, latency_ms=budget_ms, memory_mb=1e6, model_size_mb=1e6)
    )


BUDGET = sorted(truth(c.arch) for c in CANDIDATES)[len(CANDIDATES) // 2]


def fits(arch: ArchSpec) -> bool:
    return truth(arch) * (1 + BAND) <= BUDGET


def test_overestimating_table_is_corrected_upwards() -> None:
    """The table predicts 25 % high: prediction alone wastes budget; measuring near the budget recovers it."""
    predictor, profile = table_predictor(1.25), host(BUDGET)
    predicted = select(CANDIDATES, profile, predictor=predictor).chosen
    measure, calls = device()
    confirmed = confirm(CANDIDATES, profile, measure, predictor=predictor)
    chosen = confirmed.chosen
    assert chosen.latency_source == MEASURED and chosen.latency_ms == truth(chosen.candidate.arch)
    assert fits(chosen.candidate.arch), "a measured size still has to fit with the guard band"
    assert count_params(chosen.candidate.arch).total > count_params(predicted.candidate.arch).total
    assert truth(chosen.candidate.arch) > truth(predicted.candidate.arch), "more of the budget is used"
    measured = {name for call in calls for name in call}
    assert len(measured) == sum(len(c) for c in calls), "no size is measured twice"
    better = [c.arch for c in CANDIDATES if count_params(c.arch).total > count_params(chosen.candidate.arch).total]
    assert all(not fits(a) for a in better if a.name in measured), "no measured better-ranked size fits"
    assert any("confirmed by measurement" in n for n in confirmed.notes)


def test_underestimating_table_steps_down_to_a_size_that_fits() -> None:
    """The table predicts 10 % low: the predicted choice misses when timed, and a measured smaller size wins."""
    predictor, profile = table_predictor(0.9), host(BUDGET)
    predicted = select(CANDIDATES, profile, predictor=predictor).chosen
    assert not fits(predicted.candidate.arch), "the setup must make prediction alone miss"
    measure, _ = device()
    chosen = confirm(CANDIDATES, profile, measure, predictor=predictor).chosen
    assert chosen.latency_source == MEASURED and fits(chosen.candidate.arch)


def test_each_pass_measures_new_sizes_further_down_the_contenders() -> None:
    """5 % low: the choice and its best-ranked contender both miss when timed, so the next pass tries others."""
    predictor, profile = table_predictor(0.95), host(BUDGET)
    measure, calls = device()
    confirm(CANDIDATES, profile, measure, predictor=predictor, limit=1, passes=3)
    names = [n for call in calls for n in call]
    assert len(calls) >= 2 and len(names) == len(set(names)), "later passes measure sizes not measured before"


def test_running_out_of_passes_says_the_choice_is_unconfirmed() -> None:
    predictor, profile = table_predictor(0.6), host(BUDGET)
    measure, calls = device()
    sel = confirm(CANDIDATES, profile, measure, predictor=predictor, passes=1)
    assert len(calls) == 1 and sel.chosen.latency_source != MEASURED
    assert any("not measured (the measurement passes ran out)" in n for n in sel.notes)


def test_measuring_needs_this_machine_and_a_table() -> None:
    measure, calls = device()
    with pytest.raises(ProfileError, match=r"describes another device \(host: false\)"):
        confirm(CANDIDATES, load_profile("raspberry-pi-5"), measure)
    with pytest.raises(ProfileError, match="needs a measured latency table"):
        confirm(CANDIDATES, host(BUDGET), measure)  # cpu-host without a table predicts by roofline
    assert calls == [], "nothing is timed before the refusal"
