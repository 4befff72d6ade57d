"""Shared fixtures: paths, a subprocess runner for the real `lgdeploy` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def lgdeploy_argv() -> list[str]:
    """argv prefix that runs the installed `lgdeploy` console script (falls back to `python -m`)."""
    script = Path(sys.executable).parent / "lgdeploy"
    if script.is_file():
        return [str(script)]
    found = shutil.which("lgdeploy")
    return [found] if found else [sys.executable, "-m", "learngene_deploy"]


@pytest.fixture
def run_cli(lgdeploy_argv: list[str], tmp_path: Path):
    """Run `lgdeploy ARGS...` as a real subprocess (in a temp working directory)."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [*lgdeploy_argv, *args], capture_output=True, text=True, cwd=tmp_path, env=full_env, timeout=120
        )

    return run
