"""ONNX Runtime's ``onnxruntime_perf_test``: its command line, and its printed summary as :class:`LatencyStats`.

:func:`parse_perf_test_output` reads one run's summary (a pure function); :func:`perf_test_latency` turns the
rounds (one perf_test process each) into the statistics a local benchmark gives, choosing the reported round with
:func:`learngene_deploy.bench.selected_round` and taking the tail percentiles over the rounds like
:func:`learngene_deploy.bench.benchmark`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from learngene_deploy.artifact.manifest import RuntimeRecord
from learngene_deploy.bench import LatencyStats, over_rounds, selected_round
from learngene_deploy.errors import RemoteError
from learngene_deploy.remote.base import last_line

Rounds = Sequence[dict[str, float | None]]  # parse_perf_test_output of each round, in run order

# ORT execution provider -> onnxruntime_perf_test's -e name
PERF_TEST_PROVIDERS = {
    "CPUExecutionProvider": "cpu",
    "XnnpackExecutionProvider": "xnnpack",
    "NnapiExecutionProvider": "nnapi",
    "QNNExecutionProvider": "qnn",
    "CoreMLExecutionProvider": "coreml",
}

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


def perf_test_argv(perf_test: str, runtime: RuntimeRecord, *, runs: int, model: str) -> list[str]:
    """The command of one round: ``runs`` timed runs of ``model`` with the profile's execution provider and threads."""
    provider = PERF_TEST_PROVIDERS.get(runtime.execution_provider or "CPUExecutionProvider", "cpu")
    argv = [perf_test, "-e", provider, "-m", "times", "-r", str(runs), "-I"]
    if runtime.threads:
        argv += ["-x", str(runtime.threads)]
    return [*argv, model]


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
            f"{last_line(text)!r}); run it by hand on the device to see why the model did not run."
        )
        raise RemoteError(msg)
    return result


def perf_test_latency(
    rounds: Rounds,
    *,
    backend: str,
    precision: str,
    model_path: str,
    batch: int,
    threads: int | None,
    tool: str = "onnxruntime_perf_test",
) -> LatencyStats:
    """The statistics of parsed perf_test rounds: the best round (lowest p50, :func:`~learngene_deploy.bench.
    selected_round`), the lowest p90 and p99 over the rounds (as :func:`learngene_deploy.bench.benchmark` takes
    them) and every round's values.

    perf_test does not report a standard deviation or the model's own memory, so ``std_ms`` and
    ``model_rss_mb`` are ``None``; a p50 it did not print falls back to the average.
    """
    p50s = [r["p50_ms"] if r["p50_ms"] is not None else r["average_ms"] for r in rounds]
    chosen = selected_round(p50s, "best")
    best = rounds[chosen]
    peak = best["peak_working_set_bytes"]
    return LatencyStats(
        backend=backend,
        precision=precision,
        model_path=model_path,
        tool=tool,
        batch=batch,
        threads=threads,
        warmup=1,  # perf_test runs one untimed "first inference"
        **_run_counts(best, batch),
        p50_ms=p50s[chosen],
        # tails are taken over the rounds like the p50, where every round printed them; else the best round's
        p90_ms=_tail_over_rounds([r["p90_ms"] for r in rounds], best["p90_ms"]),
        p99_ms=_tail_over_rounds([r["p99_ms"] for r in rounds], best["p99_ms"]),
        mean_ms=best["average_ms"],
        std_ms=None,
        min_ms=best["min_ms"],
        max_ms=best["max_ms"],
        peak_rss_mb=peak / 2**20 if peak else None,
        model_rss_mb=None,
        load_s=best["session_creation_s"],
        rounds=len(rounds),
        selection="best",
        round_p50_ms=tuple(p50s),
        round_p90_ms=tuple(r["p90_ms"] for r in rounds),
        round_p99_ms=tuple(r["p99_ms"] for r in rounds),
    )


def perf_test_stats(rounds: Rounds, **identity: Any) -> dict[str, Any]:
    """:func:`perf_test_latency` as the ``stats`` dict of a manifest record (arguments as for it)."""
    return perf_test_latency(rounds, **identity).to_dict()


def _run_counts(best: dict[str, float | None], batch: int) -> dict[str, Any]:
    """``runs``, ``seconds`` and ``throughput_ips`` of a round; its time is runs × average where not printed."""
    runs = best["requests"]
    seconds = best["total_time_s"]
    if seconds is None and runs is not None and best["average_ms"] is not None:
        seconds = runs * best["average_ms"] / 1000.0
    per_s = best["inferences_per_s"] or (runs / seconds if runs and seconds else None)
    return {
        "runs": int(runs) if runs is not None else None,
        "seconds": seconds,
        "throughput_ips": batch * per_s if per_s else None,
    }


def _tail_over_rounds(values: list[float | None], fallback: float | None) -> float | None:
    """:func:`learngene_deploy.bench.over_rounds` of the rounds' values, or ``fallback`` if a round lacks it."""
    return over_rounds(values, "best") if all(v is not None for v in values) else fallback
