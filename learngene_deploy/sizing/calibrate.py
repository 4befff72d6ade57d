"""Measure a device: time a spread of a learngene's sizes with the profile's own runtime and fit a latency table.

Run it on the target (``lgdeploy profiles calibrate NAME --out FILE``); reference the file from the profile's
``latency_table`` key and every later ``select``/``build`` predicts from it. Latency does not depend on weight
values, so each size is a randomly initialised timm ViT of the candidate's architecture, exported, simplified
and compiled exactly as a build would, and benchmarked in fresh processes (best of ``rounds``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.sizing.latency import FEATURES, LatencyTable, fit
from learngene_deploy.sizing.select import Candidate


def spread(candidates: list[Candidate], count: int) -> list[ArchSpec]:
    """Up to ``count`` distinct architectures evenly spaced in FLOPs, smallest and largest included."""
    from learngene_deploy.sizing.cost import flops

    archs = sorted({c.arch for c in candidates}, key=lambda a: (sum(flops(a)), a.name))
    if len(archs) <= count:
        return archs
    picks = sorted({round(i * (len(archs) - 1) / (count - 1)) for i in range(count)})
    return [archs[i] for i in picks]


def measure(
    arch: ArchSpec,
    profile: Any,
    workdir: Path,
    *,
    runs: int = 50,
    rounds: int = 3,
    min_time_s: float = 1.0,
) -> dict[str, Any]:
    """Export, compile and benchmark one random-weight model of ``arch`` as the profile's runtime runs it."""
    import numpy as np
    import torch

    from learngene_deploy.backends import get_backend
    from learngene_deploy.bench import benchmark
    from learngene_deploy.export import simplify, torch2onnx
    from learngene_deploy.models.vit import build_vit

    rt, b = profile.runtime, profile.budgets
    out = workdir / arch.name
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_vit(arch).eval()
    shape = (b.batch, arch.in_chans, arch.img_size, arch.img_size)
    raw = torch2onnx(model, input_shape=shape, out_path=out / "raw.onnx", opset=rt.opset, exporter="legacy")
    onnx_model = simplify(raw, out / "model.onnx")
    backend = get_backend(rt.backend)
    calibration = np.random.default_rng(0).standard_normal((b.batch * 8, *shape[1:]), dtype=np.float32)
    compiled = backend.compile(
        onnx_model.path, out, precision=rt.precision, profile=profile, calibration_data=calibration
    )
    stats = benchmark(compiled, threads=rt.threads, batch=b.batch, min_runs=runs, rounds=rounds, min_time_s=min_time_s)
    return {
        "arch": arch.to_dict(),
        "p50_ms": stats.p50_ms,
        "p90_ms": stats.p90_ms,
        "p99_ms": stats.p99_ms,
        "mean_ms": stats.mean_ms,
        "runs": stats.runs,
        "rounds": stats.rounds,
        "round_p50_ms": list(stats.round_p50_ms),
        # process-to-process spread: how far the slowest round is above the best one (a re-measurement's noise)
        "spread": max(stats.round_p50_ms) / min(stats.round_p50_ms) - 1 if stats.round_p50_ms else 0.0,
    }


def calibrate(
    profile: Any,
    candidates: list[Candidate],
    *,
    sizes: int = 8,
    runs: int = 50,
    rounds: int = 3,
    min_time_s: float = 1.0,
    progress: Callable[[int, int, ArchSpec, dict[str, Any]], None] | None = None,
) -> LatencyTable:
    """Time ``sizes`` of the candidates on this machine and fit the per-device latency model.

    Args:
        profile: the device profile (its runtime, precision, threads, batch and percentile are used).
        candidates: sizes the learngene offers.
        sizes: how many distinct architectures to time (at least the number of fitted coefficients, 5).
        runs: timed runs per process; rounds: fresh processes per size (the best round is kept).
        progress: called after each size with (index, total, arch, point).
    """
    from learngene_deploy.artifact import host_facts

    archs = spread(candidates, max(sizes, len(FEATURES)))
    percentile = profile.budgets.percentile
    key = f"p{percentile}_ms" if percentile in (50, 90, 99) else "p99_ms"  # p95 is fitted on p99 (conservative)
    workdir = Path(tempfile.mkdtemp(prefix="lgdeploy-calibrate-"))
    points = []
    try:
        for i, arch in enumerate(archs):
            point = measure(arch, profile, workdir, runs=runs, rounds=rounds, min_time_s=min_time_s)
            points.append(point)
            if progress is not None:
                progress(i + 1, len(archs), arch, point)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    coef, error = fit([(ArchSpec.from_dict(p["arch"]), p[key]) for p in points], batch=profile.budgets.batch)
    margin = guard_band(error)
    return LatencyTable(
        profile=profile.name,
        backend=profile.runtime.backend,
        precision=profile.runtime.precision,
        threads=profile.runtime.threads,
        batch=profile.budgets.batch,
        percentile=percentile,
        points=points,
        coef=coef,
        host=host_facts(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        fit_error=error,
        margin=margin,
    )


def guard_band(fit_error: dict[str, float]) -> float:
    """Relative latency margin that selection keeps below the budget: the fit's typical error on an unseen size.

    The median leave-one-out relative error of the fit (each calibration point predicted by a fit to the others):
    it holds both how far the per-device model misses and how much a measurement of the same model moves
    between processes. Selecting at ``predicted x (1 + margin) <= budget`` makes a chosen model that lands at its
    typical error still meet the budget. Falls back to the in-sample median error when there are too few points
    for a leave-one-out fit. (Each point's process-to-process ``spread`` is recorded in the table for inspection;
    max/min of three rounds overstates the noise of the best-of-rounds statistic, so it is not used here.)
    """
    return round(float(fit_error.get("loo_median_rel", fit_error.get("median_rel", 0.0))), 4)
