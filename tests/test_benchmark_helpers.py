"""Pure helpers of the benchmark scripts (the scripts themselves measure and are never run by the tests)."""

from __future__ import annotations

import math
import random

import pytest

from benchmarks import latency_ceiling as ceiling


def test_window_share_counts_checks_inside_75_to_100_percent_of_the_budget():
    # budget placed at predicted x (1 + band): a ratio r uses r / (1 + band) of it
    assert ceiling.window_share([0.8, 0.9, 1.0], 0.0) == 1.0
    assert ceiling.window_share([0.7, 0.9, 1.05], 0.0) == pytest.approx(1 / 3)
    assert ceiling.window_share([1.1], 0.0) == 0.0
    assert ceiling.window_share([1.1], 0.1) == 1.0
    assert math.isnan(ceiling.window_share([], 0.1))


def test_best_band_is_the_smallest_band_reaching_the_highest_share():
    assert ceiling.best_band([1.2, 1.2, 1.2]) == (1.0, pytest.approx(0.2))
    assert ceiling.best_band([0.8, 0.9]) == (1.0, 0.0)
    # a 0.6-1.3 spread (more than the 75-100 % window allows) cannot all be placed in it
    share, _ = ceiling.best_band([0.6, 1.0, 1.3])
    assert share == pytest.approx(2 / 3)


def test_ceiling_falls_as_measurements_repeat_worse():
    rng = random.Random(0)

    def share(sigma: float) -> float:
        return ceiling.best_band([math.exp(rng.gauss(0.0, sigma)) for _ in range(400)])[0]

    quiet, noisy = share(0.02), share(0.2)
    assert quiet == 1.0
    assert noisy < 0.6  # +-0.144 in log is about 0.72 sigma at sigma 0.2: ~53 % inside at best


def test_ratios_pair_every_check_with_the_prediction_and_with_the_other_checks():
    predicted, repeat = ceiling.ratios([(2.0, [2.0, 2.2]), (1.0, [0.9])])
    assert predicted == pytest.approx([1.0, 1.1, 0.9])
    assert sorted(repeat) == pytest.approx(sorted([2.0 / 2.2, 2.2 / 2.0]))  # a single check pairs with nothing


def test_achieved_and_chosen_checks_read_a_latency_prediction_result():
    result = {
        "budgets": [
            {"budget_ms": 2.0, "chosen": "depth=4", "predicted_ms": 1.6, "measured_ms": [1.7, 2.1, 1.4]},
            {"budget_ms": 3.0, "chosen": "depth=4", "predicted_ms": 1.6, "measured_ms": [1.7, 2.1, 1.4]},
            {"budget_ms": 0.5, "chosen": None, "measured_ms": []},  # nothing fitted: fails its three checks
        ]
    }
    # checks, met (1.7, 1.4 | all three), met and >= 75 % used (1.7 of 2.0 | 2.1 of 3.0 is 70 %: none)
    assert ceiling.achieved(result["budgets"]) == (9, 5, 1)
    assert ceiling.achieved(result["budgets"], 4) == (12, 5, 1)  # four checks per budget: the empty one fails 4
    assert ceiling.chosen_checks(result) == [(1.6, [1.7, 2.1, 1.4])]  # one model, counted once


def _runtime_row(name: str, p50: float, *, fraction: float = 0.5, drop: float | None = None) -> dict:
    backend, precision = name.split("-")[:2]
    row = {"name": name, "backend": backend, "precision": precision, "fraction_of_peak": fraction,
           "latency": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2}}  # fmt: skip
    return row | ({"drop_points": drop} if drop is not None else {})


def test_runtimes_auto_choice_uses_the_builds_rule():
    from benchmarks import runtimes

    rows = [_runtime_row("pytorch-fp32", 17.0), _runtime_row("onnxruntime-fp32", 11.4),
            _runtime_row("openvino-fp32", 7.5), _runtime_row("onnxruntime-int8", 12.0),
            _runtime_row("openvino-int8", 3.9)]  # fmt: skip
    auto = runtimes.auto_choices(rows)
    assert auto["fp32"]["shipped"] == "openvino-fp32"
    assert auto["int8"]["shipped"] == "openvino-int8" and not auto["int8"]["fell_back"]
    slower = [r for r in rows if r["name"] != "openvino-int8"]
    assert runtimes.auto_choices(slower)["int8"]["fell_back"], "ORT's int8 is slower than its fp32: fp32 is shipped"


def test_runtimes_judge_reads_the_three_targets():
    from benchmarks import runtimes

    def shape(key: str, gflop: float, rows: list[dict]) -> dict:
        return {"key": key, "gflop_per_image": gflop, "rows": rows, "auto": runtimes.auto_choices(rows)}

    vit_ti = [_runtime_row("pytorch-fp32", 17.1), _runtime_row("openvino-fp32", 7.5)]
    vit_ti.append(_runtime_row("openvino-int8", 2.9))
    wide = [
        _runtime_row("pytorch-fp32", 27.6),
        _runtime_row("openvino-fp32", 10.1, fraction=0.87),
        _runtime_row("openvino-int8", 4.5),
    ]
    trained = [
        _runtime_row("pytorch-fp32", 1.0, drop=0.0),
        _runtime_row("openvino-fp32", 0.5),
        _runtime_row("openvino-int8", 0.4, drop=0.6),
    ]
    results = [shape("vit-ti", 2.49, vit_ti), shape("5x384", 3.88, wide), shape("learngene", 0.03, trained)]
    targets = runtimes.judge(results)
    assert targets["auto_vs_eager_vit_ti"]["speedup"] == pytest.approx(17.1 / 7.5)
    assert targets["auto_vs_eager_vit_ti"]["met"]
    per_shape = {x["shape"]: x for x in targets["int8_vs_best_fp32"]["per_shape"]}
    assert per_shape["vit-ti"]["speedup"] == pytest.approx(7.5 / 2.9) and per_shape["vit-ti"]["met"]
    assert per_shape["5x384"]["speedup"] == pytest.approx(10.1 / 4.5) and not per_shape["5x384"]["met"]
    assert per_shape["learngene"]["drop_points_on_trained_model"] == 0.6
    largest = targets["openvino_fp32_fraction_of_peak_largest"]
    assert largest["shape"] == "5x384" and largest["met"]
    assert runtimes.fraction(2.0, 10.0, 400.0) == pytest.approx((200.0, 0.5))


def test_hold_out_moves_seeded_training_images_to_validation():
    from benchmarks.learngene_vs_scratch import hold_out, scratch_setting
    from learngene_deploy.data import load_data

    data = load_data("digits", img_size=8, train_limit=200, val_limit=50)
    held = hold_out(data, 40, seed=3)
    assert len(held.val) == 40 and len(held.train) == len(data.train) - 40
    train_rows, val_rows = set(held.train.rows.tolist()), set(held.val.rows.tolist())
    assert not train_rows & val_rows and train_rows | val_rows == set(data.train.rows.tolist())
    assert set(hold_out(data, 40, seed=4).val.rows.tolist()) != val_rows  # seeded
    assert held.info["holdout"] == {"images": 40, "seed": 3}
    # a scratch arm measured on the held-out split is never reused for the validation split, or the reverse
    assert scratch_setting(held.info, {}, 10) != scratch_setting(data.info, {}, 10)
    with pytest.raises(SystemExit, match="--holdout"):
        hold_out(data, len(data.train), seed=0)
