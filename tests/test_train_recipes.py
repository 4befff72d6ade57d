"""Every recipe in train/recipes/ is one working `lgdeploy train` command: run each for two steps on digits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parent.parent / "train" / "recipes"
TINY = [
    "--data",
    "digits",
    "--max-steps",
    "2",
    "--train-limit",
    "64",
    "--val-limit",
    "32",
    "--batch-size",
    "16",
    "--no-progress",
]


def _run(script: str, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # this venv's lgdeploy
    return subprocess.run(
        ["bash", str(RECIPES / script), *TINY],
        env={**os.environ, "PATH": path, "OUT": str(out), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_recipe_runs_and_the_learngenes_distil_from_the_teacher_recipe(tmp_path: Path) -> None:
    assert sorted(p.name for p in RECIPES.glob("*.sh")) == [
        "ldr-fashion-mnist.sh", "lets-fashion-mnist.sh", "teacher-fashion-mnist.sh", "tleg-fashion-mnist.sh"
    ]  # fmt: skip
    run = _run("teacher-fashion-mnist.sh", tmp_path / "teacher")
    assert run.returncode == 0, run.stderr[-2000:]
    teacher = tmp_path / "teacher" / "teacher.safetensors"
    assert teacher.is_file()
    from learngene_deploy.learngene.io import read_metadata

    for name in ("lets", "ldr", "tleg"):
        run = _run(f"{name}-fashion-mnist.sh", tmp_path / name, TEACHER=str(teacher))
        assert run.returncode == 0, (name, run.stderr[-2000:])
        meta = read_metadata(tmp_path / name / "learngene.safetensors")
        assert meta["training"]["teacher_info"]["model"] == "resnet10t", name
    assert read_metadata(tmp_path / "tleg" / "learngene.safetensors")["generator"]["basis"] == "linear"
