"""`lgdeploy matrix` and the example workflow that consumes it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from learngene_deploy.cli import app
from learngene_deploy.profile import list_profiles

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "artifacts.yml"
runner = CliRunner()


def _matrix(*args: str) -> list[dict]:
    result = runner.invoke(app, ["matrix", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["include"]


def test_one_entry_per_profile_with_unique_artifact_names() -> None:
    include = _matrix()
    assert [e["profile"] for e in include] == list_profiles()
    assert len({e["artifact"] for e in include}) == len(include)


def test_tensorrt_profiles_run_on_self_hosted_runners_labelled_by_profile() -> None:
    for entry in _matrix():
        if entry["backend"] == "tensorrt":
            assert entry["runs-on"][0] == "self-hosted" and entry["profile"] in entry["runs-on"]
        else:
            assert entry["runs-on"] == "ubuntu-latest"


def test_runtime_filter() -> None:
    assert {e["backend"] for e in _matrix("--runtime", "openvino")} == {"openvino"}
    assert [e["profile"] for e in _matrix("--runtime", "auto")] == ["cpu-host"]
    result = runner.invoke(app, ["matrix", "--runtime", "tflite"])
    assert result.exit_code == 1 and "valid runtimes are onnxruntime, openvino, tensorrt" in result.stderr


def test_example_workflow_builds_every_matrix_leg() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    assert "lgdeploy matrix --json" in json.dumps(jobs["matrix"])
    build_steps = json.dumps(jobs["build"]["steps"])
    assert "lgdeploy build --profile ${{ matrix.profile }}" in build_steps
    assert "lgdeploy verify" in build_steps
    assert "--defer-compile" in build_steps and jobs["build"]["runs-on"] == "ubuntu-latest"
    upload = next(s for s in jobs["build"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "build-{0}" in upload["with"]["name"] and "matrix.artifact" in upload["with"]["name"]
    # device legs: only `lgdeploy compile` (and bench) on the self-hosted device runner, no fine-tune there
    finish = jobs["finish"]
    finish_steps = json.dumps(finish["steps"])
    assert finish["runs-on"] == "${{ matrix.runs-on }}" and "select(.defer)" in json.dumps(jobs["matrix"])
    assert "lgdeploy compile artifacts/${{ matrix.profile }}" in finish_steps and "lgdeploy build" not in finish_steps
    assert "lgdeploy bench" in finish_steps and "lgdeploy verify" in finish_steps
    download = next(s for s in jobs["release"]["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"]["pattern"] == "lgdeploy-*"
    release = json.dumps(jobs["release"]["steps"])
    assert "SHA256SUMS" in release and "actions/attest-build-provenance" in release  # digests, signed provenance


def test_device_legs_are_deferred_and_hosted_legs_are_not() -> None:
    for entry in _matrix():
        assert entry["defer"] == (entry["runs-on"] != "ubuntu-latest"), entry
