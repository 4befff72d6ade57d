"""`lgdeploy select --profile P [--learngene F] [--size KEY=INT,...] [--json]`: which size of a learngene fits a
device, and why."""

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
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            "-p",
            help="Shipped profile name, device family (this machine's module, else every member) or a .yaml file.",
        ),
    ],
    learngene: Annotated[
        str | None, typer.Option("--learngene", "-l", help="Learngene file or shipped name; default: the shipped one.")
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            help="Predict this size instead of choosing one: KEY=INT pairs, e.g. depth=6,width=64 (LeTs) or "
            "depth=6,genes=4 (LDR).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"chosen": {...}, "candidates": [...]} for scripts; for a device family, an object of those '
            "keyed by profile name.",
        ),
    ] = False,
) -> None:
    """Predict memory, latency and accuracy of every size a learngene offers, and choose one for a device."""
    from learngene_deploy.api import load_learngene, select
    from learngene_deploy.families import is_family, resolve_family
    from learngene_deploy.profile import load_profile
    from learngene_deploy.sizing.candidates import parse_size

    pinned = None if size is None else parse_size(size)
    if not is_family(profile):
        p = load_profile(profile)
        selection = select(p, learngene, size=pinned)
        if as_json:
            typer.echo(json.dumps(finite(selection.to_dict()), indent=2, allow_nan=False))
        else:
            show(p, selection)
        return
    expansion = resolve_family(profile)
    typer.echo(expansion.line, err=True)
    lg = load_learngene(learngene)
    selections = {name: select(load_profile(name), lg, size=pinned) for name in expansion.profiles}
    if as_json:
        keyed = {name: finite(s.to_dict()) for name, s in selections.items()}
        typer.echo(json.dumps(keyed, indent=2, allow_nan=False))
        return
    for name, selection in selections.items():
        show(load_profile(name), selection)


def show(p: Any, selection: Any) -> None:
    """Print one profile's candidate table, the choice (or the pinned size) and the notes."""
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
    what = "pinned" if selection.pinned else "chosen"
    console.print(f"► {what}   * on the Pareto front (accuracy, else parameters, against latency)")
    runtime = chosen.get("latency_runtime")
    fits = "" if not selection.pinned else (", fits every budget" if chosen["fits"] else ", misses a budget")
    console.print(
        f"{what}: {label(chosen)} ({chosen['params'] / 1e6:.3f}M parameters, {chosen['latency_ms']:.3g} ms predicted"
        + (f" with {runtime}" if runtime else "")
        + ", "
        + ("accuracy unknown" if chosen["accuracy"] is None else f"{100 * chosen['accuracy']:.2f}% direct")
        + f"{fits})"
    )
    for note in selection.notes:
        console.print(f"note: {note}")
