"""Per-device artifacts: written atomically (:mod:`.writer`), described by one typed manifest (:mod:`.manifest`),
judged against the profile's budgets in one place (:mod:`.verdict`), and verified, re-checked and benchmarked after
the build (:mod:`.store`).

The names most callers need are importable from here; nothing heavy (torch, onnx, runtimes) is imported.
"""

from __future__ import annotations

from learngene_deploy.artifact.manifest import Manifest
from learngene_deploy.artifact.store import read_manifest, verify_artifact
from learngene_deploy.artifact.writer import (
    MANIFEST,
    MANIFEST_SCHEMA,
    PARTIAL_MARK,
    REPLACED_MARK,
    ArtifactWriter,
    files_table,
    stale_siblings,
)

__all__ = [
    "MANIFEST",
    "MANIFEST_SCHEMA",
    "PARTIAL_MARK",
    "REPLACED_MARK",
    "ArtifactWriter",
    "Manifest",
    "files_table",
    "read_manifest",
    "stale_siblings",
    "verify_artifact",
]
