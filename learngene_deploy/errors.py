"""One error hierarchy for everything a user can get wrong.

Every message is one sentence that says what is wrong, what is valid and how to fix it.
The CLI prints ``str(error)`` to stderr and exits non-zero; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import errno
from pathlib import Path

EDQUOT = getattr(errno, "EDQUOT", errno.ENOSPC)  # quota exceeded (absent on some platforms)


class LgdError(Exception):
    """Base class of every error the toolkit raises on purpose."""

    exit_code = 1


class ProfileError(LgdError):
    """A device profile is missing, malformed or impossible."""


class LearngeneError(LgdError):
    """A learngene file is missing, corrupt or inconsistent with its metadata."""


class DataError(LgdError):
    """A dataset source cannot be read or is unusable."""


class ConfigError(LgdError):
    """An option or a combination of options is invalid."""


class SelectionError(LgdError):
    """No candidate size fits the profile's budgets."""


class ExportError(LgdError):
    """Exporting, simplifying or compiling a model failed."""


class VerificationError(LgdError):
    """A numeric check between two stages failed its tolerance."""


class BackendUnavailableError(LgdError):
    """A runtime backend is not installed on this machine."""


class RemoteError(LgdError):
    """A remote device cannot be reached, lacks a tool, or its benchmark failed."""


class ArtifactError(LgdError):
    """An artifact directory is incomplete, tampered with or cannot be written."""


def os_error_message(e: OSError, where: str | Path) -> str:
    """One sentence for a failed write to ``where`` (an output the user chose with --out)."""
    if e.errno in (errno.ENOSPC, EDQUOT):
        why = "no space left on the device" if e.errno == errno.ENOSPC else "the disk quota is exhausted"
        return f"{why} while writing {where}; free some disk space or choose another --out."
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write to {where} ({e.strerror}); choose a writable --out directory."
    return f"cannot write {where} ({e.strerror or e}); check the path and try again."
