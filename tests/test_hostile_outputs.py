"""Nothing the user owns is deleted or overwritten (issue 21): `--force` replaces only an lgdeploy artifact or an
empty directory, duplicate targets are refused before any work, and every `--out` is checked up front."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learngene_deploy.artifact import ArtifactWriter
from learngene_deploy.artifact.writer import check_output, is_artifact
from learngene_deploy.cli import app
from learngene_deploy.errors import ArtifactError

PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _artifact(out: Path) -> Path:
    writer = ArtifactWriter(out)
    (writer.path / "model.onnx").write_bytes(b"onnx")
    return writer.finalize({"status": "complete"})


@pytest.mark.parametrize("which", ["root", "home", "cwd", "above-cwd"])
def test_force_never_replaces_root_home_or_the_working_directory(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    out = {"root": Path("/"), "home": tmp_path / "home", "cwd": Path("."), "above-cwd": Path("..")}[which]
    with pytest.raises(ArtifactError, match="which lgdeploy never writes into or replaces"):
        check_output(out, force=True)


def test_force_refuses_a_users_directory_and_deletes_nothing(tmp_path: Path) -> None:
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ArtifactError, match=r"did not write .* so --force will not replace it"):
        ArtifactWriter(mine, force=True)
    with pytest.raises(ArtifactError, match="is not an lgdeploy artifact; choose another --out"):
        check_output(mine, force=False)  # and the hint does not suggest --force
    assert (mine / "cat.jpg").read_bytes() == b"meow"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"], "no partial directory was made"


def test_force_replaces_an_artifact_or_an_empty_directory(tmp_path: Path) -> None:
    art = _artifact(tmp_path / "art")
    assert is_artifact(art)
    _artifact_force = ArtifactWriter(art, force=True)
    (_artifact_force.path / "model.onnx").write_bytes(b"new")
    _artifact_force.finalize({"status": "complete"})
    assert (art / "model.onnx").read_bytes() == b"new"
    (tmp_path / "empty").mkdir()
    ArtifactWriter(tmp_path / "empty", force=True).finalize({})


def test_a_directory_that_changes_during_the_build_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    writer = ArtifactWriter(tmp_path / "out", force=True)  # empty when the build started
    (tmp_path / "out" / "thesis.tex").write_text("years of work")  # the user saved a file there meanwhile
    with pytest.raises(ArtifactError, match="did not write"):
        writer.finalize({})
    assert (tmp_path / "out" / "thesis.tex").read_text() == "years of work"


def test_symlinked_and_overlong_outputs_are_refused_up_front(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ArtifactError, match="is a symbolic link"):
        check_output(tmp_path / "link", force=False)
    with pytest.raises(ArtifactError, match="choose a shorter name"):
        check_output(tmp_path / ("x" * 250), force=False)


def test_build_refuses_a_users_directory_before_any_work(tmp_path: Path) -> None:
    mine = tmp_path / "docs"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = _invoke("build", "-p", "cpu-host", "--data", "digits", "--out", str(mine), "--force")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: --out {mine} is a directory that lgdeploy did not write")
    assert "recompose" not in result.stderr and (mine / "notes.txt").read_text() == "keep me"


def test_build_refuses_two_profiles_with_one_target(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(PROFILES / "cpu-host.yaml", other / "cpu-host.yaml")
    result = _invoke("build", "-p", "cpu-host", "-p", str(other / "cpu-host.yaml"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert "would both write" in result.stderr and not (tmp_path / "o").exists()
    result = _invoke("build", "-p", "cpu-host", "-p", "cpu-host", "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "pass each profile once" in result.stderr


@pytest.mark.parametrize("kind", ["yaml", "dir", "fifo"])
def test_calibrate_out_is_checked_before_calibrating(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "my-profile.yaml"
    if kind == "yaml":
        shutil.copy(PROFILES / "cpu-host.yaml", target)
    elif kind == "dir":
        target.mkdir()
    else:
        os.mkfifo(target)
    before = target.read_bytes() if kind == "yaml" else None
    result = _invoke("profiles", "calibrate", "cpu-host", "--out", str(target))
    assert result.exit_code == 1, result.output
    expected = {"yaml": "is not an lgdeploy latency table", "dir": "is a directory", "fifo": "is not a regular file"}
    assert expected[kind] in result.stderr and "calibrating" not in result.stderr
    if before is not None:
        assert target.read_bytes() == before, "the user's profile is untouched"


@pytest.mark.slow
def test_build_prints_and_returns_the_manifest_digest(tmp_path: Path) -> None:
    """The trust anchor: the digest the build reports is the manifest's sha256, and `verify --expect` accepts it."""
    import torch

    from learngene_deploy.artifact.store import manifest_sha256, verify_artifact
    from learngene_deploy.learngene.io import save_learngene
    from learngene_deploy.learngene.ldr import LDRGenerator
    from learngene_deploy.models.vit import ArchSpec
    from learngene_deploy.pipeline.run import BuildOptions, build

    torch.manual_seed(0)
    arch = ArchSpec(img_size=16, patch_size=8, in_chans=3, num_classes=10, embed_dim=16, depth=2, num_heads=2)
    lg = save_learngene(tmp_path / "lg.safetensors", LDRGenerator(arch, 1), accuracy=[{"depth": 2, "genes": 1}])
    lines: list[str] = []
    opts = BuildOptions(
        profile="cpu-host",
        learngene=str(lg),
        data="digits",
        finetune_steps=1,
        finetune_batch=16,
        out=tmp_path / "art",
        verify_images=32,
        bench_runs=3,
        bench_rounds=1,
        bench_min_time_s=0.01,
    )
    result = build(opts, log=lambda _stage, msg: lines.append(msg))
    assert result.manifest_sha256 == manifest_sha256(result.out_dir)
    assert any(f"manifest sha256 {result.manifest_sha256}" in line for line in lines)
    verify_artifact(result.out_dir, expect=result.manifest_sha256)
