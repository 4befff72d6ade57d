"""`lgdeploy verify`, `lgdeploy predict` and `lgdeploy bench` on ARTIFACT_DIR: check, use and measure an artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ARTIFACT = typer.Argument(help="Artifact directory written by `lgdeploy build`.")


def _awaiting(artifact: Path) -> bool:
    """Whether an artifact awaits its compile on the target (its manifest says so; nothing else is read)."""
    from learngene_deploy.artifact.store import read_manifest

    return read_manifest(artifact).get("status") == "awaiting-compile"


def verify_command(
    artifact: Annotated[Path, ARTIFACT],
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect",
            metavar="SHA256",
            help="The manifest's sha256 as `lgdeploy build` printed it; anything else is refused.",
        ),
    ] = None,
    max_abs_diff: Annotated[
        float | None,
        typer.Option("--max-abs-diff", min=0.0, help="fp32: largest allowed logit difference (default 1e-4)."),
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option("--min-agreement", min=0.0, max=1.0, help="Top-1 agreement needed (default per precision)."),
    ] = None,
) -> None:
    """Check every file against the manifest's sha256 and re-run the model on the shipped golden images.

    The tolerance is this lgdeploy's for the model's precision (or --max-abs-diff/--min-agreement), never the one
    written in the manifest under check.
    """
    import re

    from learngene_deploy.api import Artifact
    from learngene_deploy.artifact.store import manifest_sha256
    from learngene_deploy.errors import ConfigError

    if expect is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", expect.strip()):
        msg = f"--expect {expect!r} is not a sha256 (64 hex digits); pass the digest `lgdeploy build` printed."
        raise ConfigError(msg)
    result = Artifact(artifact).verify(expect=expect, max_abs=max_abs_diff, min_agreement=min_agreement)
    anchor = "the expected" if expect is not None else "unanchored (pass --expect to pin it),"
    typer.echo(
        f"ok: {artifact}: every file matches its manifest; {result['candidate']} matches PyTorch on "
        f"{result['num_images']} golden images (max |Δ| {result['max_abs_diff']:.2e}, "
        f"top-1 agreement {result['top1_agreement']:.1%}); manifest sha256 {anchor} {manifest_sha256(artifact)}"
    )


def predict_command(
    artifact: Annotated[Path, ARTIFACT],
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.")],
    top: Annotated[int, typer.Option("--top", min=1, help="Classes shown per image.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Classify images with the artifact's compiled model and its own preprocessing; top classes with probabilities."""
    import json

    from learngene_deploy.api import Artifact

    predictions = Artifact(artifact).predict([str(p) for p in images], top=top)
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in predictions], indent=2))
        return
    from rich.markup import escape

    from learngene_deploy.cli._console import stdout

    console = stdout()
    for p in predictions:
        console.print(f"[bold]{escape(p.image)}[/bold]")
        for name, prob in p.top:
            console.print(f"  {prob:7.2%}  {escape(name)}")


def bench_command(
    artifact: Annotated[Path, ARTIFACT],
    runs: Annotated[int, typer.Option("--runs", min=1, max=100_000, help="Timed runs per process (at least).")] = 50,
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, max=100, help="Fresh processes; the best round is reported.")
    ] = 3,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Benchmark on this edge box over SSH (user@host or an ~/.ssh/config alias)."),
    ] = None,
    remote_python: Annotated[
        str, typer.Option("--remote-python", help="With --host: the Python on the box that has lgdeploy installed.")
    ] = "python3",
    remote_dir: Annotated[
        str, typer.Option("--remote-dir", help="With --host: where the copy goes on the box (relative: remote home).")
    ] = ".lgdeploy/bench",
    ssh_option: Annotated[
        list[str] | None,
        typer.Option("--ssh-option", help="With --host: extra ssh/scp option KEY=VALUE (repeatable), e.g. Port=2222."),
    ] = None,
    keep_remote: Annotated[
        bool, typer.Option("--keep-remote", help="With --host: leave the copy on the box afterwards.")
    ] = False,
    adb: Annotated[
        str | None,
        typer.Option("--adb", help="Benchmark on this Android device (adb serial) with onnxruntime_perf_test."),
    ] = None,
    perf_test: Annotated[
        str | None,
        typer.Option("--perf-test", help="With --adb: path of the onnxruntime_perf_test binary on the device."),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="The profile the artifact was built with, whose budgets judge the measurement (default: the shipped "
            "profile with the sha256 the manifest records).",
        ),
    ] = None,
) -> None:
    """Benchmark an artifact on the target (this machine, --host over SSH, or --adb) and record it in its manifest."""
    from learngene_deploy.errors import ConfigError

    if host is not None and adb is not None:
        msg = "--host and --adb name two different targets; pass one of them (or neither to benchmark here)."
        raise ConfigError(msg)
    ssh_only = {
        "--remote-python": remote_python != "python3",
        "--remote-dir": remote_dir != ".lgdeploy/bench",
        "--ssh-option": bool(ssh_option),
        "--keep-remote": keep_remote,
    }
    given = [name for name, set_ in ssh_only.items() if set_]
    if given and host is None:
        raise ConfigError(f"{', '.join(given)} only apply with --host; add --host user@host or drop them.")
    if perf_test is not None and adb is None:
        raise ConfigError("--perf-test only applies with --adb; add --adb SERIAL or drop it.")
    where = "on this machine"
    if host is not None and adb is None and _awaiting(artifact):  # finish it on the box, which benchmarks it too
        from learngene_deploy.remote.ssh import compile_over_ssh

        compile_over_ssh(
            artifact,
            host,
            remote_python=remote_python,
            ssh_options=ssh_option or (),
            keep_remote=keep_remote,
            options=["--runs", str(runs), "--rounds", str(rounds)],
            profile=profile,
            log=lambda line: typer.echo(line, err=True),
        )
        from learngene_deploy.api import Artifact

        done = Artifact(artifact).manifest
        stats = done["benchmark"]
        typer.echo(
            f"{artifact} (compiled and benchmarked on {host}): p50 {stats['p50_ms']:.3g} ms, "
            f"p90 {stats['p90_ms']:.3g} ms; status {done['status']}"
        )
        return
    if host is not None:
        from learngene_deploy.remote import bench_over_ssh

        manifest = bench_over_ssh(
            artifact,
            host,
            runs=runs,
            rounds=rounds,
            remote_python=remote_python,
            remote_dir=remote_dir,
            ssh_options=ssh_option or (),
            keep_remote=keep_remote,
            log=lambda line: typer.echo(line, err=True),
            profile=profile,
        )
        where = f"on {host}"
    elif adb is not None:
        from learngene_deploy.remote import bench_over_adb

        manifest = bench_over_adb(
            artifact,
            adb,
            perf_test=perf_test,
            runs=runs,
            rounds=rounds,
            log=lambda line: typer.echo(line, err=True),
            profile=profile,
        )
        where = f"on {manifest.target_benchmarks[-1]['host']['hostname']}"
    else:
        from learngene_deploy.api import Artifact

        here = Artifact(artifact)
        here.bench(runs=runs, rounds=rounds, profile=profile)
        manifest = here.manifest
    stats = manifest.target_benchmarks[-1]["stats"]
    verdict = manifest.latency_verdict
    throughput = f"{stats['throughput_ips']:.0f} images/s" if stats.get("throughput_ips") else "throughput unknown"
    typer.echo(
        f"{artifact} ({where}): p50 {stats['p50_ms']:.3g} ms, p90 {stats['p90_ms']:.3g} ms, "
        f"p99 {stats['p99_ms']:.3g} ms, {throughput} ({stats['runs']} runs, {stats['rounds']} processes); latency "
        f"budget {verdict['budget_ms']:g} ms p{verdict['percentile']}: {'pass' if verdict['passed'] else 'MISSED'} "
        f"(was predicted {manifest.predicted_ms:.3g} ms)"
    )
    if verdict.get("note"):
        typer.echo(f"latency budget missed: {verdict['note']}")
