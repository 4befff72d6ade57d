"""`lgdeploy profiles list | show | validate`: inspect and check device profiles.

Nothing here imports torch: profiles are plain YAML validated by a small schema.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from learngene_deploy.cli._console import stdout
from learngene_deploy.errors import ProfileError
from learngene_deploy.sizing.calibrate import DEFAULT_FRONT_SIZES

app = typer.Typer(no_args_is_help=True, help="List, show and validate device profiles.")

_JSON = typer.Option("--json", help="Print JSON instead of a table.")


def _latency_label(p: Any) -> str:
    return f"{p.budgets.latency_ms:g} ms p{p.budgets.percentile}"


@app.command("list")
def list_(as_json: Annotated[bool, _JSON] = False) -> None:
    """List the shipped device profiles."""
    from learngene_deploy.families import FAMILIES
    from learngene_deploy.profile import list_profiles, load_profile

    profiles = [load_profile(name) for name in list_profiles()]
    family_of = {member: f.name for f in FAMILIES.values() for member in f.profiles}
    if as_json:
        rows = [
            {
                "name": p.name,
                "device": p.device.name,
                "backend": p.runtime.backend,
                "precision": p.runtime.precision,
                "latency_ms": p.budgets.latency_ms,
                "percentile": p.budgets.percentile,
                "memory_mb": p.budgets.memory_mb,
                "host": p.host,
                "family": family_of.get(p.name),
            }
            for p in profiles
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="Shipped device profiles", title_justify="left")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("device")
    table.add_column("runtime", no_wrap=True)
    table.add_column("precision", no_wrap=True)
    table.add_column("latency budget", no_wrap=True, justify="right")
    table.add_column("memory budget", no_wrap=True, justify="right")
    for p in profiles:
        runtime = p.runtime.backend + (f" ({p.runtime.device})" if p.runtime.device else "")
        table.add_row(
            p.name,
            p.device.name,
            runtime,
            p.runtime.precision,
            _latency_label(p),
            f"{p.budgets.memory_mb:g} MB",
        )
    stdout().print(table)
    families = Table(title="Device families (--profile FAMILY: this machine's module, else every member)")
    families.title_justify = "left"
    families.add_column("family", no_wrap=True, style="bold")
    families.add_column("profiles")
    families.add_column("description")
    for f in FAMILIES.values():
        families.add_row(f.name, ", ".join(f.profiles), f.description)
    stdout().print(families)
    typer.echo("Show one with `lgdeploy profiles show NAME`; use your own with a path to a .yaml file.")


def _rows(obj: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """Flatten a profile into (dotted key, value, meaning) rows."""
    from learngene_deploy._schema import loaded_fields

    rows: list[tuple[str, str, str]] = []
    for f in loaded_fields(type(obj)):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            rows.extend(_rows(value, f"{key}."))
        else:
            if value is None:
                text = "null"
            elif isinstance(value, bool):
                text = str(value).lower()
            elif isinstance(value, float):
                text = f"{value:g}"
            else:
                text = str(value)
            rows.append((key, text, f.metadata.get("help", "")))
    return rows


@app.command("show")
def show(
    profile: Annotated[str, typer.Argument(help="A shipped profile name, a device family or a path to a .yaml file.")],
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Show every field of one profile, with what it means (for a device family: its profiles)."""
    from learngene_deploy.families import is_family
    from learngene_deploy.profile import load_profile

    if is_family(profile):
        show_family(profile, as_json)
        return
    p = load_profile(profile)
    if as_json:
        typer.echo(json.dumps({**p.to_dict(), "source": p.source, "sha256": p.sha256}, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{p.name}: {p.description}", title_justify="left")
    table.add_column("key", no_wrap=True, style="bold")
    table.add_column("value")
    table.add_column("meaning", style="dim")
    for key, value, meaning in _rows(p):
        if key in ("name", "description"):
            continue
        table.add_row(key, value, meaning)
    stdout().print(table)
    typer.echo(f"source: {p.source}\nsha256: {p.sha256}")


def show_family(name: str, as_json: bool) -> None:
    """Print a device family: its profiles and what ``--profile NAME`` resolves to on this machine."""
    from learngene_deploy.errors import LgdError
    from learngene_deploy.families import FAMILIES, resolve_family
    from learngene_deploy.profile import load_profile

    family = FAMILIES[name]
    try:
        expansion = resolve_family(name)
        here = {"profiles": list(expansion.profiles), "reason": expansion.reason}
    except LgdError as e:  # a device of the line whose module is not a member: say so, still show the family
        here = {"profiles": [], "reason": str(e)}
    members = [load_profile(m) for m in family.profiles]
    if as_json:
        rows = [{"name": p.name, "device": p.device.name, "backend": p.runtime.backend} for p in members]
        doc = {"family": name, "description": family.description, "profiles": rows, "on_this_machine": here}
        typer.echo(json.dumps(doc, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{name}: device family, {family.description}", title_justify="left")
    table.add_column("profile", no_wrap=True, style="bold")
    table.add_column("device")
    table.add_column("runtime", no_wrap=True)
    table.add_column("latency budget", no_wrap=True, justify="right")
    for p in members:
        table.add_row(p.name, p.device.name, f"{p.runtime.backend} {p.runtime.precision}", _latency_label(p))
    stdout().print(table)
    resolved = ", ".join(here["profiles"]) or "nothing"
    typer.echo(f"--profile {name} on this machine: {resolved} ({here['reason']})")
    typer.echo(f"Show a profile with `lgdeploy profiles show {family.profiles[0]}`.")


@app.command("validate")
def validate(
    files: Annotated[list[str], typer.Argument(help="Profile files (.yaml) or shipped names to check.")],
) -> None:
    """Check profile files; exit 0 when all are valid, non-zero with the reason otherwise."""
    from learngene_deploy.cli import error
    from learngene_deploy.profile import load_profile

    failed = 0
    for file in files:
        try:
            p = load_profile(str(file))
        except ProfileError as e:
            error(str(e))
            failed += 1
            continue
        typer.echo(
            f"ok: {file} is a valid profile '{p.name}' ({p.runtime.backend} {p.runtime.precision}, "
            f"{_latency_label(p)}, {p.budgets.memory_mb:g} MB)"
        )
    if failed:
        raise typer.Exit(code=1)


DRIFT_WARNING = 0.10  # warn above this speed change between calibration passes (a quiet machine: a few %)


def _check_table_out(target: Path) -> Path:
    """Refuse, before any calibration, a ``--out`` that is not a new file or a latency table lgdeploy wrote."""
    from learngene_deploy.sizing.latency import LatencyTable

    if not target.name or target.is_dir():
        msg = f"--out {target} is a directory; pass a file name for the table, e.g. --out {target / 'latency.json'}."
        raise ProfileError(msg)
    if not target.parent.is_dir():
        raise ProfileError(f"cannot write {target}: directory {target.parent} does not exist; create it first.")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise ProfileError(f"--out {target} is not a regular file; pass a new file name for the latency table.")
    if target.exists():
        try:
            LatencyTable.load(target)
        except ProfileError:
            msg = (
                f"--out {target} exists and is not an lgdeploy latency table, so calibrate will not overwrite it; "
                "pass a new file name (a table lgdeploy wrote is replaced)."
            )
            raise ProfileError(msg) from None
    return target


@app.command("calibrate")
def calibrate(
    profile: Annotated[str, typer.Argument(help="Shipped profile name or path to a .yaml file.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Latency table file to write (.json).")],
    learngene: Annotated[
        str | None, typer.Option("--learngene", "-l", help="Learngene whose sizes are timed (default: shipped).")
    ] = None,
    sizes: Annotated[
        int, typer.Option("--sizes", min=5, max=1000, help="Distinct sizes to time for the fit (spread over FLOPs).")
    ] = 12,
    front: Annotated[
        int,
        typer.Option(
            "--front",
            min=0,
            max=1000,
            help="At most this many more sizes, on the predicted Pareto front (the sizes selection can choose), "
            "timed after the spread in up to three passes; 0 skips them.",
        ),
    ] = DEFAULT_FRONT_SIZES,
    runs: Annotated[int, typer.Option("--runs", min=5, max=100_000, help="Timed runs per process.")] = 50,
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, max=100, help="Fresh processes per size (the lowest p50/p90/p99 is kept).")
    ] = 3,
    confidence: Annotated[
        float,
        typer.Option(
            "--confidence",
            min=0.5,
            max=0.999,
            help="Chance that a selected size meets its latency budget; sets the table's guard band.",
        ),
    ] = 0.9,
    with_fp32: Annotated[
        bool,
        typer.Option(
            "--with-fp32",
            help="For an int8 profile, also measure each runtime at fp32, so builds for this device can check that "
            "INT8 is faster than fp32 (the INT8 speed gate) from the device's own tables.",
        ),
    ] = False,
) -> None:
    """Measure this machine (run it on the target) with the profile's runtime and write a latency table."""
    from learngene_deploy.cli._console import stderr
    from learngene_deploy.learngene.io import read_metadata
    from learngene_deploy.models.vit import ArchSpec
    from learngene_deploy.profile import load_profile
    from learngene_deploy.shipped import resolve_learngene
    from learngene_deploy.sizing.calibrate import calibrate_tables as run_calibration
    from learngene_deploy.sizing.candidates import candidates_from_metadata
    from learngene_deploy.sizing.latency import save_tables

    p = load_profile(profile)
    target = _check_table_out(Path(out))
    candidates = candidates_from_metadata(read_metadata(resolve_learngene(learngene)))
    console = stderr()
    console.print(f"calibrating {p.name}: {p.runtime.backend} {p.runtime.precision}, threads {p.threads_label}")
    if with_fp32 and p.runtime.precision == "fp32":
        raise ProfileError(f"--with-fp32 adds fp32 twins to an int8 or fp16 profile, but {p.name} is already fp32.")

    def progress(line: str) -> None:
        console.print(f"  {line}")

    tables = run_calibration(
        p,
        candidates,
        with_fp32=with_fp32,
        sizes=sizes,
        front=front,
        runs=runs,
        rounds=rounds,
        confidence=confidence,
        progress=progress,
    )
    save_tables(tables, target)
    several = len(tables) > 1
    summaries = []
    for table in tables:
        label = f"{table.backend} {table.precision}: " if several else ""
        for pt in table.points:
            console.print(
                f"  {label}{ArchSpec.from_dict(pt['arch']).name}: p50 {pt['p50_ms']:.3g} ms, "
                f"p90 {pt['p90_ms']:.3g} ms, p99 {pt['p99_ms']:.3g} ms"
            )
        err = table.fit_error
        on_front = sum(pt.get("pass") == "front" for pt in table.points)
        summaries.append(
            f"{label}{len(table.points)} sizes measured ({on_front} more on the predicted Pareto front), "
            f"fit error median {100 * err['median_rel']:.1f}%, "
            f"max {100 * err['max_rel']:.1f}%, latency guard band {100 * table.margin:.0f}% "
            f"(for {confidence:.0%} of selected sizes to meet their budget)"
        )
    typer.echo(
        f"wrote {target}: {'; '.join(summaries)}; add `latency_table: {target.name}` to the profile (path relative "
        "to it)."
    )
    drift = max((t.drift for t in tables if t.drift is not None), default=None)
    if drift is not None and drift > DRIFT_WARNING:
        console.print(
            f"warning: this machine's speed moved by {100 * drift:.0f}% between calibration passes (other "
            "load or throttling); the guard band cannot see such drift, so re-run the calibration when it is idle."
        )
