"""Bounds on work, signals and odd text (issue 21): absurd counts are refused up front in one sentence, SIGTERM
ends like Ctrl-C, and an unusual path or terminal never turns into an internal error."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from learngene_deploy.cli import app
from learngene_deploy.data import load_data
from learngene_deploy.data.splits import IDX_FILES
from learngene_deploy.errors import ArtifactError, ConfigError, DataError


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    "args",
    [
        ("build", "-p", "cpu-host", "--finetune-steps", "999999999999"),
        ("build", "-p", "cpu-host", "--finetune-epochs", "inf"),
        ("build", "-p", "cpu-host", "--seed", str(2**70)),
        ("bench", ".", "--runs", "999999999"),
        ("bench", ".", "--rounds", "1000000"),
        ("train", "ldr", "--out", "x", "--batch-size", "0"),
        ("train", "ldr", "--out", "x", "--seed", "-1"),
        ("profiles", "calibrate", "cpu-host", "--out", "t.json", "--runs", "10000000"),
    ],
)
def test_absurd_counts_are_refused_before_any_work(args: tuple[str, ...]) -> None:
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert "than or equal to" in result.output


@pytest.mark.parametrize("command", [("build", "-p", "cpu-host"), ("train", "ldr", "--out", "x")])
def test_empty_data_is_refused_not_taken_as_the_default(command: tuple[str, ...]) -> None:
    result = _invoke(*command, "--data", "")
    assert result.exit_code == 1 and result.stderr.startswith("error: data (--data) is empty"), result.output
    with pytest.raises(DataError, match="the data source is empty"):
        load_data("", img_size=8)


def test_device_cuda_without_a_gpu_is_one_sentence() -> None:
    import torch

    from learngene_deploy.cli.train import check_device

    with pytest.raises(ConfigError, match="is not cpu, cuda or cuda:INDEX"):
        check_device("gpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = _invoke("train", "ldr", "--out", "x", "--data", "digits", "--device", "cuda")
    assert result.exit_code == 1 and "needs a CUDA GPU, but this machine has no CUDA GPU" in result.stderr


def _idx(directory: Path, train_labels: list[int], val_labels: list[int], train_images: int | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    counts = {"train": train_labels, "val": val_labels}
    for key, stem in IDX_FILES.items():
        labels = counts["train" if key.startswith("train") else "val"]
        if "images" in key:
            n = len(labels) if train_images is None or not key.startswith("train") else train_images
            body = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, 4, 4)) + bytes(16 * n)
        else:
            body = (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + bytes(labels)
        (directory / stem).write_bytes(body)
    return directory


@pytest.mark.parametrize(
    ("train", "val", "images", "fragment"),
    [
        ([3] * 8, [3] * 4, None, r"hold 1 class\(es\)"),
        ([], [], None, "each split needs the same, non-zero number"),
        ([0, 1] * 4, [0, 1], 5, "each split needs the same, non-zero number"),
    ],
)
def test_unusable_idx_directories_are_one_sentence(
    tmp_path: Path, train: list[int], val: list[int], images: int | None, fragment: str
) -> None:
    with pytest.raises(DataError, match=fragment):
        load_data(str(_idx(tmp_path / "idx", train, val, images)), img_size=8)


def test_non_utf8_names(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (5, 5), (i * 50, 0, 0)).save(root / cls / f"{i}.png")
    odd = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes, not UTF-8
    Image.new("RGB", (5, 5), (9, 9, 9)).save(root / "a" / odd)
    data = load_data(root, img_size=8, val_fraction=0.4)
    assert len(data.train) + len(data.val) == 5 and data.info["fingerprint"]
    (root / os.fsdecode(b"\xff\xfe")).mkdir()
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_data(root, img_size=8)


def test_a_path_too_long_for_the_os_is_one_sentence() -> None:
    result = _invoke("profiles", "show", "x" * 300 + ".yaml")
    assert result.exit_code == 1, result.output
    assert "longer than this file system allows" in result.stderr


def test_batch_larger_than_the_verification_set_is_refused_before_any_work(tmp_path: Path) -> None:
    import yaml

    from learngene_deploy.pipeline.run import BuildOptions, build
    from learngene_deploy.profile import shipped_profiles_dir

    data = yaml.safe_load((shipped_profiles_dir() / "cpu-host.yaml").read_text())
    data["budgets"]["batch"] = 512
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(data))
    stages: list[str] = []
    opts = BuildOptions(profile=str(tmp_path / "big.yaml"), out=tmp_path / "out", data="digits")
    with pytest.raises(ConfigError, match="more than the 256 validation images"):
        build(opts, log=lambda stage, _msg: stages.append(stage))
    assert stages == []


def test_a_read_only_artifact_keeps_the_measurement_in_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from learngene_deploy.artifact import Manifest
    from learngene_deploy.artifact.store import record_target_benchmark
    from learngene_deploy.profile import load_profile

    cpu_host = load_profile("cpu-host")
    manifest = Manifest(
        {
            "profile": {"name": "cpu-host", "sha256": cpu_host.sha256},
            "latency": {"predicted_ms": 1.0},
            "budgets": {"latency": {}},
        }
    )

    def read_only(self: Manifest, root: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(root / "manifest.json"))

    monkeypatch.setattr(Manifest, "save", read_only)
    stats = {"p50_ms": 1.5, "p90_ms": 2.0, "p99_ms": 3.0}
    record = {"measured": "now", "host": {"hostname": "box"}, "stats": stats}
    with pytest.raises(ArtifactError, match=r"^measured p50 1.5 ms, p90 2 ms, p99 3 ms but cannot record it"):
        record_target_benchmark(tmp_path, manifest, record)


def _script(tmp_path: Path, body: str) -> Path:
    """A tiny `lgdeploy` with one extra command, run through the real entry point (signals, encodings)."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, time, typer\n"
        "from learngene_deploy import cli\n"
        f"{body}\n"
        "sys.argv = ['lgdeploy', *sys.argv[1:]]\n"
        "cli.main()\n"
    )
    return script


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    body = "@cli.app.command('wait')\ndef wait() -> None:\n    print('ready', flush=True)\n    time.sleep(60)\n"
    proc = subprocess.Popen(
        [sys.executable, str(_script(tmp_path, body)), "wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert err.strip() == "error: terminated (SIGTERM); nothing half-written is marked complete."


def test_an_ascii_terminal_still_gets_the_output(tmp_path: Path) -> None:
    """Rich output (a table) and an error, both with non-ASCII text, on a terminal that only encodes ASCII."""
    import yaml

    from learngene_deploy.profile import shipped_profiles_dir

    data = yaml.safe_load((shipped_profiles_dir() / "cpu-host.yaml").read_text())
    data["description"] = "bôx"
    folder = tmp_path / "données"
    folder.mkdir()
    (folder / "p.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "learngene_deploy", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)

    shown = run("profiles", "show", str(folder / "p.yaml"))
    assert shown.returncode == 0, shown.stderr
    assert "b\\xf4x" in shown.stdout
    missing = run("profiles", "show", str(folder / "none.yaml"))
    assert missing.returncode == 1 and "donn\\xe9es" in missing.stderr
    assert "Traceback" not in shown.stderr + missing.stderr
