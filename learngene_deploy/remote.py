"""Benchmark an artifact on the target device itself: an edge box over SSH, or an Android phone over adb.

Both paths end like a local ``lgdeploy bench``: one record is appended to ``manifest["target_benchmarks"]``
(with the *target's* facts under ``host`` and how it was reached under ``via``), and the measurement replaces
the prediction in the latency verdict (:func:`learngene_deploy.artifact.store.record_target_benchmark`).

SSH (``lgdeploy bench ARTIFACT --host user@host``), for Linux edge boxes (Jetson, Raspberry Pi, NUC):

1. verify every file's sha256 locally (a tampered artifact is never copied);
2. probe the box with ``ssh -o BatchMode=yes``: it must accept a key without a password prompt, and
   ``--remote-python`` (default ``python3``) must import ``learngene_deploy`` (``pip install
   learngene-deploy`` on the box, with the runtime the profile names);
3. copy the directory with ``scp -r`` to ``--remote-dir/<artifact name>`` (default ``.lgdeploy/bench`` under
   the remote home; an existing directory there is replaced only if it is itself an artifact);
4. run ``python3 -m learngene_deploy bench <copy> --runs N --rounds R`` there: the remote toolkit verifies the
   hashes again (so a damaged copy fails), benchmarks in fresh processes and rewrites *its* manifest;
5. fetch that manifest (``ssh ... cat``), take its newest ``target_benchmarks`` record, remove the copy
   (``--keep-remote`` keeps it) and record it locally.

Host aliases, ports and keys come from ``~/.ssh/config`` as usual; ``--ssh-option KEY=VALUE`` passes extra
``-o`` options to both ssh and scp (e.g. ``Port=2222``, ``IdentityFile=~/.ssh/jetson``).

adb (``lgdeploy bench ARTIFACT --adb SERIAL --perf-test /data/local/tmp/onnxruntime_perf_test``), for phones
running an ONNX Runtime (Mobile) artifact such as the ``.ort`` model of the ``snapdragon-8-gen-3`` profile:

1. verify locally and check the artifact runs on ONNX Runtime;
2. ``adb -s SERIAL push`` the model to ``/data/local/tmp/lgdeploy/``;
3. run ONNX Runtime's ``onnxruntime_perf_test`` (built for Android by the user, e.g. with ORT's
   ``build.sh --android --build_dir ... --target onnxruntime_perf_test``, then pushed and ``chmod +x``-ed)
   once per round, ``-m times -r RUNS -x THREADS -I`` with the profile's execution provider;
4. parse what it prints (:func:`parse_perf_test_output`) into the same statistics as a local benchmark;
   the best round (lowest p50) is kept, with every round's p50.

Nothing here imports torch or a runtime; only ``ssh``/``scp``/``adb`` are run, with :mod:`subprocess`.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from learngene_deploy.errors import ConfigError, RemoteError

Log = Callable[[str], None]
DEFAULT_REMOTE_DIR = ".lgdeploy/bench"
DEFAULT_DEVICE_DIR = "/data/local/tmp/lgdeploy"
SSH_BASE_OPTIONS = ("BatchMode=yes", "ConnectTimeout=15")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+@:=-]+$")
PLATFORM_TOOLS_HINT = "install Android platform-tools (https://developer.android.com/tools/releases/platform-tools)"
# ORT execution provider -> onnxruntime_perf_test's -e name
PERF_TEST_PROVIDERS = {
    "CPUExecutionProvider": "cpu",
    "XnnpackExecutionProvider": "xnnpack",
    "NnapiExecutionProvider": "nnapi",
    "QNNExecutionProvider": "qnn",
    "CoreMLExecutionProvider": "coreml",
}


def _quiet(message: str) -> None:
    del message


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _tool(name: str, hint: str) -> str:
    """Absolute path of a command on PATH, or a RemoteError saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise RemoteError(f"{name} not found on PATH; {hint}.")
    return found


def _run(argv: Sequence[str], *, timeout_s: float, doing: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise RemoteError(f"cannot run {argv[0]} while {doing} ({e.strerror}); check that it is installed.") from e
    except subprocess.TimeoutExpired as e:
        msg = f"{Path(argv[0]).name} took longer than {timeout_s:g} s while {doing}; check the device and retry."
        raise RemoteError(msg) from e


def _last_line(*texts: str | None) -> str:
    for text in texts:
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no output"


def _checked_local(artifact_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    from learngene_deploy.artifact import verify_artifact
    from learngene_deploy.artifact.store import require_compiled

    root = Path(artifact_dir)
    manifest = verify_artifact(root)
    require_compiled(root, manifest)
    return root, manifest


# --- SSH -------------------------------------------------------------------------------------------------------


def ssh_option_args(options: Sequence[str]) -> list[str]:
    """``-o KEY=VALUE`` arguments for ssh and scp: ``options``, then a connect timeout and BatchMode.

    ssh keeps the first value of each key, so ``options`` can override the timeout; BatchMode (never prompt for a
    password or passphrase) cannot be turned off.

    Raises:
        ConfigError: an option is not of the form ``KEY=VALUE``, or tries to turn BatchMode off.
    """
    args: list[str] = []
    for option in (*options, *SSH_BASE_OPTIONS):
        if not re.match(r"^[A-Za-z][A-Za-z0-9]*=\S.*$", option):
            msg = f"ssh option '{option}' is not KEY=VALUE; pass options like --ssh-option Port=2222."
            raise ConfigError(msg)
        if option.lower().startswith("batchmode=") and option.split("=", 1)[1].lower() != "yes":
            msg = f"ssh option '{option}' would let ssh prompt; lgdeploy needs key authentication, drop the option."
            raise ConfigError(msg)
        args += ["-o", option]
    return args


def _remote_path(remote_dir: str, name: str) -> str:
    """``remote_dir/name`` for the remote shell; a leading ``~/`` means the remote home (ssh starts there)."""
    base = remote_dir[2:] if remote_dir.startswith("~/") else remote_dir
    base = base.rstrip("/") or "/"
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "artifact"
    if not _SAFE_PATH.match(base):
        msg = f"remote directory '{remote_dir}' has characters a remote shell would mangle; use letters, digits, ._-/."
        raise ConfigError(msg)
    return f"{base.rstrip('/')}/{safe_name}"


def _ssh_failure(host: str, proc: subprocess.CompletedProcess[str], doing: str) -> RemoteError:
    """A one-sentence error for a failed ssh/scp call, classified from its exit code and stderr."""
    err = proc.stderr or ""
    last = _last_line(err, proc.stdout)
    if "Permission denied" in err or "Too many authentication failures" in err:
        why = (
            f"ssh authentication to {host} failed ({last}); lgdeploy never prompts for a password, so install a key "
            f"with `ssh-copy-id {host}` (or pass --ssh-option IdentityFile=KEY) and check `ssh {host} true` works."
        )
    elif "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        why = (
            f"the host key of {host} is unknown or changed ({last}); connect once with `ssh {host}` to check and "
            "accept it, then rerun."
        )
    elif proc.returncode == 255:
        why = f"cannot connect to {host} while {doing} ({last}); check the host name, port and network, then rerun."
    else:
        why = f"{doing} on {host} failed with exit code {proc.returncode} ({last}); fix the cause shown and rerun."
    return RemoteError(why)


class SshTarget:
    """An edge box reachable with ``ssh``/``scp`` without a password prompt.

    Args:
        host: ``user@host`` or an alias from ``~/.ssh/config``.
        options: extra ``KEY=VALUE`` ssh options.
        timeout_s: limit for each ssh/scp call (the remote benchmark included).
    """

    def __init__(self, host: str, options: Sequence[str] = (), *, timeout_s: float = 1800.0) -> None:
        if not host or host.startswith("-") or any(c.isspace() for c in host):
            msg = f"'{host}' is not an ssh destination; pass --host user@host or a Host alias from ~/.ssh/config."
            raise ConfigError(msg)
        self.host = host
        self.option_args = ssh_option_args(options)
        self.timeout_s = timeout_s
        hint = "install the OpenSSH client (Debian/Ubuntu: `apt-get install openssh-client`)"
        self.ssh = _tool("ssh", hint)
        self.scp = _tool("scp", hint)

    def run(self, argv: Sequence[str], *, doing: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command on the box (``argv`` is quoted for its shell); with ``check``, failures raise RemoteError."""
        proc = _run([self.ssh, *self.option_args, self.host, shlex.join(argv)], timeout_s=self.timeout_s, doing=doing)
        if check and proc.returncode != 0:
            raise _ssh_failure(self.host, proc, doing)
        return proc

    def shell(self, script: str, *, doing: str) -> subprocess.CompletedProcess[str]:
        """Run a shell snippet on the box as it is (the caller quotes)."""
        proc = _run([self.ssh, *self.option_args, self.host, script], timeout_s=self.timeout_s, doing=doing)
        if proc.returncode != 0:
            raise _ssh_failure(self.host, proc, doing)
        return proc

    def copy_dir(self, local: Path, remote: str) -> None:
        """``scp -r`` a local directory to a remote path that does not exist yet."""
        argv = [self.scp, "-r", "-q", *self.option_args, str(local), f"{self.host}:{remote}"]
        proc = _run(argv, timeout_s=self.timeout_s, doing=f"copying {local.name}")
        if proc.returncode != 0:
            raise _ssh_failure(self.host, proc, f"copying the artifact to {remote}")


def probe_remote_python(target: SshTarget, python: str) -> str:
    """The version of lgdeploy that ``python`` imports on the box.

    Raises:
        RemoteError: ssh fails, ``python`` is missing, or it cannot import ``learngene_deploy``.
    """
    code = "import learngene_deploy as m; print(m.__version__)"
    proc = target.run([python, "-c", code], doing="checking the remote Python", check=False)
    if proc.returncode == 255:
        raise _ssh_failure(target.host, proc, "connecting")
    if proc.returncode == 127 or ("not found" in proc.stderr and "No module" not in proc.stderr):
        msg = (
            f"'{python}' is not a command on {target.host} ({_last_line(proc.stderr)}); pass --remote-python with the "
            "path of the Python that has lgdeploy installed there."
        )
        raise RemoteError(msg)
    if proc.returncode != 0:
        msg = (
            f"{python} on {target.host} cannot import lgdeploy ({_last_line(proc.stderr)}); install it there with "
            f"`{python} -m pip install learngene-deploy` (plus the profile's runtime) or pass --remote-python."
        )
        raise RemoteError(msg)
    return _last_line(proc.stdout)


def bench_over_ssh(
    artifact_dir: str | Path,
    host: str,
    *,
    runs: int = 50,
    rounds: int = 3,
    remote_python: str = "python3",
    remote_dir: str = DEFAULT_REMOTE_DIR,
    ssh_options: Sequence[str] = (),
    keep_remote: bool = False,
    timeout_s: float = 1800.0,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Benchmark an artifact on an edge box over SSH and record the box's measurement in the local manifest.

    Args:
        artifact_dir: a complete artifact directory (its hashes are checked first).
        host: ``user@host`` or an ``~/.ssh/config`` alias; key authentication without a prompt is required.
        runs: timed runs per process on the box.
        rounds: fresh processes on the box; the best round is reported.
        remote_python: the Python on the box that has lgdeploy installed.
        remote_dir: where the copy goes on the box (relative paths are under the remote home).
        ssh_options: extra ``KEY=VALUE`` options for ssh and scp.
        keep_remote: leave the copy on the box (it is removed by default).
        timeout_s: limit for each ssh/scp call.
        log: receives one line per step.

    Returns:
        The updated local manifest.

    Raises:
        RemoteError: ssh/scp missing, unreachable box, failed authentication, no lgdeploy there, or a failed run.
        ArtifactError: the local artifact does not verify or has no compiled model.
    """
    root, manifest = _checked_local(artifact_dir)
    target = SshTarget(host, ssh_options, timeout_s=timeout_s)
    remote = _remote_path(remote_dir, root.resolve().name)
    version = probe_remote_python(target, remote_python)
    log(f"{host}: lgdeploy {version} at {remote_python}")

    q = shlex.quote(remote)
    parent = shlex.quote(remote.rsplit("/", 1)[0] or "/")
    prepare = (
        f"if [ -e {q} ] && [ ! -f {q}/manifest.json ]; then echo 'not an lgdeploy artifact: {remote}' >&2; exit 3; fi; "
        f"rm -rf {q} && mkdir -p {parent}"
    )
    target.shell(prepare, doing=f"preparing {remote}")
    target.copy_dir(root, remote)
    log(f"copied {root} to {host}:{remote}")
    try:
        argv = [remote_python, "-m", "learngene_deploy", "bench", remote, "--runs", str(runs), "--rounds", str(rounds)]
        proc = target.run(argv, doing="running `lgdeploy bench`", check=False)
        if proc.returncode == 255:
            raise _ssh_failure(host, proc, "running `lgdeploy bench`")
        if proc.returncode != 0:
            msg = (
                f"`lgdeploy bench` failed on {host} ({_last_line(proc.stderr, proc.stdout)}); run "
                f"`ssh {host} {remote_python} -m learngene_deploy bench {remote}` to see it there."
            )
            raise RemoteError(msg)
        log(f"{host}: {_last_line(proc.stdout)}")
        fetched = target.run(["cat", f"{remote}/manifest.json"], doing="fetching the remote manifest")
    finally:
        if not keep_remote:
            target.run(["rm", "-rf", remote], doing=f"removing {remote}", check=False)
    try:
        remote_manifest = json.loads(fetched.stdout)
        before = len(manifest.get("target_benchmarks", []))
        record = remote_manifest["target_benchmarks"][-1]
        if len(remote_manifest["target_benchmarks"]) <= before:
            raise KeyError("target_benchmarks")
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        msg = (
            f"the manifest fetched from {host}:{remote} has no new benchmark record ({type(e).__name__}: {e}); "
            f"check that lgdeploy {version} on {host} writes target_benchmarks and rerun."
        )
        raise RemoteError(msg) from e
    record = {
        **record,
        "via": {
            "method": "ssh",
            "host": host,
            "remote_dir": remote,
            "remote_python": remote_python,
            "remote_toolkit_version": version,
        },
    }
    from learngene_deploy.artifact.store import record_target_benchmark

    return record_target_benchmark(root, manifest, record, where=f"{record['host'].get('hostname', host)} (ssh {host})")


# --- adb + onnxruntime_perf_test -------------------------------------------------------------------------------

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_TO_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3}
_PERF_FIELDS = {  # key: (regex of its line, scale to the key's unit)
    "session_creation_s": (rf"^Session creation time cost:\s*{_NUMBER}\s*s\b", 1.0),
    "first_inference_ms": (rf"^First inference time cost:\s*{_NUMBER}\s*ms\b", 1.0),
    "total_time_s": (rf"^Total inference time cost:\s*{_NUMBER}\s*s\b", 1.0),
    "requests": (rf"^Total inference requests:\s*{_NUMBER}", 1.0),
    "average_ms": (rf"^Average inference time cost(?: total)?:\s*{_NUMBER}\s*ms\b", 1.0),
    "run_time_s": (rf"^Total inference run time:\s*{_NUMBER}\s*s\b", 1.0),
    "inferences_per_s": (rf"^Number of inferences per second:\s*{_NUMBER}", 1.0),
    "cpu_usage_percent": (rf"^(?:Avg|Total) CPU usage:\s*{_NUMBER}\s*%", 1.0),
    "peak_working_set_bytes": (rf"^Peak working set size:\s*{_NUMBER}\s*bytes", 1.0),
}
_LATENCY_LINE = re.compile(rf"^(Min|Max|P50|P90|P95|P99|P999) Latency:\s*{_NUMBER}\s*(s|ms|us)\b", re.MULTILINE)


def parse_perf_test_output(text: str) -> dict[str, float | None]:
    """Parse what ONNX Runtime's ``onnxruntime_perf_test`` prints into numbers (a pure function).

    Handles both the older summary (``Average inference time cost: X ms``, ``Total CPU usage``) and the newer one
    (``Average inference time cost total: X ms``, ``Avg CPU usage``, repeated machine-readable lines); latency
    lines (``P90 Latency: 0.0123 s``) are converted to milliseconds.

    Returns:
        ``average_ms``, ``min_ms``, ``max_ms``, ``p50_ms``, ``p90_ms``, ``p95_ms``, ``p99_ms``, ``p999_ms``,
        ``session_creation_s``, ``first_inference_ms``, ``total_time_s``, ``requests``, ``run_time_s``,
        ``inferences_per_s``, ``cpu_usage_percent``, ``peak_working_set_bytes``; ``None`` where not printed.

    Raises:
        RemoteError: the text has no average latency line (perf_test did not run the model).
    """
    result: dict[str, float | None] = {}
    for key, (pattern, scale) in _PERF_FIELDS.items():
        match = re.search(pattern, text, re.MULTILINE)
        result[key] = float(match.group(1)) * scale if match else None
    for name in ("Min", "Max", "P50", "P90", "P95", "P99", "P999"):
        result[f"{name.lower()}_ms"] = None
    for name, value, unit in _LATENCY_LINE.findall(text):
        result[f"{name.lower()}_ms"] = float(value) * _TO_MS[unit]
    if result["average_ms"] is None:
        msg = (
            "onnxruntime_perf_test printed no 'Average inference time cost' line (last line: "
            f"{_last_line(text)!r}); run it by hand on the device to see why the model did not run."
        )
        raise RemoteError(msg)
    return result


def perf_test_stats(
    rounds: Sequence[dict[str, float | None]],
    *,
    backend: str,
    precision: str,
    model_path: str,
    batch: int,
    threads: int | None,
    tool: str = "onnxruntime_perf_test",
) -> dict[str, Any]:
    """A ``LatencyStats``-shaped dict from parsed perf_test rounds: the best round (lowest p50), the lowest p90
    and p99 over the rounds (as :func:`learngene_deploy.bench.benchmark` takes them) and every round's values.

    perf_test does not report a standard deviation or the model's own memory, so ``std_ms`` and
    ``model_rss_mb`` are ``None``; a p50 it did not print falls back to the average.
    """
    p50s = [r["p50_ms"] if r["p50_ms"] is not None else r["average_ms"] for r in rounds]
    chosen = min(range(len(rounds)), key=lambda i: p50s[i])
    best = rounds[chosen]
    peak = best["peak_working_set_bytes"]
    runs = best["requests"]
    seconds = best["total_time_s"]
    if seconds is None and runs is not None and best["average_ms"] is not None:
        seconds = runs * best["average_ms"] / 1000.0
    per_s = best["inferences_per_s"] or (runs / seconds if runs and seconds else None)
    return {
        "backend": backend,
        "precision": precision,
        "model_path": model_path,
        "tool": tool,
        "batch": batch,
        "threads": threads,
        "warmup": 1,  # perf_test runs one untimed "first inference"
        "runs": int(runs) if runs is not None else None,
        "seconds": seconds,
        "p50_ms": p50s[chosen],
        # tails are taken over the rounds like the p50, where every round printed them; else the best round's
        **{f"p{q}_ms": _tail_over_rounds([r[f"p{q}_ms"] for r in rounds], best[f"p{q}_ms"]) for q in (90, 99)},
        "mean_ms": best["average_ms"],
        "std_ms": None,
        "min_ms": best["min_ms"],
        "max_ms": best["max_ms"],
        "throughput_ips": batch * per_s if per_s else None,
        "peak_rss_mb": peak / 2**20 if peak else None,
        "model_rss_mb": None,
        "load_s": best["session_creation_s"],
        "rounds": len(rounds),
        "selection": "best",
        "round_p50_ms": p50s,
        "round_p90_ms": [r["p90_ms"] for r in rounds],
        "round_p99_ms": [r["p99_ms"] for r in rounds],
    }


def _tail_over_rounds(values: list[float | None], fallback: float | None) -> float | None:
    """:func:`learngene_deploy.bench.over_rounds` of the rounds' values, or ``fallback`` if a round lacks it."""
    from learngene_deploy.bench import over_rounds

    return over_rounds(values, "best") if all(v is not None for v in values) else fallback


def _adb_failure(serial: str, proc: subprocess.CompletedProcess[str], doing: str) -> RemoteError:
    last = _last_line(proc.stderr, proc.stdout)
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
        self.adb = _tool("adb", PLATFORM_TOOLS_HINT)

    def call(self, *args: str, doing: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = _run([self.adb, "-s", self.serial, *args], timeout_s=self.timeout_s, doing=doing)
        if check and proc.returncode != 0:
            raise _adb_failure(self.serial, proc, doing)
        return proc

    def shell(self, argv: Sequence[str], *, doing: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.call("shell", shlex.join(argv), doing=doing, check=check)

    def facts(self) -> dict[str, Any]:
        """Device facts in the shape of :func:`learngene_deploy.facts.host_facts` (from ``getprop``)."""
        props = {
            "manufacturer": "ro.product.manufacturer",
            "model": "ro.product.model",
            "platform": "ro.board.platform",
            "soc": "ro.soc.model",
            "android": "ro.build.version.release",
            "abi": "ro.product.cpu.abi",
        }
        script = "; ".join(f"echo {key}=$(getprop {prop})" for key, prop in props.items()) + "; echo cpus=$(nproc)"
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


def bench_over_adb(
    artifact_dir: str | Path,
    serial: str,
    *,
    perf_test: str | None,
    runs: int = 50,
    rounds: int = 3,
    device_dir: str = DEFAULT_DEVICE_DIR,
    timeout_s: float = 1800.0,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Benchmark an ONNX Runtime artifact on an Android phone with ``onnxruntime_perf_test`` and record it.

    Args:
        artifact_dir: a complete artifact compiled for ONNX Runtime (``.ort`` or ``.onnx``).
        serial: the device's serial (``adb devices``).
        perf_test: path of the ``onnxruntime_perf_test`` binary on the device.
        runs: timed runs per perf_test process (``-r``).
        rounds: perf_test processes; the best round (lowest p50) is reported.
        device_dir: where the model is pushed on the device.
        timeout_s: limit for each adb call.
        log: receives one line per step.

    Returns:
        The updated local manifest.

    Raises:
        ConfigError: no ``perf_test`` path, or an artifact that does not run on ONNX Runtime.
        RemoteError: adb missing, device not connected/authorised, perf_test missing or its output unparsable.
    """
    root, manifest = _checked_local(artifact_dir)
    record = manifest["compile"]
    if record["backend"] != "onnxruntime":
        msg = (
            f"--adb runs ONNX Runtime's perf test, but {root} is compiled for {record['backend']}; build with an "
            "ONNX Runtime profile such as snapdragon-8-gen-3 (format: ort) or benchmark with --host."
        )
        raise ConfigError(msg)
    if not perf_test:
        msg = (
            "--adb needs --perf-test PATH, the onnxruntime_perf_test binary on the device; build it for Android from "
            "ONNX Runtime's sources, `adb push` it to /data/local/tmp/ and `chmod +x` it."
        )
        raise ConfigError(msg)
    if rounds < 1 or runs < 1:
        raise ConfigError(f"runs ({runs}) and rounds ({rounds}) must be at least 1; pass positive counts.")
    device = AdbDevice(serial, timeout_s=timeout_s)
    state = device.call("get-state", doing="checking the device")
    if state.stdout.strip() != "device":
        msg = f"device {serial} is in state '{state.stdout.strip()}', not 'device'; unlock and reconnect it."
        raise RemoteError(msg)
    if device.shell(["test", "-x", perf_test], doing="checking perf_test", check=False).returncode != 0:
        msg = (
            f"{perf_test} is not an executable file on device {serial}; push onnxruntime_perf_test built for Android "
            f"there (`adb push onnxruntime_perf_test {perf_test}` then `adb shell chmod +x {perf_test}`)."
        )
        raise RemoteError(msg)

    model = root / record["model_path"]
    device_model = f"{device_dir.rstrip('/')}/{model.name}"
    device.shell(["mkdir", "-p", device_dir], doing=f"creating {device_dir}")
    device.call("push", str(model), device_model, doing=f"pushing {model.name}")
    log(f"pushed {model.name} to {serial}:{device_model}")

    runtime = manifest["profile"]["runtime"]
    threads = runtime.get("threads")
    provider = PERF_TEST_PROVIDERS.get(runtime.get("execution_provider") or "CPUExecutionProvider", "cpu")
    argv = [perf_test, "-e", provider, "-m", "times", "-r", str(runs), "-I"]
    if threads:
        argv += ["-x", str(threads)]
    argv.append(device_model)
    parsed: list[dict[str, float | None]] = []
    outputs: list[str] = []
    for i in range(rounds):
        proc = device.shell(argv, doing="running onnxruntime_perf_test", check=False)
        text = proc.stdout + proc.stderr
        if proc.returncode != 0:
            msg = (
                f"onnxruntime_perf_test exited with code {proc.returncode} on device {serial} ({_last_line(text)}); "
                f"run `adb -s {serial} shell {shlex.join(argv)}` to see the full output."
            )
            raise RemoteError(msg)
        parsed.append(parse_perf_test_output(text))
        outputs.append(text)
        log(f"round {i + 1}/{rounds}: average {parsed[-1]['average_ms']:.3g} ms")
    budgets = manifest["profile"]["budgets"]
    stats = perf_test_stats(
        parsed,
        backend=record["backend"],
        precision=record["precision"],
        model_path=device_model,
        batch=budgets["batch"],
        threads=threads,
    )
    key = f"p{budgets['percentile']}_ms"
    if stats.get(key) is None:
        msg = (
            f"onnxruntime_perf_test printed no {key[:-3].upper()} latency, which the latency budget needs; use a "
            "recent onnxruntime_perf_test, which prints P50/P90/P95/P99 latency lines."
        )
        raise RemoteError(msg)
    facts = device.facts()
    best = stats["round_p50_ms"].index(stats["p50_ms"])
    entry = {
        "measured": _now(),
        "host": facts,
        "stats": stats,
        "via": {
            "method": "adb",
            "serial": serial,
            "perf_test": perf_test,
            "command": shlex.join(argv),
            "output": outputs[best][-4000:],
        },
    }
    from learngene_deploy.artifact.store import record_target_benchmark

    return record_target_benchmark(root, manifest, entry, where=facts["hostname"])
