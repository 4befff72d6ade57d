"""Finish an artifact on its target: a build that cannot (or is told not to) compile ships what the target needs.

Fine-tuning and export run anywhere (a workstation, a hosted CI runner); a TensorRT engine, an OpenVINO GPU/NPU blob
or any model whose runtime the build machine lacks is specific to the device that runs it. Such a build writes an
artifact whose status is ``awaiting-compile``: ``model.onnx``, its gate set (validation images stored as float16,
the PyTorch logits of exactly those images, their labels) and, for INT8, a calibration set drawn from the fine-tune
data, every file hashed in the manifest. ``lgdeploy compile ARTIFACT`` on the target checks every hash, compiles for
the profile's runtime with the same contenders, gates and side-by-side benchmark as a build, records the device it
ran on and swaps the finished artifact into place in one rename; a failure leaves the artifact as it was.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from learngene_deploy.errors import ArtifactError, ConfigError
from learngene_deploy.pipeline.gateset import AWAITING_COMPILE

if TYPE_CHECKING:
    from learngene_deploy.artifact.manifest import Manifest
    from learngene_deploy.pipeline.options import BuildOptions
    from learngene_deploy.pipeline.stages import BuildContext
    from learngene_deploy.profile import DeviceProfile

MAX_GATE_BYTES = 1 << 30  # what np.load may read from one gate file
REWRITTEN = ("report.md",)  # the one file of the build that compile rewrites (a summary of the manifest)


# --- on the target -----------------------------------------------------------------------------------------------
def require_awaiting(root: Path, manifest: Manifest) -> None:
    """Refuse an artifact that is not awaiting its compile (complete, or of another lgdeploy), in one sentence."""
    status = manifest.get("status")
    if status != AWAITING_COMPILE or not isinstance(manifest.get("deferred"), dict):
        msg = (
            f"artifact {root} is {status!r}, not {AWAITING_COMPILE!r}: there is nothing to compile; "
            "build it with `lgdeploy build --defer-compile` to finish it on a target."
        )
        raise ArtifactError(msg)


def target_profile(manifest: Manifest, profile: str | Path | None) -> DeviceProfile:
    """The profile the artifact was built for (:func:`~learngene_deploy.artifact.store.trusted_profile`: a profile
    file, never the manifest's copy) with the runtime the build asked for (``--backend``/``--precision``)."""
    from learngene_deploy.artifact.store import trusted_profile
    from learngene_deploy.profile import resolve_profile

    base, _ = trusted_profile(manifest, profile)
    runtime = manifest.section("profile", "runtime")
    backend, precision = runtime.get("backend"), runtime.get("precision")
    if (backend, precision) == (base.runtime.backend, base.runtime.precision):
        return base
    return resolve_profile(base.source, backend=backend, precision=precision)


def device_check(profile: DeviceProfile, *, force: bool, root: Path = Path("/")) -> dict[str, Any]:
    """Whether this machine is the profile's device; refuses a mismatch unless ``force``.

    A profile of a device family (e.g. a Jetson Orin module) is matched against this machine's device-tree model
    string; a host profile matches any machine; for other profiles lgdeploy cannot tell and says so.
    """
    from learngene_deploy import families

    if profile.host:
        return {"matched": True, "how": "a host profile: the machine lgdeploy runs on"}
    matched, how = families.member_matches(profile.name, root=root)
    if matched is False and not force:
        msg = (
            f"this machine is not a {profile.name} ({how}); an engine compiled here would be built for the wrong "
            "device, so run `lgdeploy compile` on the target, or pass --force to compile here anyway."
        )
        raise ConfigError(msg)
    return {"matched": matched, "how": how, "forced": bool(force and matched is False)}


def _load_npz(root: Path, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    from learngene_deploy._fs import read_regular

    path = root / name
    try:
        raw = read_regular(path, limit=MAX_GATE_BYTES)
        with np.load(io.BytesIO(raw), allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in keys}
    except (OSError, ValueError, KeyError) as e:
        msg = f"cannot read {name} of artifact {root} ({e}); rebuild the artifact with `lgdeploy build`."
        raise ArtifactError(msg) from e
    n = len(arrays[keys[0]])
    if any(len(a) != n for a in arrays.values()) or arrays[keys[0]].ndim != 4:
        msg = f"{name} of artifact {root} holds arrays of mismatched lengths or shapes; rebuild the artifact."
        raise ArtifactError(msg)
    return arrays


def golden_lookup(images: np.ndarray, logits: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A reference "model" that answers the stored PyTorch logits for the stored images (and refuses others)."""
    table = {images[i].tobytes(): logits[i] for i in range(len(images))}

    def reference(x: np.ndarray) -> np.ndarray:
        try:
            return np.stack([table[np.ascontiguousarray(row, dtype=images.dtype).tobytes()] for row in x])
        except KeyError as e:
            raise ArtifactError("the reference logits cover only the artifact's gate images") from e

    return reference


def compile_artifact(
    artifact_dir: str | Path,
    opts: BuildOptions,
    *,
    profile: str | Path | None = None,
    force: bool = False,
    log: Callable[[str, str], None] = lambda _stage, _msg: None,
    device_root: Path = Path("/"),
) -> Path:
    """Compile an artifact awaiting its compile, here on the target, and swap the finished artifact into place.

    Args:
        artifact_dir: an artifact whose status is ``awaiting-compile``.
        opts: gate and benchmark options (tolerances, INT8 limits, runs); its profile field is not used.
        profile: the profile file, when the artifact's profile is not shipped.
        force: compile even on a machine that is not the profile's device.
        log: ``(stage, message)`` progress lines.

    Returns:
        The artifact directory (now complete).

    Raises:
        ArtifactError: a tampered, half-written or already compiled artifact, or an unreadable gate set.
        ConfigError: the wrong device (without ``force``) or the runtime is not installed here.
        VerificationError: the compiled model fails a gate (the artifact is left as it was).
    """
    from learngene_deploy.artifact import ArtifactWriter
    from learngene_deploy.artifact.report import report_markdown
    from learngene_deploy.artifact.store import verify_artifact
    from learngene_deploy.artifact.writer import files_table
    from learngene_deploy.pipeline import stages

    started = time.perf_counter()
    root = Path(artifact_dir)
    manifest = verify_artifact(root)  # every hash, no extra or special files
    require_awaiting(root, manifest)
    built_for = target_profile(manifest, profile)
    device = device_check(built_for, force=force, root=device_root)
    p = dataclasses.replace(built_for, host=True)  # we are on the target now: measure here, INT8 side by side
    _require_runtime(p)
    log("compile", f"profile {p.name} ({p.runtime.backend} {p.runtime.precision}); device: {device['how']}")
    deferred = manifest.section("deferred")
    gate_set = _load_npz(root, manifest.listed(deferred.get("gates", {}).get("file"), "deferred.gates.file"),
                         ("images", "logits", "labels"))  # fmt: skip
    cal_record = deferred.get("calibration")
    cal = (
        _load_npz(root, manifest.listed(cal_record.get("file"), "deferred.calibration.file"), ("images", "labels"))
        if isinstance(cal_record, dict)
        else None
    )
    images = gate_set["images"]
    gates = stages.Gates(
        x_val=images.astype(np.float32),
        y_val=gate_set["labels"],
        x_cal=cal["images"].astype(np.float32) if cal is not None else images[:0].astype(np.float32),
        y_cal=cal["labels"] if cal is not None else None,
        fp32=_fp32_tolerance(opts),
        threads=p.runtime.threads,
    )
    reference = golden_lookup(images.astype(np.float32), gate_set["logits"])
    with ArtifactWriter(root, force=True) as writer, tempfile.TemporaryDirectory(prefix="lgd-compile-") as scratch:
        for rel in files_table(root):
            (writer.path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, writer.path / rel)
        ctx = stages.BuildContext(
            writer.path,
            SimpleNamespace(path=Path(scratch)),  # type: ignore[arg-type]
            gates,
            reference,
            log,
            manifest.get("preprocessing"),
            list(manifest.get("classes") or []),
        )
        onnx = SimpleNamespace(simplified=SimpleNamespace(path=writer.path / "model.onnx"))
        runtime = stages.compile_and_bench(onnx, p, dataclasses.replace(opts, defer_compile=False), ctx)  # type: ignore[arg-type]
        done = _completed(dict(manifest), runtime, p, ctx, device, started)
        (writer.path / "report.md").write_text(report_markdown(done))  # the report says where it was compiled
        final = writer.finalize(done)
    return final


def _require_runtime(profile: DeviceProfile) -> None:
    """Refuse, before any work, a machine that has none of the runtimes the profile compiles for."""
    from learngene_deploy.backends import none_available, unavailable_runtimes
    from learngene_deploy.backends.choice import plan

    rt = profile.runtime
    planned = plan(rt.backend, rt.precision, host=True, accelerator=profile.device.accelerator)
    nothing_here = none_available(unavailable_runtimes(p.backend for p in planned if p.role == "candidate"))
    if nothing_here:
        raise ConfigError(f"cannot compile here: {nothing_here}")


def _fp32_tolerance(opts: BuildOptions) -> Any:
    from learngene_deploy.gates import Tolerance

    return Tolerance(max_abs=opts.max_abs, top1_agreement=opts.min_agreement or 1.0)


def _completed(
    manifest: dict[str, Any], runtime: Any, profile: DeviceProfile, ctx: BuildContext, device: dict[str, Any],
    started: float,
) -> dict[str, Any]:  # fmt: skip
    """The manifest of the finished artifact: the build's record plus the target's compile, gates and benchmark."""
    from learngene_deploy.artifact.verdict import judge
    from learngene_deploy.facts import host_facts, tool_versions, utc_now
    from learngene_deploy.pipeline.stages import _relative_record

    new = {k: v for k, v in manifest.items() if k not in ("files", "schema_version", "toolkit_version", "created")}
    latency, chosen = new["latency"], new["selection"]["chosen"]
    stats = runtime.stats
    files_mb = sum(Path(f).stat().st_size for f in runtime.compiled.files) / 2**20
    deferred = dict(new["deferred"])
    deferred["completed"] = {
        "at": utc_now(),
        "host": host_facts(),
        "device": device,
        "tools": tool_versions(),
        "wall_time_s": time.perf_counter() - started,
    }
    new.update(
        status="complete",
        compile=_relative_record(runtime.compiled.to_dict(), ctx.root),
        checks=list(new.get("checks") or []) + ctx.gates.checks,
        int8_accuracy=runtime.int8_accuracy.to_dict() if runtime.int8_accuracy is not None else None,
        int8_speed_gate=runtime.int8_speed,
        runtime_choice=runtime.choice,
        execution=runtime.execution,
        benchmark={"measured_on": "target", "host_differences": runtime.host_note, **(stats or {})},
        latency={**latency, "measured_ms": stats.get(f"p{profile.budgets.percentile}_ms") if stats else None},
        budgets=judge(
            profile, latency["predicted_ms"], latency["predicted_source"], chosen["memory_mb"], stats, files_mb
        ),
        skipped=[s for s in new.get("skipped", []) if s["stage"] not in ("compile", "benchmark")],
        deferred=deferred,
    )
    return json.loads(json.dumps(new, default=str))
