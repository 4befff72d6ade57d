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

from learngene_deploy.artifact.manifest import BudgetsRecord, Manifest
from learngene_deploy.artifact.writer import files_table
from learngene_deploy.errors import ArtifactError

if TYPE_CHECKING:
    pass


def read_manifest(artifact_dir: str | Path) -> Manifest:
    """Read and minimally validate an artifact's manifest (:meth:`Manifest.read`)."""
    return Manifest.read(artifact_dir)


def manifest_sha256(artifact_dir: str | Path) -> str:
    """Hex sha256 of an artifact's ``manifest.json``: the trust anchor ``lgdeploy build`` prints and
    ``lgdeploy verify --expect`` checks (the manifest hashes every other file, so this one digest covers them all)."""
    from learngene_deploy.artifact.writer import MANIFEST, _hash_regular

    path = Path(artifact_dir) / MANIFEST
    try:
        return _hash_regular(path)[0]
    except OSError as e:
        msg = f"cannot read {path} ({e.strerror}); pass an artifact directory written by `lgdeploy build`."
        raise ArtifactError(msg) from e


def verify_artifact(artifact_dir: str | Path, *, expect: str | None = None) -> Manifest:
    """Check every file against the manifest's sha256 and size; refuse missing, changed, extra or special files and
    any path the manifest names outside its listed files.

    Args:
        artifact_dir: the artifact directory.
        expect: the manifest's sha256 as ``lgdeploy build`` printed it (a trust anchor outside the artifact: an
            artifact whose files and manifest were both rewritten still fails).

    Returns:
        The manifest.

    Raises:
        ArtifactError: the first problem, naming the file.
    """
    root = Path(artifact_dir)
    manifest = Manifest.read(root)
    if expect is not None:
        want = expect.strip().lower()
        got = manifest_sha256(root)
        if got != want:
            msg = (
                f"artifact {root}: manifest.json has sha256 {got}, not the expected {want}; the artifact was "
                "replaced or edited after the build, so do not deploy it (rebuild it, or check the digest you passed)."
            )
            raise ArtifactError(msg)
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
    manifest.named_paths()  # the compiled model and the golden file are listed files inside the artifact
    return manifest


def shipped_model(root: Path, manifest: Manifest) -> tuple[Any, Any, str]:
    """(backend, Compiled, name) of the model an artifact ships: the compiled one, else model.onnx on ORT."""
    from learngene_deploy.backends import get_backend
    from learngene_deploy.backends.base import Compiled

    record = manifest.compile_record  # every path in it is a listed file inside the artifact
    if record is None:
        manifest.listed("model.onnx", "the ONNX model")
        backend = get_backend("onnxruntime")
        return backend, backend.compile(root / "model.onnx", root, precision="fp32"), "onnxruntime-fp32 (model.onnx)"
    try:
        compiled = Compiled.from_dict(
            {
                **record,
                "model_path": str(root / record["model_path"]),
                "source": str(root / record["source"]),
                "files": [str(root / f) for f in record["files"]],
            }
        )
    except (KeyError, TypeError, ValueError) as e:
        msg = f"{manifest.path} has a malformed 'compile' record ({type(e).__name__}: {e}); rebuild the artifact."
        raise ArtifactError(msg) from e
    return get_backend(compiled.backend), compiled, f"{compiled.backend}-{compiled.precision}"


def recheck_artifact(
    artifact_dir: str | Path,
    *,
    expect: str | None = None,
    max_abs: float | None = None,
    min_agreement: float | None = None,
) -> dict[str, Any]:
    """Verify every file's hash, then re-run the shipped model on the golden images against PyTorch's logits.

    The tolerance is this toolkit's for the model's precision (``gates.TOLERANCES``), never one the manifest under
    check records; ``max_abs`` and ``min_agreement`` loosen or tighten it as ``lgdeploy build`` allows.

    Raises:
        ArtifactError: a file is missing, changed or extra, or the golden file is unusable.
        VerificationError: the model no longer matches PyTorch within the tolerance.
    """
    import dataclasses
    import zipfile

    import numpy as np

    from learngene_deploy.bench import local_threads
    from learngene_deploy.gates import TOLERANCES, compare, gate

    root = Path(artifact_dir)
    manifest = verify_artifact(root, expect=expect)
    golden_file = manifest.golden_file
    try:
        with np.load(root / golden_file, allow_pickle=False) as golden:
            logits, images = golden["logits"], golden["images"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        msg = (
            f"artifact {root}: {golden_file} is not a golden file with images and logits ({e}); "
            "rebuild the artifact with `lgdeploy build`."
        )
        raise ArtifactError(msg) from e
    if images.ndim != 4 or logits.ndim != 2 or len(images) != len(logits) or not len(images):
        msg = (
            f"artifact {root}: {golden_file} holds images of shape {images.shape} and logits of shape {logits.shape}, "
            "not N images and N rows of logits; rebuild the artifact with `lgdeploy build`."
        )
        raise ArtifactError(msg)
    backend, compiled, name = shipped_model(root, manifest)
    if compiled.precision not in TOLERANCES:
        raise ArtifactError(f"{manifest.path} names precision {compiled.precision!r}; valid: {', '.join(TOLERANCES)}.")
    on_host, _ = backend.host_variant(compiled)  # verify anywhere, e.g. a GPU-targeted IR on this CPU
    runner = backend.load_runner(on_host, threads=local_threads(manifest.runtime.threads))
    tolerance = TOLERANCES[compiled.precision]
    if max_abs is not None:
        tolerance = dataclasses.replace(tolerance, max_abs=max_abs)
    if min_agreement is not None:
        tolerance = dataclasses.replace(tolerance, top1_agreement=min_agreement)
    try:
        outputs = runner.run(images.astype(np.float32, copy=False))
    except Exception as e:  # the runtime's own error types (shape, dtype): the golden file does not fit the model
        msg = (
            f"artifact {root}: {name} cannot run the golden images of shape {images.shape} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); rebuild the artifact with `lgdeploy build`."
        )
        raise ArtifactError(msg) from e
    if np.shape(outputs) != logits.shape:
        msg = (
            f"artifact {root}: {name} returns logits of shape {np.shape(outputs)} for the golden images, but the "
            f"golden logits have shape {logits.shape}; rebuild the artifact with `lgdeploy build`."
        )
        raise ArtifactError(msg)
    result = compare(logits, outputs, reference="pytorch (golden)", candidate=name, tolerance=tolerance)
    gate(result)
    return result.to_dict()


def require_compiled(root: Path, manifest: Manifest) -> None:
    """Refuse an artifact whose compile step was skipped (there is no runtime model to benchmark).

    Raises:
        ArtifactError: the manifest has no ``compile`` record.
    """
    if manifest.compile_record is None and manifest.get("status") == "awaiting-compile":
        msg = (
            f"artifact {root} awaits its compile on the target; run `lgdeploy compile {root}` there (or "
            f"`lgdeploy compile {root} --host user@box` from here), which also benchmarks it."
        )
        raise ArtifactError(msg)
    if manifest.compile_record is None:
        reasons = "; ".join(s["reason"] for s in manifest.skipped if s["stage"] == "compile")
        msg = (
            f"artifact {root} has no compiled model to benchmark ({reasons or 'compile was skipped'}); rebuild it "
            "with `lgdeploy build` on a machine that has the profile's runtime."
        )
        raise ArtifactError(msg)


def trusted_profile(manifest: Manifest, profile: str | Path | None = None) -> tuple[Any, str]:
    """The profile an artifact was built for, read from a profile file rather than the manifest under check.

    With ``profile`` (a shipped name or a .yaml file) its sha256 must be the one the manifest records. Without, the
    shipped profile with that sha256, else the profile file the build read (the manifest's ``profile.source``) if
    it still exists here with that same sha256. The manifest's own copy of the budgets never decides.

    Returns:
        The :class:`~learngene_deploy.profile.DeviceProfile` and how it was found (for the verdict's record).

    Raises:
        ArtifactError: ``profile`` is not the profile the artifact was built for, or none can be found.
    """
    from learngene_deploy.errors import ProfileError
    from learngene_deploy.profile import list_profiles, load_profile

    recorded = manifest.section("profile")
    claimed = recorded.get("sha256")
    if profile is not None:
        p = load_profile(profile)
        if p.sha256 != claimed:
            msg = (
                f"--profile {profile} (sha256 {p.sha256[:12]}...) is not the profile this artifact was built with "
                f"(sha256 {str(claimed)[:12]}...); pass that profile, or rebuild the artifact for this one."
            )
            raise ArtifactError(msg)
        return p, f"profile {p.name} (sha256 {p.sha256[:12]}...)"
    p = next((q for q in map(load_profile, list_profiles()) if q.sha256 == claimed), None)
    if p is not None:
        return p, f"profile {p.name} (sha256 {p.sha256[:12]}...)"
    source = recorded.get("source")
    if isinstance(source, str) and source.endswith((".yaml", ".yml")) and Path(source).is_file():
        try:
            p = load_profile(source)
        except ProfileError:
            p = None
        if p is not None and p.sha256 == claimed:
            return p, f"profile {p.name} from {source} (sha256 {p.sha256[:12]}..., the file the build read)"
    name = recorded.get("name", "?")
    hint = f"--profile {source}" if isinstance(source, str) and source.endswith((".yaml", ".yml")) else None
    msg = (
        f"this artifact was built for profile {name!r} (sha256 {str(claimed)[:12]}...), which is not shipped, "
        f"and its budgets are not taken from the manifest under check; pass the profile with "
        f"{hint or '--profile FILE'}."
    )
    raise ArtifactError(msg)


def trusted_budgets(manifest: Manifest, profile: str | Path | None = None) -> tuple[BudgetsRecord, str]:
    """The budgets a target measurement is judged against (:func:`trusted_profile`'s) and where they came from."""
    p, source = trusted_profile(manifest, profile)
    b = p.budgets
    return BudgetsRecord(b.latency_ms, b.percentile, b.batch), source


def record_target_benchmark(
    root: Path,
    manifest: Manifest,
    record: dict[str, Any],
    *,
    where: str | None = None,
    profile: str | Path | None = None,
) -> Manifest:
    """Append a target measurement to the manifest, let it decide the latency verdict, rewrite the manifest atomically.

    Args:
        root: the artifact directory.
        manifest: its verified manifest (updated in place and returned).
        record: ``{"measured": ISO time, "host": facts of the measuring machine, "stats": LatencyStats dict, ...}``.
        where: how the verdict's basis names the device (default: the record's host name).
    """
    manifest = manifest if isinstance(manifest, Manifest) else Manifest(manifest)
    budgets, source = trusted_budgets(manifest, profile)
    manifest.record_target_benchmark(record, where=where, budgets=budgets, budget_source=source)
    try:
        manifest.save(root)
    except OSError as e:  # a read-only artifact: say what was measured, so the minutes spent are not lost
        stats = record.get("stats", {})
        measured = ", ".join(f"{k[:-3]} {stats[k]:.3g} ms" for k in ("p50_ms", "p90_ms", "p99_ms") if stats.get(k))
        msg = (
            f"measured {measured or 'the model'} but cannot record it in {root / 'manifest.json'} "
            f"({e.strerror or e}); make the artifact writable (or copy it somewhere writable) and benchmark again."
        )
        raise ArtifactError(msg) from e
    return manifest


def measure_and_record(
    artifact_dir: str | Path,
    measure: Callable[[Path, Manifest], tuple[dict[str, Any], str | None]],
    *,
    profile: str | Path | None = None,
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
    trusted_budgets(manifest, profile)  # a wrong --profile is refused before minutes of measuring
    record, where = measure(root, manifest)
    return record_target_benchmark(root, manifest, record, where=where, profile=profile)


def bench_artifact(
    artifact_dir: str | Path, *, runs: int = 50, rounds: int = 3, profile: str | Path | None = None
) -> Manifest:
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

    return measure_and_record(artifact_dir, here, profile=profile)
