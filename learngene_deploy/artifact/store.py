"""What happens to an artifact after its build: verify its files, re-check its model, benchmark it on the target.

Every function takes the artifact directory, reads its :class:`~learngene_deploy.artifact.manifest.Manifest` and,
where it measures, records the measurement through that one class (the latency verdict is then decided by
:mod:`learngene_deploy.artifact.verdict`). :mod:`learngene_deploy.remote` does the same on an edge box over SSH or
on a phone over adb.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learngene_deploy.artifact.manifest import Manifest
from learngene_deploy.artifact.writer import files_table
from learngene_deploy.errors import ArtifactError

if TYPE_CHECKING:
    pass


def read_manifest(artifact_dir: str | Path) -> Manifest:
    """Read and minimally validate an artifact's manifest (:meth:`Manifest.read`)."""
    return Manifest.read(artifact_dir)


def verify_artifact(artifact_dir: str | Path) -> Manifest:
    """Check every file against the manifest's sha256 and size; refuse missing, changed or extra files.

    Returns:
        The manifest.

    Raises:
        ArtifactError: the first problem, naming the file.
    """
    root = Path(artifact_dir)
    manifest = Manifest.read(root)
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


def shipped_model(root: Path, manifest: Manifest) -> tuple[Any, Any, str]:
    """(backend, Compiled, name) of the model an artifact ships: the compiled one, else model.onnx on ORT."""
    from learngene_deploy.backends import get_backend
    from learngene_deploy.backends.base import Compiled

    record = manifest.compile_record
    if record is None:
        backend = get_backend("onnxruntime")
        return backend, backend.compile(root / "model.onnx", root, precision="fp32"), "onnxruntime-fp32 (model.onnx)"
    compiled = Compiled.from_dict(
        {
            **record,
            "model_path": str(root / record["model_path"]),
            "source": str(root / record["source"]),
            "files": [str(root / f) for f in record["files"]],
        }
    )
    return get_backend(compiled.backend), compiled, f"{compiled.backend}-{compiled.precision}"


def recheck_artifact(artifact_dir: str | Path) -> dict[str, Any]:
    """Verify every file's hash, then re-run the shipped model on the golden images against PyTorch's logits.

    Raises:
        ArtifactError: a file is missing, changed or extra.
        VerificationError: the model no longer matches PyTorch within the build's tolerance.
    """
    import numpy as np

    from learngene_deploy.bench import local_threads
    from learngene_deploy.gates import TOLERANCES, Tolerance, compare, gate

    root = Path(artifact_dir)
    manifest = verify_artifact(root)
    golden = np.load(root / manifest.golden_file)
    backend, compiled, name = shipped_model(root, manifest)
    on_host, _ = backend.host_variant(compiled)  # verify anywhere, e.g. a GPU-targeted IR on this CPU
    runner = backend.load_runner(on_host, threads=local_threads(manifest.runtime.threads))
    built = next((c for c in manifest.checks if c["candidate"] == name), None)
    tolerance = Tolerance(**built["tolerance"]) if built else TOLERANCES[compiled.precision]
    result = compare(
        golden["logits"],
        runner.run(golden["images"]),
        reference="pytorch (golden)",
        candidate=name,
        tolerance=tolerance,
    )
    gate(result)
    return result.to_dict()


def require_compiled(root: Path, manifest: Manifest) -> None:
    """Refuse an artifact whose compile step was skipped (there is no runtime model to benchmark).

    Raises:
        ArtifactError: the manifest has no ``compile`` record.
    """
    if manifest.compile_record is None:
        reasons = "; ".join(s["reason"] for s in manifest.skipped if s["stage"] == "compile")
        msg = (
            f"artifact {root} has no compiled model to benchmark ({reasons or 'compile was skipped'}); rebuild it "
            "with `lgdeploy build` on a machine that has the profile's runtime."
        )
        raise ArtifactError(msg)


def record_target_benchmark(
    root: Path, manifest: Manifest, record: dict[str, Any], *, where: str | None = None
) -> Manifest:
    """Append a target measurement to the manifest, let it decide the latency verdict, rewrite the manifest atomically.

    Args:
        root: the artifact directory.
        manifest: its verified manifest (updated in place and returned).
        record: ``{"measured": ISO time, "host": facts of the measuring machine, "stats": LatencyStats dict, ...}``.
        where: how the verdict's basis names the device (default: the record's host name).
    """
    manifest = manifest if isinstance(manifest, Manifest) else Manifest(manifest)
    manifest.record_target_benchmark(record, where=where)
    manifest.save(root)
    return manifest


def measure_and_record(
    artifact_dir: str | Path, measure: Callable[[Path, Manifest], tuple[dict[str, Any], str | None]]
) -> Manifest:
    """Verify an artifact, require its compiled model, measure it and record the measurement in its manifest.

    The steps every benchmark target shares (this machine, an SSH box, an adb phone): a tampered artifact is never
    measured or copied, and the record decides the latency verdict (:meth:`Manifest.record_target_benchmark`).

    Args:
        artifact_dir: the local artifact directory.
        measure: ``(root, verified manifest) -> (target_benchmarks record, how the verdict names the device or None)``.

    Raises:
        ArtifactError: the artifact does not verify or has no compiled model.
    """
    root = Path(artifact_dir)
    manifest = verify_artifact(root)
    require_compiled(root, manifest)
    record, where = measure(root, manifest)
    return record_target_benchmark(root, manifest, record, where=where)


def bench_artifact(artifact_dir: str | Path, *, runs: int = 50, rounds: int = 3) -> Manifest:
    """Benchmark an artifact on this machine (meant to be the target) and record it in the manifest.

    The measurement replaces the prediction in the latency verdict; the manifest is rewritten atomically
    (it is not part of its own file table, so the artifact still verifies).

    Raises:
        ConfigError: the profile's batch differs from the model's static batch.
        BackendUnavailableError: the profile's runtime is not installed here.
        ArtifactError: the artifact does not verify, or a benchmark worker crashed or timed out.
    """
    from learngene_deploy.bench import benchmark
    from learngene_deploy.facts import host_facts, utc_now

    def here(root: Path, manifest: Manifest) -> tuple[dict[str, Any], None]:
        _, compiled, _ = shipped_model(root, manifest)
        stats = benchmark(
            compiled, threads=manifest.runtime.threads, batch=manifest.budgets.batch, min_runs=runs, rounds=rounds
        )
        return {"measured": utc_now(), "host": host_facts(), "stats": stats.to_dict()}, None

    return measure_and_record(artifact_dir, here)
