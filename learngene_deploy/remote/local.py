"""This machine as a :class:`~learngene_deploy.remote.base.Target` (what ``lgdeploy bench ARTIFACT`` measures).

The measurement is :func:`learngene_deploy.artifact.store.measure_here`, the one
:func:`~learngene_deploy.artifact.store.bench_artifact` records; ``bench_artifact`` cannot go through this class
because this package imports the artifact store.
"""

from __future__ import annotations

from pathlib import Path

from learngene_deploy.artifact.manifest import Manifest
from learngene_deploy.artifact.store import measure_here
from learngene_deploy.facts import host_facts
from learngene_deploy.remote.base import Measurement, Target


class LocalTarget(Target):
    """This machine: the compiled model runs here, in fresh processes (:func:`learngene_deploy.bench.benchmark`)."""

    def bench(self, root: Path, manifest: Manifest, *, runs: int, rounds: int) -> Measurement:
        stats = measure_here(root, manifest, runs=runs, rounds=rounds)
        return Measurement(stats, host_facts())
