"""Rich consoles for the CLI: results on stdout, progress and errors on stderr.

Markup is off: paths, profile descriptions and class names are user text, and ``[/]`` in one must print as it is
(not raise a MarkupError). A line that wants colour passes ``markup=True`` and escapes the user text in it.
"""

from __future__ import annotations

import sys

from rich.console import Console

# Piped output (CI logs, `| less`, tests) gets a wide fixed width instead of rich's 80-column fallback,
# so tables are not squeezed into unreadable columns.
_PIPE_WIDTH = 160


def stdout() -> Console:
    """A console on the current sys.stdout (created per call so test runners' redirection is honoured)."""
    return Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else _PIPE_WIDTH)


def stderr() -> Console:
    """A console on the current sys.stderr, for progress bars and spinners."""
    return Console(stderr=True, highlight=False, markup=False, width=None if sys.stderr.isatty() else _PIPE_WIDTH)
