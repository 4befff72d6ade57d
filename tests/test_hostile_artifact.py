"""Hostile artifacts (issue 21): an artifact is closed, its manifest cannot redirect a reader outside it, and a
trust anchor outside the manifest (its sha256) detects a swapped, re-hashed artifact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from learngene_deploy.artifact import MANIFEST, ArtifactWriter, files_table, verify_artifact
from learngene_deploy.artifact.store import manifest_sha256, recheck_artifact
from learngene_deploy.errors import ArtifactError, VerificationError


def _tiny_onnx(path: Path, seed: int = 0) -> np.ndarray:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((12, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 3, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 5])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)
    return weight


def _artifact(out: Path, *, seed: int = 0, shift: float = 0.0) -> Path:
    """A complete fp32 ONNX Runtime artifact: model.onnx, golden.npz (logits shifted by ``shift``), no compile."""
    with ArtifactWriter(out) as writer:
        weight = _tiny_onnx(writer.path / "model.onnx", seed)
        images = np.random.default_rng(1).standard_normal((4, 3, 2, 2)).astype(np.float32)
        logits = images.reshape(4, -1) @ weight + shift
        np.savez(writer.path / "golden.npz", images=images, logits=logits)
        manifest = {
            "status": "complete",
            "profile": {
                "name": "tiny",
                "runtime": {"backend": "onnxruntime", "precision": "fp32", "threads": 1, "execution_provider": None},
                "budgets": {"latency_ms": 40.0, "percentile": 90, "batch": 2},
            },
            "compile": None,
            "golden": {"file": "golden.npz", "images": 4, "reference": "pytorch"},
            "checks": [],
            "skipped": [],
        }
        return writer.finalize(manifest)


def _edit(out: Path, **changes: object) -> None:
    """Rewrite top-level manifest keys (an attacker with write access to the artifact)."""
    manifest = json.loads((out / MANIFEST).read_text())
    manifest.update(changes)
    (out / MANIFEST).write_text(json.dumps(manifest))


def _rehash(out: Path) -> None:
    """Recompute the manifest's file table after swapping files (what a careful attacker does)."""
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"] = files_table(out)
    (out / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture
def art(tmp_path: Path) -> Path:
    return _artifact(tmp_path / "art")


def test_a_clean_artifact_verifies_and_rechecks(art: Path) -> None:
    result = recheck_artifact(art, expect=manifest_sha256(art))
    assert result["passed"] and result["num_images"] == 4


@pytest.mark.parametrize("where", ["/etc/passwd", "../../../../etc/passwd", "./golden.npz", "sub//x", ""])
def test_golden_file_outside_the_artifact_is_refused(art: Path, where: str) -> None:
    _edit(art, golden={"file": where, "images": 4, "reference": "pytorch"})
    with pytest.raises(ArtifactError, match=r"golden\.file"):
        recheck_artifact(art)


def test_golden_file_must_be_a_listed_file(art: Path) -> None:
    _edit(art, golden={"file": "other.npz"})
    with pytest.raises(ArtifactError, match=r"not one of its listed \(hashed\) files"):
        verify_artifact(art)


@pytest.mark.parametrize("model_path", ["/tmp/evil.onnx", "../other/model.onnx", "model.onnx/../../x"])
def test_compiled_model_path_outside_the_artifact_is_refused(art: Path, model_path: str) -> None:
    record = {"backend": "onnxruntime", "precision": "fp32", "model_path": model_path, "source": "model.onnx"}
    _edit(art, compile={**record, "files": [model_path], "input_shape": [2, 3, 2, 2]})
    with pytest.raises(ArtifactError, match=r"compile\.model_path.*leaves the artifact"):
        verify_artifact(art)


def test_files_table_paths_must_stay_inside(art: Path) -> None:
    manifest = json.loads((art / MANIFEST).read_text())
    manifest["files"]["../escape"] = manifest["files"]["model.onnx"]
    (art / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="leaves the artifact"):
        verify_artifact(art)


@pytest.mark.parametrize("entry", ["abc", {"sha256": "x", "bytes": 1}, {"sha256": "0" * 64, "bytes": -1}, None])
def test_malformed_files_entry_is_one_sentence(art: Path, entry: object) -> None:
    manifest = json.loads((art / MANIFEST).read_text())
    manifest["files"]["model.onnx"] = entry
    (art / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="without a sha256"):
        verify_artifact(art)


@pytest.mark.parametrize("drop", ["golden", "profile"])
def test_manifest_missing_a_section_is_one_sentence(art: Path, drop: str) -> None:
    manifest = json.loads((art / MANIFEST).read_text())
    del manifest[drop]
    (art / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"has no '{drop}"):
        recheck_artifact(art)


def test_manifest_nested_thousands_deep_is_one_sentence(art: Path) -> None:
    (art / MANIFEST).write_text('{"files": {}, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ArtifactError, match="nested too deeply"):
        verify_artifact(art)


def test_manifest_that_is_a_symlink_or_fifo_is_refused(art: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    (art / MANIFEST).rename(real)
    (art / MANIFEST).symlink_to(real)
    with pytest.raises(ArtifactError, match="not a regular file"):
        verify_artifact(art)
    (art / MANIFEST).unlink()
    os.mkfifo(art / MANIFEST)
    with pytest.raises(ArtifactError, match="not a regular file"):
        verify_artifact(art)  # returns at once: a FIFO is never opened


@pytest.mark.parametrize("kind", ["dir-symlink", "file-symlink", "fifo", "dangling"])
def test_special_entries_inside_an_artifact_are_refused(art: Path, kind: str) -> None:
    entry = art / "extra"
    if kind == "dir-symlink":
        entry.symlink_to("/", target_is_directory=True)
    elif kind == "file-symlink":
        entry.symlink_to(art / "model.onnx")
    elif kind == "dangling":
        entry.symlink_to(art / "nowhere")
    else:
        os.mkfifo(entry)
    what = "a FIFO" if kind == "fifo" else "a symbolic link"
    with pytest.raises(ArtifactError, match=f"holds extra, which is {what}"):
        verify_artifact(art)


def test_a_listed_file_replaced_by_a_symlink_is_refused(art: Path, tmp_path: Path) -> None:
    """Same bytes, same hash, but the file now lives outside: refused, not followed."""
    outside = tmp_path / "outside.onnx"
    (art / "model.onnx").rename(outside)
    (art / "model.onnx").symlink_to(outside)
    with pytest.raises(ArtifactError, match=r"model\.onnx, which is a symbolic link"):
        verify_artifact(art)


def test_tolerance_comes_from_the_tool_not_the_manifest(tmp_path: Path) -> None:
    """Golden logits off by 1.5 with the manifest's tolerances nulled: verify still fails."""
    out = _artifact(tmp_path / "off", shift=1.5)
    loose = {"max_abs": None, "top1_agreement": None, "cosine": None}
    _edit(out, checks=[{"candidate": "onnxruntime-fp32 (model.onnx)", "tolerance": loose}])
    with pytest.raises(VerificationError, match="does not match pytorch"):
        recheck_artifact(out)
    recheck_artifact(out, max_abs=2.0)  # the user may loosen it on the command line, knowingly


def test_swapped_and_rehashed_artifact_fails_against_the_expected_digest(tmp_path: Path) -> None:
    good = _artifact(tmp_path / "good", seed=0)
    other = _artifact(tmp_path / "other", seed=7)
    digest = manifest_sha256(good)
    for name in ("model.onnx", "golden.npz"):
        (good / name).write_bytes((other / name).read_bytes())
    _rehash(good)
    recheck_artifact(good)  # consistent in itself: only the anchor can tell
    with pytest.raises(ArtifactError, match=f"not the expected {digest}"):
        verify_artifact(good, expect=digest)


def test_golden_file_that_is_not_npz_is_one_sentence(art: Path) -> None:
    (art / "golden.npz").write_bytes(b"not a zip")
    _rehash(art)
    with pytest.raises(ArtifactError, match="is not a golden file"):
        recheck_artifact(art)


def test_cli_verify_expect(art: Path, run_cli) -> None:
    digest = manifest_sha256(art)
    ok = run_cli("verify", str(art), "--expect", digest)
    assert ok.returncode == 0, ok.stderr
    assert f"manifest sha256 the expected {digest}" in ok.stdout
    bad = run_cli("verify", str(art), "--expect", "0" * 64)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "not the expected" in bad.stderr
    junk = run_cli("verify", str(art), "--expect", "abc")
    assert junk.returncode == 1 and "is not a sha256" in junk.stderr


def _compiled_artifact(out: Path, profile_record: dict) -> Path:
    """An artifact with an ONNX Runtime compiled model (what `lgdeploy bench` measures)."""
    from learngene_deploy.backends import get_backend

    with ArtifactWriter(out) as writer:
        _tiny_onnx(writer.path / "model.onnx")
        compiled = get_backend("onnxruntime").compile(writer.path / "model.onnx", writer.path, precision="fp32")
        record = {**compiled.to_dict(), "model_path": "model.onnx", "source": "model.onnx", "files": ["model.onnx"]}
        verdict = {"budget_ms": 1e9, "percentile": 50, "value_ms": 1.0, "basis": "predicted", "passed": True}
        manifest = {
            "profile": profile_record,
            "compile": record,
            "latency": {"predicted_ms": 1.0, "measured_ms": None},
            "budgets": {"latency": verdict},
        }
        return writer.finalize(manifest)


def test_bench_judges_against_the_profile_not_the_manifests_budgets(tmp_path: Path) -> None:
    """A manifest claiming the shipped cpu-host profile but a 1e9 ms budget is judged by cpu-host's real budget."""
    from learngene_deploy.artifact.store import bench_artifact
    from learngene_deploy.profile import load_profile

    real = load_profile("cpu-host")
    forged = {"latency_ms": 1e9, "percentile": 50, "batch": 2}
    runtime = {"backend": "onnxruntime", "precision": "fp32", "threads": 1, "execution_provider": None}
    profile = {"name": "cpu-host", "sha256": real.sha256, "runtime": runtime, "budgets": forged}
    out = _compiled_artifact(tmp_path / "art", profile)
    with pytest.raises(ArtifactError, match="is not the profile this artifact was built with"):
        bench_artifact(out, runs=3, rounds=1, profile="raspberry-pi-5")
    verdict = bench_artifact(out, runs=3, rounds=1).latency_verdict
    assert verdict["budget_ms"] == real.budgets.latency_ms and verdict["percentile"] == real.budgets.percentile
    assert verdict["budget_source"].startswith("profile cpu-host")


def test_bench_of_a_custom_profile_artifact_needs_that_profile(tmp_path: Path) -> None:
    """An artifact of a profile that is not shipped: its manifest's budgets never judge; the profile file must be
    passed, checked by its sha256, and then its budgets judge the measurement."""
    import yaml

    from learngene_deploy.artifact.store import bench_artifact
    from learngene_deploy.profile import load_profile, shipped_profiles_dir

    custom = yaml.safe_load((shipped_profiles_dir() / "cpu-host.yaml").read_text())
    custom["name"] = "my-box"
    custom["budgets"]["latency_ms"] = 7.5
    path = tmp_path / "my-box.yaml"
    path.write_text(yaml.safe_dump(custom))
    mine = load_profile(str(path))
    runtime = {"backend": "onnxruntime", "precision": "fp32", "threads": 1, "execution_provider": None}
    forged = {"latency_ms": 1e9, "percentile": 50, "batch": 2}
    record = {"name": "my-box", "sha256": mine.sha256, "source": str(path), "runtime": runtime, "budgets": forged}
    out = _compiled_artifact(tmp_path / "art", record)
    moved = path.rename(tmp_path / "elsewhere.yaml")  # the file the build read is gone from where it was
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(ArtifactError) as caught:
        bench_artifact(out, runs=3, rounds=1)
    message = str(caught.value)
    assert "not shipped" in message and f"--profile {path}" in message and "\n" not in message
    assert (out / "manifest.json").read_bytes() == before  # nothing measured, nothing recorded
    verdict = bench_artifact(out, runs=3, rounds=1, profile=str(moved)).latency_verdict
    assert verdict["budget_ms"] == 7.5 and verdict["budget_source"].startswith("profile my-box")
    # the file back where the build read it, unchanged: its sha256 matches, so it judges without --profile
    moved.rename(path)
    assert bench_artifact(out, runs=3, rounds=1).latency_verdict["budget_source"].endswith("the file the build read)")
    # an edited profile at that path no longer matches the recorded sha256 and is refused
    path.write_text(path.read_text().replace("7.5", "7500"))
    with pytest.raises(ArtifactError, match="not shipped"):
        bench_artifact(out, runs=3, rounds=1)


def test_golden_images_that_do_not_fit_the_model_are_one_sentence(art: Path) -> None:
    np.savez(art / "golden.npz", images=np.zeros((4, 3, 5, 5), np.float32), logits=np.zeros((4, 5), np.float32))
    _rehash(art)
    with pytest.raises(ArtifactError, match=r"cannot run the golden images of shape \(4, 3, 5, 5\)"):
        recheck_artifact(art)


def test_bench_on_a_really_read_only_artifact_keeps_the_measurement(tmp_path: Path) -> None:
    """A read-only bind mount (a real EROFS, not a mock): the message carries what was measured, nothing changes."""
    import shutil
    import subprocess

    from learngene_deploy.artifact.store import bench_artifact
    from learngene_deploy.profile import load_profile

    real = load_profile("cpu-host")
    runtime = {"backend": "onnxruntime", "precision": "fp32", "threads": 1, "execution_provider": None}
    budgets = {"latency_ms": real.budgets.latency_ms, "percentile": real.budgets.percentile, "batch": 2}
    profile = {"name": "cpu-host", "sha256": real.sha256, "runtime": runtime, "budgets": budgets}
    out = _compiled_artifact(tmp_path / "art", profile)
    mnt = tmp_path / "ro"
    mnt.mkdir()
    mount = shutil.which("mount")
    ok = mount and subprocess.run([mount, "--bind", "-o", "ro", str(out), str(mnt)], capture_output=True).returncode
    if ok != 0:
        pytest.skip(
            "cannot bind-mount read-only here (needs root with CAP_SYS_ADMIN); the EROFS path is mocked elsewhere"
        )
    try:
        subprocess.run([mount, "-o", "remount,ro,bind", str(mnt)], check=True, capture_output=True)
        before = (mnt / "manifest.json").read_bytes()
        with pytest.raises(ArtifactError) as caught:
            bench_artifact(mnt, runs=3, rounds=1)
        message = str(caught.value)
        assert message.startswith("measured p50 ") and "Read-only file system" in message and "\n" not in message
        assert (mnt / "manifest.json").read_bytes() == before
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
