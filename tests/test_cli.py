"""The `lgdeploy` command line, through typer's test runner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learngene_deploy import __version__
from learngene_deploy.cli import app
from learngene_deploy.errors import ProfileError
from learngene_deploy.profile import list_profiles, load_profile

DATA = Path(__file__).parent / "data" / "profiles"
BROKEN = sorted(p for p in DATA.glob("*.yaml") if not p.name.startswith("good"))
runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"lgdeploy {__version__}"


def test_help_lists_groups() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "profiles" in result.stdout


def test_no_args_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output


def test_profiles_list_table() -> None:
    result = runner.invoke(app, ["profiles", "list"])
    assert result.exit_code == 0, result.output
    for name in list_profiles():
        assert name in result.stdout
    for header in ("name", "device", "runtime", "precision", "latency budget", "memory budget"):
        assert header in result.stdout
    assert "10 ms p90" in result.stdout  # jetson-orin-nano's budget, rendered with its percentile


def test_profiles_list_json() -> None:
    result = runner.invoke(app, ["profiles", "list", "--json"])
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list_profiles()
    nano = next(r for r in rows if r["name"] == "jetson-orin-nano")
    assert (nano["backend"], nano["precision"]) == ("tensorrt", "fp16")


@pytest.mark.parametrize("ref", ["raspberry-pi-5", str(DATA / "good-custom.yaml")])
def test_profiles_show_name_or_file(ref: str) -> None:
    result = runner.invoke(app, ["profiles", "show", ref, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    expected = load_profile(ref)
    assert shown["sha256"] == expected.sha256
    assert {k: v for k, v in shown.items() if k not in ("source", "sha256")} == expected.to_dict()
    table = runner.invoke(app, ["profiles", "show", ref])
    assert "budgets.latency_ms" in table.stdout and expected.sha256 in table.stdout


def test_validate_good_files_exit_zero() -> None:
    files = [str(p) for p in sorted(Path(load_profile("cpu-host").source).parent.glob("*.yaml"))]
    result = runner.invoke(app, ["profiles", "validate", *files, str(DATA / "good-custom.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok: ") == len(files) + 1


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_validate_broken_file_one_sentence_no_traceback(path: Path) -> None:
    result = runner.invoke(app, ["profiles", "validate", str(path)])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_validate_mixed_reports_each_and_fails() -> None:
    result = runner.invoke(app, ["profiles", "validate", str(DATA / "good-custom.yaml"), str(BROKEN[0])])
    assert result.exit_code == 1
    assert "ok: " in result.stdout and result.stderr.count("error: ") == 1


def test_show_unknown_name_is_one_sentence() -> None:
    result = runner.invoke(app, ["profiles", "show", "../x"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: '../x' is neither a shipped profile name")


def test_debug_flag_raises_the_real_exception() -> None:
    result = runner.invoke(app, ["--debug", "profiles", "show", "no-such-profile"])
    assert isinstance(result.exception, ProfileError)


# --- as a real subprocess -------------------------------------------------------------------------------


def test_subprocess_version_and_list(run_cli) -> None:
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"lgdeploy {__version__}"
    listed = run_cli("profiles", "list")
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in list_profiles())


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_subprocess_broken_profiles(run_cli, path: Path) -> None:
    result = run_cli("profiles", "validate", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr


def test_subprocess_debug_shows_traceback(run_cli) -> None:
    result = run_cli("--debug", "profiles", "show", str(BROKEN[0]))
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ProfileError" in result.stderr


def test_subprocess_python_dash_m(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "learngene_deploy", "profiles", "validate", "cpu-host"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0 and "ok: cpu-host" in result.stdout


HEAVY = ("torch", "timm", "onnx", "onnxruntime", "openvino", "tensorrt", "onnxsim", "numpy", "sklearn")


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["--help"], ()),
        (["profiles", "list"], ()),
        (["profiles", "show", "cpu-host"], ()),
        # these read a learngene's header (safetensors needs numpy) but never torch, a model or a runtime
        (["select", "--profile", "cpu-host", "--json"], ("numpy",)),
        (["learngene", "info", "lets-fashion-mnist"], ("numpy",)),
    ],
)
def test_cli_does_not_import_heavy_modules(argv: list[str], allowed: tuple[str, ...], tmp_path: Path) -> None:
    heavy_modules = tuple(m for m in HEAVY if m not in allowed)
    code = (
        "import sys\n"
        "from learngene_deploy.cli import main\n"
        f"sys.argv = ['lgdeploy', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print('HEAVY=' + ','.join(m for m in {heavy_modules!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    heavy = result.stdout.strip().splitlines()[-1]
    assert heavy == "HEAVY=", f"`lgdeploy {' '.join(argv)}` imported {heavy[6:]}"
