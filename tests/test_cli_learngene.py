"""`lgdeploy train ldr` and `lgdeploy learngene info` through typer's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learngene_deploy.cli import app
from learngene_deploy.errors import ConfigError
from learngene_deploy.learngene.io import load_learngene
from learngene_deploy.learngene.ldr import parse_stages

TINY = ["--data", "digits", "--img-size", "16", "--patch-size", "4", "--embed-dim", "32", "--depth", "3"]
TINY += ["--num-heads", "2", "--batch-size", "32", "--train-limit", "256", "--val-limit", "64", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    result = CliRunner().invoke(
        app, ["train", "ldr", *TINY, "--out", str(out), "--genes", "3", "--stages", "1,3", "--max-steps", "2"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_train_ldr_writes_learngene(trained: Path) -> None:
    gen = load_learngene(trained / "learngene.safetensors")
    assert gen.num_genes == 3 and gen.train_arch.depth == 3 and gen.basis == "chebyshev"  # type: ignore[attr-defined]
    assert (trained / "checkpoint.pt").is_file()


def test_info_text_and_json(trained: Path) -> None:
    runner = CliRunner()
    text = runner.invoke(app, ["learngene", "info", str(trained / "learngene.safetensors")])
    assert text.exit_code == 0, text.output
    assert "ldr" in text.output and "chebyshev" in text.output and "depth" in text.output
    as_json = runner.invoke(app, ["learngene", "info", str(trained / "learngene.safetensors"), "--json"])
    meta = json.loads(as_json.output)
    assert {(r["depth"], r["genes"]) for r in meta["accuracy"]} == {(d, k) for d in (1, 2, 3) for k in (1, 3)}
    assert meta["training"]["recipe"]["stages"] == "1,3" and meta["training"]["steps"] == 4


def test_user_errors_are_one_sentence(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "ldr", *TINY, "--out", str(tmp_path), "--genes", "4", "--stages", "2,1,4"])
    assert bad.exit_code != 0 and "--stages must increase" in bad.output
    missing = runner.invoke(
        app, ["train", "ldr", *TINY, "--out", str(tmp_path / "none"), "--max-steps", "1", "--resume"]
    )
    assert missing.exit_code != 0 and "no checkpoint" in missing.output
    info = runner.invoke(app, ["learngene", "info", str(tmp_path / "nope.safetensors")])
    assert info.exit_code != 0 and "does not exist" in info.output
    assert "lets-fashion-mnist" in info.output, "the error names the shipped learngenes that would work"


def test_stage_parsing() -> None:
    assert parse_stages(None, 12, sct=False) == [1, 2, 4, 8, 12]
    assert parse_stages(None, 4, sct=False) == [1, 2, 4]
    assert parse_stages("1,2,4", 4, sct=True) == [4]
    with pytest.raises(ConfigError):
        parse_stages("1,2", 4, sct=False)


def test_help_does_not_import_torch() -> None:
    code = "import sys; from learngene_deploy.cli import app; print('torch' in sys.modules, 'timm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == [
        "False",
        "False",
    ]
