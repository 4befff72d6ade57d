"""Measure a device: time a spread of a learngene's sizes with the profile's own runtime and fit a latency table.

Run it on the target (``lgdeploy profiles calibrate NAME --out FILE``); reference the file from the profile's
``latency_table`` key and every later ``select``/``build`` predicts from it. Latency does not depend on weight
values, so each size is a randomly initialised timm ViT of the candidate's architecture, exported, simplified
and compiled exactly as a build would, and benchmarked in fresh processes: each percentile is the lowest of
``rounds`` processes, the statistic a build's budget check measures too (:func:`learngene_deploy.bench.benchmark`).
The rounds are interleaved over the sizes (round 1 of every size, then round 2, ...), so that a slow phase of a
shared machine cannot fall on every round of one size.

First a spread of sizes evenly spaced in FLOPs, for the fitted model that predicts every other size; then the
sizes selection can actually choose -- the accuracy/latency Pareto front predicted from the sizes timed so far,
re-predicted after each pass since measuring sizes moves it -- so that a chosen size is predicted by its own
measurement, not by the fit. The fit's errors are largest exactly where selection picks (wide, shallow sizes:
the most parameters per millisecond), so measuring them matters most.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist, median
from typing import TYPE_CHECKING, Any

from learngene_deploy.errors import ProfileError
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.sizing.latency import FEATURES, LatencyTable, fit
from learngene_deploy.sizing.select import Candidate

DEFAULT_FRONT_SIZES = 24  # Pareto-front sizes timed after the spread (a 4-width x 12-depth grid has 15-18 new)
FRONT_PASSES = 3  # passes over the predicted front at most (each re-predicts it from everything timed so far)
DEFAULT_CONFIDENCE = 0.9  # a selected size meets its latency budget 9 times in 10 (by the calibration's errors)
ROBUST_SIGMA = 1.4826  # standard deviation of a normal distribution per unit of median absolute deviation

if TYPE_CHECKING:
    from learngene_deploy.backends.base import Compiled
    from learngene_deploy.bench import LatencyStats


def spread(candidates: list[Candidate], count: int) -> list[ArchSpec]:
    """Up to ``count`` distinct architectures evenly spaced in FLOPs, smallest and largest included."""
    from learngene_deploy.sizing.cost import flops

    return evenly(sorted({c.arch for c in candidates}, key=lambda a: (sum(flops(a)), a.name)), count)


def evenly(items: list[ArchSpec], count: int) -> list[ArchSpec]:
    """Up to ``count`` of ``items``, evenly spaced over the list, the last one always included."""
    if count <= 0:
        return []
    if len(items) <= count:
        return items
    if count == 1:
        return [items[-1]]
    return [items[i] for i in sorted({round(i * (len(items) - 1) / (count - 1)) for i in range(count)})]


def front_sizes(
    candidates: list[Candidate], profile: Any, table: LatencyTable, count: int, measured: list[ArchSpec]
) -> list[ArchSpec]:
    """Up to ``count`` not yet ``measured`` sizes on the Pareto front predicted by ``table``, evenly spread in latency.

    These are the sizes some latency budget makes the choice (:func:`learngene_deploy.sizing.select.pareto_front`).
    """
    from learngene_deploy.sizing.latency import TablePredictor
    from learngene_deploy.sizing.select import pareto_front

    if count <= 0:
        return []
    done = set(measured)
    front: list[ArchSpec] = []
    for p in pareto_front(candidates, profile, TablePredictor(table, table.percentile)):
        if p.candidate.arch not in done and p.candidate.arch not in front:
            front.append(p.candidate.arch)
    return evenly(front, count)


def compile_size(arch: ArchSpec, profile: Any, workdir: Path) -> Compiled:
    """Export, simplify and compile one random-weight model of ``arch`` as the profile's runtime runs it."""
    import numpy as np
    import torch

    from learngene_deploy.backends import get_backend
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
    calibration = np.random.default_rng(0).standard_normal((b.batch * 8, *shape[1:]), dtype=np.float32)
    return get_backend(rt.backend).compile(
        onnx_model.path, out, precision=rt.precision, profile=profile, calibration_data=calibration
    )


def point(arch: ArchSpec, stats: LatencyStats) -> dict[str, Any]:
    """One measured size as a latency-table point."""
    return {
        "arch": arch.to_dict(),
        "p50_ms": stats.p50_ms,
        "p90_ms": stats.p90_ms,
        "p99_ms": stats.p99_ms,
        "mean_ms": stats.mean_ms,
        "runs": stats.runs,
        "rounds": stats.rounds,
        "round_p50_ms": list(stats.round_p50_ms),
        "round_p90_ms": list(stats.round_p90_ms),
        "round_p99_ms": list(stats.round_p99_ms),
        # process-to-process spread: how far the slowest round is above the best one (a re-measurement's noise)
        "spread": max(stats.round_p50_ms) / min(stats.round_p50_ms) - 1 if stats.round_p50_ms else 0.0,
    }


def measure(
    archs: list[ArchSpec],
    profile: Any,
    workdir: Path,
    *,
    runs: int = 50,
    rounds: int = 3,
    min_time_s: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Compile every size, then time them with interleaved rounds (:func:`learngene_deploy.bench.benchmark_many`).

    Args:
        progress: called with a short line after each size is compiled and after each pass over the sizes.

    Returns:
        One latency-table point per size, in order.
    """
    from learngene_deploy.bench import benchmark_many

    compiled = []
    for i, arch in enumerate(archs):
        compiled.append(compile_size(arch, profile, workdir))
        if progress is not None:
            progress(f"compiled {i + 1}/{len(archs)}: {arch.name}")

    def tick(done: int, total: int) -> None:
        if progress is not None and done % len(archs) == 0:
            progress(f"timed round {done // len(archs)}/{rounds} of every size")

    stats = benchmark_many(
        compiled,
        threads=profile.runtime.threads,
        min_runs=runs,
        rounds=rounds,
        min_time_s=min_time_s,
        progress=tick,
    )
    return [point(arch, st) for arch, st in zip(archs, stats, strict=True)]


def calibrate(
    profile: Any,
    candidates: list[Candidate],
    *,
    sizes: int = 12,
    front: int = DEFAULT_FRONT_SIZES,
    runs: int = 50,
    rounds: int = 3,
    min_time_s: float = 1.0,
    confidence: float = DEFAULT_CONFIDENCE,
    progress: Callable[[str], None] | None = None,
) -> LatencyTable:
    """Time a spread of the candidates and then their predicted Pareto front on this machine; fit the latency model.

    Args:
        profile: the device profile (its runtime, precision, threads, batch and percentile are used).
        candidates: sizes the learngene offers.
        sizes: how many distinct architectures to time for the fit, evenly spaced in FLOPs (at least the number
            of fitted coefficients, 5; more make the leave-one-out error behind the guard band trustworthy).
        front: at most this many more sizes, from the Pareto front predicted by the fit (the sizes selection
            can choose), timed in up to three more passes (each re-predicts the front from everything timed
            so far, since measuring sizes moves it); 0 times the spread only.
        runs: timed runs per process; rounds: fresh processes per size, interleaved over the sizes of a pass
            (each percentile is the lowest of the rounds).
        confidence: how likely a selected size should meet its latency budget; sets the guard band.
        progress: called with a short line as the work goes on.
    """
    guard_band({}, confidence)  # refuse a bad confidence before any measuring
    timing = dict(runs=runs, rounds=rounds, min_time_s=min_time_s, progress=progress)
    archs = spread(candidates, max(sizes, len(FEATURES)))
    workdir = Path(tempfile.mkdtemp(prefix="lgdeploy-calibrate-"))
    try:
        points = [p | {"pass": "spread"} for p in measure(archs, profile, workdir, **timing)]
        drift = [pass_drift(points)]
        measured, left = list(archs), front
        for _ in range(FRONT_PASSES):  # measuring the front moves it; time what joins it, within the cap
            current = table_from_points(profile, points, confidence=confidence)
            extra = front_sizes(candidates, profile, current, left, measured)
            if not extra:
                break
            if progress is not None:
                progress(f"timing {len(extra)} more sizes: the Pareto front predicted from the sizes timed so far")
            more = [p | {"pass": "front"} for p in measure(extra, profile, workdir, **timing)]
            drift.append(pass_drift(more))
            points += more
            measured += extra
            left -= len(extra)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    known = [d for d in drift if d is not None]
    return table_from_points(profile, points, confidence=confidence, drift=max(known) if known else None)


def runtimes_to_calibrate(profile: Any, *, with_fp32: bool = False) -> list[tuple[str, str]]:
    """(backend, precision) pairs a calibration of ``profile`` measures.

    ``auto`` measures every installed runtime that supports the precision (selection then predicts each size by the
    fastest, as the build ships the fastest); ``with_fp32`` adds each runtime's fp32 twin to an INT8 profile, so the
    INT8 speed gate of a target that is not the build machine can compare the two from the device's own tables.
    """
    from learngene_deploy.backends.choice import installed_auto_backends
    from learngene_deploy.names import AUTO_BACKEND

    rt = profile.runtime
    if rt.backend == AUTO_BACKEND:
        backends = installed_auto_backends(profile)
        if not backends:
            msg = f"backend auto found no installed runtime for {rt.precision} here; install onnxruntime or openvino."
            raise ProfileError(msg)
    else:
        backends = [rt.backend]
    pairs = [(b, rt.precision) for b in backends]
    if with_fp32 and rt.precision != "fp32":
        pairs += [(b, "fp32") for b in backends]
    return pairs


def calibrate_tables(
    profile: Any, candidates: list[Candidate], *, with_fp32: bool = False, **kwargs: Any
) -> list[LatencyTable]:
    """:func:`calibrate` once per runtime and precision of :func:`runtimes_to_calibrate`; one table each."""
    import dataclasses

    tables = []
    progress = kwargs.get("progress")
    for backend, precision in runtimes_to_calibrate(profile, with_fp32=with_fp32):
        runtime = dataclasses.replace(profile.runtime, backend=backend, precision=precision)
        if progress is not None:
            progress(f"{backend} {precision}:")
        tables.append(calibrate(dataclasses.replace(profile, runtime=runtime), candidates, **kwargs))
    return tables


def table_from_points(
    profile: Any, points: list[dict[str, Any]], *, confidence: float = DEFAULT_CONFIDENCE, drift: float | None = None
) -> LatencyTable:
    """Fit the per-device model to measured points (:func:`point`) and wrap it as the profile's latency table."""
    from learngene_deploy.facts import host_facts, utc_now

    percentile = profile.budgets.percentile
    key = f"p{percentile}_ms" if percentile in (50, 90, 99) else "p99_ms"  # p95 is fitted on p99 (conservative)
    coef, error = fit([(ArchSpec.from_dict(p["arch"]), p[key]) for p in points], batch=profile.budgets.batch)
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
        created=utc_now(),
        fit_error=error,
        margin=guard_band(error, confidence),
        margin_confidence=confidence,
        drift=drift,
    )


def pass_drift(points: list[dict[str, Any]]) -> float | None:
    """How much the machine's speed moved between the interleaved passes of a calibration.

    Pass k's speed is the median over sizes of (round k's p50 / the size's lowest p50); the drift is the
    slowest pass over the fastest, minus 1. A quiet machine gives a few percent. A large drift means the
    device slowed down and sped up while it was measured (other load, thermal or CPU-credit throttling), which
    the guard band -- estimated within this one calibration -- does not see; re-calibrate when the device is
    idle. ``None`` with fewer than two rounds.
    """
    rounds = min((len(p.get("round_p50_ms", [])) for p in points), default=0)
    if rounds < 2:
        return None
    speed = [median(p["round_p50_ms"][k] / p["p50_ms"] for p in points) for k in range(rounds)]
    return round(max(speed) / min(speed) - 1, 4)


def guard_band(fit_error: dict[str, float], confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Relative latency margin that selection keeps below the budget, so a chosen size meets it with ``confidence``.

    The fit's error on a size it has not seen is estimated by leave-one-out (each calibration point predicted by
    a fit to the others), which holds both how far the per-device model misses and how much a measurement of
    the same model moves between processes. Taking that error as normal, its scale is 1.4826 x the median
    absolute leave-one-out error (a robust estimate: one stray point does not inflate it), and selecting at
    ``predicted x (1 + margin) <= budget`` with ``margin = z(confidence) x scale`` leaves a one-sided
    ``confidence`` chance that the chosen size's measurement stays within its budget. ``confidence`` 0.5 gives
    no margin. With too few points for leave-one-out, the in-sample median error is used (an underestimate).
    """
    if not 0.5 <= confidence < 1:
        msg = f"confidence must be in [0.5, 1), got {confidence}; 0.9 means 9 in 10 chosen sizes meet the budget."
        raise ProfileError(msg)
    typical = float(fit_error.get("loo_median_rel", fit_error.get("median_rel", 0.0)))
    return round(NormalDist().inv_cdf(confidence) * ROBUST_SIGMA * typical, 4)
