"""An Android phone over adb (``lgdeploy bench ARTIFACT --adb SERIAL --perf-test PATH``), timed with ONNX Runtime.

For phones running an ONNX Runtime (Mobile) artifact such as the ``.ort`` model of the ``snapdragon-8-gen-3``
profile, :class:`AdbTarget` measures (the local artifact is already verified by
:func:`~learngene_deploy.remote.base.bench_on`):

1. check the artifact runs on ONNX Runtime;
2. ``adb -s SERIAL push`` the model to ``/data/local/tmp/lgdeploy/``;
3. run ONNX Runtime's ``onnxruntime_perf_test`` (built for Android by the user, e.g. with ORT's
   ``build.sh --android --build_dir ... --target onnxruntime_perf_test``, then pushed and ``chmod +x``-ed)
   once per round, ``-m times -r RUNS -x THREADS -I`` with the profile's execution provider;
4. parse what it prints (:mod:`learngene_deploy.remote.perf_test`) into the same statistics as a local benchmark;
   the best round (lowest p50) is kept, with every round's p50.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learngene_deploy.artifact.manifest import Manifest
from learngene_deploy.bench import selected_round
from learngene_deploy.errors import ConfigError, RemoteError
from learngene_deploy.remote.base import Log, Measurement, Target, bench_on, find_tool, last_line, quiet, run_tool
from learngene_deploy.remote.perf_test import parse_perf_test_output, perf_test_argv, perf_test_latency

DEFAULT_DEVICE_DIR = "/data/local/tmp/lgdeploy"
PLATFORM_TOOLS_HINT = "install Android platform-tools (https://developer.android.com/tools/releases/platform-tools)"
_PROPS = {  # facts key: Android system property
    "manufacturer": "ro.product.manufacturer",
    "model": "ro.product.model",
    "platform": "ro.board.platform",
    "soc": "ro.soc.model",
    "android": "ro.build.version.release",
    "abi": "ro.product.cpu.abi",
}


def _adb_failure(serial: str, proc: subprocess.CompletedProcess[str], doing: str) -> RemoteError:
    """A one-sentence error for a failed adb call, classified from what it printed last."""
    last = last_line(proc.stderr, proc.stdout)
    if "not found" in last and "device" in last:
        why = f"no device {serial} is connected ({last}); list devices with `adb devices` and pass --adb SERIAL."
    elif "unauthorized" in last:
        why = f"device {serial} has not authorised this computer ({last}); accept the USB-debugging prompt on it."
    elif "offline" in last:
        why = f"device {serial} is offline ({last}); reconnect it or run `adb reconnect`, then rerun."
    else:
        why = f"{doing} on device {serial} failed with exit code {proc.returncode} ({last}); fix the cause and rerun."
    return RemoteError(why)


class AdbDevice:
    """One Android device reached with ``adb -s SERIAL``."""

    def __init__(self, serial: str, *, timeout_s: float = 1800.0) -> None:
        if not serial or serial.startswith("-") or any(c.isspace() for c in serial):
            msg = f"'{serial}' is not an adb serial; pass one listed by `adb devices`."
            raise ConfigError(msg)
        self.serial = serial
        self.timeout_s = timeout_s
        self.adb = find_tool("adb", PLATFORM_TOOLS_HINT)

    def call(self, *args: str, doing: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``adb -s SERIAL ARGS...``; with ``check``, failures raise RemoteError."""
        proc = run_tool([self.adb, "-s", self.serial, *args], timeout_s=self.timeout_s, doing=doing)
        if check and proc.returncode != 0:
            raise _adb_failure(self.serial, proc, doing)
        return proc

    def shell(self, argv: Sequence[str], *, doing: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command on the device (``argv`` is quoted for its shell)."""
        return self.call("shell", shlex.join(argv), doing=doing, check=check)

    def facts(self) -> dict[str, Any]:
        """Device facts in the shape of :func:`learngene_deploy.facts.host_facts` (from ``getprop``)."""
        script = "; ".join(f"echo {key}=$(getprop {prop})" for key, prop in _PROPS.items()) + "; echo cpus=$(nproc)"
        proc = self.call("shell", script, doing="reading device properties", check=False)
        values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        name = " ".join(v for v in (values.get("manufacturer"), values.get("model")) if v) or self.serial
        cpus = values.get("cpus", "").strip()
        return {
            "hostname": f"{name} (adb {self.serial})",
            "system": f"Android {values.get('android', '?').strip()}",
            "machine": values.get("abi", "").strip() or None,
            "cpu": (values.get("soc") or values.get("platform") or "").strip() or None,
            "logical_cpus": int(cpus) if cpus.isdigit() else None,
            "memory_mb": None,
            "python": None,
            "serial": self.serial,
        }


@dataclass(frozen=True)
class AdbTarget(Target):
    """An Android phone timed with ``onnxruntime_perf_test`` (arguments as for :func:`bench_over_adb`)."""

    serial: str
    perf_test: str | None
    device_dir: str = DEFAULT_DEVICE_DIR
    timeout_s: float = 1800.0
    log: Log = quiet

    def bench(self, root: Path, manifest: Manifest, *, runs: int, rounds: int) -> Measurement:
        compiled = manifest.compile_record  # never None here: bench_on requires a compiled model
        perf_test = self._check(root, compiled["backend"], runs=runs, rounds=rounds)
        device = self._device(perf_test)
        device_model = self._push(device, root / compiled["model_path"])
        argv = perf_test_argv(perf_test, manifest.runtime, runs=runs, model=device_model)
        printed = [self._round(device, argv, i, rounds) for i in range(rounds)]
        stats = perf_test_latency(
            [parsed for parsed, _ in printed],
            backend=compiled["backend"],
            precision=compiled["precision"],
            model_path=device_model,
            batch=manifest.budgets.batch,
            threads=manifest.runtime.threads,
        )
        key = manifest.budgets.latency_key
        if getattr(stats, key, None) is None:
            msg = (
                f"onnxruntime_perf_test printed no {key[:-3].upper()} latency, which the latency budget needs; use a "
                "recent onnxruntime_perf_test, which prints P50/P90/P95/P99 latency lines."
            )
            raise RemoteError(msg)
        facts = device.facts()
        via = {
            "method": "adb",
            "serial": self.serial,
            "perf_test": perf_test,
            "command": shlex.join(argv),
            "output": printed[selected_round(list(stats.round_p50_ms), stats.selection)][1][-4000:],
        }
        return Measurement(stats, facts, via=via, where=facts["hostname"])

    def _check(self, root: Path, backend: str, *, runs: int, rounds: int) -> str:
        """The perf_test path; refuses, before adb is run, an artifact perf_test cannot run, no path or no rounds."""
        if backend != "onnxruntime":
            msg = (
                f"--adb runs ONNX Runtime's perf test, but {root} is compiled for {backend}; build with an "
                "ONNX Runtime profile such as snapdragon-8-gen-3 (format: ort) or benchmark with --host."
            )
            raise ConfigError(msg)
        if not self.perf_test:
            msg = (
                "--adb needs --perf-test PATH, the onnxruntime_perf_test binary on the device; build it for Android "
                "from ONNX Runtime's sources, `adb push` it to /data/local/tmp/ and `chmod +x` it."
            )
            raise ConfigError(msg)
        if rounds < 1 or runs < 1:
            raise ConfigError(f"runs ({runs}) and rounds ({rounds}) must be at least 1; pass positive counts.")
        return self.perf_test

    def _device(self, perf_test: str) -> AdbDevice:
        """The connected, authorised device, with an executable perf_test binary."""
        device = AdbDevice(self.serial, timeout_s=self.timeout_s)
        state = device.call("get-state", doing="checking the device")
        if state.stdout.strip() != "device":
            msg = f"device {self.serial} is in state '{state.stdout.strip()}', not 'device'; unlock and reconnect it."
            raise RemoteError(msg)
        if device.shell(["test", "-x", perf_test], doing="checking perf_test", check=False).returncode != 0:
            msg = (
                f"{perf_test} is not an executable file on device {self.serial}; push onnxruntime_perf_test built "
                f"for Android there (`adb push onnxruntime_perf_test {perf_test}` then `adb shell chmod +x "
                f"{perf_test}`)."
            )
            raise RemoteError(msg)
        return device

    def _push(self, device: AdbDevice, model: Path) -> str:
        """Push the model to ``device_dir`` and return its path on the device."""
        device_model = f"{self.device_dir.rstrip('/')}/{model.name}"
        device.shell(["mkdir", "-p", self.device_dir], doing=f"creating {self.device_dir}")
        device.call("push", str(model), device_model, doing=f"pushing {model.name}")
        self.log(f"pushed {model.name} to {self.serial}:{device_model}")
        return device_model

    def _round(self, device: AdbDevice, argv: list[str], i: int, rounds: int) -> tuple[dict[str, float | None], str]:
        """Run perf_test once (round ``i`` of ``rounds``): what it printed, parsed and as text."""
        proc = device.shell(argv, doing="running onnxruntime_perf_test", check=False)
        text = proc.stdout + proc.stderr
        if proc.returncode != 0:
            msg = (
                f"onnxruntime_perf_test exited with code {proc.returncode} on device {self.serial} "
                f"({last_line(text)}); run `adb -s {self.serial} shell {shlex.join(argv)}` to see the full output."
            )
            raise RemoteError(msg)
        parsed = parse_perf_test_output(text)
        self.log(f"round {i + 1}/{rounds}: average {parsed['average_ms']:.3g} ms")
        return parsed, text


def bench_over_adb(
    artifact_dir: str | Path,
    serial: str,
    *,
    perf_test: str | None,
    runs: int = 50,
    rounds: int = 3,
    device_dir: str = DEFAULT_DEVICE_DIR,
    timeout_s: float = 1800.0,
    log: Log = quiet,
    profile: str | Path | None = None,
) -> Manifest:
    """Benchmark an ONNX Runtime artifact on an Android phone with ``onnxruntime_perf_test`` and record it.

    Args:
        artifact_dir: a complete artifact compiled for ONNX Runtime (``.ort`` or ``.onnx``).
        serial: the device's serial (``adb devices``).
        perf_test: path of the ``onnxruntime_perf_test`` binary on the device.
        runs: timed runs per perf_test process (``-r``).
        rounds: perf_test processes; the best round (lowest p50) is reported.
        device_dir: where the model is pushed on the device.
        timeout_s: limit for each adb call.
        profile: the profile the artifact was built with (its budgets judge the measurement; default: the shipped
            profile the manifest names by sha256).
        log: receives one line per step.

    Returns:
        The updated local manifest.

    Raises:
        ConfigError: no ``perf_test`` path, or an artifact that does not run on ONNX Runtime.
        RemoteError: adb missing, device not connected/authorised, perf_test missing or its output unparsable.
    """
    target = AdbTarget(serial, perf_test, device_dir=device_dir, timeout_s=timeout_s, log=log)
    return bench_on(target, artifact_dir, runs=runs, rounds=rounds, profile=profile)
