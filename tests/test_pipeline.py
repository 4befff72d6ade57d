"""`lgdeploy build` end to end on tiny shapes: gates, skipped runtimes, refusals, the artifact it writes."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from learngene_deploy.artifact import PARTIAL_MARK, verify_artifact
from learngene_deploy.errors import ArtifactError, ConfigError, VerificationError
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.pipeline.run import BuildOptions, build
from learngene_deploy.profile import resolve_profile
from learngene_deploy.training.loop import CHECKPOINT_NAME, load_checkpoint

pytestmark = pytest.mark.slow

TINY = ArchSpec(img_size=16, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=3, num_heads=2)


@pytest.fixture(scope="module")
def learngene(make_tiny_learngene) -> Path:  # type: ignore[no-untyped-def]
    return make_tiny_learngene(TINY)


def _opts(learngene: Path, out: Path, **kw) -> BuildOptions:
    base = dict(
        profile="cpu-host",
        learngene=str(learngene),
        data="digits",
        finetune_steps=2,
        finetune_batch=16,
        out=out,
        verify_images=64,
        bench_runs=5,
        bench_rounds=1,
        bench_min_time_s=0.05,
    )
    return BuildOptions(**{**base, **kw})


def test_build_cpu_host_writes_a_verified_artifact(learngene: Path, tmp_path: Path) -> None:
    stages: list[str] = []
    result = build(_opts(learngene, tmp_path / "art"), log=lambda stage, _msg: stages.append(stage))
    assert list(dict.fromkeys(stages)) == [
        "select", "recompose", "finetune", "export", "simplify", "compile", "bench", "choose", "artifact"
    ]  # fmt: skip
    out = result.out_dir
    manifest = verify_artifact(out)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["skipped"] == []
    assert {"model.onnx", "report.md", "selection.svg"} <= set(manifest["files"])
    # the most accurate size of the table fits cpu-host and is chosen
    assert manifest["selection"]["size"] == {"depth": 3, "genes": 2} and manifest["selection"]["pinned"] is False
    # a 3 x 32 ViT at 16 px uses a sliver of cpu-host's budget: the manifest says the learngene is the limit
    use = manifest["selection"]["budget_use"]
    assert use["limited_by"] == "learngene" and use["largest"] == "depth=3 genes=2" and use["largest_share"] < 0.25
    assert any("limits this choice" in n for n in manifest["selection"]["notes"])
    assert manifest["architecture"]["depth"] == 3
    checks = {(c["reference"], c["candidate"]): c for c in manifest["checks"]}
    # cpu-host is `backend: auto`: ONNX Runtime and OpenVINO both compiled, verified and benchmarked side by side
    choice = manifest["runtime_choice"]
    shipped = choice["shipped"]
    assert choice["requested"] == "auto" and shipped in ("onnxruntime-fp32", "openvino-fp32")
    contenders = {c["name"]: c for c in choice["contenders"]}
    assert {"onnxruntime-fp32", "openvino-fp32"} <= set(contenders)
    for name in ("onnxruntime-fp32", "openvino-fp32"):
        assert contenders[name]["verified"] and contenders[name]["latency_ms"] > 0, contenders[name]
        assert contenders[name]["execution"]["passed"] and contenders[name]["execution"]["executed"]
    fastest = min(("onnxruntime-fp32", "openvino-fp32"), key=lambda n: contenders[n]["latency_ms"])
    assert shipped == fastest and shipped in choice["why"]
    assert manifest["compile"]["backend"] == contenders[shipped]["backend"]
    assert manifest["benchmark"]["p90_ms"] == contenders[shipped]["p90_ms"]
    assert manifest["execution"]["requested"] == ("CPUExecutionProvider" if "onnxruntime" in shipped else "CPU")
    assert not (tmp_path / ".art.work").exists(), "the losers' files went with the work directory"
    if "openvino" in shipped:
        assert {"model.xml", "model.bin"} <= set(manifest["files"])
    assert set(checks) == {("pytorch", "onnx"), ("onnx", "onnx-simplified"), ("pytorch", shipped)}
    assert all(c["passed"] and c["max_abs_diff"] < 1e-4 for c in checks.values())
    stats = manifest["benchmark"]
    assert stats["runs"] >= 5 and 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert manifest["benchmark"]["measured_on"] == "target"  # cpu-host is the machine it runs on
    assert manifest["budgets"]["latency"]["value_ms"] == stats["p90_ms"]
    assert manifest["tools"]["torch"] and manifest["host"]["logical_cpus"] >= 1
    props = {p.key: p.value for p in onnx.load(out / "model.onnx").metadata_props}
    assert props["lgdeploy.profile"] == "cpu-host"
    assert json.loads(props["lgdeploy.size"]) == {"depth": 3, "genes": 2}
    # the fine-tuned and the recomposed weights compared on the same validation images; the better ones ship
    ft = manifest["finetune"]
    kept = ft["kept"]
    assert kept["images"] == ft["data"]["val_size"] and kept["finetuned_top1"] <= 1
    better = "fine-tuned" if kept["finetuned_top1"] >= kept["recomposed_top1"] else "recomposed"
    assert kept["shipped"] == better and ft["top1_after"] == max(kept["finetuned_top1"], kept["recomposed_top1"])
    report = (out / "report.md").read_text()
    assert f"ships the {better} weights" in report
    assert f"pytorch → {shipped}" in report and "## Runtimes" in report and "**shipped**" in report
    svg = (out / "selection.svg").read_text()
    assert svg.startswith("<svg") and "chosen: depth=3 genes=2" in svg and "measured" in svg
    for key in ("schema_version", "toolkit_version", "status", "profile", "learngene", "architecture", "finetune",
                "files", "tools", "host", "checks", "benchmark", "budgets"):  # fmt: skip
        assert key in manifest, key
    for verdict in manifest["budgets"].values():
        assert {"passed", "basis"} <= set(verdict)


def test_tensorrt_profile_without_tensorrt_still_verifies_onnx(learngene: Path, tmp_path: Path) -> None:
    from learngene_deploy._imports import is_available

    if is_available("tensorrt"):
        pytest.skip("TensorRT is installed here; this test covers machines without it")
    result = build(_opts(learngene, tmp_path / "nano", profile="jetson-orin-nano"))
    manifest = verify_artifact(result.out_dir)
    assert manifest["status"] == "awaiting-compile"  # finished by `lgdeploy compile` on the Jetson
    assert [s["stage"] for s in manifest["skipped"]] == ["compile", "benchmark"]
    assert "tensorrt" in manifest["skipped"][0]["reason"].lower()
    assert "lgdeploy compile" in manifest["skipped"][0]["reason"] and manifest["deferred"]["gates"]["images"] > 0
    assert [c["candidate"] for c in manifest["checks"]] == ["onnx", "onnx-simplified"]
    # not the target device: the latency budget is judged on the prediction, nothing was measured
    assert manifest["budgets"]["latency"]["basis"].startswith("predicted")
    assert manifest["benchmark"]["p50_ms"] is None and manifest["benchmark"]["skipped"]


def test_pinned_size_is_built_instead_of_the_chosen_one(learngene: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    opts = _opts(learngene, tmp_path / "pi", profile="raspberry-pi-5", size=(("depth", 2), ("genes", 1)))
    result = build(opts, log=lambda stage, msg: lines.append(f"{stage} {msg}"))
    manifest = verify_artifact(result.out_dir)
    selection = manifest["selection"]
    assert selection["size"] == {"depth": 2, "genes": 1} and selection["pinned"] is True  # selection says depth=3
    assert selection["chosen"]["size"] == {"depth": 2, "genes": 1} and selection["chosen"]["fits"]
    assert any("was pinned (--size)" in n for n in selection["notes"])
    assert manifest["architecture"]["depth"] == 2 and manifest["latency"]["predicted_ms"] > 0
    assert lines[0].startswith("select depth=2 genes=1 of tiny.safetensors (pinned)")
    assert not any("warning" in line for line in lines), "a pinned size that fits warns of nothing"


def test_failing_gate_keeps_only_the_finetune_and_other_inputs_discard_it(learngene: Path, tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="does not match pytorch"):
        build(_opts(learngene, tmp_path / "art", max_abs=1e-12))
    # no artifact and no partial directory; only the hidden work directory with the finished fine-tune to resume
    assert [p.name for p in tmp_path.iterdir()] == [".art.work"]
    assert sorted(p.name for p in (tmp_path / ".art.work").iterdir()) == ["finetune", "inputs.json"]
    assert load_checkpoint(tmp_path / ".art.work" / "finetune" / CHECKPOINT_NAME)["step"] == 2
    # another seed is another fine-tune: the stale work is discarded, with one line naming what changed
    lines: list[tuple[str, str]] = []
    build(_opts(learngene, tmp_path / "art", seed=1), log=lambda stage, msg: lines.append((stage, msg)))
    notes = [msg for _, msg in lines if "discarding" in msg or "resuming" in msg]
    assert len(notes) == 1 and "discarding" in notes[0] and "data, finetune changed" in notes[0], notes
    assert [p.name for p in tmp_path.iterdir()] == ["art"], "a finished build removes its work directory"


def test_existing_output_is_refused_before_any_work(learngene: Path, tmp_path: Path) -> None:
    (tmp_path / "art").mkdir()
    stages: list[str] = []
    with pytest.raises(ArtifactError, match="already exists; pass --force"):
        build(_opts(learngene, tmp_path / "art"), log=lambda stage, _msg: stages.append(stage))
    assert stages == []
    assert not [p for p in tmp_path.iterdir() if PARTIAL_MARK in p.name]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("finetune_steps", 0),
        ("finetune_steps", -3),
        ("finetune_epochs", 0.0),
        ("finetune_lr", 0.0),
        ("finetune_lr", -1e-3),
    ],
)
def test_empty_finetune_is_refused_before_any_work(learngene: Path, tmp_path: Path, field: str, value: float) -> None:
    """Zero steps used to fall through to one full epoch; it is refused with the valid range."""
    import dataclasses

    stages: list[str] = []
    opts = dataclasses.replace(_opts(learngene, tmp_path / "art"), **{field: value})
    with pytest.raises(ConfigError, match=f"{field} must be"):
        build(opts, log=lambda stage, _msg: stages.append(stage))
    assert stages == [] and list(tmp_path.iterdir()) == []


def test_cli_refuses_zero_finetune_steps(lgdeploy_argv: list[str], tmp_path: Path) -> None:
    import subprocess

    cases = (
        ("--finetune-steps", "0", 2, "greater than or equal to 1"),
        ("--finetune-epochs", "0", 1, "must be"),
        ("--finetune-lr", "0", 1, "must be a positive number"),
        ("--finetune-lr", "nan", 1, "must be a positive number"),
    )
    for flag, value, code, text in cases:  # a usage error (2, not an "internal error"), or the pipeline's sentence
        argv = [*lgdeploy_argv, "build", "--profile", "cpu-host", flag, value]
        run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
        flat = " ".join(run.stderr.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())  # typer boxes and wraps
        assert run.returncode == code and text in flat, run.stderr
        assert "internal error" not in run.stderr and list(tmp_path.iterdir()) == []


def test_the_fine_tune_ships_only_when_it_does_not_lower_top1(learngene: Path) -> None:
    """The build scores the recomposed weights on the whole validation split (measured by `keep_better` itself) and
    ships them when the fine-tuned ones scored lower there, unless told otherwise. The fine-tuned score is the
    loop's; here it is set just below or at the recomposed one to take each branch."""
    import dataclasses
    from types import SimpleNamespace

    from learngene_deploy.data import load_data
    from learngene_deploy.learngene.io import load_learngene
    from learngene_deploy.pipeline import stages
    from learngene_deploy.training.finetune import finetune
    from learngene_deploy.training.loop import TrainConfig, evaluate

    gen = load_learngene(learngene)
    data = load_data("digits", img_size=16, train_limit=200, val_limit=100)
    size = {"depth": 2, "genes": 2}
    tuned = finetune(gen, data, TrainConfig(max_steps=3, batch_size=16, lr=3e-3, progress=False), size=size)
    tuned.model.eval()
    reference = gen.recompose(**size).eval()
    before = evaluate(reference, data.val)
    picked, opts, lines = SimpleNamespace(size=size), BuildOptions(profile="cpu-host"), []

    def log(_stage: str, msg: str) -> None:
        lines.append(msg)

    recomposed = stages.Recomposed(gen, tuned.arch, data, 0.5, 50)
    lower = dataclasses.replace(tuned, top1=before - 0.02)
    shipped, record = stages.keep_better(picked, recomposed, lower, opts, log)
    expected = {"images": 100, "recomposed_top1": before, "finetuned_top1": before - 0.02, "shipped": "recomposed"}
    assert record == expected
    x = torch.from_numpy(data.arrays("val", 4)[0])
    with torch.no_grad():
        assert torch.equal(shipped.model(x), reference(x)) and not torch.equal(tuned.model(x), reference(x))
    assert shipped.top1 == before
    assert "lowered top-1 on the 100 validation images" in lines[-1] and "--keep-finetuned" in lines[-1]
    # equal is not lower: the fine-tuned weights ship
    same = dataclasses.replace(tuned, top1=before)
    shipped, record = stages.keep_better(picked, recomposed, same, opts, log)
    assert shipped is same and record is not None and record["shipped"] == "fine-tuned"
    # --keep-finetuned ships them even when lower, and says so
    keep = dataclasses.replace(opts, keep_finetuned=True)
    shipped, record = stages.keep_better(picked, recomposed, lower, keep, log)
    assert shipped is lower and record is not None and record["shipped"] == "fine-tuned (--keep-finetuned)"
    assert "anyway" in lines[-1]
    # a new head (other classes than the learngene's): nothing to compare, the fine-tuned weights ship
    no_head = stages.Recomposed(gen, tuned.arch, data, None, 0)
    assert stages.keep_better(picked, no_head, tuned, opts, log) == (tuned, None)


def test_build_recipe_auto_is_none_on_the_built_ins_and_light_on_image_sources() -> None:
    from learngene_deploy.pipeline.stages import Recipe

    opts = BuildOptions(profile="cpu-host")
    assert opts.recipe == "auto"
    assert Recipe.from_options(opts, images=False).augmentation.name == "none"
    assert Recipe.from_options(opts, images=True).augmentation.name == "light"
    import dataclasses

    assert Recipe.from_options(dataclasses.replace(opts, recipe="deit"), images=False).augmentation.name == "deit"


def test_runtime_overrides_are_validated() -> None:
    profile = resolve_profile("cpu-host", "openvino", None)
    assert profile.runtime.backend == "openvino" and profile.runtime.execution_provider is None
    from learngene_deploy.errors import ProfileError

    with pytest.raises(ProfileError, match="fp16"):
        resolve_profile("cpu-host", None, "fp16")  # ORT on CPU has no fp16, and cpu-host has no fp16 peak


def test_non_native_input_size_is_refused(learngene: Path, tmp_path: Path) -> None:
    import yaml

    from learngene_deploy.profile import shipped_profiles_dir

    data = yaml.safe_load((shipped_profiles_dir() / "cpu-host.yaml").read_text())
    data["budgets"]["input_size"] = 64
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="input size 64"):
        build(_opts(learngene, tmp_path / "art", profile=str(tmp_path / "p.yaml")))


@pytest.fixture(scope="module")
def built(learngene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cpu-host pinned to ONNX Runtime: auto's choice between two runtimes this fast is a coin toss on timing noise."""
    return build(_opts(learngene, tmp_path_factory.mktemp("built") / "art", backend="onnxruntime")).out_dir


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, dst))


def test_verify_command_rechecks_golden_images(built: Path) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    result = CliRunner().invoke(app, ["verify", str(built)])
    assert result.exit_code == 0, result.output
    assert "matches PyTorch on 16 golden images" in result.stdout


def test_verify_detects_numerically_wrong_model(built: Path, tmp_path: Path) -> None:
    """A model that still hashes correctly but disagrees with PyTorch fails the re-check (golden logits edited)."""
    import numpy as np

    from learngene_deploy.artifact import MANIFEST, files_table
    from learngene_deploy.artifact.store import recheck_artifact

    art = _copy(built, tmp_path / "art")
    golden = dict(np.load(art / "golden.npz"))
    golden["logits"] = golden["logits"] + 1.0
    np.savez(art / "golden.npz", **golden)
    manifest = json.loads((art / MANIFEST).read_text())
    manifest["files"] = files_table(art)  # re-sign, as an attacker or a buggy tool would
    (art / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(VerificationError, match="does not match pytorch"):
        recheck_artifact(art)


def test_bench_records_target_measurement(built: Path, tmp_path: Path) -> None:
    from learngene_deploy.artifact.store import bench_artifact

    art = _copy(built, tmp_path / "art")
    manifest = bench_artifact(art, runs=5, rounds=1)
    assert len(manifest["target_benchmarks"]) == 1
    measured = manifest["target_benchmarks"][0]["stats"]["p90_ms"]
    assert manifest["budgets"]["latency"]["value_ms"] == measured
    assert "lgdeploy bench" in manifest["budgets"]["latency"]["basis"]
    assert verify_artifact(art)["target_benchmarks"], "the rewritten manifest still verifies"


def test_bench_refuses_tampered_artifact(built: Path, tmp_path: Path) -> None:
    from learngene_deploy.artifact.store import bench_artifact

    art = _copy(built, tmp_path / "art")
    with (art / "model.onnx").open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactError, match=r"model\.onnx does not match the sha256"):
        bench_artifact(art, runs=5, rounds=1)


def test_openvino_target_device_missing_is_verified_on_cpu(learngene: Path, tmp_path: Path) -> None:
    """The NUC profile compiles for OpenVINO's GPU; a machine without one verifies the same IR on its CPU."""
    import openvino as ov

    if "GPU" in {d.split(".")[0] for d in ov.Core().available_devices}:
        pytest.skip("this machine has an OpenVINO GPU device")
    result = build(_opts(learngene, tmp_path / "nuc", profile="intel-core-ultra-nuc"))
    manifest = result.manifest
    assert manifest["compile"]["settings"]["device"] == "GPU"
    assert manifest["compile"]["precision"] == "fp16"
    assert "not on this machine" in manifest["benchmark"]["host_differences"]
    assert manifest["benchmark"]["measured_on"].startswith("build machine")
    assert any(c["candidate"] == "openvino-fp16" and c["passed"] for c in manifest["checks"])
    from learngene_deploy.artifact.store import recheck_artifact

    assert recheck_artifact(result.out_dir)["passed"]


def test_batched_server_profile(learngene: Path, tmp_path: Path) -> None:
    """x86-server: static batch 8 and 16 threads; this machine measures with at most its own cores."""
    import os

    manifest = build(_opts(learngene, tmp_path / "server", profile="x86-server")).manifest
    assert manifest["export"]["simplified"]["input_shape"][0] == 8
    assert all(c["num_images"] % 8 == 0 for c in manifest["checks"])
    assert manifest["benchmark"]["batch"] == 8
    assert manifest["benchmark"]["threads"] <= (os.cpu_count() or 1)
    assert manifest["profile"]["runtime"]["threads"] == 16
    assert manifest["budgets"]["latency"]["percentile"] == 99


def test_cli_gate_failure_is_one_sentence_and_leaves_nothing(learngene: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    out = tmp_path / "out"
    argv = ["build", "-p", "cpu-host", "-l", str(learngene), "--data", "digits", "--finetune-steps", "1",
            "--out", str(out), "--max-abs-diff", "1e-12"]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert "onnx does not match pytorch" in line and "max abs diff" in line
    assert "Traceback" not in result.output
    assert not out.exists(), "no artifact; only the finished fine-tune is kept for a re-run"
    assert [p.name for p in tmp_path.iterdir()] == [".out.work"]


# --- reproducibility ---------------------------------------------------------------------------------------

# What a manifest measures rather than what the build made: times, latencies and memory of this run on this
# (possibly busy) machine. Everything else must come out identical from the same inputs and seed.
BENCHMARK_MEASURED = ("load_s", "seconds", "runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms",
                      "max_ms", "throughput_ips", "peak_rss_mb", "model_rss_mb", "round_p50_ms", "round_p90_ms",
                      "round_p99_ms")  # fmt: skip
MEASURED: tuple[tuple[str, ...], ...] = (
    ("created",),  # when finalize ran
    ("wall_time_s",),
    ("finetune", "wall_time_s"),
    ("finetune", "startup_s"),  # process start to the first fine-tune step
    ("export", "exported", "seconds"),
    ("export", "simplified", "seconds"),
    ("compile", "seconds"),
    *(("benchmark", key) for key in BENCHMARK_MEASURED),
    ("latency", "measured_ms"),
    ("runtime_choice", "contenders"),  # every contender's latencies (and load times)
    ("runtime_choice", "why"),  # names the measured latency
    ("budgets", "latency", "value_ms"),  # the measured p90 (cpu-host is the target)
    ("budgets", "memory", "value_mb"),  # the measured model RSS
    ("files", "report.md"),  # the report and the plot print the measured latency and memory
    ("files", "selection.svg"),
)


def _without_measurements(manifest: dict) -> dict:
    stable = json.loads(json.dumps(manifest))
    for path in MEASURED:
        parent = stable
        for key in path[:-1]:
            parent = parent[key]
        assert path[-1] in parent, f"{'.'.join(path)} is not in the manifest; update MEASURED"
        del parent[path[-1]]
    return stable


def test_same_inputs_build_identical_model_and_manifest(learngene: Path, built: Path, tmp_path: Path) -> None:
    import hashlib

    again = build(_opts(learngene, tmp_path / "again", backend="onnxruntime")).out_dir
    sha = [hashlib.sha256((d / "model.onnx").read_bytes()).hexdigest() for d in (built, again)]
    assert sha[0] == sha[1], "the same inputs and seed must give a byte-identical model.onnx"
    first, second = (_without_measurements(json.loads((d / "manifest.json").read_text())) for d in (built, again))
    assert first == second
    # nothing names the temporary directories the build wrote to
    text = json.dumps(first)
    assert PARTIAL_MARK not in text and ".work" not in text and str(again.parent) not in text
    assert first["benchmark"]["model_path"] == "model.onnx"


# --- resuming a killed build ---------------------------------------------------------------------------------


def test_killed_build_resumes_from_its_checkpoint(learngene: Path, lgdeploy_argv: list[str], tmp_path: Path) -> None:
    """SIGKILL a real `lgdeploy build` mid fine-tune; the same command resumes it and equals an uninterrupted build."""
    import os
    import re
    import signal
    import subprocess
    import time

    from learngene_deploy.artifact import MANIFEST

    steps, every = 40, 4
    argv = [*lgdeploy_argv, "build", "-p", "cpu-host", "-l", str(learngene), "--data", "digits",
            "--finetune-steps", str(steps), "--checkpoint-every", str(every), "--out", "out"]  # fmt: skip
    checkpoint = tmp_path / ".out.work" / "finetune" / CHECKPOINT_NAME
    with subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 300
        while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, "the build ended before its first checkpoint was seen"
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob("*/" + MANIFEST)), "nothing may look like a finished artifact"
    # a build killed while writing its artifact leaves a hidden partial directory; the next build removes it
    stale = tmp_path / ".out.partial-stale"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")

    rerun = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    match = re.search(rf"resuming the fine-tune from step (\d+) of {steps}", rerun.stderr)
    assert match, rerun.stderr
    resumed = int(match.group(1))
    assert 0 < resumed <= steps and resumed % every == 0
    assert f"removed {Path('.out.partial-stale')}" in rerun.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no work or partial directory is left"
    verified = subprocess.run([*lgdeploy_argv, "verify", "out"], cwd=tmp_path, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["finetune"]["resumed_from_step"] == resumed and manifest["finetune"]["steps"] == steps

    # the training loop resumes exactly (model, optimiser and RNG state), so the model equals an uninterrupted one
    whole = build(_opts(learngene, tmp_path / "whole", finetune_steps=steps, finetune_batch=64, checkpoint_every=0))
    assert (whole.out_dir / "model.onnx").read_bytes() == (tmp_path / "out" / "model.onnx").read_bytes()
    assert whole.manifest["finetune"]["resumed_from_step"] == 0


# --- bad inputs through the command line: one sentence, non-zero exit, nothing that looks finished ---------------


def _error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_full_disk_while_writing_the_artifact(learngene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up while the golden images are written: one sentence naming the output, nothing complete left."""
    import errno

    import numpy as np
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    def full_disk(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        Path(file).write_bytes(b"PK\x03\x04 half")  # the OS accepted a few bytes, then refused the rest
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(np, "savez", full_disk)
    out = tmp_path / "out"
    argv = ["build", "-p", "cpu-host", "-l", str(learngene), "--data", "digits", "--finetune-steps", "1",
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    line = _error_line(result)
    assert (
        line == f"error: no space left on the device while writing {out}; free some disk space or choose another --out."
    )
    assert "✓ finetune" in result.stderr, "the fine-tune ran before the disk filled up"
    assert not out.exists() and not list(tmp_path.rglob("manifest.json"))
    # no partial directory; the finished fine-tune stays in the work directory for a re-run once there is space
    assert [p.name for p in tmp_path.iterdir()] == [".out.work"]


@pytest.mark.parametrize("ref", ["../x", "../../etc/passwd", "../cpu-host"])
def test_profile_paths_that_are_not_names_are_refused_before_any_work(ref: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    for argv in (["build", "--profile", ref, "--out", str(tmp_path / "out")], ["select", "--profile", ref]):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 1
        assert _error_line(result).startswith(f"error: '{ref}' is neither a shipped profile name")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_refused_before_the_finetune(learngene: Path) -> None:
    """/proc refuses new directories for everyone, root included."""
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    argv = ["build", "-p", "cpu-host", "-l", str(learngene), "--data", "digits", "--out", "/proc/lgdeploy-test/out"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert _error_line(result).startswith("error: cannot write /proc/lgdeploy-test/out (")
    assert "finetune" not in result.stderr, "refused before any stage ran"


@pytest.mark.parametrize("command", ["verify", "bench"])
def test_cli_refuses_tampered_artifact(built: Path, tmp_path: Path, command: str) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    art = _copy(built, tmp_path / "art")
    golden = (art / "golden.npz").read_bytes()
    (art / "golden.npz").write_bytes(golden[:-1] + bytes([golden[-1] ^ 1]))  # one bit flipped
    result = CliRunner().invoke(
        app, [command, str(art), *(["--runs", "5", "--rounds", "1"] if command == "bench" else [])]
    )
    assert result.exit_code == 1
    assert _error_line(result) == (
        f"error: artifact {art}: golden.npz does not match the sha256 in its manifest (the file was changed after the "
        "build); rebuild the artifact or restore the original file."
    )
    assert "target_benchmarks" not in json.loads((art / "manifest.json").read_text()), "nothing was recorded"


# --- INT8 gated on speed -------------------------------------------------------------------------------------------
def _int8_twice_as_slow(monkeypatch: pytest.MonkeyPatch, *, int8_ms: float = 2.0) -> None:
    """Benchmark for real, then report every INT8 model at ``int8_ms`` and every fp32 one at 1 ms (deterministic)."""
    import dataclasses

    from learngene_deploy import bench

    real = bench.benchmark_many

    def fake(models, **kwargs):
        stats = real(models, **kwargs)
        ms = {"int8": int8_ms, "fp32": 1.0}
        return [dataclasses.replace(s, **dict.fromkeys(("p50_ms", "p90_ms", "p99_ms"), ms[s.precision])) for s in stats]

    monkeypatch.setattr(bench, "benchmark_many", fake)


def test_int8_not_faster_than_fp32_is_rejected_or_ships_fp32_on_request(
    learngene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from learngene_deploy.artifact.store import recheck_artifact

    _int8_twice_as_slow(monkeypatch)
    int8 = dict(backend="onnxruntime", precision="int8", max_int8_drop=100.0, min_agreement=0.0)
    with pytest.raises(VerificationError) as info:
        build(_opts(learngene, tmp_path / "a", **int8))
    assert "onnxruntime int8 is not faster than its fp32 twin: p90 2 ms against 1 ms" in str(info.value)
    assert "--int8-fallback fp32" in str(info.value) and not (tmp_path / "a").exists()

    manifest = build(_opts(learngene, tmp_path / "b", int8_fallback="fp32", **int8)).manifest
    assert manifest["profile"]["runtime"]["precision"] == "int8"
    assert manifest["compile"]["precision"] == "fp32" and manifest["compile"]["files"] == ["model.onnx"]
    gate = manifest["int8_speed_gate"]
    assert gate["decision"] == "--int8-fallback fp32: the fp32 model is shipped"
    (record,) = gate["runtimes"]
    assert record["applied"] and not record["passed"] and record["speedup"] == 0.5
    choice = manifest["runtime_choice"]
    assert choice["fell_back_to_fp32"] and choice["shipped"] == "onnxruntime-fp32"
    assert choice["why"].startswith("INT8 was not faster than fp32 on any runtime, so --int8-fallback fp32 ships")
    int8_contender = next(c for c in choice["contenders"] if c["precision"] == "int8")
    assert "not faster than its fp32 twin" in int8_contender["rejected"]
    report = (tmp_path / "b" / "report.md").read_text()
    assert "## INT8 speed gate" in report and "int8 → onnxruntime fp32" in report
    assert recheck_artifact(tmp_path / "b")["passed"], "the shipped fp32 model re-verifies against its own gate"


def test_int8_fallback_option_is_validated(learngene: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    result = CliRunner().invoke(app, ["build", "-p", "cpu-host", "-l", str(learngene), "--int8-fallback", "fp16"])
    assert result.exit_code == 1 and "int8_fallback (--int8-fallback) 'fp16' is not one of: fp32." in result.stderr
    result = CliRunner().invoke(app, ["build", "-p", "raspberry-pi-5", "-l", str(learngene), "--backend", "auto"])
    assert result.exit_code == 1 and "needs 'host: true'" in " ".join(result.stderr.split())


def test_int8_over_the_accuracy_limit_gets_the_accuracy_controlled_path(
    learngene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain INT8 misses the limit (forced), the runtime's accuracy-aware INT8 replaces it and is recorded."""
    import dataclasses

    from learngene_deploy import gates

    real, calls = gates.check_accuracy, []

    def plain_int8_misses(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result.candidate)
        return dataclasses.replace(result, max_drop_points=-1000.0) if len(calls) == 1 else result

    monkeypatch.setattr(gates, "check_accuracy", plain_int8_misses)
    _int8_twice_as_slow(monkeypatch, int8_ms=0.5)
    opts = dict(backend="onnxruntime", precision="int8", max_int8_drop=100.0, min_agreement=0.0)
    manifest = build(_opts(learngene, tmp_path / "art", **opts)).manifest
    assert calls == ["onnxruntime-int8", "onnxruntime-int8"], "plain INT8, then the accuracy-controlled one"
    int8 = next(c for c in manifest["runtime_choice"]["contenders"] if c["precision"] == "int8")
    control = int8["accuracy_control"]
    assert "quantize_static" in control["method"] and "qdq_loss_debug" in control["method"]
    assert "over the -1000-point limit" in control["plain_int8"]["failure"]
    assert control["search_drop_points"] <= 100.0 and isinstance(control["fp32_layers"], list)
    assert control["drop_points"] == manifest["int8_accuracy"]["drop_points"], "the gate's drop is on validation images"
    assert manifest["compile"]["settings"]["accuracy_control"]["fp32_layers"] == control["fp32_layers"]
    assert manifest["runtime_choice"]["shipped"] == "onnxruntime-int8" and int8["latency_ms"] == 0.5
    assert not [c for c in manifest["checks"] if not c["passed"]], "the shipped model's own checks all passed"


def _pi_int8_with_tables(tmp_path: Path, int8_scale: float) -> Path:
    """raspberry-pi-5 at int8 with calibrated int8 and fp32 tables (synthetic coefficients) beside it."""
    import yaml

    from learngene_deploy.profile import shipped_profiles_dir
    from learngene_deploy.sizing.latency import FEATURES, LatencyTable, save_tables

    coef = {"const": 0.5, "blocks": 0.1, "linear_gflop": 20.0, "attention_gflop": 30.0, "activation_melem": 0.01}
    tables = [
        LatencyTable(profile="raspberry-pi-5", backend="onnxruntime", precision=precision, threads=4, batch=1,
                     percentile=90, points=[], coef={k: coef[k] * scale for k in FEATURES})
        for precision, scale in (("int8", int8_scale), ("fp32", 1.0))
    ]  # fmt: skip
    save_tables(tables, tmp_path / "pi.latency.json")
    data = yaml.safe_load((shipped_profiles_dir() / "raspberry-pi-5.yaml").read_text())
    data["runtime"]["precision"] = "int8"
    data["latency_table"] = "pi.latency.json"
    (tmp_path / "pi.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "pi.yaml"


def test_off_host_int8_speed_gate_reads_the_targets_tables(learngene: Path, tmp_path: Path) -> None:
    """Not the build machine: INT8 against fp32 comes from the device's calibrated tables, not from this CPU."""
    fast = build(_opts(learngene, tmp_path / "fast", profile=str(_pi_int8_with_tables(tmp_path, 0.4)),
                       max_int8_drop=100.0, min_agreement=0.0)).manifest  # fmt: skip
    gate = fast["int8_speed_gate"]
    assert gate["applied"] and gate["passed"] and gate["speedup"] == pytest.approx(2.5)
    assert "calibrated latency table pi.latency.json" in gate["basis"] and fast["compile"]["precision"] == "int8"
    assert [c["role"] for c in fast["runtime_choice"]["contenders"]] == ["candidate"], "no fp32 twin off the host"

    slow = _pi_int8_with_tables(tmp_path, 1.5)
    with pytest.raises(VerificationError, match=r"predicted no faster than fp32 on raspberry-pi-5.*--int8-fallback"):
        build(_opts(learngene, tmp_path / "slow", profile=str(slow), max_int8_drop=100.0, min_agreement=0.0))
    shipped = build(_opts(learngene, tmp_path / "slow", profile=str(slow), int8_fallback="fp32")).manifest
    assert shipped["compile"]["precision"] == "fp32" and shipped["runtime_choice"]["fell_back_to_fp32"]
    assert shipped["int8_speed_gate"]["decision"] == "--int8-fallback fp32: the fp32 model is shipped"
