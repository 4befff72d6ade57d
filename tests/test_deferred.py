"""Finish on the target: `build --defer-compile` writes an artifact awaiting its compile; `lgdeploy compile` (here and
over SSH) checks it, compiles, gates, benchmarks and swaps the finished artifact in; anything wrong changes nothing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from learngene_deploy.api import Artifact
from learngene_deploy.artifact import verify_artifact
from learngene_deploy.errors import ArtifactError, ConfigError, VerificationError
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.pipeline.deferred import compile_artifact
from learngene_deploy.pipeline.gateset import AWAITING_COMPILE, CALIBRATION_FILE, GATES_FILE
from learngene_deploy.pipeline.run import BuildOptions, build

pytestmark = pytest.mark.slow

TINY = ArchSpec(img_size=16, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=2, num_heads=2)
FAST = {"bench_runs": 5, "bench_rounds": 1, "bench_min_time_s": 0.05}


@pytest.fixture(scope="module")
def learngene(make_tiny_learngene) -> Path:  # type: ignore[no-untyped-def]
    return make_tiny_learngene(TINY)


def _deferred(learngene: Path, out: Path, **kw: object) -> Path:
    opts = BuildOptions(
        profile="cpu-host",
        learngene=str(learngene),
        data="digits",
        finetune_steps=2,
        finetune_batch=16,
        out=out,
        verify_images=64,
        calibration_images=32,
        defer_compile=True,
        **{**FAST, **kw},  # type: ignore[arg-type]
    )
    return build(opts).out_dir


@pytest.fixture(scope="module")
def awaiting(learngene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _deferred(learngene, tmp_path_factory.mktemp("deferred") / "cpu-host")


def _opts(**kw: object) -> BuildOptions:
    return BuildOptions(profile="", **{**FAST, **kw})  # type: ignore[arg-type]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deferred_build_ships_what_the_target_needs(awaiting: Path) -> None:
    manifest = verify_artifact(awaiting)
    assert manifest["status"] == AWAITING_COMPILE and manifest["compile"] is None
    deferred = manifest["deferred"]
    assert deferred["reason"] == "deferred by --defer-compile" and deferred["completed"] is None
    assert {"model.onnx", GATES_FILE, CALIBRATION_FILE, "golden.npz"} <= set(manifest["files"])
    with np.load(awaiting / GATES_FILE) as gates:
        assert gates["images"].dtype == np.float16 and len(gates["images"]) == deferred["gates"]["images"] == 64
        assert gates["logits"].shape == (64, 10) and gates["labels"].shape == (64,)
    with np.load(awaiting / CALIBRATION_FILE) as cal:  # cpu-host is auto: INT8-capable runtimes may need it
        assert len(cal["images"]) == 32 and cal["images"].shape[1:] == (3, 16, 16)
    assert any("lgdeploy compile" in s["reason"] for s in manifest["skipped"])
    # an artifact awaiting its compile verifies (model.onnx on ONNX Runtime against the golden logits)
    assert Artifact(awaiting).verify()["top1_agreement"] == 1.0
    assert "awaits `lgdeploy compile` on the target" in (awaiting / "report.md").read_text()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "auto"])
def test_compile_finishes_the_artifact_in_place(learngene: Path, tmp_path: Path, backend: str) -> None:
    kw = {} if backend == "auto" else {"backend": backend}
    art = _deferred(learngene, tmp_path / "cpu-host", **kw)
    before = verify_artifact(art)
    lines: list[str] = []
    compile_artifact(art, _opts(), log=lambda _stage, msg: lines.append(msg))
    after = verify_artifact(art)  # every file, old and new, hashed in one manifest
    assert after["status"] == "complete" and after["compile"] is not None
    assert backend == "auto" or after["compile"]["backend"] == backend
    for rel, entry in before["files"].items():  # the build's files are unchanged (the report is rewritten)
        assert rel == "report.md" or after["files"][rel] == entry
    assert set(after["compile"]["files"]) <= set(after["files"])
    completed = after["deferred"]["completed"]
    assert completed["host"]["hostname"] and completed["device"]["matched"] is True
    gates = [c for c in after["checks"] if c["reference"] == "pytorch" and c["num_images"] == 64]
    assert gates and all(c["passed"] for c in gates)
    assert after["benchmark"]["measured_on"] == "target" and after["latency"]["measured_ms"] > 0
    assert after["budgets"]["latency"]["basis"] and not any(s["stage"] == "compile" for s in after["skipped"])
    assert Artifact(art).verify()["candidate"].startswith(after["compile"]["backend"])
    report = (art / "report.md").read_text()
    assert "status: **complete**" in report and "- compile: on the target" in report
    assert not list(art.parent.glob(".cpu-host.*")), "no partial or replaced directory is left behind"


def test_a_failed_gate_leaves_the_artifact_exactly_as_it_was(learngene: Path, tmp_path: Path) -> None:
    art = _deferred(learngene, tmp_path / "cpu-host", backend="onnxruntime")
    before = _snapshot(art)
    with pytest.raises(VerificationError):
        compile_artifact(art, _opts(max_abs=0.0, min_agreement=1.0))  # no runtime matches PyTorch to 0.0
    assert _snapshot(art) == before and verify_artifact(art)["status"] == AWAITING_COMPILE
    assert not list(art.parent.glob(".cpu-host.*"))


def test_tampered_half_written_or_finished_artifacts_are_refused(awaiting: Path, tmp_path: Path) -> None:
    art = Path(shutil.copytree(awaiting, tmp_path / "art"))
    with np.load(art / GATES_FILE) as f:
        images, logits, labels = f["images"], f["logits"], f["labels"]
    np.savez(art / GATES_FILE, images=images, logits=logits + 1, labels=labels)  # looser reference, same name
    with pytest.raises(ArtifactError, match=GATES_FILE):
        compile_artifact(art, _opts())
    partial = Path(shutil.copytree(awaiting, tmp_path / ".cpu-host.partial-abc"))
    with pytest.raises(ArtifactError, match="partial build"):
        compile_artifact(partial, _opts())
    manifest = json.loads((awaiting / "manifest.json").read_text())
    manifest["status"] = "complete"
    done = Path(shutil.copytree(awaiting, tmp_path / "done"))
    (done / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="nothing to compile"):
        compile_artifact(done, _opts())


def test_wrong_device_is_refused_unless_forced(awaiting: Path, tmp_path: Path) -> None:
    """A family profile's artifact on a machine whose device tree names another module."""
    from learngene_deploy.pipeline.deferred import device_check
    from learngene_deploy.profile import load_profile

    root = tmp_path / "fs"
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\0")
    nano = load_profile("jetson-orin-nano")
    with pytest.raises(ConfigError, match="not a jetson-orin-nano"):
        device_check(nano, force=False, root=root)
    assert device_check(nano, force=True, root=root)["forced"] is True
    agx = load_profile("jetson-agx-orin-64gb")
    assert device_check(agx, force=False, root=root)["matched"] is True


def test_cli_compile_locally_then_verify(awaiting: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    art = Path(shutil.copytree(awaiting, tmp_path / "cpu-host"))
    runner = CliRunner()
    result = runner.invoke(app, ["compile", str(art), "--runs", "5", "--rounds", "1"])
    assert result.exit_code == 0, result.output
    assert ": complete;" in result.stdout and "p50" in result.stdout
    again = runner.invoke(app, ["compile", str(art)])
    assert again.exit_code != 0 and "nothing to compile" in again.output
    assert runner.invoke(app, ["verify", str(art)]).exit_code == 0


def test_compile_over_ssh_fetches_the_compiled_files(sshd: dict, awaiting: Path, tmp_path: Path) -> None:
    from learngene_deploy.remote.ssh import compile_over_ssh

    art = Path(shutil.copytree(awaiting, tmp_path / "cpu-host"))
    remote_dir = tmp_path / "remote"
    lines: list[str] = []
    compile_over_ssh(
        art,
        sshd["host"],
        remote_python=sys.executable,
        remote_dir=str(remote_dir),
        ssh_options=sshd["options"],
        options=["--runs", "5", "--rounds", "1"],
        log=lines.append,
    )
    after = verify_artifact(art)
    assert after["status"] == "complete" and set(after["compile"]["files"]) <= set(after["files"])
    assert after["deferred"]["completed"]["via"]["method"] == "ssh"
    assert f"over ssh from {sshd['host']}" in (art / "report.md").read_text()
    assert Artifact(art).verify()["top1_agreement"] == 1.0
    assert not any(remote_dir.iterdir()), "the remote copy is removed afterwards"


def test_a_profile_whose_runtime_is_missing_here_is_deferred_and_compile_says_why(
    learngene: Path, tmp_path: Path
) -> None:
    """jetson-orin-nano on a machine without TensorRT: the build defers by itself; compiling here (forced past the
    device check) names the missing runtime, and the artifact stays as it was."""
    from learngene_deploy.backends import get_backend

    reason = get_backend("tensorrt").unavailable_reason()
    art = build(
        BuildOptions(
            profile="jetson-orin-nano",
            learngene=str(learngene),
            data="digits",
            finetune_steps=2,
            finetune_batch=16,
            out=tmp_path / "nano",
            verify_images=64,
            **FAST,  # type: ignore[arg-type]
        )
    ).out_dir
    manifest = verify_artifact(art)
    if reason is None:  # a machine with TensorRT compiles for real: finish it here
        pytest.skip("TensorRT is installed here, so the build compiled instead of deferring")
    assert manifest["status"] == AWAITING_COMPILE and manifest["deferred"]["reason"] == reason
    assert manifest["deferred"]["calibration"] is None  # fp16 needs no calibration set
    before = _snapshot(art)
    with pytest.raises(ConfigError, match=r"cannot compile here: .*(tensorrt|TensorRT)"):
        compile_artifact(art, _opts(), force=True)
    assert _snapshot(art) == before


def test_tensorrt_compile_on_a_machine_with_tensorrt(learngene: Path, tmp_path: Path) -> None:
    from learngene_deploy.backends import get_backend

    reason = get_backend("tensorrt").unavailable_reason()
    if reason is not None:
        pytest.skip(f"TensorRT engine compile needs TensorRT and an NVIDIA GPU: {reason}")
    art = _deferred(learngene, tmp_path / "cpu-host", backend="tensorrt", precision="fp16")
    compile_artifact(art, _opts(), force=True)
    assert verify_artifact(art)["compile"]["backend"] == "tensorrt"


def test_compile_over_ssh_never_replaces_a_remote_directory_that_is_not_an_artifact(
    sshd: dict, awaiting: Path, tmp_path: Path
) -> None:
    from learngene_deploy.errors import RemoteError
    from learngene_deploy.remote.ssh import compile_over_ssh

    precious = tmp_path / "remote" / "cpu-host"
    precious.mkdir(parents=True)
    (precious / "notes.txt").write_text("keep me")
    art = Path(shutil.copytree(awaiting, tmp_path / "cpu-host"))
    with pytest.raises(RemoteError, match="not an lgdeploy artifact"):
        compile_over_ssh(
            art, sshd["host"], remote_python=sys.executable, remote_dir=str(tmp_path / "remote"),
            ssh_options=sshd["options"],
        )  # fmt: skip
    assert (precious / "notes.txt").read_text() == "keep me"
    assert verify_artifact(art)["status"] == AWAITING_COMPILE
