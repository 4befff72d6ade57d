"""Benchmark an artifact on the target device itself: an edge box over SSH, or an Android phone over adb.

Every target is a :class:`~learngene_deploy.remote.base.Target` that only measures; the steps around the
measurement are shared (:func:`~learngene_deploy.remote.base.bench_on`, over
:func:`~learngene_deploy.artifact.store.measure_and_record`): verify every file's sha256 locally (a
tampered artifact is never copied), require a compiled model, then append one record to
``manifest["target_benchmarks"]`` (with the *target's* facts under ``host`` and how it was reached under ``via``),
where the measurement replaces the prediction in the latency verdict
(:func:`learngene_deploy.artifact.store.record_target_benchmark`).

- :mod:`.ssh`: ``lgdeploy bench ARTIFACT --host user@host`` (:func:`bench_over_ssh`), for Linux edge boxes
  (Jetson, Raspberry Pi, NUC) with lgdeploy installed: the box benchmarks a copy with its own toolkit.
- :mod:`.adb`: ``lgdeploy bench ARTIFACT --adb SERIAL --perf-test PATH`` (:func:`bench_over_adb`), for phones
  running an ONNX Runtime (Mobile) artifact, timed with ``onnxruntime_perf_test``, whose output :mod:`.perf_test`
  turns into the statistics of a local benchmark.
- this machine: ``lgdeploy bench ARTIFACT`` (:func:`learngene_deploy.artifact.store.bench_artifact`), through
  the same :func:`~learngene_deploy.artifact.store.measure_and_record`.

Nothing here imports torch or a runtime; only ``ssh``/``scp``/``adb`` are run, with :mod:`subprocess`.
"""

from __future__ import annotations

from learngene_deploy.errors import RemoteError
from learngene_deploy.remote.adb import AdbTarget, bench_over_adb
from learngene_deploy.remote.base import Measurement, Target, bench_on
from learngene_deploy.remote.perf_test import parse_perf_test_output, perf_test_stats
from learngene_deploy.remote.ssh import SshTarget, bench_over_ssh, ssh_option_args

__all__ = [
    "AdbTarget",
    "Measurement",
    "RemoteError",
    "SshTarget",
    "Target",
    "bench_on",
    "bench_over_adb",
    "bench_over_ssh",
    "parse_perf_test_output",
    "perf_test_stats",
    "ssh_option_args",
]
