"""Small filesystem helpers shared by every module that writes files (no heavy imports)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; on success it replaces ``path`` in one rename.

    Readers never see a half-written file, and a failed write leaves neither a partial ``path`` nor the
    temporary file behind.

    Example:
        >>> with atomic_path("table.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        # writers that go through a private temporary file (safetensors' save_file) leave it 0600: give the
        # result the mode any new file gets here (0644 under the usual umask), as `open()` would have
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _new_file_mode() -> int:
    """The permission bits a new file gets from this process's umask (read by setting it and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_regular(path: str | Path, *, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, never blocking on a FIFO or reading a device.

    A symlink to a regular file is read; one to ``/dev/zero``, a FIFO, a socket or a directory is not.

    Raises:
        ValueError: not a regular file, or larger than ``limit`` (the message says which).
        OSError: the file cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > limit:
            raise ValueError(f"{st.st_size} bytes, more than the {limit}-byte limit")
        data = f.read(limit + 1)
    if len(data) > limit:  # it grew while being read
        raise ValueError(f"more than the {limit}-byte limit")
    return data
