"""Per-device artifact directories: written under a temporary name, renamed into place only when complete.

An artifact directory holds the model files, ``manifest.json`` (every file's sha256 and size, tool versions,
host facts, checks, benchmark, budgets) and a report. While a build runs, everything goes to a hidden sibling
``.NAME.partial-XXXX``; :meth:`ArtifactWriter.finalize` writes the manifest last and renames the directory.
A killed build therefore never leaves a directory that looks complete (a partial directory is refused by
``read_manifest`` even in the instant after its manifest was written, and the next build of NAME removes it),
and ``verify_artifact`` detects any file changed after the fact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from learngene_deploy._fs import sha256_file
from learngene_deploy._version import __version__
from learngene_deploy.errors import ArtifactError, os_error_message
from learngene_deploy.facts import utc_now

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
PARTIAL_MARK = ".partial-"
REPLACED_MARK = ".replaced-"


def files_table(root: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``root`` except the manifest, keyed by relative POSIX path."""
    table = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != MANIFEST:
            table[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return table


def _umask() -> int:
    """The process's umask (os offers no way to read it without setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ArtifactWriter:
    """Write an artifact directory atomically.

    Example:
        >>> writer = ArtifactWriter("artifacts/cpu-host", force=False)
        >>> (writer.path / "model.onnx").write_bytes(b"...")       # doctest: +SKIP
        >>> writer.finalize({"status": "complete"})                  # doctest: +SKIP
    """

    def __init__(self, out_dir: str | Path, *, force: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.force = force
        if self.out_dir.exists() and not force:
            msg = f"output directory {self.out_dir} already exists; pass --force to replace it or choose another --out."
            raise ArtifactError(msg)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            msg = f"output path {self.out_dir} exists and is not a directory; choose another --out."
            raise ArtifactError(msg)
        parent = self.out_dir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}{PARTIAL_MARK}", dir=parent))
            # mkdtemp makes the directory private (0700); a finished artifact gets the mode of any new directory
            self.path.chmod(0o777 & ~_umask())
        except OSError as e:
            raise ArtifactError(os_error_message(e, parent)) from e

    def finalize(self, manifest: dict[str, Any]) -> Path:
        """Hash every file, write ``manifest.json`` last, then move the directory into place.

        Returns:
            The final directory.
        """
        record = {
            "schema_version": MANIFEST_SCHEMA,
            "toolkit_version": __version__,
            "created": utc_now(),
            **manifest,
            "files": files_table(self.path),
        }
        try:
            (self.path / MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
            if self.out_dir.exists():  # --force: move the old one aside first, delete it after the swap
                old = self.out_dir.with_name(f".{self.out_dir.name}{REPLACED_MARK}{os.getpid()}")
                self.out_dir.rename(old)
                self.path.rename(self.out_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                self.path.rename(self.out_dir)
        except OSError as e:
            raise ArtifactError(os_error_message(e, self.out_dir)) from e
        return self.out_dir

    def abort(self) -> None:
        """Remove the partial directory (the final directory is never touched)."""
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> None:
        if exc_type is None:
            return
        self.abort()
        if isinstance(exc, OSError):  # a write into the artifact failed (full disk, quota, ...): say so plainly
            raise ArtifactError(os_error_message(exc, self.out_dir)) from exc


def stale_siblings(out_dir: str | Path) -> list[Path]:
    """Hidden leftovers of earlier builds of ``out_dir`` that never finished: partial and half-replaced directories.

    Only call this while no other build of ``out_dir`` can be running (``lgdeploy build`` holds its work lock).
    """
    out_dir = Path(out_dir)
    if not out_dir.parent.is_dir():
        return []
    marks = (f".{out_dir.name}{PARTIAL_MARK}", f".{out_dir.name}{REPLACED_MARK}")
    return sorted(p for p in out_dir.parent.iterdir() if p.name.startswith(marks) and p.is_dir())
