"""Files that travel with the package: the shipped learngenes (package data in ``learngene_deploy/learngenes``)."""

from __future__ import annotations

from pathlib import Path

from learngene_deploy.errors import LearngeneError

SHIPPED_LEARNGENES = Path(__file__).resolve().parent / "learngenes"
# The default learngene is the first of these that is installed.
DEFAULT_ORDER = ("lets-fashion-mnist", "ldr-fashion-mnist")


def list_shipped_learngenes() -> dict[str, Path]:
    """Shipped learngene files by name (file stem)."""
    if not SHIPPED_LEARNGENES.is_dir():
        return {}
    return {p.stem: p for p in sorted(SHIPPED_LEARNGENES.glob("*.safetensors"))}


def default_learngene() -> Path:
    """The learngene used when a command gets no ``--learngene``."""
    shipped = list_shipped_learngenes()
    for name in DEFAULT_ORDER:
        if name in shipped:
            return shipped[name]
    if shipped:
        return next(iter(shipped.values()))
    msg = (
        "no --learngene was given and this installation ships none; pass --learngene FILE "
        "(train one with `lgdeploy train ldr` or `lgdeploy train lets`)."
    )
    raise LearngeneError(msg)


def resolve_learngene(ref: str | Path | None) -> Path:
    """A shipped learngene name, a file path, or None for the default."""
    if ref is None:
        return default_learngene()
    shipped = list_shipped_learngenes()
    if str(ref) in shipped:
        return shipped[str(ref)]
    path = Path(ref)
    if not path.exists():
        names = ", ".join(shipped) or "none in this installation"
        msg = (
            f"learngene file {ref} does not exist and is not a shipped learngene; pass the path of a .safetensors "
            f"file written by lgdeploy, or a shipped name ({names})."
        )
        raise LearngeneError(msg)
    return path
