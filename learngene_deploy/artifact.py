"""Per-device artifact directories: written under a temporary name, renamed into place only when complete.

An artifact directory holds the model files, ``manifest.json`` (every file's sha256 and size, tool versions,
host facts, checks, benchmark, budgets) and a report. While a build runs, everything goes to a hidden sibling
``.NAME.partial-XXXX``; :meth:`ArtifactWriter.finalize` writes the manifest last and renames the directory.
A killed build therefore never leaves a directory that looks complete (a partial directory is refused by
``read_manifest`` even in the instant after its manifest was written, and the next build of NAME removes it),
and ``verify_artifact`` detects any file changed after the fact.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from learngene_deploy._version import __version__
from learngene_deploy.errors import ArtifactError

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
PARTIAL_MARK = ".partial-"
REPLACED_MARK = ".replaced-"
EDQUOT = getattr(errno, "EDQUOT", errno.ENOSPC)  # quota exceeded (absent on some platforms)

# Distributions whose versions go into every manifest (read from package metadata; nothing is imported).
TOOLS = (
    "learngene-deploy",
    "torch",
    "timm",
    "onnx",
    "onnxscript",
    "onnxsim",
    "onnxslim",
    "onnxruntime",
    "openvino",
    "nncf",
    "tensorrt",
    "numpy",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tool_versions() -> dict[str, str | None]:
    """Installed versions of the tools that shape an artifact (None where not installed)."""
    versions: dict[str, str | None] = {}
    for dist in TOOLS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_mb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    return None


def host_facts() -> dict[str, Any]:
    """The machine this runs on (recorded so build-machine measurements are never mistaken for the target's)."""
    return {
        "hostname": platform.node(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "python": platform.python_version(),
    }


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
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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


def os_error_message(e: OSError, where: str | Path) -> str:
    """One sentence for a failed write to ``where`` (an output the user chose with --out)."""
    if e.errno in (errno.ENOSPC, EDQUOT):
        why = "no space left on the device" if e.errno == errno.ENOSPC else "the disk quota is exhausted"
        return f"{why} while writing {where}; free some disk space or choose another --out."
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write to {where} ({e.strerror}); choose a writable --out directory."
    return f"cannot write {where} ({e.strerror or e}); check the path and try again."


def read_manifest(artifact_dir: str | Path) -> dict[str, Any]:
    """Read and minimally validate an artifact's manifest."""
    root = Path(artifact_dir)
    path = root / MANIFEST
    if not root.is_dir():
        msg = f"{root} is not a directory; pass an artifact directory written by `lgdeploy build`."
        raise ArtifactError(msg)
    partial = root.name.startswith(".") and PARTIAL_MARK in root.name
    if partial or not path.is_file():
        why = "it is a partial build that never finished" if partial else "it has no manifest.json"
        msg = f"{root} is not a complete artifact ({why}); rebuild it with `lgdeploy build`."
        raise ArtifactError(msg)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        msg = f"{path} is not valid JSON ({e}); the artifact is damaged, rebuild it with `lgdeploy build`."
        raise ArtifactError(msg) from e
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        msg = f"{path} is not an lgdeploy manifest (no 'files' table); rebuild the artifact with `lgdeploy build`."
        raise ArtifactError(msg)
    if data.get("schema_version") != MANIFEST_SCHEMA:
        msg = f"{path} has manifest schema {data.get('schema_version')}, this lgdeploy reads schema {MANIFEST_SCHEMA}."
        raise ArtifactError(msg)
    return data


def verify_artifact(artifact_dir: str | Path) -> dict[str, Any]:
    """Check every file against the manifest's sha256 and size; refuse missing, changed or extra files.

    Returns:
        The manifest.

    Raises:
        ArtifactError: the first problem, naming the file.
    """
    root = Path(artifact_dir)
    manifest = read_manifest(root)
    actual = files_table(root)
    for rel, expected in manifest["files"].items():
        if rel not in actual:
            msg = f"artifact {root} is missing {rel}, which its manifest lists; rebuild it with `lgdeploy build`."
            raise ArtifactError(msg)
        if actual[rel]["sha256"] != expected.get("sha256") or actual[rel]["bytes"] != expected.get("bytes"):
            msg = (
                f"artifact {root}: {rel} does not match the sha256 in its manifest (the file was changed after the "
                "build); rebuild the artifact or restore the original file."
            )
            raise ArtifactError(msg)
    extra = sorted(set(actual) - set(manifest["files"]))
    if extra:
        msg = f"artifact {root} holds files its manifest does not list ({', '.join(extra)}); remove them or rebuild."
        raise ArtifactError(msg)
    return manifest
