"""``manifest.json``: the one typed home of an artifact's record, for every reader and writer.

The manifest is a JSON object whose keys are the artifact's file format (documented in the README): a build writes
it whole, ``lgdeploy bench`` (local, SSH or adb) appends target measurements, and ``verify``, ``bench``, the report
and the remote benchmarkers read it. :class:`Manifest` is that object as a ``dict`` (so the file format and every
existing reader of the JSON stay exactly as they are) with typed accessors for what code reads and one method
for the only change made after a build (:meth:`Manifest.record_target_benchmark`). Nothing else indexes the
manifest by string keys outside this package (``report.py`` renders the
whole record for humans) and the build stage that assembles it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learngene_deploy._fs import atomic_path
from learngene_deploy.artifact.writer import MANIFEST, MANIFEST_SCHEMA, PARTIAL_MARK
from learngene_deploy.errors import ArtifactError

MAX_MANIFEST_BYTES = 32 << 20  # a real manifest is a few kB; anything this large is not one of ours
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _damaged(path: Path, what: str) -> ArtifactError:
    return ArtifactError(f"{path} {what}; the artifact is damaged or was edited, rebuild it with `lgdeploy build`.")


def check_relative(value: Any, key: str, path: Path) -> str:
    """``value`` as a path inside the artifact: a non-empty relative POSIX path without ``..``, ``.`` or empty parts.

    Raises:
        ArtifactError: naming ``key`` (where the manifest at ``path`` names it) and what was found.
    """
    if not isinstance(value, str) or not value:
        raise _damaged(path, f"names {key} as {value!r}, which is not a path")
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or "\0" in value or any(p in ("", ".", "..") for p in parts):
        msg = (
            f"names {key} as {value!r}, which leaves the artifact (every path in a manifest must be relative, "
            "without '..', and one of its listed files)"
        )
        raise _damaged(path, msg)
    return value


@dataclass(frozen=True)
class RuntimeRecord:
    """The runtime section of the profile the artifact was built for."""

    backend: str
    precision: str
    threads: int | None
    execution_provider: str | None


@dataclass(frozen=True)
class BudgetsRecord:
    """The budgets the artifact is judged against."""

    latency_ms: float
    percentile: int
    batch: int | None  # None only in hand-written manifests; every build records it

    @property
    def latency_key(self) -> str:
        """The :class:`~learngene_deploy.bench.LatencyStats` key that the latency budget reads (``p90_ms``)."""
        return f"p{self.percentile}_ms"


class Manifest(dict[str, Any]):
    """An artifact's manifest: the JSON object, with typed accessors and the one post-build update."""

    @classmethod
    def read(cls, artifact_dir: str | Path) -> Manifest:
        """Read and minimally validate an artifact's manifest (not its file hashes: see ``verify_artifact``).

        Raises:
            ArtifactError: not a directory, a partial build, no manifest, invalid JSON or another schema.
        """
        root = Path(artifact_dir)
        path = root / MANIFEST
        if not root.is_dir():
            msg = f"{root} is not a directory; pass an artifact directory written by `lgdeploy build`."
            raise ArtifactError(msg)
        partial = root.name.startswith(".") and PARTIAL_MARK in root.name
        try:
            st = path.lstat()
        except OSError:
            st = None
        if partial or st is None or not stat.S_ISREG(st.st_mode):
            why = (
                "it is a partial build that never finished"
                if partial
                else "it has no manifest.json"
                if st is None
                else "its manifest.json is not a regular file"
            )
            msg = f"{root} is not a complete artifact ({why}); rebuild it with `lgdeploy build`."
            raise ArtifactError(msg)
        if st.st_size > MAX_MANIFEST_BYTES:
            raise _damaged(path, f"is {st.st_size} bytes, more than any manifest ({MAX_MANIFEST_BYTES} bytes at most)")
        try:
            with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW | os.O_NONBLOCK)) as f:
                data = json.loads(f.read(MAX_MANIFEST_BYTES + 1).decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            msg = f"{path} is not valid JSON ({e}); the artifact is damaged, rebuild it with `lgdeploy build`."
            raise ArtifactError(msg) from e
        except RecursionError as e:
            raise _damaged(path, "is nested too deeply to be a manifest") from e
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            msg = f"{path} is not an lgdeploy manifest (no 'files' table); rebuild the artifact with `lgdeploy build`."
            raise ArtifactError(msg)
        if data.get("schema_version") != MANIFEST_SCHEMA:
            msg = (
                f"{path} has manifest schema {data.get('schema_version')}, this lgdeploy reads schema "
                f"{MANIFEST_SCHEMA}."
            )
            raise ArtifactError(msg)
        for rel, entry in data["files"].items():
            check_relative(rel, f"the file {rel!r}", path)
            ok = isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and _SHA256.fullmatch(entry["sha256"])
            size = entry.get("bytes") if isinstance(entry, dict) else None
            if not ok or isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise _damaged(path, f"lists {rel!r} without a sha256 (64 hex digits) and a size in bytes")
        manifest = cls(data)
        manifest.path = path
        return manifest

    path: Path = Path(MANIFEST)  # where it was read from (for messages)

    def listed(self, value: Any, key: str) -> str:
        """``value`` as one of the artifact's listed (hashed) files, or an ArtifactError naming ``key``."""
        rel = check_relative(value, key, self.path)
        if rel not in self.get("files", {}):
            raise _damaged(self.path, f"names {key} as {rel!r}, which is not one of its listed (hashed) files")
        return rel

    def section(self, *keys: str) -> dict[str, Any]:
        """The mapping at ``self[k1][k2]...``, or an ArtifactError naming the missing or malformed key."""
        node: Any = self
        for i, key in enumerate(keys):
            node = node.get(key) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise _damaged(self.path, f"has no '{'.'.join(keys[: i + 1])}' section")
        return node

    def named_paths(self) -> list[str]:
        """Every path the manifest names outside its files table, checked to be a listed file (the compiled model's
        files, the golden file, a deferred artifact's gate and calibration sets); raises ArtifactError for any
        other."""
        names = []
        record = self.compile_record
        if record is not None:
            names += [record["model_path"], record["source"], *record["files"]]
        if "golden" in self:
            names.append(self.golden_file)
        deferred = self.get("deferred")
        if isinstance(deferred, dict):  # the gate and calibration sets a target's `lgdeploy compile` reads
            for key in ("gates", "calibration"):
                entry = deferred.get(key)
                if entry is not None:
                    file = entry.get("file") if isinstance(entry, dict) else None
                    names.append(self.listed(file, f"deferred.{key}.file"))
        return names

    def save(self, root: Path) -> None:
        """Rewrite ``root/manifest.json`` atomically (a failed rewrite leaves no stray file in the artifact)."""
        with atomic_path(root / MANIFEST) as tmp:
            tmp.write_text(json.dumps(self, indent=2) + "\n")

    # --- typed reads -------------------------------------------------------------------------------------------
    @property
    def profile_name(self) -> str:
        name = self.section("profile").get("name")
        if not isinstance(name, str):
            raise _damaged(self.path, "has no 'profile.name'")
        return name

    @property
    def runtime(self) -> RuntimeRecord:
        r = self.section("profile", "runtime")
        threads = r.get("threads")
        if not isinstance(r.get("backend"), str) or not isinstance(r.get("precision"), str):
            raise _damaged(self.path, "has no 'profile.runtime.backend' or 'profile.runtime.precision'")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise _damaged(self.path, f"has 'profile.runtime.threads' {threads!r}, not a positive integer")
        return RuntimeRecord(r["backend"], r["precision"], threads, r.get("execution_provider"))

    @property
    def budgets(self) -> BudgetsRecord:
        b = self.section("profile", "budgets")
        latency, percentile, batch = b.get("latency_ms"), b.get("percentile"), b.get("batch")
        number = isinstance(latency, (int, float)) and not isinstance(latency, bool) and 0 < latency < float("inf")
        if not number or percentile not in (50, 90, 95, 99):
            raise _damaged(self.path, "has no valid 'profile.budgets.latency_ms' and 'profile.budgets.percentile'")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise _damaged(self.path, f"has 'profile.budgets.batch' {batch!r}, not a positive integer")
        return BudgetsRecord(float(latency), percentile, batch)

    @property
    def compile_record(self) -> dict[str, Any] | None:
        """The compiled model's record (paths relative to the artifact, each a listed file), or ``None`` when compile
        was skipped.

        Raises:
            ArtifactError: the record is malformed or names a path outside the artifact's listed files.
        """
        record = self.get("compile")
        if record is None:
            return None
        if not isinstance(record, dict) or not isinstance(record.get("files"), list):
            raise _damaged(self.path, "has a 'compile' record without its list of files")
        for key in ("model_path", "source"):
            self.listed(record.get(key), f"compile.{key}")
        for i, rel in enumerate(record["files"]):
            self.listed(rel, f"compile.files[{i}]")
        return record

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.get("skipped", [])

    @property
    def golden_file(self) -> str:
        """The golden images and logits (a listed file), or an ArtifactError."""
        return self.listed(self.section("golden").get("file"), "golden.file")

    @property
    def checks(self) -> list[dict[str, Any]]:
        return self.get("checks", [])

    @property
    def latency_verdict(self) -> dict[str, Any]:
        """``budgets.latency``: budget, value, basis, pass/fail and, when missed, why."""
        return self["budgets"]["latency"]

    @property
    def predicted_ms(self) -> float:
        return self["latency"]["predicted_ms"]

    @property
    def target_benchmarks(self) -> list[dict[str, Any]]:
        """Measurements made by ``lgdeploy bench`` on the target, oldest first."""
        return self.get("target_benchmarks", [])

    # --- the one update after a build --------------------------------------------------------------------------
    def record_target_benchmark(
        self,
        record: dict[str, Any],
        *,
        where: str | None = None,
        budgets: BudgetsRecord | None = None,
        budget_source: str | None = None,
    ) -> None:
        """Append a target measurement and let it decide the latency verdict (see :func:`verdict.judge_measured`).

        Args:
            record: ``{"measured": ISO time, "host": facts of the measuring machine, "stats": LatencyStats dict, ...}``.
            where: how the verdict's basis names the device (default: the record's host name).
            budgets: the budgets to judge against, from the profile (:func:`store.trusted_budgets`); default: the
                manifest's own record.
            budget_source: where ``budgets`` came from, kept in the verdict.
        """
        from learngene_deploy.artifact.verdict import judge_measured

        budgets = budgets or self.budgets
        self.latency_verdict.update(budget_ms=budgets.latency_ms, percentile=budgets.percentile)
        if budget_source is not None:
            self.latency_verdict["budget_source"] = budget_source
        measured = record["stats"][budgets.latency_key]
        self.setdefault("target_benchmarks", []).append(record)
        self["latency"]["measured_ms"] = measured
        judge_measured(
            self.latency_verdict,
            measured,
            budgets.latency_ms,
            basis=f"measured {budgets.latency_key} by `lgdeploy bench` on {where or record['host']['hostname']}",
            predicted_ms=self.predicted_ms,
            predicted_source=self["latency"].get("predicted_source", "roofline"),
            profile=self.profile_name,
        )
