"""Latency and memory of a compiled model (or the PyTorch eager baseline), each round in a fresh process.

:func:`benchmark` (a compiled model) and :func:`benchmark_torch` (PyTorch eager) start
``python -m learngene_deploy.bench SPEC OUT`` once per round. The worker loads one model (one session per
process: idle sessions' spinning threads would disturb each other), runs ``warmup`` untimed batches, then
times batches until both ``min_runs`` and ``min_time_s`` are reached, and writes its statistics as JSON.
Several rounds guard against this kind of machine's bimodal 2-thread latency (docs/platform-notes: a
process gets either 2-thread or ~1-thread speed); the best round (lowest p50) is reported by default,
with every round's p50, p90 and p99 kept. The tail percentiles are taken over the rounds the same way
as the p50 (the lowest p90 of the rounds for ``"best"``, the median one for ``"median"``): a round's p90
is moved by a few stray interruptions far more than its p50; on this project's shared 2-core machine the
lowest p90 of 3 rounds varied as little as or less than the lowest-p50 round's own p90 for every size
measured (benchmarks/latency_noise.py, docs/latency.md). Calibration tables and budget checks use these same
statistics.

Percentiles come from all timed runs; ``mean_ms``/``std_ms`` are after 3-sigma clipping (stray
interruptions on a shared machine would otherwise dominate them). Memory is the worker's peak resident
set (``ru_maxrss``, Linux/macOS) and its growth from just before the model was loaded.

Example:
    >>> stats = benchmark(compiled, threads=2, rounds=3)
    >>> stats.p50_ms, stats.p90_ms, stats.peak_rss_mb
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from learngene_deploy import errors
from learngene_deploy.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    import torch

    from learngene_deploy.backends.base import Compiled
    from learngene_deploy.models.vit import ArchSpec

Selection = Literal["best", "median"]
MAX_RUNS = 100_000  # stop a round here even if min_time_s is not reached (tiny models)


ROUND_KEYS = ("round_p50_ms", "round_p90_ms", "round_p99_ms")  # per-round values kept in LatencyStats


def local_threads(threads: int | None) -> int | None:
    """A target's thread count as this machine runs it: at most its cores.

    The target's count can exceed the build machine's cores (x86-server: 16 on a 2-core CI box); oversubscribed
    runs would measure contention, not the model. Manifests record the count actually used.
    """
    return min(threads, os.cpu_count() or 1) if threads else threads


@dataclass(frozen=True)
class LatencyStats:
    """Benchmark statistics of one compiled model (the selected round), JSON-serialisable via :meth:`to_dict`."""

    backend: str
    precision: str
    model_path: str
    tool: str  # runtime and version
    batch: int  # images per run
    threads: int | None  # intra-op threads asked for (None = runtime default)
    warmup: int  # untimed runs before timing
    runs: int  # timed runs
    seconds: float  # wall time of the timed runs
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float  # after 3-sigma clipping
    std_ms: float  # after 3-sigma clipping
    min_ms: float
    max_ms: float
    throughput_ips: float  # images per second, batch * runs / seconds
    peak_rss_mb: float  # peak resident memory of the worker process
    model_rss_mb: float  # peak resident memory minus the resident memory before the model was loaded
    load_s: float  # time to create the runner (session / compiled model / engine)
    rounds: int  # worker processes run
    selection: Selection  # how the reported round was chosen from the rounds
    round_p50_ms: tuple[float, ...]  # p50 of every round, in run order
    round_p90_ms: tuple[float, ...] = ()  # p90 of every round (empty in stats written before it was kept)
    round_p99_ms: tuple[float, ...] = ()
    executed_on: list[str] | None = None  # providers/devices the runtime reported running on (None: not reported)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), **{k: list(getattr(self, k)) for k in ROUND_KEYS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyStats:
        return cls(**{**data, **{k: tuple(data[k]) for k in ROUND_KEYS if k in data}})


def selected_round(values: list[float], selection: Selection) -> int:
    """Index of the round whose value is the lowest (``"best"``) or the lower median (``"median"``)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    return order[0] if selection == "best" else order[(len(values) - 1) // 2]


def over_rounds(values: list[float], selection: Selection) -> float:
    """One statistic from its value in every round: the lowest (``"best"``) or the median round's."""
    return values[selected_round(values, selection)]


def clipped_mean_std(values: np.ndarray, *, sigma: float = 3.0, iterations: int = 3) -> tuple[float, float]:
    """Mean and standard deviation after iteratively dropping values more than ``sigma`` std from the mean."""
    kept = np.asarray(values, dtype=np.float64)
    for _ in range(iterations):
        mean, std = kept.mean(), kept.std()
        inside = kept[np.abs(kept - mean) <= sigma * std] if std > 0 else kept
        if len(inside) == len(kept):
            break
        kept = inside
    return float(kept.mean()), float(kept.std())


def _max_rss_mb() -> float:
    """Peak resident memory of this process's own address space.

    On Linux this is ``VmHWM``: ``ru_maxrss`` would not do, because Linux carries the parent's peak across
    fork + exec, so a worker started by a build holding torch and the model would report the build's memory.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _current_rss_mb() -> float:
    """Resident set size now (Linux /proc); falls back to the peak so far elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return _max_rss_mb()
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _input_batch(input_shape: tuple[int | str, ...], batch: int) -> np.ndarray:
    shape = (batch, *(d if isinstance(d, int) else 1 for d in input_shape[1:]))
    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def _load_compiled(spec: dict[str, Any]) -> tuple[Callable[[np.ndarray], Any], list[str] | None]:
    """The runner's infer and where the runtime reports it runs (:class:`~learngene_deploy.backends.base.Execution`)."""
    from learngene_deploy.backends import get_backend
    from learngene_deploy.backends.base import Compiled

    compiled = Compiled.from_dict(spec["compiled"])
    runner = get_backend(compiled.backend).load_runner(compiled, threads=spec["threads"])
    execution = runner.execution()
    return runner.infer, list(execution.executed) if execution and execution.executed is not None else None


def _load_torch(spec: dict[str, Any]) -> Callable[[np.ndarray], Any]:
    import torch
    from safetensors.torch import load_file

    from learngene_deploy.models.vit import ArchSpec, build_vit

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    model = build_vit(ArchSpec.from_dict(spec["arch"])).eval()
    model.load_state_dict(load_file(spec["weights"]))

    def run(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return run


def _prepare_imports(spec: dict[str, Any]) -> None:
    """Import the runtime before the memory baseline, so the baseline includes the library itself."""
    if spec["kind"] == "torch":
        import torch  # noqa: F401
    else:
        from learngene_deploy.backends import get_backend

        get_backend(spec["compiled"]["backend"]).require()


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Benchmark one model in this process (the body of a worker); returns one round's raw statistics."""
    _prepare_imports(spec)
    x = _input_batch(tuple(spec["input_shape"]), spec["batch"])
    rss_before = _current_rss_mb()
    start = time.perf_counter()
    run, executed = (_load_torch(spec), ["torch CPU"]) if spec["kind"] == "torch" else _load_compiled(spec)
    load_s = time.perf_counter() - start
    for _ in range(spec["warmup"]):
        run(x)
    times: list[float] = []
    start = time.perf_counter()
    deadline = start + spec["min_time_s"]
    while (len(times) < spec["min_runs"] or time.perf_counter() < deadline) and len(times) < MAX_RUNS:
        t0 = time.perf_counter_ns()
        run(x)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    seconds = time.perf_counter() - start
    peak = _max_rss_mb()
    ms = np.asarray(times)
    mean, std = clipped_mean_std(ms)
    return {
        "runs": len(times),
        "seconds": seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": mean,
        "std_ms": std,
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "throughput_ips": spec["batch"] * len(times) / seconds,
        "peak_rss_mb": peak,
        "model_rss_mb": max(0.0, peak - rss_before),
        "load_s": load_s,
        "executed_on": executed,
    }


def _run_round(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lgdeploy-bench-") as tmp:
        spec_path, out_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "learngene_deploy.bench", str(spec_path), str(out_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            msg = (
                f"a benchmark round took longer than {timeout_s:g} s; lower min_time_s or min_runs, or raise timeout_s."
            )
            raise ArtifactError(msg) from e
        if out_path.is_file():
            result = json.loads(out_path.read_text())
            if "error" in result:  # a toolkit error inside the worker: re-raise it as the same class
                raise getattr(errors, result["error"], ArtifactError)(result["message"])
            return result
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    msg = (
        f"the benchmark worker exited with code {proc.returncode} ({last}); "
        f"run `{' '.join(cmd[:3])} SPEC OUT` by hand to see the full error."
    )
    raise ArtifactError(msg)


def _stats(
    results: list[dict[str, Any]], spec: dict[str, Any], identity: dict[str, Any], selection: Selection
) -> LatencyStats:
    """The statistics of one model from its rounds: the selected round, its tails taken over the rounds."""
    chosen = results[selected_round([r["p50_ms"] for r in results], selection)]
    tails = {f"p{q}_ms": over_rounds([r[f"p{q}_ms"] for r in results], selection) for q in (90, 99)}
    return LatencyStats(
        **identity,
        batch=spec["batch"],
        threads=spec["threads"],
        warmup=spec["warmup"],
        rounds=len(results),
        selection=selection,
        **{k: tuple(r[k[len("round_") :]] for r in results) for k in ROUND_KEYS},
        **(chosen | tails),
    )


def _run_rounds(
    spec: dict[str, Any], identity: dict[str, Any], *, rounds: int, selection: Selection, timeout_s: float
) -> LatencyStats:
    """Run ``rounds`` workers on ``spec`` and build the stats of the selected round."""
    return _stats([_run_round(spec, timeout_s) for _ in range(rounds)], spec, identity, selection)


def _check_settings(rounds: int, min_runs: int, warmup: int, min_time_s: float, selection: str) -> None:
    if rounds < 1 or min_runs < 1 or warmup < 0 or min_time_s < 0 or selection not in ("best", "median"):
        msg = (
            f"invalid benchmark settings (rounds={rounds}, min_runs={min_runs}, warmup={warmup}, "
            f"min_time_s={min_time_s}, selection={selection!r}); use positive counts and 'best' or 'median'."
        )
        raise ConfigError(msg)


def _compiled_spec(
    compiled: Compiled, *, threads: int | None, batch: int | None, warmup: int, min_runs: int, min_time_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The worker spec and the stats identity of one compiled model."""
    static = compiled.input_shape[0] if isinstance(compiled.input_shape[0], int) else None
    batch = batch or static or 1
    if static is not None and batch != static:
        msg = f"batch {batch} differs from the model's static batch {static}; benchmark at {static} or re-export."
        raise ConfigError(msg)
    spec = {
        "kind": "compiled",
        "compiled": compiled.to_dict(),
        "input_shape": list(compiled.input_shape),
        "threads": threads if threads is not None else compiled.settings.get("threads"),
        "batch": batch,
        "warmup": warmup,
        "min_runs": min_runs,
        "min_time_s": min_time_s,
    }
    identity = {
        "backend": compiled.backend,
        "precision": compiled.precision,
        "model_path": str(compiled.model_path),
        "tool": compiled.tool,
    }
    return spec, identity


def benchmark(
    compiled: Compiled,
    *,
    threads: int | None = None,
    batch: int | None = None,
    warmup: int = 10,
    min_runs: int = 50,
    min_time_s: float = 1.0,
    rounds: int = 3,
    selection: Selection = "best",
    timeout_s: float = 600.0,
) -> LatencyStats:
    """Measure latency, throughput and memory of a compiled model, one fresh process per round.

    Inputs are fixed standard-normal images of the model's input shape (latency of these fixed-shape
    ViTs does not depend on pixel values).

    Args:
        compiled: a backend's compile result (or ``Compiled.from_dict`` of a manifest entry).
        threads: intra-op threads; ``None`` uses ``compiled.settings["threads"]``, then the runtime default.
        batch: images per run; ``None`` is the model's static batch, or 1 for a dynamic batch axis.
        warmup: untimed runs before timing.
        min_runs: time at least this many runs.
        min_time_s: and keep timing for at least this long.
        rounds: fresh worker processes to run (use >= 3 for reported numbers).
        selection: report the ``"best"`` round (lowest p50) or the ``"median"`` round.
        timeout_s: limit for each worker process.

    Returns:
        The selected round's statistics, with p90 and p99 selected over the rounds the same way as the p50
        (see the module docstring) and every round's p50/p90/p99 in ``round_p50_ms`` etc.

    Raises:
        ConfigError: invalid counts, or a batch that differs from the model's static batch.
        BackendUnavailableError: the runtime is not installed (raised from the worker).
        ArtifactError: the worker crashed or timed out.
    """
    return benchmark_many(
        [compiled],
        threads=threads,
        batch=batch,
        warmup=warmup,
        min_runs=min_runs,
        min_time_s=min_time_s,
        rounds=rounds,
        selection=selection,
        timeout_s=timeout_s,
    )[0]


def benchmark_many(
    models: Sequence[Compiled],
    *,
    threads: int | None = None,
    batch: int | None = None,
    warmup: int = 10,
    min_runs: int = 50,
    min_time_s: float = 1.0,
    rounds: int = 3,
    selection: Selection = "best",
    timeout_s: float = 600.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[LatencyStats]:
    """:func:`benchmark` for several models with their rounds interleaved: round 1 of every model, then round 2...

    A shared machine has slow phases that last seconds to minutes (docs/latency.md); back-to-back rounds of one
    model can all fall into one, while interleaved rounds of one model are a whole pass over the models apart,
    so the best of them is far less likely to be slow. Use it whenever several models are compared or fitted.

    Args:
        models: compiled models.
        progress: called after every worker with (workers done, workers in all).
        Other arguments are as for :func:`benchmark`.

    Returns:
        One :class:`LatencyStats` per model, in order.
    """
    _check_settings(rounds, min_runs, warmup, min_time_s, selection)
    specs = [
        _compiled_spec(c, threads=threads, batch=batch, warmup=warmup, min_runs=min_runs, min_time_s=min_time_s)
        for c in models
    ]
    results: list[list[dict[str, Any]]] = [[] for _ in specs]
    total = rounds * len(specs)
    for r in range(rounds):
        for i, (spec, _) in enumerate(specs):
            results[i].append(_run_round(spec, timeout_s))
            if progress is not None:
                progress(r * len(specs) + i + 1, total)
    return [_stats(res, spec, identity, selection) for res, (spec, identity) in zip(results, specs, strict=True)]


def benchmark_torch(
    model: torch.nn.Module,
    arch: ArchSpec,
    *,
    threads: int | None = None,
    batch: int = 1,
    warmup: int = 10,
    min_runs: int = 50,
    min_time_s: float = 1.0,
    rounds: int = 3,
    selection: Selection = "best",
    timeout_s: float = 600.0,
) -> LatencyStats:
    """Measure PyTorch eager (fp32, inference mode, CPU) the same way as :func:`benchmark`, as a baseline.

    The weights are saved to a temporary safetensors file and each worker rebuilds the timm ViT from
    ``arch``; ``backend`` is ``"pytorch"`` in the result. Arguments are as for :func:`benchmark`
    (``threads=None`` keeps torch's default).
    """
    import torch
    from safetensors.torch import save_file

    _check_settings(rounds, min_runs, warmup, min_time_s, selection)
    with tempfile.TemporaryDirectory(prefix="lgdeploy-bench-torch-") as tmp:
        weights = Path(tmp, "model.safetensors")
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(weights))
        spec = {
            "kind": "torch",
            "arch": arch.to_dict(),
            "weights": str(weights),
            "input_shape": [batch, arch.in_chans, arch.img_size, arch.img_size],
            "threads": threads,
            "batch": batch,
            "warmup": warmup,
            "min_runs": min_runs,
            "min_time_s": min_time_s,
        }
        identity = {"backend": "pytorch", "precision": "fp32", "model_path": "", "tool": f"torch {torch.__version__}"}
        return _run_rounds(spec, identity, rounds=rounds, selection=selection, timeout_s=timeout_s)


def _main(argv: list[str]) -> int:
    """Worker entry point: ``python -m learngene_deploy.bench SPEC.json OUT.json``."""
    if len(argv) != 2:
        print("usage: python -m learngene_deploy.bench SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    try:
        result = run_worker(json.loads(spec_path.read_text()))
    except errors.LgdError as e:
        result = {"error": type(e).__name__, "message": str(e)}
    out_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
