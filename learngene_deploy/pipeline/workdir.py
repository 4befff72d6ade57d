"""The resumable work directory of `lgdeploy build`: ``.NAME.work/`` beside the artifact directory ``NAME``.

A build keeps its fine-tune checkpoint here (``finetune/checkpoint.pt``, written every ``--checkpoint-every``
steps) together with ``inputs.json``, the fingerprint of everything the fine-tune depends on (profile, learngene,
data, size, seed, schedule). Re-running the same command after a kill, a crash or a failed gate resumes the
fine-tune from the last checkpoint; a run with other inputs discards the stale directory first. A finished build
removes the directory; a failed one keeps it only when it holds a checkpoint worth resuming.

While a build runs it holds an exclusive lock on ``.NAME.work/lock``, so two builds never share one work
directory, and hidden leftovers of earlier builds of ``NAME`` (``.NAME.partial-*``, ``.NAME.replaced-*``) can be
removed safely: no live build owns them.

Example:
    >>> work = BuildWork(Path("artifacts/cpu-host"))       # doctest: +SKIP
    >>> removed = work.acquire()                            # lock; stale partial directories removed
    >>> step, note = work.reconcile({"seed": 0, ...})        # resume step (0: fresh) and what happened
    >>> work.finish()                                       # after the artifact was renamed into place
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from learngene_deploy._fs import atomic_path
from learngene_deploy.errors import ArtifactError

try:  # POSIX advisory locks; where they do not exist, builds are not protected from each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

WORK_SUFFIX = ".work"
INPUTS = "inputs.json"
LOCK = "lock"
FINETUNE = "finetune"
EXPORT = "export"
INPUTS_FORMAT = 1


def work_dir_for(out_dir: str | Path) -> Path:
    """``<parent>/.<name>.work`` for the artifact directory ``<parent>/<name>``."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}{WORK_SUFFIX}")


def _changed(old: Any, new: dict[str, Any]) -> list[str]:
    """Top-level keys of ``new`` whose values differ in ``old`` (all of them when ``old`` is not a mapping)."""
    if not isinstance(old, dict):
        return sorted(new)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class BuildWork:
    """The work directory of one build of ``out_dir`` (see the module docstring)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = work_dir_for(self.out_dir)
        self._lock: int | None = None

    @property
    def finetune_dir(self) -> Path:
        return self.path / FINETUNE

    @property
    def checkpoint(self) -> Path:
        """The training loop's checkpoint file (torch is imported here, not when this module is)."""
        from learngene_deploy.training.loop import CHECKPOINT_NAME

        return self.finetune_dir / CHECKPOINT_NAME

    @property
    def export_dir(self) -> Path:
        """Intermediate files of later stages (the exported ONNX before simplification); never kept for a re-run."""
        return self.path / EXPORT

    def acquire(self) -> list[Path]:
        """Create the directory, take its lock, remove leftovers of unfinished builds; returns what was removed.

        Raises:
            ArtifactError: another build of the same output is running, or the directory cannot be written.
        """
        from learngene_deploy.artifact import stale_siblings
        from learngene_deploy.errors import os_error_message

        try:
            while True:
                self.path.mkdir(parents=True, exist_ok=True)
                if fcntl is None:
                    break
                lock = self.path / LOCK
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    owner = os.read(fd, 32).decode(errors="replace").strip()
                    os.close(fd)
                    msg = (
                        f"another lgdeploy build{f' (pid {owner})' if owner else ''} is writing {self.out_dir} right "
                        "now; wait for it to finish or choose another --out."
                    )
                    raise ArtifactError(msg) from None
                with contextlib.suppress(FileNotFoundError):
                    if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                        os.ftruncate(fd, 0)
                        os.write(fd, str(os.getpid()).encode())
                        self._lock = fd
                        break
                os.close(fd)  # the build that held it removed the directory meanwhile: lock the new one
        except OSError as e:
            raise ArtifactError(os_error_message(e, self.out_dir)) from e
        removed = stale_siblings(self.out_dir)
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        return removed

    def reconcile(self, inputs: dict[str, Any]) -> tuple[int, str | None]:
        """Keep the directory if it was made from ``inputs``, else empty it; record ``inputs``.

        Returns:
            The step the fine-tune resumes from (0: start afresh) and a one-line note of what happened (None when
            there was nothing to resume or discard).
        """
        record = json.loads(json.dumps({"format": INPUTS_FORMAT, **inputs}))  # as it reads back from the file
        recorded: Any = None
        with contextlib.suppress(OSError, ValueError):
            recorded = json.loads((self.path / INPUTS).read_text())
        step, note = 0, None
        if recorded == record:
            if self.checkpoint.is_file():
                try:
                    from learngene_deploy.training.loop import load_checkpoint

                    ckpt = load_checkpoint(self.checkpoint)
                    step, total = int(ckpt["step"]), int(ckpt["total_steps"])
                except Exception as e:  # an unreadable checkpoint is not resumed, whatever the cause
                    why = (str(e).splitlines() or [type(e).__name__])[0][:160]
                    note = f"discarding the unreadable checkpoint in {self.path} ({why}); starting afresh"
                else:
                    note = f"resuming the fine-tune from step {step} of {total} (checkpoint in {self.path})"
        elif recorded is not None:
            changed = ", ".join(_changed(recorded, record))
            note = f"discarding {self.path}: it holds work of other inputs ({changed} changed); starting afresh"
        elif self.finetune_dir.exists():
            note = f"discarding {self.path}: its {INPUTS} is missing or unreadable; starting afresh"
        if step == 0:
            shutil.rmtree(self.finetune_dir, ignore_errors=True)
        else:  # a kill during a checkpoint write leaves its hidden temporary file (see _fs.atomic_path)
            for tmp in self.finetune_dir.glob(f".{self.checkpoint.name}.tmp*"):
                tmp.unlink(missing_ok=True)
        with atomic_path(self.path / INPUTS) as tmp:
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        return step, note

    def release(self, *, success: bool) -> None:
        """Drop the lock; remove the directory after a success, or when it holds no checkpoint to resume."""
        if success or not self.checkpoint.is_file():
            shutil.rmtree(self.path, ignore_errors=True)
        else:  # kept for a re-run, which takes a fresh lock (a build that opened this one retries on the new file)
            shutil.rmtree(self.export_dir, ignore_errors=True)
            (self.path / LOCK).unlink(missing_ok=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
