"""What a missed latency budget tells the user: measured against predicted, and what to do next."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from learngene_deploy.artifact import MANIFEST
from learngene_deploy.artifact.store import record_target_benchmark
from learngene_deploy.artifact.verdict import judge, latency_miss_note
from learngene_deploy.profile import resolve_profile


def test_no_note_when_the_budget_is_met():
    assert latency_miss_note(1.9, 2.0, 1.5, "measured", "cpu-host") is None
    assert latency_miss_note(2.0, 2.0, 1.5, "fit", "cpu-host") is None


def test_calibrated_prediction_says_how_far_off_and_what_to_do():
    note = latency_miss_note(2.4, 2.0, 1.5, "measured", "cpu-host")
    assert "2.4 ms against the 2 ms budget" in note
    assert "60% above the 1.5 ms its latency table predicted" in note
    assert "`lgdeploy bench`" in note and "`lgdeploy profiles calibrate cpu-host --out FILE`" in note


def test_roofline_prediction_points_to_calibration():
    note = latency_miss_note(3.0, 2.0, 1.2, "roofline", "jetson-orin-nano")
    assert "uncalibrated roofline estimate was 1.2 ms" in note
    assert "`lgdeploy profiles calibrate jetson-orin-nano --out FILE`" in note
    assert "%" not in note  # no measured-vs-table percentage for a guess


def test_size_predicted_over_the_budget_says_so():
    assert "already predicted over it (2.5 ms)" in latency_miss_note(2.6, 2.0, 2.5, "fit", "cpu-host")


def test_build_verdict_carries_the_note_only_for_a_measured_miss():
    profile = resolve_profile("cpu-host", None, None)
    tight = dataclasses.replace(profile, budgets=dataclasses.replace(profile.budgets, latency_ms=2.0))
    missed = judge(tight, 1.5, "measured", 10.0, {"p90_ms": 2.4, "model_rss_mb": 50.0}, 1.0)["latency"]
    assert not missed["passed"] and "60% above" in missed["note"]
    met = judge(tight, 1.5, "measured", 10.0, {"p90_ms": 1.8, "model_rss_mb": 50.0}, 1.0)["latency"]
    assert met["passed"] and "note" not in met
    not_host = dataclasses.replace(tight, host=False)  # judged on the prediction: nothing measured to explain
    assert "note" not in judge(not_host, 2.4, "fit", 10.0, {"p90_ms": 9.9}, 1.0)["latency"]


def test_target_measurement_adds_and_clears_the_note(tmp_path: Path):
    import yaml

    from learngene_deploy.profile import load_profile, shipped_profiles_dir

    data = yaml.safe_load((shipped_profiles_dir() / "cpu-host.yaml").read_text())
    data["name"], data["budgets"]["latency_ms"] = (
        "two-ms",
        2.0,
    )  # the budget comes from a profile file, not the manifest
    (tmp_path / "two-ms.yaml").write_text(yaml.safe_dump(data))
    profile = load_profile(str(tmp_path / "two-ms.yaml"))
    manifest = {
        "profile": {"name": "two-ms", "sha256": profile.sha256, "source": profile.source},
        "latency": {"predicted_ms": 1.5, "predicted_source": "fit", "measured_ms": None, "percentile": 90},
        "budgets": {"latency": {"budget_ms": 2.0, "percentile": 90, "value_ms": 1.5, "basis": "x", "passed": True}},
    }
    record = {"stats": {"p90_ms": 2.4}, "host": {"hostname": "box"}}
    record_target_benchmark(tmp_path, manifest, record)
    written = json.loads((tmp_path / MANIFEST).read_text())
    assert not written["budgets"]["latency"]["passed"]
    assert "60% above the 1.5 ms" in written["budgets"]["latency"]["note"]
    record_target_benchmark(tmp_path, manifest, {"stats": {"p90_ms": 1.7}, "host": {"hostname": "box"}})
    written = json.loads((tmp_path / MANIFEST).read_text())
    assert written["budgets"]["latency"]["passed"] and "note" not in written["budgets"]["latency"]
