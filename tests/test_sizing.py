"""Size selection: exact cost model, latency predictors, and the choice under budgets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from learngene_deploy.errors import ProfileError, SelectionError
from learngene_deploy.models.vit import ArchSpec, build_vit, count_parameters
from learngene_deploy.profile import load_profile, shipped_profiles_dir
from learngene_deploy.sizing import cost as costs
from learngene_deploy.sizing.latency import (
    FEATURES,
    LatencyTable,
    RooflinePredictor,
    TablePredictor,
    features,
    fit,
    load_tables,
    predictor_for,
)
from learngene_deploy.sizing.select import Candidate, pareto_front, select

ARCHS = [
    ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=3, num_heads=2),
    ArchSpec(img_size=28, patch_size=7, in_chans=3, num_classes=10, embed_dim=48, depth=2, num_heads=3, layout="cls"),
    ArchSpec(img_size=32, patch_size=8, in_chans=1, num_classes=7, embed_dim=32, depth=4, num_heads=4, mlp_ratio=2.0),
]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_param_count_matches_timm(arch: ArchSpec) -> None:
    assert costs.count_params(arch).total == count_parameters(build_vit(arch))


def _counted_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FlopCounterMode's count of one forward, with timm's fused attention switched off.

    Some torch releases register no FLOP formula for the CPU fused-attention op that
    ``F.scaled_dot_product_attention`` dispatches to (torch 2.14.1: ``_scaled_dot_product_flash_attention_for_cpu``
    counts 0), so the fused path hides QKᵀ and AV. timm's explicit path computes the same two matmuls with ``@``,
    which every torch counts; the outputs are checked equal below so the reference is the same computation.
    """
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
@pytest.mark.parametrize("batch", [1, 3])
def test_flops_match_flop_counter(arch: ArchSpec, batch: int) -> None:
    model = build_vit(arch).eval()
    x = torch.randn(batch, arch.in_chans, arch.img_size, arch.img_size)
    with torch.no_grad():
        fused = model(x)
    measured = _counted_flops(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), fused, rtol=1e-4, atol=1e-5)
    predicted = costs.estimate(arch, batch=batch).flops
    assert abs(predicted - measured) <= 0.05 * measured, (predicted, measured)


def test_weight_bytes_by_precision() -> None:
    arch = ARCHS[0]
    p = costs.count_params(arch)
    fp32, fp16, int8 = (costs.estimate(arch, precision=x).weight_bytes for x in ("fp32", "fp16", "int8"))
    assert fp32 == 4 * p.total and fp16 == 2 * p.total
    assert int8 == p.matmul + 4 * p.other


def test_activation_memory_scales_with_batch_and_precision() -> None:
    arch = ARCHS[0]
    one, four = (costs.estimate(arch, batch=b).activation_bytes for b in (1, 4))
    assert four == pytest.approx(4 * one)
    assert costs.estimate(arch, precision="fp16").activation_bytes == pytest.approx(one / 2)
    # ONNX Runtime's dynamic int8 keeps fp32 activations; calibrated int8 elsewhere does not.
    assert costs.estimate(arch, precision="int8", backend="onnxruntime").activation_bytes == pytest.approx(one)
    assert costs.estimate(arch, precision="int8", backend="openvino").activation_bytes == pytest.approx(one / 4)


def test_activation_estimate_bounds_real_attention_scores() -> None:
    """The estimate holds at least the attention score tensor that a decomposed attention materialises."""
    arch = ArchSpec(img_size=64, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=1, num_heads=4)
    scores = arch.num_heads * arch.num_tokens**2
    assert costs.peak_activation_elements(arch) >= 2 * scores


def _roofline(profile_name: str = "raspberry-pi-5") -> RooflinePredictor:
    return RooflinePredictor.for_profile(load_profile(profile_name))


def test_roofline_is_compute_bound_for_big_models_and_scales_with_depth() -> None:
    pred = _roofline()
    base = ArchSpec(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=192, depth=6, num_heads=3)
    t6, _ = pred.predict(base)
    t12, _ = pred.predict(base.replace(depth=12))
    assert 1.8 < t12 / t6 < 2.05  # per-block cost dominates, patch embed and head do not
    c = costs.estimate(base)
    peak = 150e9 * 0.35
    assert t6 == pytest.approx(1e3 * c.flops / peak * 1.1, rel=1e-6)  # p90 tail factor 1.1


def test_roofline_uses_precision_peak() -> None:
    arch = ArchSpec(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=384, depth=12, num_heads=6)
    nano = load_profile("jetson-orin-nano")
    fp16, _ = RooflinePredictor.for_profile(nano).predict(arch)
    fp32_profile = dataclasses.replace(nano, runtime=dataclasses.replace(nano.runtime, precision="fp32"))
    fp32, _ = RooflinePredictor.for_profile(fp32_profile).predict(arch)
    assert fp32 > 3 * fp16


def _candidates() -> list[Candidate]:
    base = ArchSpec(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=384, depth=12, num_heads=6)
    return [
        Candidate({"depth": d, "genes": g}, base.replace(depth=d), 0.5 + 0.03 * d + 0.01 * g)
        for d in (2, 4, 6, 8, 10, 12)
        for g in (1, 2, 4)
    ]


def test_select_chooses_most_accurate_fitting() -> None:
    profile = load_profile("raspberry-pi-5")
    sel = select(_candidates(), profile)
    fitting = [p for p in sel.predictions if p.fits]
    assert sel.chosen.fits
    assert sel.chosen.candidate.accuracy == max(p.candidate.accuracy for p in fitting)
    assert all(not p.fits for p in sel.predictions if p.candidate.accuracy > sel.chosen.candidate.accuracy)
    assert any(not p.fits for p in sel.predictions), "the Pi's budget must rule out the big sizes"
    for p in sel.predictions:
        assert p.fits == (
            p.latency_ms <= profile.budgets.latency_ms
            and p.memory_mb <= profile.budgets.memory_mb
            and p.weight_mb <= profile.budgets.model_size_mb
        )


def test_ties_break_by_lower_latency() -> None:
    base = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=4, num_heads=2)
    cands = [Candidate({"depth": d}, base.replace(depth=d), 0.8) for d in (2, 3, 4)]
    sel = select(cands, load_profile("cpu-host"))
    assert sel.chosen.candidate.size == {"depth": 2}


def test_unknown_accuracy_prefers_largest_and_says_so() -> None:
    base = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=4, num_heads=2)
    cands = [Candidate({"depth": d}, base.replace(depth=d)) for d in (1, 2, 3)]
    sel = select(cands, load_profile("cpu-host"))
    assert sel.chosen.candidate.size == {"depth": 3}
    assert any("no accuracy table" in n for n in sel.notes)


def test_nothing_fits_names_closest_and_budget() -> None:
    tight = dataclasses.replace(
        load_profile("raspberry-pi-5"),
        budgets=dataclasses.replace(load_profile("raspberry-pi-5").budgets, latency_ms=0.01),
    )
    with pytest.raises(SelectionError) as info:
        select(_candidates(), tight)
    message = str(info.value)
    assert "depth=2" in message and "latency" in message and "0.01 ms p90" in message


def test_pareto_front() -> None:
    sel = select(_candidates(), load_profile("jetson-orin-nano"))
    front = [p for p in sel.predictions if p.pareto]
    assert front

    def dominates(q, p) -> bool:
        acc_q, acc_p = q.candidate.accuracy, p.candidate.accuracy
        return acc_q >= acc_p and q.latency_ms <= p.latency_ms and (acc_q > acc_p or q.latency_ms < p.latency_ms)

    for p in sel.predictions:
        assert p.pareto == (not any(dominates(q, p) for q in sel.predictions))
    # genes add accuracy at no latency cost, so only the max-genes size at each depth can be on the front
    assert all(p.candidate.size["genes"] == 4 for p in front)


def test_pareto_front_without_accuracy_table_ranks_by_parameters() -> None:
    """No accuracy table: selection ranks by parameters, so the front is every size no bigger-and-faster one beats."""
    base = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=2, num_heads=2)
    grid = [Candidate({"depth": d, "width": w}, base.replace(depth=d, embed_dim=w, num_heads=w // 32))
            for d in (1, 2, 4, 8) for w in (32, 64, 128)]  # fmt: skip
    sel = select(grid, load_profile("cpu-host"))
    front = [p for p in sel.predictions if p.pareto]
    for p in sel.predictions:
        beaten = any(q.params >= p.params and q.latency_ms <= p.latency_ms and q is not p
                     and (q.params > p.params or q.latency_ms < p.latency_ms) for q in sel.predictions)  # fmt: skip
        assert p.pareto == (not beaten)
    assert len(front) > 2, "more than the single fastest size is on the front"
    assert sel.chosen.pareto, "the chosen size is always on the front"
    assert pareto_front(grid, load_profile("cpu-host"), predictor_for(load_profile("cpu-host"))) == sorted(
        front, key=lambda p: p.latency_ms
    )


def test_selection_json_shape() -> None:
    data = select(_candidates(), load_profile("cpu-host")).to_dict()
    json.dumps(data)
    assert set(data) >= {"chosen", "candidates"} and len(data["candidates"]) == 18


def test_input_size_from_profile_changes_cost() -> None:
    profile = load_profile("cpu-host")
    arch = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=2, num_heads=2)
    native = select([Candidate({"depth": 2}, arch, 0.9)], profile).chosen
    big = dataclasses.replace(profile, budgets=dataclasses.replace(profile.budgets, input_size=64))
    larger = select([Candidate({"depth": 2}, arch, 0.9)], big).chosen
    assert larger.flops > 4 * native.flops


# --- measured latency tables ----------------------------------------------------------------------------


def _synthetic_points(coef: list[float], batch: int = 1) -> list[tuple[ArchSpec, float]]:
    base = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=2, num_heads=2)
    archs = [
        base.replace(depth=d, embed_dim=w, num_heads=w // 32, img_size=img)
        for d in (1, 2, 4, 6)
        for w in (32, 64, 128)
        for img in (16, 32)  # vary tokens too, or attention and activation terms are collinear
    ]
    return [(a, sum(c * f for c, f in zip(coef, features(a, batch), strict=True))) for a in archs]


def test_fit_recovers_known_coefficients() -> None:
    truth = [0.3, 0.05, 9.0, 20.0, 0.002]
    coef, err = fit(_synthetic_points(truth), batch=1)
    assert [coef[k] for k in FEATURES] == pytest.approx(truth, rel=1e-4)
    assert err["max_rel"] < 1e-6


def test_fit_needs_enough_points() -> None:
    with pytest.raises(ProfileError, match="at least 5"):
        fit(_synthetic_points([1, 1, 1, 1, 1])[:4], batch=1)


def _table(tmp_path: Path, **overrides) -> Path:
    points = _synthetic_points([0.3, 0.05, 9.0, 20.0, 0.002])
    coef, err = fit(points, batch=1)
    table = LatencyTable(
        profile="cpu-host",
        backend="onnxruntime",
        precision="fp32",
        threads=2,
        batch=1,
        percentile=90,
        points=[{"arch": a.to_dict(), "p90_ms": 123.0, "p50_ms": 100.0} for a, _ in points[:1]],
        coef=coef,
        fit_error=err,
        **overrides,
    )
    return table.save(tmp_path / "table.json")


def test_profile_with_table_uses_measurement_then_fit(tmp_path: Path) -> None:
    table_path = _table(tmp_path)
    data = yaml.safe_load((shipped_profiles_dir() / "cpu-host.yaml").read_text())
    data["latency_table"] = table_path.name
    data["runtime"]["backend"] = "onnxruntime"  # one named runtime: its table alone predicts
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    predictor = predictor_for(load_profile(tmp_path / "p.yaml"))
    assert isinstance(predictor, TablePredictor)
    measured_arch = ArchSpec.from_dict(json.loads(table_path.read_text())["points"][0]["arch"])
    assert predictor.predict(measured_arch) == (123.0, "measured")
    other = measured_arch.replace(depth=5)
    value, source = predictor.predict(other)
    expected = sum(c * f for c, f in zip([0.3, 0.05, 9.0, 20.0, 0.002], features(other, 1), strict=True))
    assert source == "fit" and value == pytest.approx(expected, rel=1e-4)


def test_selection_says_when_the_chosen_size_was_not_timed(tmp_path: Path) -> None:
    """A choice predicted by the fit (not a calibration measurement) gets a note; a measured choice does not."""
    table = LatencyTable.load(_table(tmp_path))
    measured = ArchSpec.from_dict(table.points[0]["arch"])
    profile = dataclasses.replace(
        load_profile("cpu-host"), budgets=dataclasses.replace(load_profile("cpu-host").budgets, latency_ms=1e6)
    )
    only_measured = select(
        [Candidate({"depth": measured.depth}, measured)], profile, predictor=TablePredictor(table, 90)
    )
    assert only_measured.chosen.latency_source == "measured"
    assert not any("not timed in calibration" in n for n in only_measured.notes)
    bigger = measured.replace(depth=measured.depth + 3)
    grid = [Candidate({"depth": a.depth}, a) for a in (measured, bigger)]
    fitted = select(grid, profile, predictor=TablePredictor(table, 90))
    assert fitted.chosen.candidate.arch == bigger and fitted.chosen.latency_source == "fit"
    assert any("not timed in calibration" in n and "--front" in n for n in fitted.notes)


def test_table_for_other_settings_is_refused(tmp_path: Path) -> None:
    table_path = _table(tmp_path)
    data = yaml.safe_load((shipped_profiles_dir() / "raspberry-pi-5.yaml").read_text())
    data["latency_table"] = table_path.name
    data["runtime"]["precision"] = "int8"
    data["device"]["peak_gflops"]["int8"] = 600
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match="precision 'int8' vs 'fp32'"):
        predictor_for(load_profile(tmp_path / "p.yaml"))


def test_table_for_other_threads_is_refused(tmp_path: Path) -> None:
    """Latency depends on the thread count: a 2-thread table cannot predict a 4-thread profile."""
    table_path = _table(tmp_path)
    data = yaml.safe_load((shipped_profiles_dir() / "cpu-host.yaml").read_text())
    data["latency_table"] = table_path.name
    data["runtime"]["threads"] = 4
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match="threads 4 vs 2"):
        predictor_for(load_profile(tmp_path / "p.yaml"))


def test_host_profile_notes_a_table_measured_on_another_machine(tmp_path: Path) -> None:
    from learngene_deploy.facts import host_facts

    here = host_facts()
    profile = load_profile("cpu-host")
    profile = dataclasses.replace(profile, budgets=dataclasses.replace(profile.budgets, latency_ms=1e6))
    arch = ArchSpec.from_dict(LatencyTable.load(_table(tmp_path)).points[0]["arch"])
    grid = [Candidate({"depth": arch.depth}, arch)]

    def notes(host: dict) -> list[str]:
        table = LatencyTable.load(_table(tmp_path, host=host))
        return [n for n in select(grid, profile, predictor=TablePredictor(table, 90)).notes if "another machine" in n]

    assert notes(here) == []
    assert notes(here | {"hostname": "renamed-container"}) == []  # the hostname alone does not change latency
    assert notes({}) == []  # a table without host facts is not second-guessed
    other = notes(here | {"cpu": "Some Other CPU", "logical_cpus": 64})
    assert len(other) == 1 and "'Some Other CPU' there" in other[0] and "64 there" in other[0]
    assert "lgdeploy profiles calibrate cpu-host" in other[0]
    not_host = dataclasses.replace(profile, host=False)  # a target profile's table is measured elsewhere on purpose
    table = LatencyTable.load(_table(tmp_path, host=here | {"cpu": "Some Other CPU"}))
    assert not any("another machine" in n for n in select(grid, not_host, predictor=TablePredictor(table, 90)).notes)


def test_table_margin_guards_the_latency_budget(tmp_path: Path) -> None:
    """A size measured just under the budget fits without a guard band and is refused with one."""
    table = LatencyTable.load(_table(tmp_path, margin=0.2))
    assert table.margin == 0.2, "the margin survives save/load"
    measured_arch = ArchSpec.from_dict(table.points[0]["arch"])
    profile = load_profile("cpu-host")
    profile = dataclasses.replace(
        profile, budgets=dataclasses.replace(profile.budgets, latency_ms=130.0, memory_mb=1e6, model_size_mb=1e6)
    )
    cand = [Candidate({"depth": measured_arch.depth}, measured_arch, 0.9)]
    loose = TablePredictor(dataclasses.replace(table, margin=0.0), 90)
    assert select(cand, profile, predictor=loose).chosen.fits  # 123 ms <= 130 ms
    with pytest.raises(SelectionError, match=r"latency 123 ms \(\+20% margin\) > 130 ms"):
        select(cand, profile, predictor=TablePredictor(table, 90))  # 123 x 1.2 > 130
    roomy = dataclasses.replace(profile, budgets=dataclasses.replace(profile.budgets, latency_ms=150.0))
    sel = select(cand, roomy, predictor=TablePredictor(table, 90))
    assert sel.chosen.latency_margin == 0.2 and any("20% guard band" in n for n in sel.notes)
    assert sel.to_dict()["chosen"]["latency_margin"] == 0.2


def test_guard_band_is_the_leave_one_out_error() -> None:
    from learngene_deploy.sizing.calibrate import guard_band

    truth = [0.3, 0.05, 9.0, 20.0, 0.002]
    exact = _synthetic_points(truth)
    jitter = torch.Generator().manual_seed(0)
    noisy = [(a, ms * (0.8 + 0.4 * torch.rand(1, generator=jitter).item())) for a, ms in exact]  # +-20 %
    _, clean_err = fit(exact, batch=1)
    _, noisy_err = fit(noisy, batch=1)
    assert clean_err["loo_median_rel"] < 1e-6 and guard_band(clean_err) < 1e-4
    assert noisy_err["loo_median_rel"] >= noisy_err["median_rel"], "unseen sizes are predicted worse than fitted ones"
    assert 0.03 < guard_band(noisy_err) < 0.5
    assert guard_band(noisy_err, 0.5) == 0.0 < guard_band(noisy_err, 0.8) < guard_band(noisy_err, 0.95)
    # too few points for leave-one-out: the in-sample median error, scaled the same way (z(0.9) x 1.4826)
    assert guard_band({"median_rel": 0.07}) == pytest.approx(0.07 * 1.2816 * 1.4826, abs=1e-3)
    with pytest.raises(ProfileError, match=r"confidence must be in \[0.5, 1\)"):
        guard_band(noisy_err, 1.0)


def test_pass_drift_reports_how_much_the_machine_moved_between_passes(tmp_path: Path) -> None:
    from learngene_deploy.sizing.calibrate import pass_drift

    def point(p50: float, factors: list[float]) -> dict:
        return {"p50_ms": p50, "round_p50_ms": [p50 * f for f in factors]}

    steady = [point(1.0, [1.0, 1.02, 1.01]), point(3.0, [1.01, 1.0, 1.02]), point(7.0, [1.0, 1.01, 1.0])]
    slow_second_pass = [point(1.0, [1.0, 1.3, 1.0]), point(3.0, [1.02, 1.25, 1.0]), point(7.0, [1.0, 1.2, 1.01])]
    assert pass_drift(steady) == pytest.approx(0.01, abs=1e-3)
    assert pass_drift(slow_second_pass) == pytest.approx(0.25, abs=1e-3)  # pass medians 1.0, 1.25, 1.0
    assert pass_drift([point(1.0, [1.0])]) is None, "one round: no passes to compare"
    table = LatencyTable.load(_table(tmp_path, drift=0.25))
    assert table.drift == 0.25, "the drift survives save/load"


@pytest.mark.parametrize("confidence", [0.5, 0.9])
def test_guard_band_meets_budgets_as_often_as_promised(confidence: float) -> None:
    """Calibrate on noisy measurements, then re-measure unseen sizes: the band holds about `confidence` of them."""
    import numpy as np

    from learngene_deploy.sizing.calibrate import guard_band

    truth = _synthetic_points([0.3, 0.05, 9.0, 20.0, 0.002])
    rng = np.random.default_rng(0)
    held = []
    for _ in range(60):
        order = rng.permutation(len(truth))
        calib = [(truth[i][0], truth[i][1] * rng.lognormal(0, 0.06)) for i in order[:12]]
        coef, err = fit(calib, batch=1)
        band = guard_band(err, confidence)
        for i in order[12:]:
            arch, ms = truth[i]
            predicted = sum(coef[k] * f for k, f in zip(FEATURES, features(arch, 1), strict=True))
            held.append(ms * rng.lognormal(0, 0.06) <= predicted * (1 + band))
    assert abs(np.mean(held) - confidence) < 0.07, f"{np.mean(held):.3f} of re-measured sizes met the budget"


@pytest.mark.parametrize("content", ["not json", '{"format": "other"}', '{"format": "lgdeploy-latency-table"}'])
def test_corrupt_table_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(ProfileError):
        LatencyTable.load(path)


@pytest.mark.slow
def test_calibrate_writes_a_table_that_select_uses(tmp_path: Path) -> None:
    """`profiles calibrate` times real compiled models; the profile then predicts from the table."""
    from typer.testing import CliRunner

    from learngene_deploy.cli import app
    from learngene_deploy.learngene.io import save_learngene
    from learngene_deploy.learngene.ldr import LDRGenerator

    arch = ArchSpec(img_size=16, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=5, num_heads=2)
    lg = save_learngene(tmp_path / "lg.safetensors", LDRGenerator(arch, 2))
    table_path = tmp_path / "cpu-host.latency.json"
    result = CliRunner().invoke(
        app,
        ["profiles", "calibrate", "cpu-host", "--out", str(table_path), "-l", str(lg), "--sizes", "5",
         "--runs", "5", "--rounds", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = LatencyTable.load(table_path)
    assert len(table.points) == 5 and len({json.dumps(p["arch"]) for p in table.points}) == 5
    assert all(0 < p["p50_ms"] <= p["p90_ms"] <= p["p99_ms"] for p in table.points)
    depths = sorted(p["arch"]["depth"] for p in table.points)
    assert depths[0] == 1 and depths[-1] == 5, "the spread includes the smallest and the largest size"
    data = yaml.safe_load((shipped_profiles_dir() / "cpu-host.yaml").read_text())
    data["latency_table"] = table_path.name
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data))
    predictor = predictor_for(load_profile(tmp_path / "mine.yaml"))
    measured = table.points[0]
    # cpu-host is `backend: auto`: the file holds one table per installed runtime, and a measured size is predicted
    # by the fastest runtime's measurement of it (the first table alone made this test depend on which was faster)
    same = [p["p90_ms"] for t in load_tables(table_path) for p in t.points if p["arch"] == measured["arch"]]
    assert len(same) == len(load_tables(table_path)) >= 1
    assert predictor.predict(ArchSpec.from_dict(measured["arch"])) == (min(same), "measured")
    assert all(len(p["round_p50_ms"]) == 1 and p["spread"] == 0.0 for p in table.points), "one round: no spread"
    assert table.margin_confidence == 0.9, "the default confidence is recorded with the band"
    assert table.drift is None, "one round per size: no drift between passes"
    five_points = table.fit_error["median_rel"] * 1.2816 * 1.4826  # no leave-one-out with 5 points
    assert table.margin == pytest.approx(five_points, abs=1e-3)


def _synthetic_device(arch: ArchSpec) -> float:
    """A device the fitted model cannot describe exactly: wide matmuls run more efficiently than narrow ones."""
    linear, attention = costs.flops(arch, 1)
    efficiency = (arch.embed_dim / 64) ** 0.5  # per-FLOP speed grows with width
    return 0.2 + 0.04 * arch.depth + 2e-6 * linear / efficiency + 1e-5 * attention


def _width_grid() -> list[Candidate]:
    """A LeTs-like grid without an accuracy table: depths 1-12 x four widths."""
    base = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=2, num_heads=2)
    return [Candidate({"depth": d, "width": w}, base.replace(depth=d, embed_dim=w, num_heads=w // 32))
            for d in range(1, 13) for w in (64, 96, 128, 192)]  # fmt: skip


def _fake_measure(device, seen: list | None = None, second_round=None):
    """`calibrate.measure` on a synthetic ``device`` instead of compiled models; each pass's sizes go to ``seen``.

    ``second_round``, when given, returns how much slower a second round of every size is (for the pass drift).
    """

    def measure(archs, profile, workdir, **kwargs):
        if seen is not None:
            seen.append(list(archs))
        points = []
        for a in archs:
            t = device(a)
            rounds = [t] if second_round is None else [t, t * second_round()]
            points.append({"arch": a.to_dict(), "p50_ms": t, "p90_ms": t, "p99_ms": t, "round_p50_ms": rounds})
        return points

    return measure


def test_calibration_times_the_sizes_selection_can_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second pass times the front the first fit predicts; then a chosen size is predicted by its measurement."""
    from learngene_deploy.sizing import calibrate as calibration

    grid = _width_grid()
    passes = []
    monkeypatch.setattr(calibration, "measure", _fake_measure(_synthetic_device, seen=passes))
    profile = load_profile("cpu-host")
    spread_only = calibration.calibrate(profile, grid, sizes=8, front=0, rounds=1)
    assert len(passes) == 1 and len(spread_only.points) == 8
    passes.clear()
    table = calibration.calibrate(profile, grid, sizes=8, rounds=1)
    assert len(passes) >= 2, "a spread for the fit, then the front"
    expected = [p.candidate.arch for p in pareto_front(grid, profile, TablePredictor(spread_only, 90))]
    assert passes[1] == [a for a in expected if a not in passes[0]] and passes[1], "exactly the new front sizes"
    assert [p["pass"] for p in table.points] == ["spread"] * 8 + ["front"] * (len(table.points) - 8)
    timed = [a for batch in passes for a in batch]
    assert len(timed) == len(set(timed)) == len(table.points) <= 8 + calibration.DEFAULT_FRONT_SIZES
    final_front = pareto_front(grid, profile, TablePredictor(table, 90))
    assert all(p.latency_source == "measured" for p in final_front), "the front as finally predicted is timed"

    def chosen(t: LatencyTable, budget: float) -> tuple[float, str]:
        tight = dataclasses.replace(profile, budgets=dataclasses.replace(profile.budgets, latency_ms=budget))
        pick = select(grid, tight, predictor=TablePredictor(t, 90)).chosen
        return _synthetic_device(pick.candidate.arch) / budget, pick.latency_source

    budgets = sorted({round(_synthetic_device(c.arch) * 1.03, 3) for c in grid})[2:]
    with_front = [chosen(table, b) for b in budgets]
    without = [chosen(spread_only, b) for b in budgets]
    assert all(use <= 1 for use, _ in with_front + without)
    assert all(source == "measured" for _, source in with_front), "every choice was timed in calibration"
    mean_use = sum(u for u, _ in with_front) / len(budgets), sum(u for u, _ in without) / len(budgets)
    assert mean_use[0] > mean_use[1] + 0.02, f"mean budget use with / without the front pass: {mean_use}"


def test_front_sizes_caps_and_spreads(tmp_path: Path) -> None:
    from learngene_deploy.sizing.calibrate import front_sizes

    base = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=2, num_heads=2)
    grid = [Candidate({"depth": d}, base.replace(depth=d)) for d in range(1, 11)]  # every size on the front
    table = LatencyTable.load(_table(tmp_path))
    profile = load_profile("cpu-host")
    assert front_sizes(grid, profile, table, 0, []) == []
    assert [a.depth for a in front_sizes(grid, profile, table, 4, [])] == [1, 4, 7, 10]
    assert [a.depth for a in front_sizes(grid, profile, table, 20, [grid[0].arch])] == list(range(2, 11))
    rt = profile.runtime
    five = costs.estimate(grid[4].arch, batch=1, precision=rt.precision, backend=rt.backend).weight_mb
    small = dataclasses.replace(profile, budgets=dataclasses.replace(profile.budgets, model_size_mb=five))
    assert [a.depth for a in front_sizes(grid, small, table, 20, [])] == [1, 2, 3, 4, 5], "only sizes that fit"


def test_calibrate_cli_reports_front_pass_and_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI says how many front sizes it timed, and warns when the machine's speed moved between passes."""
    from typer.testing import CliRunner

    from learngene_deploy.cli import app
    from learngene_deploy.learngene.io import save_learngene
    from learngene_deploy.learngene.lets import LeTsGenerator
    from learngene_deploy.sizing import calibrate as calibration

    slow_pass = {"value": 1.0}  # how much slower the second round of every size is
    monkeypatch.setattr(
        calibration, "measure", _fake_measure(_synthetic_device, second_round=lambda: slow_pass["value"])
    )
    generator = LeTsGenerator(num_classes=10, img_size=32, patch_size=4, head_dim=32, learngene_depth=2,
                              learngene_dim=64, aux_depth=8, aux_dim=128)  # fmt: skip
    lg = save_learngene(tmp_path / "lets.safetensors", generator)
    args = ["profiles", "calibrate", "cpu-host", "-l", str(lg), "--sizes", "6"]
    quiet = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "quiet.json")])
    assert quiet.exit_code == 0, quiet.output
    table = LatencyTable.load(tmp_path / "quiet.json")
    on_front = sum(p["pass"] == "front" for p in table.points)
    assert on_front > 0 and f"({on_front} more on the predicted Pareto front)" in quiet.output
    assert "warning" not in quiet.output and table.drift == 0.0
    slow_pass["value"] = 1.3
    noisy = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "noisy.json"), "--front", "0"])
    assert noisy.exit_code == 0, noisy.output
    assert "(0 more on the predicted Pareto front)" in noisy.output
    assert "speed moved by 30% between calibration passes" in noisy.output


def test_front_passes_follow_a_front_that_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Noisy measurements move the front; later passes time the sizes that join it, so the final front is timed."""
    import zlib

    from learngene_deploy.sizing import calibrate as calibration

    def noisy_device(arch: ArchSpec) -> float:  # +-20 % per size, fixed for a size (like one noisy measurement)
        return _synthetic_device(arch) * (1 + 0.2 * (2 * zlib.crc32(arch.name.encode()) / 2**32 - 1))

    monkeypatch.setattr(calibration, "measure", _fake_measure(noisy_device))
    grid = _width_grid()
    profile = load_profile("cpu-host")
    default_passes = calibration.FRONT_PASSES

    def untimed_on_front(passes: int) -> int:
        monkeypatch.setattr(calibration, "FRONT_PASSES", passes)
        table = calibration.calibrate(profile, grid, sizes=8, rounds=1)
        return sum(p.latency_source != "measured" for p in pareto_front(grid, profile, TablePredictor(table, 90)))

    assert untimed_on_front(1) > 0, "one pass over the first fit's front leaves a size that joined it later"
    assert untimed_on_front(default_passes) == 0


def _with_latency_budget(name: str, latency_ms: float):  # type: ignore[no-untyped-def]
    profile = load_profile(name)
    return dataclasses.replace(profile, budgets=dataclasses.replace(profile.budgets, latency_ms=latency_ms))


def test_budget_use_says_when_the_learngene_is_the_limit() -> None:
    """Every size fits and the chosen one uses under a quarter of the budget: say that the learngene is the limit."""
    base = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=4, num_heads=2)
    cands = [Candidate({"depth": d}, base.replace(depth=d), 0.5 + 0.1 * d) for d in (1, 2, 3)]
    sel = select(cands, _with_latency_budget("cpu-host", 1000.0))
    use = sel.budget_use
    assert use is not None and use["limited_by"] == "learngene" and use["largest"] == "depth=3"
    largest = max(sel.predictions, key=lambda p: p.flops)
    assert use["largest_share"] == pytest.approx(largest.latency_ms / 1000.0)
    assert use["chosen_share"] < 0.25
    assert sel.notes[0].startswith("the learngene, not the device, limits this choice: its largest size, depth=3")
    assert json.loads(json.dumps(sel.to_dict()))["budget_use"]["largest"] == "depth=3"


def test_budget_use_is_silent_when_the_budget_bounds_the_choice() -> None:
    """A size too slow for the budget means the device is the limit; a size near the budget means it is used."""
    sel = select(_candidates(), load_profile("raspberry-pi-5"))
    assert any("latency" in m for p in sel.predictions for m in p.misses)
    assert sel.budget_use is None and not any("limits this choice" in n for n in sel.notes)
    # every size fits, but the chosen one uses more than a quarter of the budget
    base = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=4, num_heads=2)
    cands = [Candidate({"depth": d}, base.replace(depth=d), 0.5 + 0.1 * d) for d in (1, 2, 3)]
    roomy = select(cands, _with_latency_budget("cpu-host", 1000.0))
    snug = select(cands, _with_latency_budget("cpu-host", roomy.chosen.latency_ms * 2))
    assert snug.chosen.candidate.size == {"depth": 3} and snug.budget_use is None
