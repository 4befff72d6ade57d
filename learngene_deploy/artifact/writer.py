"""Per-device artifact directories: written under a temporary name, renamed into place only when complete.

An artifact directory holds the model files, ``manifest.json`` (every file's sha256 and size, tool versions,
host facts, checks, benchmark, budgets) and a report. While a build runs, everything goes to a hidden sibling
``.NAME.partial-XXXX``; :meth:`ArtifactWriter.finalize` writes the manifest last and renames the directory.
A killed build therefore never leaves a directory that looks complete (a partial directory is refused by
``read_manifest`` even in the instant after its manifest was written, and the next build of NAME removes it),
and ``verify_artifact`` detects any file changed after the fact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from learngene_deploy._version import __version__
from learngene_deploy.errors import ArtifactError, os_error_message
from learngene_deploy.facts import utc_now

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
PARTIAL_MARK = ".partial-"
REPLACED_MARK = ".replaced-"


def _kind(mode: int) -> str | None:
    """What a non-regular, non-directory entry is (``None`` for a regular file or a directory)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a device or other special file")


def _hash_regular(path: Path) -> tuple[str, int]:
    """sha256 and size of a regular file, opened without following a symlink or blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        digest = hashlib.sha256()
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest(), size


def files_table(root: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``root`` except the manifest, keyed by relative POSIX path.

    An artifact is closed: it holds only regular files and directories. Symbolic links (to files or directories),
    FIFOs, sockets and devices are refused, never followed or read.

    Raises:
        ArtifactError: an entry is not a regular file or a directory, or a directory cannot be listed.
    """
    root = Path(root)

    def unreadable(e: OSError) -> None:
        raise ArtifactError(f"cannot list {e.filename} in artifact {root} ({e.strerror}); check its permissions.")

    table = {}
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):  # never enters a directory symlink
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            kind = _kind(mode)
            if kind is not None:
                msg = (
                    f"artifact {root} holds {rel}, which is {kind}; an artifact holds only regular files and "
                    "directories, so remove it (or rebuild the artifact)."
                )
                raise ArtifactError(msg)
            if stat.S_ISREG(mode) and rel != MANIFEST:
                digest, size = _hash_regular(path)
                table[rel] = {"sha256": digest, "bytes": size}
    return dict(sorted(table.items()))


def _umask() -> int:
    """The process's umask (os offers no way to read it without setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_artifact(path: Path) -> bool:
    """Whether ``path`` is a directory that lgdeploy wrote: a real directory holding a regular ``manifest.json``
    with the manifest's schema and file table (read with a size cap, never following a symlink)."""
    try:
        if path.is_symlink() or not path.is_dir():
            return False
        manifest = path / MANIFEST
        st = manifest.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > 32 << 20:
            return False
        data = json.loads(manifest.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return (
        isinstance(data, dict) and data.get("schema_version") == MANIFEST_SCHEMA and isinstance(data.get("files"), dict)
    )


def _protected(path: Path) -> str | None:
    """Why ``path`` may never be replaced (the root, the home directory, the working directory or one above it)."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        return "the filesystem root"
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        home = None
    if resolved == home:
        return "your home directory"
    if resolved == cwd or resolved in cwd.parents:
        return "the working directory" if resolved == cwd else "a directory above the working directory"
    return None


NAME_MAX = 255  # the usual limit of one path component (ext4, xfs, btrfs, APFS)


def check_output(out_dir: str | Path, *, force: bool, option: str = "--out") -> None:
    """Refuse an output directory that must not be written or replaced, before any work starts.

    Without ``force`` the directory must not exist. With ``force`` it may be replaced only when it is an lgdeploy
    artifact (it holds a manifest lgdeploy wrote) or an empty directory, and never when it is the filesystem root,
    the home directory or the working directory (or one above it). A symbolic link and a name too long for the
    filesystem are refused either way.

    Raises:
        ArtifactError: one sentence naming the directory and what to do.
    """
    out_dir = Path(out_dir)
    protected = _protected(out_dir)
    if protected is not None:
        msg = (
            f"{option} {out_dir} is {protected}, which lgdeploy never writes into or replaces; pass a new "
            f"directory such as {option} artifacts/NAME."
        )
        raise ArtifactError(msg)
    if out_dir.is_symlink():
        msg = f"{option} {out_dir} is a symbolic link; pass the directory itself or a new path."
        raise ArtifactError(msg)
    room = NAME_MAX - len(f".{PARTIAL_MARK}XXXXXXXX") - 1
    if len(os.fsencode(out_dir.name)) > room:
        msg = (
            f"{option} name {out_dir.name[:40]}... is longer than {room} bytes, more than a file name can hold; "
            "choose a shorter name."
        )
        raise ArtifactError(msg)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ArtifactError(f"output path {out_dir} exists and is not a directory; choose another {option}.")
    if not force:
        msg = f"output directory {out_dir} already exists; pass --force to replace it or choose another {option}."
        if not is_artifact(out_dir) and any(out_dir.iterdir()):
            msg = f"output directory {out_dir} already exists and is not an lgdeploy artifact; choose another {option}."
        raise ArtifactError(msg)
    if not is_artifact(out_dir) and any(out_dir.iterdir()):
        msg = (
            f"{option} {out_dir} is a directory that lgdeploy did not write (it has no lgdeploy manifest), so --force "
            f"will not replace it; choose a new or empty directory for {option}."
        )
        raise ArtifactError(msg)


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
        check_output(self.out_dir, force=force)
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
                check_output(self.out_dir, force=self.force)  # still an artifact or empty (it may have changed)
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
