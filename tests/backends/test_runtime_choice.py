"""The runtime auto-choice, INT8's speed gate and the no-silent-fallback check (learngene_deploy.backends.choice)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from learngene_deploy.backends import get_backend
from learngene_deploy.backends.base import Execution
from learngene_deploy.backends.choice import Contender, Planned, choose, plan, table_speed_gate
from learngene_deploy.errors import ConfigError, VerificationError
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.profile import load_profile, shipped_profiles_dir


def _measured(backend: str, precision: str, p90: float, *, role: str = "candidate", rejected: str | None = None):
    stats = None if rejected else {"p50_ms": p90 * 0.9, "p90_ms": p90, "p99_ms": p90 * 1.2, "throughput_ips": 1.0}
    return Contender(Planned(backend, precision, role), stats=stats, rejected=rejected)


def test_plan_auto_is_every_runtime_of_the_precision_and_int8_on_the_host_gets_fp32_twins() -> None:
    assert [p.name for p in plan("auto", "fp32", host=True)] == ["onnxruntime-fp32", "openvino-fp32"]
    gpu = ["onnxruntime-fp32", "openvino-fp32", "tensorrt-fp32"]
    assert [p.name for p in plan("auto", "fp32", host=True, accelerator="gpu")] == gpu, "TensorRT needs an NVIDIA GPU"
    assert "onnxruntime-fp16" not in [p.name for p in plan("auto", "fp16", host=True)], "ORT's CPU has no fp16"
    assert [(p.name, p.role) for p in plan("onnxruntime", "int8", host=True)] == [
        ("onnxruntime-int8", "candidate"),
        ("onnxruntime-fp32", "fp32 twin"),
    ]
    assert [p.name for p in plan("onnxruntime", "int8", host=False)] == ["onnxruntime-int8"], "no twin off the host"


def test_auto_ships_the_fastest_verified_contender_and_says_why() -> None:
    contenders = [
        _measured("onnxruntime", "fp32", 11.4),
        _measured("openvino", "fp32", 7.5),
        _measured("tensorrt", "fp32", 0.0, rejected="not installed here"),
    ]
    chosen = choose(contenders, 90, "fp32")
    assert chosen.winner.name == "openvino-fp32" and not chosen.fell_back
    assert "p90 7.5 ms" in chosen.why and "onnxruntime-fp32 11.4 ms (1.52x slower)" in chosen.why
    assert "not installed here: tensorrt" in chosen.why
    # a contender that failed a gate is never shipped, however fast
    contenders[1] = _measured("openvino", "fp32", 1.0, rejected="openvino-fp32 does not match pytorch")
    contenders[1].stats = {"p90_ms": 1.0}
    assert choose(contenders, 90, "fp32").winner.name == "onnxruntime-fp32"


def test_the_budget_percentile_decides() -> None:
    a, b = _measured("onnxruntime", "fp32", 10.0), _measured("openvino", "fp32", 10.0)
    a.stats |= {"p50_ms": 5.0, "p99_ms": 30.0}
    b.stats |= {"p50_ms": 8.0, "p99_ms": 12.0}
    assert choose([a, b], 50, "fp32").winner is a
    assert choose([a, b], 99, "fp32").winner is b


def test_int8_not_faster_than_its_fp32_twin_is_rejected_in_one_sentence() -> None:
    contenders = [_measured("onnxruntime", "int8", 12.1), _measured("onnxruntime", "fp32", 11.4, role="fp32 twin")]
    with pytest.raises(VerificationError) as info:
        choose(contenders, 90, "int8")
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    assert "onnxruntime int8 is not faster than its fp32 twin: p90 12.1 ms against 11.4 ms" in message
    assert "--int8-fallback fp32" in message


def test_int8_fallback_ships_the_fp32_twin_and_says_so() -> None:
    contenders = [_measured("onnxruntime", "int8", 12.1), _measured("onnxruntime", "fp32", 11.4, role="fp32 twin")]
    chosen = choose(contenders, 90, "int8", int8_fallback="fp32")
    assert chosen.fell_back and chosen.winner.name == "onnxruntime-fp32"
    assert chosen.why.startswith("INT8 was not faster than fp32 on any runtime, so --int8-fallback fp32 ships")
    (record,) = chosen.speed_gate
    assert record["applied"] and not record["passed"] and record["int8_ms"] == 12.1 and record["fp32_ms"] == 11.4
    with pytest.raises(ConfigError, match="not one of: fp32"):
        choose(contenders, 90, "int8", int8_fallback="fp16")


def test_auto_int8_keeps_the_runtime_whose_int8_is_faster() -> None:
    contenders = [
        _measured("onnxruntime", "int8", 8.5),
        _measured("openvino", "int8", 3.9),
        _measured("onnxruntime", "fp32", 8.0, role="fp32 twin"),  # ORT's INT8 is slower than its own fp32
        _measured("openvino", "fp32", 10.1, role="fp32 twin"),
    ]
    chosen = choose(contenders, 90, "int8")
    assert chosen.winner.name == "openvino-int8" and not chosen.fell_back
    assert contenders[0].rejected and "not faster than its fp32 twin" in contenders[0].rejected
    gate = {r["backend"]: r for r in chosen.speed_gate}
    assert gate["openvino"]["passed"] and gate["openvino"]["speedup"] == pytest.approx(10.1 / 3.9)
    assert not gate["onnxruntime"]["passed"]


def test_no_verified_contender_fails_with_the_reason() -> None:
    only = [_measured("onnxruntime", "fp32", 1.0, rejected="onnxruntime-fp32 does not match pytorch (max abs diff)")]
    with pytest.raises(VerificationError, match=r"^onnxruntime-fp32 does not match pytorch \(max abs diff\)\.$"):
        choose(only, 90, "fp32")
    two = [*only, _measured("openvino", "fp32", 1.0, rejected="openvino was asked to run on GPU but ran on CPU")]
    with pytest.raises(VerificationError, match="no runtime produced a verified fp32 model"):
        choose(two, 90, "fp32")


# --- no silent fallback ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("backend", "requested", "executed", "passed"),
    [
        ("onnxruntime", "CPUExecutionProvider", ("CPUExecutionProvider",), True),
        ("onnxruntime", "CUDAExecutionProvider", ("CUDAExecutionProvider", "CPUExecutionProvider"), True),
        ("onnxruntime", "CUDAExecutionProvider", ("CPUExecutionProvider",), False),  # CUDA failed to start
        ("openvino", "GPU", ("GPU.0",), True),
        ("openvino", "GPU", ("CPU",), False),
        ("openvino", "AUTO", ("CPU",), True),  # AUTO may pick anything
        ("openvino", "CPU", None, True),  # not reported: recorded, not judged
    ],
)
def test_execution_matches_the_request(backend: str, requested: str, executed: tuple | None, passed: bool) -> None:
    execution = Execution(backend, requested, executed, "the runtime")
    assert execution.passed is passed
    assert execution.to_dict()["passed"] is passed
    if not passed:
        message = execution.message()
        assert "\n" not in message and message.endswith(".")
        assert f"asked to run the model on {requested} but ran it on {executed[0]}" in message


@pytest.mark.parametrize(("name", "expected"), [("onnxruntime", "CPUExecutionProvider"), ("openvino", "CPU")])
def test_runners_report_where_they_ran(name: str, expected: str, tiny_onnx: Path, tmp_path: Path) -> None:
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(backend.unavailable_reason())
    runner = backend.load_runner(backend.compile(tiny_onnx, tmp_path, precision="fp32"), threads=1)
    execution = runner.execution()
    assert execution.requested == expected and execution.executed[0].startswith(expected) and execution.passed


def test_a_provider_that_fell_back_fails_the_build_gate(tiny_onnx: Path, tmp_path: Path) -> None:
    """ORT's session silently drops a provider it cannot start; the build's gate catches it in one sentence."""
    from learngene_deploy.pipeline.stages import _check_execution

    backend = get_backend("onnxruntime")
    compiled = backend.compile(tiny_onnx, tmp_path, precision="fp32")
    runner = backend.load_runner(compiled, threads=1)
    assert _check_execution(runner, "onnxruntime")["executed"] == ["CPUExecutionProvider"]
    asked_for_cuda = dataclasses.replace(
        compiled, settings={**compiled.settings, "execution_provider": "CUDAExecutionProvider"}
    )
    runner.compiled = asked_for_cuda  # as if the session had been asked for CUDA and started on the CPU only
    with pytest.raises(VerificationError, match="asked to run the model on CUDAExecutionProvider but ran it on CPU"):
        _check_execution(runner, "onnxruntime")


# --- INT8's speed gate off the host: the target's calibrated tables ----------------------------------------------
ARCH = ArchSpec(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=64, depth=4, num_heads=2)


def _tables(tmp_path: Path, *, int8_scale: float, precisions: tuple[str, ...] = ("int8", "fp32")) -> Path:
    from learngene_deploy.sizing.latency import FEATURES, LatencyTable, save_tables

    base = {"const": 0.5, "blocks": 0.1, "linear_gflop": 20.0, "attention_gflop": 30.0, "activation_melem": 0.01}
    tables = [
        LatencyTable(
            profile="snapdragon-8-gen-3",
            backend="onnxruntime",
            precision=precision,
            threads=4,
            batch=1,
            percentile=90,
            points=[],
            coef={k: base[k] * (int8_scale if precision == "int8" else 1.0) for k in FEATURES},
        )
        for precision in precisions
    ]
    return save_tables(tables, tmp_path / "phone.latency.json")


def _phone(tmp_path: Path, table: Path | None) -> object:
    data = yaml.safe_load((shipped_profiles_dir() / "snapdragon-8-gen-3.yaml").read_text())
    if table is not None:
        data["latency_table"] = table.name
    (tmp_path / "phone.yaml").write_text(yaml.safe_dump(data))
    return load_profile(tmp_path / "phone.yaml")


def test_off_host_speed_gate_says_why_it_was_not_applied(tmp_path: Path) -> None:
    profile = load_profile("snapdragon-8-gen-3")
    assert profile.runtime.precision == "int8" and not profile.host
    record = table_speed_gate(profile, ARCH)
    assert not record["applied"] and record["passed"]
    assert "no calibrated latency table" in record["reason"] and "--with-fp32" in record["reason"]
    only_int8 = table_speed_gate(_phone(tmp_path, _tables(tmp_path, int8_scale=0.5, precisions=("int8",))), ARCH)
    assert not only_int8["applied"] and "does not hold onnxruntime at both int8 and fp32" in only_int8["reason"]


@pytest.mark.parametrize(("int8_scale", "passed"), [(0.4, True), (1.3, False)])
def test_off_host_speed_gate_uses_both_calibrated_tables(tmp_path: Path, int8_scale: float, passed: bool) -> None:
    profile = _phone(tmp_path, _tables(tmp_path, int8_scale=int8_scale))
    record = table_speed_gate(profile, ARCH)
    assert record["applied"] and record["passed"] is passed
    assert record["speedup"] == pytest.approx(1 / int8_scale, rel=1e-6)
    assert ("reason" in record) is not passed


def test_auto_selection_predicts_with_the_fastest_runtimes_table(tmp_path: Path) -> None:
    from learngene_deploy.sizing.latency import FEATURES, FastestPredictor, LatencyTable, predictor_for, save_tables
    from learngene_deploy.sizing.select import Candidate, select

    def table(backend: str, scale: float) -> LatencyTable:
        coef = {"const": 0.2, "blocks": 0.05, "linear_gflop": 9.0, "attention_gflop": 20.0, "activation_melem": 0.002}
        return LatencyTable(
            profile="cpu-host",
            backend=backend,
            precision="fp32",
            threads=2,
            batch=1,
            percentile=90,
            points=[],
            coef={k: coef[k] * scale for k in FEATURES},
        )

    path = save_tables([table("onnxruntime", 1.5), table("openvino", 1.0)], tmp_path / "host.latency.json")
    data = yaml.safe_load((shipped_profiles_dir() / "cpu-host.yaml").read_text())
    data["latency_table"] = path.name
    (tmp_path / "host.yaml").write_text(yaml.safe_dump(data))
    profile = load_profile(tmp_path / "host.yaml")
    predictor = predictor_for(profile)
    assert isinstance(predictor, FastestPredictor) and predictor.runtimes == ("onnxruntime", "openvino")
    ort_ms, _ = predictor.predictors[0].predict(ARCH)
    ov_ms, source = predictor.predict(ARCH)
    assert ov_ms == pytest.approx(ort_ms / 1.5) and source == "fit"
    assert predictor.runtime_for(ARCH) == "openvino"
    selection = select([Candidate({"depth": 4}, ARCH)], profile)
    assert selection.chosen.latency_runtime == "openvino"
    assert any("fastest of the calibrated runtimes (onnxruntime, openvino)" in n for n in selection.notes)
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    shown = CliRunner().invoke(app, ["select", "--profile", str(tmp_path / "host.yaml")])
    assert shown.exit_code == 0, shown.output
    assert "predicted with openvino" in shown.stdout and "(fit, openvino)" in shown.stdout
    # a named runtime with the same bundle predicts from its own table only
    data["runtime"]["backend"] = "onnxruntime"
    (tmp_path / "ort.yaml").write_text(yaml.safe_dump(data))
    assert predictor_for(load_profile(tmp_path / "ort.yaml")).predict(ARCH)[0] == pytest.approx(ort_ms)


def test_auto_without_a_table_says_the_roofline_ignores_the_runtime() -> None:
    from learngene_deploy.sizing.select import Candidate, select

    selection = select([Candidate({"depth": 4}, ARCH)], load_profile("cpu-host"))
    assert any(n.startswith("backend auto: latency is predicted without knowing") for n in selection.notes)


# --- accuracy-controlled INT8 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_accuracy_controlled_int8_keeps_sensitive_layers_in_fp32(
    name: str, tiny_model, tiny_onnx: Path, calibration_images, tmp_path: Path
) -> None:
    import onnx
    import torch

    from learngene_deploy._imports import is_available

    backend = get_backend(name)
    if not backend.is_available() or (name == "openvino" and not is_available("nncf")):
        pytest.skip(f"{name} (and nncf for openvino) is not installed here")
    with torch.no_grad():
        labels = tiny_model(torch.from_numpy(calibration_images)).argmax(1).numpy()
    compiled = backend.compile_accuracy_controlled(
        tiny_onnx, tmp_path, calibration_data=calibration_images, calibration_labels=labels, max_drop_points=0.0
    )
    record = compiled.settings["accuracy_control"]
    assert compiled.precision == "int8" and record["max_drop_points"] == 0.0
    assert record["search_drop_points"] <= 0.0, "the search stops only within the limit"
    assert "not the validation images" in record["data"]
    names = {n.name for n in onnx.load(tiny_onnx).graph.node}
    assert isinstance(record["fp32_layers"], list)
    if name == "onnxruntime":  # ORT's excluded nodes are nodes of the float graph
        assert set(record["fp32_layers"]) <= names and record["attempts"][0]["excluded"] == 0
    logits = backend.load_runner(compiled, threads=1).run(calibration_images[:4])
    assert logits.shape == (4, 10) and np.isfinite(logits).all()


def test_a_backend_without_accuracy_control_says_so(tiny_onnx: Path, tmp_path: Path) -> None:
    backend = get_backend("tensorrt")
    assert backend.accuracy_control is None
    with pytest.raises(ConfigError, match="has no accuracy-controlled INT8"):
        backend.compile_accuracy_controlled(
            tiny_onnx, tmp_path, calibration_data=np.zeros((1, 3, 32, 32), np.float32),
            calibration_labels=np.zeros(1, np.int64), max_drop_points=1.0,
        )  # fmt: skip


def test_calibration_labels_must_match_the_images() -> None:
    from learngene_deploy.backends.base import labelled_batches

    with pytest.raises(ConfigError, match="4 calibration images but 3 labels"):
        labelled_batches(np.zeros((4, 3, 8, 8), np.float32), np.zeros(3, np.int64), 1)
    assert len(labelled_batches(np.zeros((5, 3, 8, 8), np.float32), np.zeros(5, np.int64), 2)) == 2


def test_calibrate_with_fp32_writes_both_tables_and_the_off_host_gate_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`profiles calibrate --with-fp32` on an int8 device measures both precisions into one file (measurement faked)."""
    from typer.testing import CliRunner

    from learngene_deploy.cli import app
    from learngene_deploy.sizing import calibrate as calibration
    from learngene_deploy.sizing.cost import flops
    from learngene_deploy.sizing.latency import load_tables

    def measure(archs, profile, workdir, **kwargs):  # int8 at 40% of fp32's time on this synthetic device
        scale = 0.4 if profile.runtime.precision == "int8" else 1.0
        points = []
        for a in archs:
            t = scale * (0.2 + 0.05 * a.depth + 1e-8 * sum(flops(a)))
            points.append({"arch": a.to_dict(), "p50_ms": t, "p90_ms": t, "p99_ms": t, "round_p50_ms": [t]})
        return points

    monkeypatch.setattr(calibration, "measure", measure)
    table = tmp_path / "phone.latency.json"
    args = ["profiles", "calibrate", "snapdragon-8-gen-3", "--out", str(table), "--sizes", "6", "--front", "0"]
    result = CliRunner().invoke(app, [*args, "--with-fp32"])
    assert result.exit_code == 0, result.output
    assert [(t.backend, t.precision) for t in load_tables(table)] == [("onnxruntime", "int8"), ("onnxruntime", "fp32")]
    assert "onnxruntime int8: 6 sizes measured" in result.output and "onnxruntime fp32: 6 sizes" in result.output
    record = table_speed_gate(_phone(tmp_path, table), ARCH)
    assert record["applied"] and record["passed"] and record["speedup"] == pytest.approx(2.5, rel=0.05)
    refused = CliRunner().invoke(app, ["profiles", "calibrate", "cpu-host", "--out", str(table), "--with-fp32"])
    assert refused.exit_code == 1 and "already fp32" in refused.stderr


def test_none_available_names_each_reason_once_and_only_when_nothing_runs() -> None:
    from learngene_deploy.backends import none_available, unavailable_runtimes

    assert none_available({"onnxruntime": None, "tensorrt": "no tensorrt"}) is None
    assert none_available({}) is None
    assert none_available({"a": "no gpu", "b": "no gpu", "c": "no module"}) == "no gpu; no module"
    missing = unavailable_runtimes(["onnxruntime", "onnxruntime", "tensorrt"])
    assert list(missing) == ["onnxruntime", "tensorrt"] and missing["onnxruntime"] is None  # installed here (dev)
