"""Benchmark harness: statistics from fresh worker processes (no latency thresholds: the machine is shared)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from learngene_deploy.bench import LatencyStats, benchmark, benchmark_torch, clipped_mean_std, over_rounds
from learngene_deploy.errors import ArtifactError, ConfigError
from learngene_deploy.models.vit import ArchSpec

ARCH = ArchSpec(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    import torch

    from learngene_deploy.backends import get_backend
    from learngene_deploy.export import torch2onnx
    from learngene_deploy.models.vit import build_vit

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("bench")
    art = torch2onnx(build_vit(ARCH), input_shape=(1, 3, 32, 32), out_path=out / "model.onnx", exporter="legacy")
    return get_backend("onnxruntime").compile(art.path, out / "ort", precision="fp32")


def test_benchmark_returns_sane_stats_from_subprocesses(compiled) -> None:
    stats = benchmark(compiled, threads=1, warmup=2, min_runs=5, min_time_s=0.05, rounds=2)
    assert stats.backend == "onnxruntime" and stats.precision == "fp32" and stats.batch == 1 and stats.threads == 1
    assert stats.rounds == 2 and len(stats.round_p50_ms) == 2 and stats.p50_ms == min(stats.round_p50_ms)
    assert stats.p90_ms == min(stats.round_p90_ms) and stats.p99_ms == min(stats.round_p99_ms)
    assert len(stats.round_p90_ms) == len(stats.round_p99_ms) == 2
    assert stats.runs >= 5 and stats.seconds >= 0.05
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert stats.min_ms <= stats.mean_ms <= stats.max_ms and stats.std_ms >= 0
    assert stats.throughput_ips > 0 and stats.load_s > 0
    assert stats.peak_rss_mb > stats.model_rss_mb >= 0
    assert LatencyStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_statistics_are_selected_over_rounds() -> None:
    assert over_rounds([3.0, 1.0, 2.0], "best") == 1.0 and over_rounds([3.0, 1.0, 2.0], "median") == 2.0
    assert over_rounds([4.0, 1.0, 2.0, 3.0], "median") == 2.0  # the lower middle, like the median p50 round


def test_stats_written_before_round_tails_were_kept_still_load(compiled) -> None:
    stats = benchmark(compiled, threads=1, warmup=0, min_runs=2, min_time_s=0, rounds=1)
    old = {k: v for k, v in stats.to_dict().items() if k not in ("round_p90_ms", "round_p99_ms")}
    assert LatencyStats.from_dict(old).round_p90_ms == () and LatencyStats.from_dict(old).p90_ms == stats.p90_ms


def test_benchmark_many_interleaves_rounds_over_models(compiled, tmp_path, monkeypatch) -> None:
    """Round 1 of every model, then round 2: a slow phase of the machine cannot hit every round of one model."""

    from learngene_deploy import bench
    from learngene_deploy.backends import get_backend
    from learngene_deploy.export import torch2onnx
    from learngene_deploy.models.vit import build_vit

    small = ARCH.replace(depth=1)
    onnx = torch2onnx(build_vit(small), input_shape=(1, 3, 32, 32), out_path=tmp_path / "m.onnx", exporter="legacy")
    other = get_backend("onnxruntime").compile(onnx.path, tmp_path / "ort", precision="fp32")
    order, ticks, real = [], [], bench._run_round

    def spy(spec, timeout_s):  # records the order, runs the real worker
        order.append(spec["compiled"]["model_path"])
        return real(spec, timeout_s)

    monkeypatch.setattr(bench, "_run_round", spy)
    stats = bench.benchmark_many(
        [compiled, other], threads=1, warmup=1, min_runs=3, min_time_s=0, rounds=2, progress=lambda *a: ticks.append(a)
    )
    a, b = str(compiled.model_path), str(other.model_path)
    assert a != b and order == [a, b, a, b]
    assert ticks == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [s.model_path for s in stats] == [a, b] and all(s.rounds == 2 for s in stats)
    assert all(s.p90_ms == min(s.round_p90_ms) and s.p50_ms == min(s.round_p50_ms) for s in stats)


def test_worker_errors_come_back(compiled, tmp_path) -> None:
    broken = replace(compiled, model_path=tmp_path / "missing.onnx")
    with pytest.raises(ArtifactError, match="benchmark worker exited"):
        benchmark(broken, warmup=0, min_runs=1, min_time_s=0, rounds=1)


def test_bad_settings_are_rejected(compiled) -> None:
    with pytest.raises(ConfigError, match="static batch 1"):
        benchmark(compiled, batch=4)
    with pytest.raises(ConfigError, match="'best' or 'median'"):
        benchmark(compiled, rounds=0)


def test_clipped_mean_ignores_a_stray_outlier() -> None:
    values = [1.0] * 50 + [1.1] * 49 + [100.0]
    mean, std = clipped_mean_std(values)
    assert mean == pytest.approx(1.0495, abs=1e-3) and std < 0.1


def test_pytorch_eager_baseline_runs_in_a_worker() -> None:
    import torch

    from learngene_deploy.models.vit import build_vit

    torch.manual_seed(0)
    stats = benchmark_torch(build_vit(ARCH), ARCH, threads=1, warmup=1, min_runs=3, min_time_s=0, rounds=1)
    assert stats.backend == "pytorch" and stats.tool.startswith("torch ") and stats.runs >= 3
    assert 0 < stats.p50_ms <= stats.p99_ms and stats.peak_rss_mb > 0


def test_worker_memory_excludes_the_parents(compiled) -> None:
    """Linux carries a parent's peak RSS across fork + exec in ru_maxrss; the worker must report its own."""
    ballast = np.ones(512 * 2**20 // 8)  # 512 MB resident in this (parent) process
    ballast[::512] = 2.0
    stats = benchmark(compiled, threads=1, batch=1, warmup=1, min_runs=3, min_time_s=0.0, rounds=1)
    assert stats.peak_rss_mb < 400, f"worker peak {stats.peak_rss_mb:.0f} MB includes the parent's 512 MB"
    assert 0 < stats.model_rss_mb < stats.peak_rss_mb
    del ballast
