"""Artifact directories: atomic completion, refusal to overwrite, hash verification, clear OS errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learngene_deploy.artifact import (
    MANIFEST,
    PARTIAL_MARK,
    ArtifactWriter,
    read_manifest,
    verify_artifact,
)
from learngene_deploy.errors import ArtifactError
from learngene_deploy.facts import host_facts, tool_versions


def _build(out: Path, *, force: bool = False, payload: bytes = b"onnx") -> Path:
    writer = ArtifactWriter(out, force=force)
    (writer.path / "model.onnx").write_bytes(payload)
    (writer.path / "sub").mkdir()
    (writer.path / "sub" / "model.bin").write_bytes(b"weights")
    return writer.finalize({"profile": {"name": "cpu-host"}, "status": "complete"})


def test_finalize_writes_manifest_with_hashes(tmp_path: Path) -> None:
    out = _build(tmp_path / "cpu-host")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["schema_version"] == 1 and manifest["status"] == "complete"
    assert set(manifest["files"]) == {"model.onnx", "sub/model.bin"}
    assert manifest["files"]["model.onnx"]["bytes"] == 4
    assert verify_artifact(out)["profile"]["name"] == "cpu-host"
    assert not [p for p in tmp_path.iterdir() if PARTIAL_MARK in p.name], "no partial directory is left behind"


def test_finished_artifact_has_the_mode_of_a_new_directory(tmp_path: Path) -> None:
    """mkdtemp's private 0700 must not leak into the deliverable (a CI runner or a colleague reads it)."""
    import os

    old = os.umask(0o022)
    try:
        out = _build(tmp_path / "shared")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == ((tmp_path / "plain").stat().st_mode & 0o777) == 0o755


def test_partial_directory_is_hidden_until_finalize(tmp_path: Path) -> None:
    writer = ArtifactWriter(tmp_path / "a")
    (writer.path / "model.onnx").write_bytes(b"x")
    assert not (tmp_path / "a").exists()
    assert writer.path.name.startswith(".a" + PARTIAL_MARK)
    with pytest.raises(ArtifactError, match="partial build that never finished"):
        read_manifest(writer.path)


def test_exception_inside_context_removes_partial(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), ArtifactWriter(tmp_path / "a") as writer:
        (writer.path / "model.onnx").write_bytes(b"x")
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []


def test_killed_build_never_looks_complete(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "from learngene_deploy.artifact import ArtifactWriter\n"
        f"w = ArtifactWriter({str(tmp_path / 'art')!r})\n"
        "(w.path / 'model.onnx').write_bytes(b'half')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == -9
    assert not (tmp_path / "art").exists()
    (partial,) = tmp_path.iterdir()
    with pytest.raises(ArtifactError, match="not a complete artifact"):
        verify_artifact(partial)


def test_existing_output_refused_without_force(tmp_path: Path) -> None:
    out = _build(tmp_path / "a", payload=b"one")
    with pytest.raises(ArtifactError, match="already exists; pass --force"):
        ArtifactWriter(out)
    _build(out, force=True, payload=b"two!")
    assert (out / "model.onnx").read_bytes() == b"two!"
    verify_artifact(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"], "the replaced directory is removed"


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactError, match="not a directory"):
        ArtifactWriter(tmp_path / "f", force=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions, so unwritable cannot be simulated")
def test_unwritable_parent(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ArtifactError, match="cannot write"):
        ArtifactWriter(locked / "a")


def test_uncreatable_parent_is_one_sentence() -> None:
    """/proc refuses new directories for everyone, root included."""
    with pytest.raises(ArtifactError, match=r"^cannot write /proc/lgdeploy-test \(.*\); check the path"):
        ArtifactWriter(Path("/proc/lgdeploy-test/a"))


def test_tampered_file_is_detected(tmp_path: Path) -> None:
    out = _build(tmp_path / "a")
    (out / "model.onnx").write_bytes(b"onnY")  # same size, different bytes
    with pytest.raises(ArtifactError, match=r"model\.onnx does not match the sha256"):
        verify_artifact(out)


def test_missing_and_extra_files_are_detected(tmp_path: Path) -> None:
    out = _build(tmp_path / "a")
    (out / "sub" / "model.bin").unlink()
    with pytest.raises(ArtifactError, match=r"missing sub/model\.bin"):
        verify_artifact(out)
    out = _build(tmp_path / "b")
    (out / "notes.txt").write_text("added")
    with pytest.raises(ArtifactError, match="does not list"):
        verify_artifact(out)


@pytest.mark.parametrize("content", ["{", "[]", '{"files": {}}'])
def test_corrupt_manifest(tmp_path: Path, content: str) -> None:
    out = _build(tmp_path / "a")
    (out / MANIFEST).write_text(content)
    with pytest.raises(ArtifactError):
        verify_artifact(out)


def test_host_and_tools_are_recorded() -> None:
    host = host_facts()
    assert host["logical_cpus"] >= 1 and host["machine"]
    tools = tool_versions()
    assert tools["learngene-deploy"] and tools["torch"] and tools["onnxruntime"]


def test_tool_versions_import_nothing(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom learngene_deploy.facts import tool_versions\ntool_versions()\nprint('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False"


def test_atomic_path_replaces_on_success_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    from learngene_deploy._fs import atomic_path

    target = tmp_path / "sub" / "manifest.json"
    with atomic_path(target) as tmp:
        tmp.write_text("one")
        assert not target.exists(), "the final name appears only when the write is complete"
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("write failed")
    assert target.read_text() == "one"
    assert [p.name for p in target.parent.iterdir()] == ["manifest.json"], "no temporary file is left behind"


def _no_space(path: Path) -> OSError:
    import errno

    return OSError(errno.ENOSPC, "No space left on device", str(path))


def test_full_disk_inside_the_writer_is_one_sentence_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as info, ArtifactWriter(tmp_path / "a") as writer:
        (writer.path / "golden.npz").write_bytes(b"half")
        raise _no_space(writer.path / "golden.npz")  # what the OS says when a write finds the disk full
    assert str(info.value) == (
        f"no space left on the device while writing {tmp_path / 'a'}; free some disk space or choose another --out."
    )
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_writing_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = ArtifactWriter(tmp_path / "a")
    (writer.path / "model.onnx").write_bytes(b"onnx")
    real_write_text = Path.write_text

    def write_text(self: Path, text: str, *args: object, **kwargs: object) -> int:
        if self.name == MANIFEST:
            real_write_text(self, text[: len(text) // 2])  # part of it reached the disk
            raise _no_space(self)
        return real_write_text(self, text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write_text)
    expected = r"^no space left on the device while writing .*a; free some disk space"
    with pytest.raises(ArtifactError, match=expected), writer:
        writer.finalize({"status": "complete"})
    assert list(tmp_path.iterdir()) == [], "neither the artifact nor its partial directory is left"


def test_partial_directory_is_refused_even_with_a_manifest(tmp_path: Path) -> None:
    """A build killed between writing the manifest and the rename leaves a hidden partial that never verifies."""
    out = _build(tmp_path / "a")
    partial = tmp_path / f".a{PARTIAL_MARK}xyz"
    out.rename(partial)
    with pytest.raises(ArtifactError, match="partial build that never finished"):
        verify_artifact(partial)


def test_stale_siblings_are_only_this_outputs_leftovers(tmp_path: Path) -> None:
    from learngene_deploy.artifact import REPLACED_MARK, stale_siblings

    for name in (f".a{PARTIAL_MARK}1", f".a{REPLACED_MARK}2", f".ab{PARTIAL_MARK}3", "a", f".b{PARTIAL_MARK}4"):
        (tmp_path / name).mkdir()
    assert [p.name for p in stale_siblings(tmp_path / "a")] == [f".a{PARTIAL_MARK}1", f".a{REPLACED_MARK}2"]
    assert stale_siblings(tmp_path / "missing" / "a") == []
