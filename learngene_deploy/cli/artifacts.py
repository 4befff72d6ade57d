"""`lgdeploy verify ARTIFACT_DIR` and `lgdeploy bench ARTIFACT_DIR`: check and measure a built artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ARTIFACT = typer.Argument(help="Artifact directory written by `lgdeploy build`.")


def verify_command(artifact: Annotated[Path, ARTIFACT]) -> None:
    """Check every file against the manifest's sha256 and re-run the model on the shipped golden images."""
    from learngene_deploy.pipeline import recheck_artifact

    result = recheck_artifact(artifact)
    typer.echo(
        f"ok: {artifact}: every file matches its manifest; {result['candidate']} matches PyTorch on "
        f"{result['num_images']} golden images (max |Δ| {result['max_abs_diff']:.2e}, "
        f"top-1 agreement {result['top1_agreement']:.1%})"
    )


def bench_command(
    artifact: Annotated[Path, ARTIFACT],
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs per process (at least).")] = 50,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Fresh processes; the best round is reported.")] = 3,
) -> None:
    """Benchmark an artifact on this machine (run it on the target device) and record the result in its manifest."""
    from learngene_deploy.pipeline import bench_artifact

    manifest = bench_artifact(artifact, runs=runs, rounds=rounds)
    stats = manifest["target_benchmarks"][-1]["stats"]
    verdict = manifest["budgets"]["latency"]
    typer.echo(
        f"{artifact}: p50 {stats['p50_ms']:.3g} ms, p90 {stats['p90_ms']:.3g} ms, p99 {stats['p99_ms']:.3g} ms, "
        f"{stats['throughput_ips']:.0f} images/s ({stats['runs']} runs, {stats['rounds']} processes); latency budget "
        f"{verdict['budget_ms']:g} ms p{verdict['percentile']}: {'pass' if verdict['passed'] else 'MISSED'} "
        f"(was predicted {manifest['latency']['predicted_ms']:.3g} ms)"
    )
