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


def label(candidate: dict[str, Any]) -> str:
    """A size as the table shows it, e.g. ``depth=6 width=64``."""
    return " ".join(f"{k}={v}" for k, v in candidate["size"].items())


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
    from learngene_deploy.api import select
    from learngene_deploy.profile import load_profile

    p = load_profile(profile)
    selection = select(p, learngene)
    if as_json:
        typer.echo(json.dumps(finite(selection.to_dict()), indent=2, allow_nan=False))
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
    for c in selection.candidates:
        mark = ("►" if c == chosen else " ") + ("*" if c["pareto"] else " ")
        runtime = c.get("latency_runtime")
        table.add_row(
            mark,
            label(c),
            f"{c['params'] / 1e6:.3f}M",
            f"{c['gflops']:.3g}",
            f"{c['weight_mb']:.2f}",
            f"{c['memory_mb']:.2f}",
            f"{c['latency_ms']:.3g} ({c['latency_source']}" + (f", {runtime})" if runtime else ")"),
            "—" if c["accuracy"] is None else f"{100 * c['accuracy']:.2f}%",
            "yes" if c["fits"] else "no: " + "; ".join(c["misses"]),
            style="bold green" if c == chosen else None,
        )
    console = stdout()
    console.print(table)
    console.print("► chosen   * on the Pareto front (accuracy, else parameters, against latency)")
    runtime = chosen.get("latency_runtime")
    console.print(
        f"chosen: {label(chosen)} ({chosen['params'] / 1e6:.3f}M parameters, {chosen['latency_ms']:.3g} ms predicted"
        + (f" with {runtime}" if runtime else "")
        + ", "
        + ("accuracy unknown" if chosen["accuracy"] is None else f"{100 * chosen['accuracy']:.2f}% direct")
        + ")"
    )
    for note in selection.notes:
        console.print(f"note: {note}")
