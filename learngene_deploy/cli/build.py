"""`lgdeploy build`: one verified, benchmarked artifact per device profile."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from learngene_deploy.cli._console import stderr

MAX_FINETUNE_STEPS = 1_000_000  # a brief fine-tune is hundreds of steps; more is a typo, refused before any work


def expand_profiles(names: list[str], say: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """``names`` with every device family replaced by the profiles it resolves to on this machine (each resolution
    said in one line), and for each resulting profile the ``--profile`` it came from."""
    from learngene_deploy.families import expand

    expanded: list[str] = []
    origins: list[str] = []
    for name in names:
        profiles, expansions = expand([name])
        for expansion in expansions:
            say(expansion.line)
        expanded.extend(profiles)
        origins.extend(name if p == name else f"{p} (of family {name})" for p in profiles)
    return expanded, origins


def _targets(
    names: list[str],
    out: Path | None,
    backend: str | None,
    precision: str | None,
    force: bool,
    origins: list[str] | None = None,
) -> list[Path]:
    """Each profile's output directory, all checked before any work: no two profiles share one, and none is a
    directory that must not be written or replaced (:func:`~learngene_deploy.artifact.writer.check_output`).

    ``names`` are profiles (families already expanded); ``origins`` names each as the user gave it, for messages."""
    from learngene_deploy.artifact.writer import check_output
    from learngene_deploy.errors import ConfigError
    from learngene_deploy.profile import resolve_profile

    origins = origins or names
    targets: list[Path] = []
    seen: list[Path] = []
    for name, origin in zip(names, origins, strict=True):
        if out is not None and len(names) == 1:
            target = out
        elif out is not None:
            target = out / Path(name).stem
        else:
            target = Path("artifacts") / resolve_profile(name, backend, precision).name
        if target.resolve() in seen:
            other = origins[seen.index(target.resolve())]
            msg = (
                f"--profile {origin} and --profile {other} would both write {target}; pass each profile once, or "
                "build them one at a time with different --out directories."
            )
            raise ConfigError(msg)
        check_output(target, force=force)
        targets.append(target)
        seen.append(target.resolve())
    return targets


def build_command(
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            "-p",
            help="Shipped profile name, device family (e.g. jetson-orin: this machine's module, else every member) "
            "or .yaml path (repeatable).",
        ),
    ] = None,
    all_profiles: Annotated[bool, typer.Option("--all", help="Build every shipped profile.")] = False,
    learngene: Annotated[
        str | None,
        typer.Option("--learngene", "-l", help="Learngene file or shipped name (default: the shipped one)."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Fine-tune data: digits, fashion-mnist, or a directory (ImageFolder with a sub-folder per class, "
            "the four IDX files, or a Hugging Face save_to_disk directory); default: fashion-mnist if installed, "
            "else digits.",
        ),
    ] = None,
    finetune_steps: Annotated[
        int | None,
        typer.Option(
            "--finetune-steps",
            min=1,
            max=MAX_FINETUNE_STEPS,
            help="Optimiser steps of the brief fine-tune (default 150).",
        ),
    ] = None,
    finetune_epochs: Annotated[
        float | None,
        typer.Option(
            "--finetune-epochs", min=0.0, max=1000.0, help="Fine-tune for this many passes over the data instead."
        ),
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            help="Pin the size instead of choosing it: KEY=INT pairs, e.g. depth=6,width=64 (LeTs) or depth=6,genes=4 "
            "(LDR); built even if it misses a budget (with a warning).",
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Override the profile's runtime: onnxruntime, openvino, tensorrt, or auto (host profiles: the "
            "fastest verified runtime installed here).",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option("--precision", help="Override the profile's precision: fp32, fp16, int8."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Artifact directory (default artifacts/<profile>; with several profiles, OUT/<profile>).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing artifact directory.")] = False,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            "--checkpoint-every",
            min=0,
            max=MAX_FINETUNE_STEPS,
            help="Checkpoint the fine-tune every N steps in .<out name>.work/ beside the output (0: only at the end); "
            "re-running the same command after a kill resumes from the last checkpoint.",
        ),
    ] = 50,
    exporter: Annotated[str, typer.Option("--exporter", help="ONNX exporter: dynamo or legacy.")] = "dynamo",
    simplifier: Annotated[str, typer.Option("--simplifier", help="onnxsim or onnxslim.")] = "onnxsim",
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Export with a dynamic batch axis.")] = False,
    max_abs_diff: Annotated[
        float, typer.Option("--max-abs-diff", min=0.0, help="fp32 gates: largest allowed logit difference.")
    ] = 1e-4,
    min_agreement: Annotated[
        float | None,
        typer.Option(
            "--min-agreement", min=0.0, max=1.0, help="Top-1 agreement every gate needs (default per precision)."
        ),
    ] = None,
    max_int8_drop: Annotated[
        float, typer.Option("--max-int8-drop", min=0.0, help="INT8 gate: allowed top-1 drop vs fp32, points.")
    ] = 1.0,
    int8_fallback: Annotated[
        str | None,
        typer.Option(
            "--int8-fallback",
            help="fp32: when INT8 is not faster than its fp32 twin, ship the fp32 model (and say so) instead of "
            "failing the build.",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=2**32 - 1, help="Seed of the fine-tune and data order.")
    ] = 0,
    finetune_lr: Annotated[
        float,
        typer.Option("--finetune-lr", help="Peak learning rate of the brief fine-tune (a positive number)."),
    ] = 3e-4,
    keep_finetuned: Annotated[
        bool,
        typer.Option(
            "--keep-finetuned",
            help="Ship the fine-tuned weights even when they score below the recomposed learngene's on the same "
            "validation images (by default the better ones ship, and the build says which).",
        ),
    ] = False,
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help="Fine-tune augmentation preset: auto (default: light on image folders and shards, none on the "
            "built-in datasets), light, deit or none.",
        ),
    ] = "auto",
    aug: Annotated[
        list[str] | None,
        typer.Option("--aug", help="Override one knob of the preset, KEY=VALUE (repeatable), e.g. --aug hflip=0."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=0, help="DataLoader worker processes (default: 0 in memory, else min(8, CPUs))."),
    ] = None,
    on_bad_image: Annotated[
        str,
        typer.Option("--on-bad-image", help="An unreadable image: error (stop, naming it) or skip (leave it out)."),
    ] = "error",
    defer_compile: Annotated[
        bool,
        typer.Option(
            "--defer-compile",
            help="Stop after export and verification: the artifact awaits `lgdeploy compile` on the target (this "
            "happens anyway when the profile's runtime is not installed here).",
        ),
    ] = False,
) -> None:
    """Recompose, fine-tune, export, simplify, verify, compile and benchmark a model for each device profile."""
    from learngene_deploy.api import build, build_options
    from learngene_deploy.errors import ConfigError
    from learngene_deploy.profile import list_profiles
    from learngene_deploy.sizing.candidates import parse_size

    if all_profiles and profile:
        raise ConfigError("pass either --profile (one or more) or --all, not both.")
    requested = list_profiles() if all_profiles else list(profile or [])
    if not requested:
        raise ConfigError("no profile given; pass --profile NAME (see `lgdeploy profiles list`) or --all.")
    pinned = None if size is None else parse_size(size)
    names, origins = expand_profiles(requested, lambda line: typer.echo(line, err=True))  # one line, never wrapped
    options = {
        "learngene": learngene,
        "data": data,
        "finetune_steps": finetune_steps,
        "finetune_epochs": finetune_epochs,
        "finetune_lr": finetune_lr,
        "keep_finetuned": keep_finetuned,
        "backend": backend,
        "precision": precision,
        "force": force,
        "checkpoint_every": checkpoint_every,
        "exporter": exporter,
        "simplifier": simplifier,
        "dynamic_batch": dynamic_batch,
        "max_abs": max_abs_diff,
        "min_agreement": min_agreement,
        "max_int8_drop": max_int8_drop,
        "int8_fallback": int8_fallback,
        "seed": seed,
        "recipe": recipe,
        "aug": tuple(aug or ()),
        "workers": workers,
        "on_bad_image": on_bad_image,
        "defer_compile": defer_compile,
        "size": pinned,
    }
    for name in names:  # every mistake refused before any output or work
        build_options(name, **options)
    targets = _targets(names, out, backend, precision, force, origins)

    console = stderr()
    for name, target in zip(names, targets, strict=True):
        start = time.perf_counter()

        def log(stage: str, message: str, _start: float = start) -> None:
            console.print(
                f"[green]✓[/green] [bold]{stage:<9}[/bold] {escape(message)} "
                f"[dim]({time.perf_counter() - _start:.0f} s)[/dim]",
                markup=True,
            )

        console.rule(f"lgdeploy build --profile {name}")
        artifact = build(name, out=target, log=log, **options)
        for skip in artifact.manifest.skipped:
            console.print(f"[yellow]skipped {escape(skip['stage'])}:[/yellow] {escape(skip['reason'])}", markup=True)
        typer.echo(str(artifact.path))
