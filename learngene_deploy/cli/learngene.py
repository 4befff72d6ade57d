"""`lgdeploy learngene info FILE`: what a learngene file holds (method, architecture, sizes, accuracy table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, help="Inspect learngene files.")

_ROW_KEYS = ("params", "top1")


def _accuracy_table(rows: list[dict[str, Any]]) -> Any:
    """A rich table: depth × learngene count when rows have exactly two size keys, else one row per size."""
    from rich.table import Table

    keys = [k for k in rows[0] if k not in _ROW_KEYS]
    if len(keys) == 2:
        first, second = keys
        cols = sorted({r.get(second) for r in rows}, key=_order)
        table = Table()
        table.add_column(first, justify="right")
        for c in cols:
            table.add_column(f"{second}={c}", justify="right")
        cells = {(r.get(first), r.get(second)): _percent(r.get("top1")) for r in rows}
        for value in sorted({r.get(first) for r in rows}, key=_order):
            table.add_row(str(value), *(cells.get((value, c), "") for c in cols))
        return table
    table = Table()
    for k in [*keys, "params", "top1"]:
        table.add_column(k, justify="right")
    for r in rows:
        params = r.get("params")
        table.add_row(*(str(r.get(k)) for k in keys), "—" if params is None else f"{params:,}", _percent(r.get("top1")))
    return table


def _order(value: Any) -> tuple[bool, float, str]:
    """Sort key for a table axis: numbers in numeric order, then anything else (null) by its text."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (not number, value if number else 0.0, str(value))


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


@app.command("info")
def info(
    file: Annotated[Path, typer.Argument(help="Learngene .safetensors file, or a shipped learngene's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full metadata as JSON.")] = False,
) -> None:
    """Show a learngene's method, basis, architecture, supported sizes and accuracy table."""
    from learngene_deploy.learngene.io import read_metadata
    from learngene_deploy.shipped import resolve_learngene

    meta = read_metadata(resolve_learngene(file))
    if as_json:
        from learngene_deploy.cli.select import finite

        typer.echo(json.dumps(finite(meta), indent=2, allow_nan=False))  # JSON has no NaN; scripts parse this
        return
    from rich.markup import escape

    from learngene_deploy.cli._console import stdout

    console = stdout()  # markup off: everything below is text from the file
    gen = meta["generator"]
    arch = meta["arch"]
    training = meta.get("training") or {}
    data = training.get("data") if isinstance(training.get("data"), dict) else {}
    console.print(
        f"[bold]{escape(str(file))}[/bold]  (format {meta['format_version']}, lgdeploy "
        f"{escape(str(meta.get('toolkit_version', '?')))})",
        markup=True,
    )
    details = ", ".join(f"{k} {v}" for k, v in gen.items() if k != "arch")
    console.print(f"method      {meta['method']}: {details}")
    console.print(
        f"arch        D={arch['embed_dim']} heads={arch['num_heads']} depth={arch['depth']} patch={arch['patch_size']} "
        f"img={arch['img_size']} in_chans={arch['in_chans']} classes={arch['num_classes']} "
        f"layout={arch.get('layout', 'avg')}"
    )
    console.print(f"sizes       {json.dumps(meta.get('sizes'))}")
    if data:
        console.print(
            f"data        {data.get('name')} ({data.get('train_size')} train / {data.get('val_size')} val, "
            f"fingerprint {data.get('fingerprint')})"
        )
    if training:
        console.print(
            f"training    teacher {training.get('teacher')}, seed {training.get('seed')}, "
            f"{training.get('steps')} steps, "
            f"{training.get('wall_time_s')} s on {training.get('world_size')}×{training.get('device')}"
        )
    if meta.get("accuracy"):
        console.print("accuracy    direct top-1 % on the validation split (no fine-tuning)")
        console.print(_accuracy_table(meta["accuracy"]))
    else:
        console.print("accuracy    (no table stored)")
