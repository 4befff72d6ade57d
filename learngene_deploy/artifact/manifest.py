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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learngene_deploy._fs import atomic_path
from learngene_deploy.artifact.writer import MANIFEST, MANIFEST_SCHEMA, PARTIAL_MARK
from learngene_deploy.errors import ArtifactError


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
            msg = (
                f"{path} has manifest schema {data.get('schema_version')}, this lgdeploy reads schema "
                f"{MANIFEST_SCHEMA}."
            )
            raise ArtifactError(msg)
        return cls(data)

    def save(self, root: Path) -> None:
        """Rewrite ``root/manifest.json`` atomically (a failed rewrite leaves no stray file in the artifact)."""
        with atomic_path(root / MANIFEST) as tmp:
            tmp.write_text(json.dumps(self, indent=2) + "\n")

    # --- typed reads -------------------------------------------------------------------------------------------
    @property
    def profile_name(self) -> str:
        return self["profile"]["name"]

    @property
    def runtime(self) -> RuntimeRecord:
        r = self["profile"]["runtime"]
        return RuntimeRecord(r["backend"], r["precision"], r.get("threads"), r.get("execution_provider"))

    @property
    def budgets(self) -> BudgetsRecord:
        b = self["profile"]["budgets"]
        return BudgetsRecord(b["latency_ms"], b["percentile"], b.get("batch"))

    @property
    def compile_record(self) -> dict[str, Any] | None:
        """The compiled model's record (paths relative to the artifact), or ``None`` when compile was skipped."""
        return self.get("compile")

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.get("skipped", [])

    @property
    def golden_file(self) -> str:
        return self["golden"]["file"]

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
    def record_target_benchmark(self, record: dict[str, Any], *, where: str | None = None) -> None:
        """Append a target measurement and let it decide the latency verdict (see :func:`verdict.judge_measured`).

        Args:
            record: ``{"measured": ISO time, "host": facts of the measuring machine, "stats": LatencyStats dict, ...}``.
            where: how the verdict's basis names the device (default: the record's host name).
        """
        from learngene_deploy.artifact.verdict import judge_measured

        budgets = self.budgets
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
