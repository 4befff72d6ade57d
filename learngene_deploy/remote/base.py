"""What every target shares: a :class:`Target` measures, :func:`bench_on` verifies, records and judges.

A target (this machine, an edge box over SSH, a phone over adb) only measures: its :meth:`Target.bench` gets a
verified artifact with a compiled model and returns a :class:`Measurement`, the statistics
(:class:`~learngene_deploy.bench.LatencyStats`) with the facts of the machine that measured them. :func:`bench_on`
does the rest through :func:`~learngene_deploy.artifact.store.measure_and_record`, as ``lgdeploy bench`` on this
machine does: verify the local artifact (a tampered artifact is never measured or copied), require a compiled model,
and record the measurement, which decides the latency verdict.

The helpers below run ``ssh``/``scp``/``adb`` with :mod:`subprocess` and turn their failures into RemoteError.
"""

from __future__ import annotations

import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learngene_deploy.artifact.manifest import Manifest
from learngene_deploy.artifact.store import measure_and_record
from learngene_deploy.bench import LatencyStats
from learngene_deploy.errors import RemoteError
from learngene_deploy.facts import utc_now

Log = Callable[[str], None]


def quiet(message: str) -> None:
    """A :data:`Log` that drops every line."""
    del message


@dataclass(frozen=True)
class Measurement:
    """What a target measured: the statistics, the facts of the machine that measured them, and how it was reached.

    Attributes:
        stats: the statistics of the selected round.
        host: facts of the measuring machine, in the shape of :func:`learngene_deploy.facts.host_facts`.
        via: how the target was reached (``{"method": "ssh", ...}``); ``None`` on this machine.
        where: how the verdict's basis names the device (``None``: the host's name).
        measured: when (the target's own time where it recorded one).
    """

    stats: LatencyStats
    host: dict[str, Any]
    via: dict[str, Any] | None = None
    where: str | None = None
    measured: str = field(default_factory=utc_now)

    def record(self) -> dict[str, Any]:
        """The ``target_benchmarks`` record: ``measured``, ``host``, ``stats`` and, when reached remotely, ``via``."""
        record = {"measured": self.measured, "host": self.host, "stats": self.stats.to_dict()}
        return record if self.via is None else {**record, "via": self.via}


class Target(ABC):
    """A device that can benchmark an artifact's compiled model: this machine, an SSH box or an adb phone."""

    @abstractmethod
    def bench(self, root: Path, manifest: Manifest, *, runs: int, rounds: int) -> Measurement:
        """Measure the artifact at ``root`` (verified, with a compiled model) on the target.

        Args:
            root: the local artifact directory.
            manifest: its verified manifest (read only).
            runs: timed runs per process.
            rounds: fresh processes; the best round is reported.
        """


def bench_on(
    target: Target, artifact_dir: str | Path, *, runs: int, rounds: int, profile: str | Path | None = None
) -> Manifest:
    """Verify the local artifact, measure it on ``target`` and record the measurement in the local manifest.

    Returns:
        The updated local manifest.

    Raises:
        ArtifactError: the local artifact does not verify or has no compiled model.
        RemoteError, ConfigError: as the target raises them.
    """

    def measure(root: Path, manifest: Manifest) -> tuple[dict[str, Any], str | None]:
        measurement = target.bench(root, manifest, runs=runs, rounds=rounds)
        return measurement.record(), measurement.where

    return measure_and_record(artifact_dir, measure, profile=profile)


# --- running the device tools ----------------------------------------------------------------------------------


def find_tool(name: str, hint: str) -> str:
    """Absolute path of a command on PATH, or a RemoteError saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise RemoteError(f"{name} not found on PATH; {hint}.")
    return found


def run_tool(argv: Sequence[str], *, timeout_s: float, doing: str) -> subprocess.CompletedProcess[str]:
    """Run a local command (ssh, scp, adb) without input and capture its text output; never raises on its exit code.

    Raises:
        RemoteError: the command cannot be started or runs past ``timeout_s``.
    """
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise RemoteError(f"cannot run {argv[0]} while {doing} ({e.strerror}); check that it is installed.") from e
    except subprocess.TimeoutExpired as e:
        msg = f"{Path(argv[0]).name} took longer than {timeout_s:g} s while {doing}; check the device and retry."
        raise RemoteError(msg) from e


def last_line(*texts: str | None) -> str:
    """The last non-blank line of the first text that has one (for one-sentence errors), or ``"no output"``."""
    for text in texts:
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no output"
