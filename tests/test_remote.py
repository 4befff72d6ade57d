"""`lgdeploy bench --host` (SSH to a real sshd on localhost) and `--adb` (perf_test output parsing, a stand-in adb).

The SSH tests start ``sshd`` on a free port of 127.0.0.1 with a temporary host key and authorized key, and
skip, saying why, where that is impossible (no openssh-server, no ssh client). No test asserts a latency.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from learngene_deploy.artifact import MANIFEST, ArtifactWriter, verify_artifact
from learngene_deploy.errors import ConfigError, RemoteError
from learngene_deploy.remote import bench_over_adb, bench_over_ssh
from learngene_deploy.remote.perf_test import parse_perf_test_output, perf_test_stats
from learngene_deploy.remote.ssh import ssh_option_args

PERF = Path(__file__).resolve().parent / "data" / "perf_test"
PERF_TEST = "/data/local/tmp/onnxruntime_perf_test"


# --- a tiny artifact (one MatMul, ONNX Runtime fp32) -------------------------------------------------------------


def _tiny_onnx(path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((48, 10)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)


def _tiny_profile(path: Path, backend: str):  # type: ignore[no-untyped-def]
    """The artifact's profile, a file of the user's (not shipped): 40 ms p90 at batch 1 on one thread."""
    import yaml

    from learngene_deploy.profile import load_profile, shipped_profiles_dir

    data = yaml.safe_load((shipped_profiles_dir() / "raspberry-pi-5.yaml").read_text())
    data.update(name="tiny", host=False)
    data["runtime"] = {"backend": backend, "precision": "fp32", "threads": 1}
    data["budgets"].update(latency_ms=40, percentile=90, batch=1)
    path.write_text(yaml.safe_dump(data))
    return load_profile(str(path))


def _write_artifact(out: Path, *, backend: str = "onnxruntime", model_name: str = "model.onnx") -> Path:
    """A complete artifact with just what `lgdeploy bench` reads (the real build takes minutes)."""
    from learngene_deploy.backends import get_backend

    with ArtifactWriter(out) as writer:
        _tiny_onnx(writer.path / "model.onnx")
        compiled = get_backend("onnxruntime").compile(writer.path / "model.onnx", writer.path, precision="fp32")
        record = {**compiled.to_dict(), "backend": backend, "model_path": model_name, "source": "model.onnx"}
        record["files"] = [model_name]
        if model_name != "model.onnx":
            (writer.path / model_name).write_bytes(b"ORT flatbuffer stand-in")
        profile = _tiny_profile(out.parent / "tiny.yaml", backend)
        manifest = {
            "status": "complete",
            "profile": {
                "name": "tiny",
                "sha256": profile.sha256,
                "source": profile.source,
                "host": False,
                "runtime": {"backend": backend, "precision": "fp32", "threads": 1, "execution_provider": None},
                "budgets": {"latency_ms": 40.0, "percentile": 90, "batch": 1},
            },
            "compile": record,
            "checks": [],
            "skipped": [],
            "latency": {"predicted_ms": 1.0, "measured_ms": None, "percentile": 90},
            "budgets": {
                "latency": {"budget_ms": 40.0, "percentile": 90, "value_ms": 1.0, "basis": "predicted", "passed": True}
            },
        }
        return writer.finalize(manifest)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_artifact(tmp_path_factory.mktemp("art") / "tiny-art")


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


# --- a real sshd on localhost: the `sshd` fixture in conftest.py --------------------------------------------


def test_ssh_bench_copies_runs_fetches_and_records(sshd: dict, artifact: Path, tmp_path: Path) -> None:
    art = _copy(artifact, tmp_path / "art")
    remote_dir = tmp_path / "remote"
    lines: list[str] = []
    manifest = bench_over_ssh(
        art,
        sshd["host"],
        runs=5,
        rounds=1,
        remote_python=sys.executable,
        remote_dir=str(remote_dir),
        ssh_options=sshd["options"],
        log=lines.append,
    )
    record = manifest["target_benchmarks"][-1]
    assert record["via"]["method"] == "ssh" and record["via"]["host"] == sshd["host"]
    assert record["host"]["hostname"] and record["stats"]["rounds"] == 1 and record["stats"]["runs"] >= 5
    assert record["stats"]["model_path"].startswith(str(remote_dir)), "it ran on the remote copy"
    assert manifest["budgets"]["latency"]["value_ms"] == record["stats"]["p90_ms"]
    assert f"(ssh {sshd['host']})" in manifest["budgets"]["latency"]["basis"]
    assert verify_artifact(art)["target_benchmarks"] == manifest["target_benchmarks"], "the local manifest verifies"
    assert not any(remote_dir.iterdir()), "the remote copy is removed afterwards"
    assert any("copied" in line for line in lines)


def test_ssh_cli_end_to_end(sshd: dict, artifact: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    art = _copy(artifact, tmp_path / "art")
    args = ["bench", str(art), "--host", sshd["host"], "--runs", "3", "--rounds", "1", "--keep-remote"]
    args += ["--remote-python", sys.executable, "--remote-dir", str(tmp_path / "remote")]
    for option in sshd["options"]:
        args += ["--ssh-option", option]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"(on {sshd['host']})" in result.stdout and "latency budget 40 ms p90" in result.stdout
    assert (tmp_path / "remote" / "art" / MANIFEST).is_file(), "--keep-remote keeps the copy"


def test_ssh_auth_failure_is_one_clear_sentence(sshd: dict, artifact: Path, tmp_path: Path) -> None:
    stranger = sshd["keygen"](tmp_path / "stranger")
    options = [o if not o.startswith("IdentityFile=") else f"IdentityFile={stranger}" for o in sshd["options"]]
    with pytest.raises(RemoteError, match=r"ssh authentication to .* failed .*ssh-copy-id"):
        bench_over_ssh(artifact, sshd["host"], remote_python=sys.executable, ssh_options=options)


def test_ssh_remote_without_lgdeploy(sshd: dict, artifact: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # -S: no site-packages, so no lgdeploy
    bare.chmod(0o755)
    with pytest.raises(RemoteError, match=r"cannot import lgdeploy .*pip install learngene-deploy"):
        bench_over_ssh(artifact, sshd["host"], remote_python=str(bare), ssh_options=sshd["options"])
    with pytest.raises(RemoteError, match=r"is not a command on .*--remote-python"):
        bench_over_ssh(artifact, sshd["host"], remote_python=str(tmp_path / "nope"), ssh_options=sshd["options"])


def test_ssh_never_replaces_a_remote_directory_that_is_not_an_artifact(
    sshd: dict, artifact: Path, tmp_path: Path
) -> None:
    precious = tmp_path / "remote" / "tiny-art"
    precious.mkdir(parents=True)
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(RemoteError, match="not an lgdeploy artifact"):
        bench_over_ssh(
            artifact,
            sshd["host"],
            remote_python=sys.executable,
            remote_dir=str(tmp_path / "remote"),
            ssh_options=sshd["options"],
        )
    assert (precious / "notes.txt").read_text() == "keep me"


def test_ssh_unreachable_host(artifact: Path) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client installed")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = [f"Port={port}", "ConnectTimeout=5"]
    with pytest.raises(RemoteError, match=r"cannot connect to .*check the host name, port and network"):
        bench_over_ssh(artifact, "nobody@127.0.0.1", ssh_options=options)


def test_ssh_missing_client(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RemoteError, match=r"^ssh not found on PATH; install the OpenSSH client"):
        bench_over_ssh(artifact, "pi@raspberrypi")


def test_ssh_options_and_tampered_artifacts_are_refused_before_connecting(artifact: Path, tmp_path: Path) -> None:
    from learngene_deploy.errors import ArtifactError

    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        ssh_option_args(["-p 22"])
    with pytest.raises(ConfigError, match="would let ssh prompt"):
        ssh_option_args(["BatchMode=no"])
    assert ssh_option_args(["ConnectTimeout=3"])[:2] == ["-o", "ConnectTimeout=3"], "user options come first"
    art = _copy(artifact, tmp_path / "art")
    (art / "model.onnx").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        bench_over_ssh(art, "pi@raspberrypi")


# --- onnxruntime_perf_test output ------------------------------------------------------------------------------


def test_parse_recent_perf_test_output() -> None:
    parsed = parse_perf_test_output((PERF / "ort_perf_test_recent.txt").read_text())
    assert parsed["average_ms"] == pytest.approx(3.12894)
    assert parsed["p50_ms"] == pytest.approx(3.06529) and parsed["p90_ms"] == pytest.approx(3.33917)
    assert parsed["p99_ms"] == pytest.approx(4.98216) and parsed["p999_ms"] == pytest.approx(5.51904)
    assert parsed["min_ms"] == pytest.approx(2.84113) and parsed["max_ms"] == pytest.approx(5.51904)
    assert parsed["requests"] == 100 and parsed["session_creation_s"] == pytest.approx(0.0412771)
    assert parsed["inferences_per_s"] == pytest.approx(318.927) and parsed["cpu_usage_percent"] == 96
    assert parsed["peak_working_set_bytes"] == 38576128 and parsed["first_inference_ms"] == 9


def test_parse_older_perf_test_output() -> None:
    parsed = parse_perf_test_output((PERF / "ort_perf_test_older.txt").read_text())
    assert parsed["average_ms"] == pytest.approx(4.17316) and parsed["cpu_usage_percent"] == 372
    assert parsed["p90_ms"] == pytest.approx(4.42981) and parsed["total_time_s"] == pytest.approx(0.417316)


def test_parse_summary_without_percentiles_and_garbage() -> None:
    parsed = parse_perf_test_output("Total inference requests: 10\nAverage inference time cost: 12.5 ms\n")
    assert parsed["average_ms"] == 12.5 and parsed["p90_ms"] is None
    with pytest.raises(RemoteError, match=r"printed no 'Average inference time cost' line .*'CANNOT LINK EXECUTABLE"):
        parse_perf_test_output('CANNOT LINK EXECUTABLE "./onnxruntime_perf_test": library "libc++_shared.so" not found')


def test_perf_test_stats_picks_the_best_round() -> None:
    recent = parse_perf_test_output((PERF / "ort_perf_test_recent.txt").read_text())
    older = parse_perf_test_output((PERF / "ort_perf_test_older.txt").read_text())
    stats = perf_test_stats(
        [older, recent], backend="onnxruntime", precision="int8", model_path="/d/model.ort", batch=1, threads=4
    )
    assert stats["rounds"] == 2 and stats["round_p50_ms"] == pytest.approx([4.09534, 3.06529])
    assert stats["p50_ms"] == pytest.approx(3.06529) and stats["p90_ms"] == pytest.approx(3.33917)
    assert stats["throughput_ips"] == pytest.approx(318.927) and stats["peak_rss_mb"] == pytest.approx(36.789, 1e-3)
    assert stats["load_s"] == pytest.approx(0.0412771) and stats["runs"] == 100
    assert stats["round_p90_ms"] == pytest.approx([4.42981, 3.33917])


def test_perf_test_stats_takes_the_lowest_tail_over_the_rounds() -> None:
    """A round's p90 moves with stray interruptions; the lowest over the rounds is kept, as bench.benchmark does."""
    recent = parse_perf_test_output((PERF / "ort_perf_test_recent.txt").read_text())
    noisy_tail = recent | {"p50_ms": 3.0, "p90_ms": 9.0, "p99_ms": 20.0}  # the best p50, but a stray-hit tail
    stats = perf_test_stats(
        [recent, noisy_tail], backend="onnxruntime", precision="int8", model_path="m", batch=1, threads=4
    )
    assert stats["p50_ms"] == 3.0 and stats["p90_ms"] == pytest.approx(3.33917)
    assert stats["p99_ms"] == pytest.approx(min(recent["p99_ms"], 20.0))
    no_tail = recent | {"p90_ms": None}  # a round without the percentile: keep the best round's own value
    stats = perf_test_stats([no_tail, noisy_tail], backend="onnxruntime", precision="int8", model_path="m", batch=1,
                            threads=4)  # fmt: skip
    assert stats["p90_ms"] == 9.0


# --- adb ----------------------------------------------------------------------------------------------------------

FAKE_ADB = r"""#!/bin/sh
# A stand-in for adb: logs its arguments and answers like one connected, authorised phone.
echo "$*" >> "$FAKE_ADB_LOG"
[ "$1" = "-s" ] && shift 2
case "$1" in
  get-state) echo device ;;
  push) echo "$2: 1 file pushed, 0 skipped." ;;
  shell)
    case "$2" in
      "test -x"*) exit 0 ;;
      *onnxruntime_perf_test*) while IFS= read -r line; do echo "$line"; done < "$FAKE_PERF_OUTPUT" ;;
      *getprop*) printf 'manufacturer=Google\nmodel=Pixel 8\nplatform=zuma\nsoc=Tensor G3\nandroid=15\n'
                 printf 'abi=arm64-v8a\ncpus=9\n' ;;
      *) : ;;
    esac ;;
  *) echo "fake adb: unexpected $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB)
    adb.chmod(0o755)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_PERF_OUTPUT", str(PERF / "ort_perf_test_recent.txt"))
    return log


def test_adb_missing_says_install_platform_tools(artifact: Path, tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RemoteError, match=r"^adb not found on PATH; install Android platform-tools"):
        bench_over_adb(artifact, "R5CX1234", perf_test=PERF_TEST)
    result = CliRunner().invoke(app, ["bench", str(artifact), "--adb", "R5CX1234", "--perf-test", PERF_TEST])
    assert result.exit_code == 1 and "error: adb not found on PATH" in result.stderr


def test_adb_pushes_runs_perf_test_and_records(fake_adb: Path, tmp_path: Path) -> None:
    art = _write_artifact(tmp_path / "phone-art", model_name="model.ort")
    manifest = bench_over_adb(art, "R5CX1234", perf_test=PERF_TEST, runs=100, rounds=2)
    record = manifest["target_benchmarks"][-1]
    assert record["via"]["method"] == "adb" and record["via"]["serial"] == "R5CX1234"
    assert record["host"]["hostname"] == "Google Pixel 8 (adb R5CX1234)" and record["host"]["logical_cpus"] == 9
    assert record["stats"]["p90_ms"] == pytest.approx(3.33917) and record["stats"]["rounds"] == 2
    assert record["stats"]["model_path"] == "/data/local/tmp/lgdeploy/model.ort"
    assert manifest["budgets"]["latency"]["value_ms"] == pytest.approx(3.33917)
    assert "Pixel 8" in manifest["budgets"]["latency"]["basis"]
    calls = fake_adb.read_text()
    assert f"push {art / 'model.ort'} /data/local/tmp/lgdeploy/model.ort" in calls
    assert f"{PERF_TEST} -e cpu -m times -r 100 -I -x 1 /data/local/tmp/lgdeploy/model.ort" in calls
    assert calls.count("onnxruntime_perf_test -e") == 2, "one perf_test process per round"
    verify_artifact(art)


def test_adb_refusals(fake_adb: Path, artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--adb needs --perf-test PATH"):
        bench_over_adb(artifact, "R5CX1234", perf_test=None)
    ov = _write_artifact(tmp_path / "ov-art", backend="openvino")
    with pytest.raises(ConfigError, match="compiled for openvino"):
        bench_over_adb(ov, "R5CX1234", perf_test=PERF_TEST)


def test_cli_rejects_mixed_targets(artifact: Path) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["bench", str(artifact), "--host", "pi@pi", "--adb", "R5CX1234"])
    assert result.exit_code == 1 and "--host and --adb name two different targets" in result.stderr
    result = runner.invoke(app, ["bench", str(artifact), "--perf-test", PERF_TEST])
    assert result.exit_code == 1 and "--perf-test only applies with --adb" in result.stderr
    result = runner.invoke(app, ["bench", str(artifact), "--remote-dir", "/x"])
    assert result.exit_code == 1 and "--remote-dir only apply with --host" in result.stderr
    assert json.loads((artifact / MANIFEST).read_text()).get("target_benchmarks") is None


def test_ssh_copies_only_the_listed_files(sshd: dict, artifact: Path, tmp_path: Path) -> None:
    """Issue 21: the copy is the manifest and its listed files, one scp per directory, never `scp -r`."""
    from learngene_deploy.artifact import files_table

    art = _copy(artifact, tmp_path / "art")
    (art / "extras").mkdir()
    (art / "extras" / "labels.txt").write_text("a\nb\n")
    manifest = json.loads((art / MANIFEST).read_text())
    manifest["files"] = files_table(art)
    (art / MANIFEST).write_text(json.dumps(manifest))
    remote_dir = tmp_path / "remote"
    bench_over_ssh(
        art,
        sshd["host"],
        runs=3,
        rounds=1,
        remote_python=sys.executable,
        remote_dir=str(remote_dir),
        ssh_options=sshd["options"],
        keep_remote=True,
    )
    copied = sorted(
        p.relative_to(remote_dir / "art").as_posix() for p in (remote_dir / "art").rglob("*") if p.is_file()
    )
    assert copied == sorted([*manifest["files"], MANIFEST])


def test_a_symlink_in_the_artifact_is_refused_before_anything_is_copied(artifact: Path, tmp_path: Path) -> None:
    from learngene_deploy.errors import ArtifactError

    art = _copy(artifact, tmp_path / "art")
    (art / "home").symlink_to(Path.home(), target_is_directory=True)
    with pytest.raises(ArtifactError, match="holds home, which is a symbolic link"):
        bench_over_ssh(art, "nobody@host.invalid", runs=1, rounds=1)
