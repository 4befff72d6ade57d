"""`lgdeploy compile ARTIFACT`: finish an artifact that awaits its compile, on the target (or over SSH to it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from learngene_deploy.cli._console import stderr


def compile_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory whose status is awaiting-compile.")],
    host: Annotated[
        str | None,
        typer.Option("--host", help="Compile on this box over SSH (user@host) with its lgdeploy; fetch the result."),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="The profile file, when the artifact's profile is not a shipped one."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Compile even on a machine that is not the profile's device.")
    ] = False,
    max_abs_diff: Annotated[
        float, typer.Option("--max-abs-diff", min=0.0, help="fp32 gates: largest allowed logit difference.")
    ] = 1e-4,
    min_agreement: Annotated[
        float | None,
        typer.Option("--min-agreement", min=0.0, max=1.0, help="Top-1 agreement every gate needs."),
    ] = None,
    max_int8_drop: Annotated[
        float, typer.Option("--max-int8-drop", min=0.0, help="INT8 gate: allowed top-1 drop vs fp32, points.")
    ] = 1.0,
    int8_fallback: Annotated[
        str | None, typer.Option("--int8-fallback", help="fp32: ship fp32 when INT8 is not faster.")
    ] = None,
    bench_runs: Annotated[int, typer.Option("--runs", min=1, max=100_000, help="Timed runs per process.")] = 50,
    bench_rounds: Annotated[int, typer.Option("--rounds", min=1, max=100, help="Fresh benchmark processes.")] = 3,
    remote_python: Annotated[
        str, typer.Option("--remote-python", help="With --host: the box's Python that has lgdeploy.")
    ] = "python3",
    ssh_option: Annotated[
        list[str] | None, typer.Option("--ssh-option", help="With --host: extra ssh -o KEY=VALUE (repeatable).")
    ] = None,
) -> None:
    """Check every hash, compile for the profile's runtime, gate against the shipped PyTorch logits, benchmark in
    fresh processes and add the compiled files to the manifest in one atomic step (a failure changes nothing)."""
    from learngene_deploy.api import Artifact
    from learngene_deploy.errors import ConfigError
    from learngene_deploy.pipeline.options import BuildOptions

    if host is None and (remote_python != "python3" or ssh_option):
        raise ConfigError("--remote-python and --ssh-option only apply with --host; add --host user@host or drop them.")
    if int8_fallback not in (None, "fp32"):
        raise ConfigError(f"--int8-fallback must be fp32 (or left unset), not {int8_fallback!r}.")
    console = stderr()
    start = time.perf_counter()

    def log(stage: str, message: str) -> None:
        console.print(
            f"[green]✓[/green] [bold]{stage:<9}[/bold] {escape(message)} "
            f"[dim]({time.perf_counter() - start:.0f} s)[/dim]",
            markup=True,
        )

    if host is not None:
        from learngene_deploy.remote.ssh import compile_over_ssh

        compile_over_ssh(
            artifact,
            host,
            force=force,
            profile=profile,
            remote_python=remote_python,
            ssh_options=ssh_option or (),
            options=_options(max_abs_diff, min_agreement, max_int8_drop, int8_fallback, bench_runs, bench_rounds),
            log=lambda line: log("remote", line),
        )
    else:
        from learngene_deploy.pipeline.deferred import compile_artifact

        opts = BuildOptions(
            profile="",
            max_abs=max_abs_diff,
            min_agreement=min_agreement,
            max_int8_drop=max_int8_drop,
            int8_fallback=int8_fallback,
            bench_runs=bench_runs,
            bench_rounds=bench_rounds,
        )
        compile_artifact(artifact, opts, profile=profile, force=force, log=log)
    done = Artifact(artifact).manifest
    stats, record = done.get("benchmark") or {}, done["compile"]
    where = done["deferred"]["completed"]["host"].get("hostname")
    typer.echo(
        f"{artifact}: {done['status']}; {record['backend']} {record['precision']}, "
        f"p50 {stats.get('p50_ms', float('nan')):.3g} ms, p90 {stats.get('p90_ms', float('nan')):.3g} ms on {where}"
    )


def _options(
    max_abs: float, min_agreement: float | None, max_int8_drop: float, fallback: str | None, runs: int, rounds: int
) -> list[str]:
    """The gate and benchmark flags, as the box's `lgdeploy compile` takes them."""
    argv = ["--max-abs-diff", repr(max_abs), "--max-int8-drop", repr(max_int8_drop)]
    argv += ["--runs", str(runs), "--rounds", str(rounds)]
    if min_agreement is not None:
        argv += ["--min-agreement", repr(min_agreement)]
    if fallback is not None:
        argv += ["--int8-fallback", fallback]
    return argv
