"""The ``lgdeploy`` command line: a thin typer shell over the pipeline stages.

Each command group lives in its own module and imports its stage inside the command body, so
``lgdeploy --help`` and ``lgdeploy profiles list`` never import torch, onnx or a runtime.
Errors raised on purpose (``LgdError``) print one sentence to stderr and exit non-zero;
tracebacks appear only with ``--debug`` (or ``LGDEPLOY_DEBUG=1``).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from learngene_deploy._version import __version__
from learngene_deploy.errors import LgdError

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in lgdeploy, not a user error


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI runner cancelling, `kill`, `timeout`): unwound exactly like Ctrl-C, so nothing half-written is
    marked complete."""


def _on_sigterm(signum: int, frame: Any) -> None:
    del signum, frame
    raise Terminated


# Recent typer vendors its own click: its usage errors (an option out of range, say) are not click's classes.
_TYPER_USAGE_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _debug_enabled(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get("LGDEPLOY_DEBUG", "") not in ("", "0")


def error(message: str) -> None:
    """Print one error sentence to stderr (no markup interpretation; a terminal that cannot encode a character of a
    path still gets the sentence, with that character escaped)."""
    line = f"error: {message}"
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    try:
        line.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        line = line.encode(encoding, "backslashreplace").decode(encoding, "replace")
    click.echo(line, err=True)


class _LgdGroup(TyperGroup):
    """Root command group: turns LgdError into one stderr sentence and a non-zero exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.Abort, *_TYPER_USAGE_ERRORS):
            raise
        except LgdError as e:
            if _debug_enabled(ctx):
                raise
            error(str(e))
            raise typer.Exit(code=e.exit_code) from None
        except BrokenPipeError:  # `lgdeploy ... | head`: the reader left, nothing more to say
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(code=141) from None
        except KeyboardInterrupt as e:
            if isinstance(e, Terminated):
                error("terminated (SIGTERM); nothing half-written is marked complete.")
                raise typer.Exit(code=143) from None
            error("interrupted; nothing half-written is marked complete.")
            raise typer.Exit(code=130) from None
        except Exception as e:  # a bug: say so plainly, keep the traceback for --debug
            if _debug_enabled(ctx):
                raise
            from learngene_deploy.errors import EDQUOT, os_error_message

            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, EDQUOT):  # the machine's state, not a bug
                error(os_error_message(e, e.filename or "a file"))
                raise typer.Exit(code=1) from None
            if isinstance(e, OSError) and e.errno in (errno.ENAMETOOLONG, errno.ELOOP):  # a path the user gave
                why = "is longer than this file system allows" if e.errno == errno.ENAMETOOLONG else "loops (symlinks)"
                error(f"the path {e.filename or ''} {why}; use a shorter path without symlink cycles.")
                raise typer.Exit(code=1) from None
            error(
                f"internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback "
                "and report it with that output."
            )
            raise typer.Exit(code=EXIT_INTERNAL) from None


app = typer.Typer(
    name="lgdeploy",
    cls=_LgdGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Train once, deploy everywhere: recompose ViTs from learngenes and build verified per-device artifacts.",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lgdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Train once, deploy everywhere: recompose ViTs from learngenes and build verified per-device artifacts."""


def _register() -> None:
    """Commands in the order of the workflow: build first, then the steps users run on their own."""
    from learngene_deploy.cli import artifacts, build, compile, learngene, matrix, profiles, select, train

    app.command("build")(build.build_command)
    app.command("compile")(compile.compile_command)
    app.command("select")(select.select_command)
    app.command("bench")(artifacts.bench_command)
    app.command("verify")(artifacts.verify_command)
    app.command("predict")(artifacts.predict_command)
    app.command("matrix")(matrix.matrix_command)
    app.add_typer(profiles.app, name="profiles")
    app.add_typer(train.app, name="train")
    app.add_typer(learngene.app, name="learngene")


_register()


def main() -> None:
    """Console-script entry point (``lgdeploy``)."""
    import signal

    for stream in (sys.stdout, sys.stderr):  # an ASCII-only terminal still prints a non-ASCII path, escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    signal.signal(signal.SIGTERM, _on_sigterm)
    app(prog_name="lgdeploy")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
