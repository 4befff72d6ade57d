"""`lgdeploy select --profile P [--learngene F] [--json]`: which size of a learngene fits a device, and why."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer

from learngene_deploy.cli._console import stdout


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by null: JSON has no NaN, and scripts parse this output."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def select_command(
    profile: Annotated[str, typer.Option("--profile", "-p", help="Shipped profile name or path to a .yaml file.")],
    learngene: Annotated[
        str | None, typer.Option("--learngene", "-l", help="Learngene file or shipped name; default: the shipped one.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"chosen": {...}, "candidates": [...]} for scripts.')
    ] = False,
) -> None:
    """Predict memory, latency and accuracy of every size a learngene offers, and choose one for a device."""
    from learngene_deploy.learngene.io import read_metadata
    from learngene_deploy.profile import load_profile
    from learngene_deploy.shipped import resolve_learngene
    from learngene_deploy.sizing.candidates import candidates_from_metadata
    from learngene_deploy.sizing.select import select

    p = load_profile(profile)
    path = resolve_learngene(learngene)
    selection = select(candidates_from_metadata(read_metadata(path)), p)
    if as_json:
        typer.echo(json.dumps(finite({"learngene": str(path), **selection.to_dict()}), indent=2, allow_nan=False))
        return
    from rich.table import Table

    b = p.budgets
    table = Table(
        title=(
            f"{p.name}: budgets {b.latency_ms:g} ms p{b.percentile}, {b.memory_mb:g} MB memory, "
            f"{b.model_size_mb:g} MB model, batch {b.batch} ({p.runtime.backend} {p.runtime.precision})"
        ),
        title_justify="left",
    )
    for header, justify in (
        ("", "left"),
        ("size", "left"),
        ("params", "right"),
        ("GFLOP", "right"),
        ("model MB", "right"),
        ("memory MB", "right"),
        ("latency ms", "right"),
        ("accuracy", "right"),
        ("fits", "left"),
    ):
        table.add_column(header, justify=justify, no_wrap=header != "fits")
    chosen = selection.chosen
    for pred in selection.predictions:
        mark = ("►" if pred is chosen else " ") + ("*" if pred.pareto else " ")
        acc = pred.candidate.accuracy
        table.add_row(
            mark,
            pred.candidate.label,
            f"{pred.params / 1e6:.3f}M",
            f"{pred.flops / 1e9:.3g}",
            f"{pred.weight_mb:.2f}",
            f"{pred.memory_mb:.2f}",
            f"{pred.latency_ms:.3g} ({pred.latency_source}"
            + (f", {pred.latency_runtime})" if pred.latency_runtime else ")"),
            "—" if acc is None else f"{100 * acc:.2f}%",
            "yes" if pred.fits else "no: " + "; ".join(pred.misses),
            style="bold green" if pred is chosen else None,
        )
    console = stdout()
    console.print(table)
    console.print("► chosen   * on the Pareto front (accuracy, else parameters, against latency)")
    console.print(
        f"chosen: {chosen.candidate.label} ({chosen.params / 1e6:.3f}M parameters, "
        f"{chosen.latency_ms:.3g} ms predicted"
        + (f" with {chosen.latency_runtime}" if chosen.latency_runtime else "")
        + ", "
        + (
            "accuracy unknown"
            if chosen.candidate.accuracy is None
            else f"{100 * chosen.candidate.accuracy:.2f}% direct"
        )
        + ")"
    )
    for note in selection.notes:
        console.print(f"note: {note}")
