"""`lgdeploy build`: profile -> select -> recompose -> fine-tune -> export -> simplify -> verify -> compile -> bench.

This is the only module that chains stages. Each stage returns a small result that records where it came
from, and everything the build learns goes into the artifact's ``manifest.json``. The artifact directory is
written under a temporary name and renamed only when every gate passed (see :mod:`learngene_deploy.artifact`).
The fine-tune checkpoints into a work directory beside the output (see :mod:`learngene_deploy.workdir`), so the
same command resumes a killed or failed build from its last checkpoint.

Verification gates (max abs difference and top-1 agreement on real validation images):
PyTorch -> exported ONNX -> simplified ONNX -> compiled model, plus, for INT8, the accuracy drop against fp32.
A failing gate stops the build with a clear message; no artifact is left looking complete.

Budgets belong to the target device. When the profile is not the machine this runs on (``host: false``),
the latency budget is judged on the *predicted* target latency and the build machine's measurement is
recorded separately, labelled as such; ``lgdeploy bench`` on the target replaces the prediction. For a
``host: true`` profile (``cpu-host``) the measurement decides.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from learngene_deploy._fs import atomic_path
from learngene_deploy._version import __version__
from learngene_deploy.errors import ArtifactError, ConfigError, DataError
from learngene_deploy.workdir import BuildWork

Log = Callable[[str, str], None]
GOLDEN = "golden.npz"  # validation images + PyTorch logits shipped with the artifact, for `lgdeploy verify`
GOLDEN_IMAGES = 16


@dataclass(frozen=True)
class BuildOptions:
    """Everything `lgdeploy build` can be told; defaults give the offline main job."""

    profile: str
    learngene: str | None = None  # file or shipped name (default: the shipped learngene)
    data: str | None = None  # ImageFolder dir, built-in name or IDX dir (default: fashion-mnist, else digits)
    finetune_steps: int | None = None  # optimiser steps of the brief fine-tune (default 150)
    finetune_epochs: float | None = None  # alternatively, passes over the training split
    finetune_lr: float = 3e-4
    finetune_batch: int = 64
    train_limit: int | None = 20000  # training images used for the fine-tune (None: all)
    backend: str | None = None  # override the profile's runtime backend
    precision: str | None = None  # override the profile's precision
    out: Path | None = None  # artifact directory (default artifacts/<profile>)
    force: bool = False  # replace an existing artifact directory
    checkpoint_every: int = 50  # fine-tune checkpoint interval in steps (0: only at the end); a re-run resumes
    exporter: Literal["dynamo", "legacy"] = "dynamo"
    simplifier: Literal["onnxsim", "onnxslim"] = "onnxsim"
    dynamic_batch: bool = False
    verify_images: int = 256  # validation images used by the numeric gates
    max_abs: float = 1e-4  # fp32 gate: largest logit difference
    min_agreement: float | None = None  # top-1 agreement limit (default per precision)
    max_int8_drop: float = 1.0  # INT8 gate: accuracy drop against fp32, percentage points
    calibration_images: int = 300
    bench_runs: int = 50
    bench_rounds: int = 3
    bench_min_time_s: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]
    skipped: tuple[dict[str, str], ...] = field(default_factory=tuple)


def _silent(stage: str, message: str) -> None:
    del stage, message


def resolve_profile(ref: str, backend: str | None, precision: str | None) -> Any:
    """Load a profile and apply runtime overrides, re-validating the result like a file."""
    from learngene_deploy.profile import load_profile, profile_from_dict

    profile = load_profile(ref)
    if backend is None and precision is None:
        return profile
    data = profile.to_dict()
    runtime = data["runtime"]
    if backend is not None and backend != runtime["backend"]:
        runtime.update(backend=backend, execution_provider=None, device=None, workspace_mb=None, format="onnx")
    if precision is not None:
        runtime["precision"] = precision
    overridden = profile_from_dict(data, source=f"{profile.source} (with --backend/--precision)", sha256=profile.sha256)
    return dataclasses.replace(overridden, source=profile.source)


def default_data_source() -> str:
    from learngene_deploy.data import FASHION_MNIST_DIR

    return "fashion-mnist" if FASHION_MNIST_DIR.is_dir() else "digits"


def _numpy_split(dataset: Any, limit: int) -> tuple[Any, Any]:
    images, labels = dataset.tensors
    return images[:limit].contiguous().numpy(), labels[:limit].numpy()


def local_threads(threads: int | None) -> int | None:
    """A target's thread count as this machine runs it: at most its cores.

    The target's count can exceed the build machine's cores (x86-server: 16 on a 2-core CI box); oversubscribed
    runs would measure contention, not the model. Manifests record the count actually used.
    """
    return min(threads, os.cpu_count() or 1) if threads else threads


def _onnx_stage(path: Path, threads: int | None) -> Any:
    """An ONNX Runtime fp32 runner for an ONNX file (used to verify the export and the simplifier)."""
    from learngene_deploy.backends import get_backend

    backend = get_backend("onnxruntime")
    compiled = backend.compile(path, path.parent, precision="fp32")
    return backend.load_runner(compiled, threads=threads)


def _relative(path: str, root: Path) -> str:
    """``path`` relative to the artifact directory (the build writes under a temporary name, then renames it)."""
    p = Path(path)
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name


def _relative_record(record: dict[str, Any], root: Path) -> dict[str, Any]:
    """A Compiled record with paths relative to the artifact directory."""
    return {
        **record,
        "model_path": _relative(record["model_path"], root),
        "source": _relative(record["source"], root),
        "files": [_relative(f, root) for f in record["files"]],
    }


def latency_miss_note(
    measured_ms: float, budget_ms: float, predicted_ms: float, predicted_source: str, profile: str
) -> str | None:
    """Why a measured latency missed its budget, and what to do about it; ``None`` when it met the budget.

    ``predicted_source`` is where selection's prediction came from: ``"measured"`` or ``"fit"`` (the profile's
    latency table) or ``"roofline"`` (no table).
    """
    if measured_ms <= budget_ms:
        return None
    head = f"measured {measured_ms:.3g} ms against the {budget_ms:g} ms budget"
    calibrate = f"`lgdeploy profiles calibrate {profile} --out FILE`"
    if predicted_ms > budget_ms:
        return f"{head}; the size was already predicted over it ({predicted_ms:.3g} ms)."
    if predicted_source == "roofline":
        return (
            f"{head}, where the uncalibrated roofline estimate was {predicted_ms:.3g} ms; calibrate the device "
            f"({calibrate}, run on it) and reference the table from the profile, so selection predicts from "
            "measurements."
        )
    return (
        f"{head}, {measured_ms / predicted_ms - 1:.0%} above the {predicted_ms:.3g} ms its latency table "
        f"predicted; if the device was busier or hotter than when it was calibrated, re-measure it idle with "
        f"`lgdeploy bench`, otherwise re-calibrate it ({calibrate})."
    )


def _judge(
    profile: Any,
    predicted_ms: float,
    predicted_source: str,
    predicted_mb: float,
    stats: dict[str, Any] | None,
    files_mb: float,
) -> dict[str, Any]:
    """Pass/fail of every budget, with what each verdict is based on."""
    b = profile.budgets
    key = f"p{b.percentile}_ms"
    measured = stats.get(key) if stats else None
    if profile.host and measured is not None:
        latency, basis = measured, f"measured {key} on this machine (the profile's device)"
        note = latency_miss_note(measured, b.latency_ms, predicted_ms, predicted_source, profile.name)
    else:
        latency, basis = predicted_ms, "predicted for the target device (this machine is not the target)"
        note = None
    memory = stats.get("model_rss_mb") if (profile.host and stats) else None
    return {
        "latency": {
            "budget_ms": b.latency_ms,
            "percentile": b.percentile,
            "value_ms": latency,
            "basis": basis,
            "passed": latency <= b.latency_ms,
        }
        | ({"note": note} if note else {}),
        "memory": {
            "budget_mb": b.memory_mb,
            "value_mb": memory if memory is not None else predicted_mb,
            "basis": "measured model RSS on this machine" if memory is not None else "predicted weights + activations",
            "passed": (memory if memory is not None else predicted_mb) <= b.memory_mb,
        },
        "model_size": {
            "budget_mb": b.model_size_mb,
            "value_mb": files_mb,
            "basis": "size of the compiled model files",
            "passed": files_mb <= b.model_size_mb,
        },
    }


def build(opts: BuildOptions, *, log: Log = _silent) -> BuildResult:
    """Run the whole pipeline for one profile and write its artifact directory.

    The fine-tune checkpoints every ``opts.checkpoint_every`` steps into ``.<out name>.work/`` beside the output;
    the same call after a kill or a failure resumes from the last checkpoint (and logs the step), a call with other
    inputs discards it, and a successful build removes it.

    Raises:
        LgdError: a clear, one-sentence reason for any failure; no artifact directory is left looking complete.
    """
    import torch

    t_start = time.perf_counter()
    if opts.finetune_steps is not None and opts.finetune_steps < 1:
        msg = f"finetune_steps must be at least 1, got {opts.finetune_steps}; leave it unset for the default 150 steps."
        raise ConfigError(msg)
    if opts.finetune_epochs is not None and opts.finetune_epochs <= 0:
        msg = f"finetune_epochs must be greater than 0, got {opts.finetune_epochs}; leave it unset for 150 steps."
        raise ConfigError(msg)
    torch.manual_seed(opts.seed)
    profile = resolve_profile(opts.profile, opts.backend, opts.precision)
    out_dir = Path(opts.out) if opts.out is not None else Path("artifacts") / profile.name
    # Refuse an existing output before spending minutes on fine-tuning.
    if out_dir.exists() and not opts.force:
        msg = f"output directory {out_dir} already exists; pass --force to replace it or choose another --out."
        raise ArtifactError(msg)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"output path {out_dir} exists and is not a directory; choose another --out.")
    work = BuildWork(out_dir)  # takes its lock, so no other build of out_dir runs; leftovers of killed ones go
    for stale in work.acquire():
        log("work", f"removed {stale}, left by a build of {out_dir} that did not finish")
    success = False
    try:
        result = _build(opts, profile, out_dir, work, log, t_start)
        success = True
    finally:
        work.release(success=success)
    return result


def _build(opts: BuildOptions, profile: Any, out_dir: Path, work: BuildWork, log: Log, t_start: float) -> BuildResult:
    """The stages of :func:`build` once the output is claimed (``work``: its locked :class:`BuildWork`)."""
    import numpy as np
    import torch

    from learngene_deploy.artifact import ArtifactWriter, host_facts, os_error_message, sha256_file, tool_versions
    from learngene_deploy.backends import get_backend
    from learngene_deploy.data import load_data
    from learngene_deploy.export import simplify, torch2onnx
    from learngene_deploy.learngene.io import load_learngene, read_metadata
    from learngene_deploy.shipped import resolve_learngene
    from learngene_deploy.sizing.candidates import candidates_from_metadata
    from learngene_deploy.sizing.select import select
    from learngene_deploy.training.finetune import finetune
    from learngene_deploy.training.loop import TrainConfig, evaluate
    from learngene_deploy.verify import TOLERANCES, Tolerance, check, check_accuracy, gate, torch_stage

    rt, budgets = profile.runtime, profile.budgets
    threads = rt.threads if profile.host else local_threads(rt.threads)

    # 1. select -------------------------------------------------------------------------------------------
    lg_path = resolve_learngene(opts.learngene)
    meta = read_metadata(lg_path)
    selection = select(candidates_from_metadata(meta), profile)
    chosen = selection.chosen
    size = chosen.candidate.size
    log(
        "select",
        f"{chosen.candidate.label} of {lg_path.name}: {chosen.params / 1e6:.2f}M params, "
        f"{chosen.latency_ms:.3g} ms predicted ({chosen.latency_source})",
    )

    # 2. recompose + data ---------------------------------------------------------------------------------
    generator = load_learngene(lg_path)
    arch, _ = generator.generate(**size)
    img_size = arch.img_size if budgets.input_size == "native" else budgets.input_size
    if img_size != arch.img_size:
        msg = (
            f"profile '{profile.name}' asks for input size {img_size} but the learngene was trained at "
            f"{arch.img_size}; "
            "set budgets.input_size to native (resizing the position embedding is not supported yet)."
        )
        raise ConfigError(msg)
    data_source = opts.data or default_data_source()
    data = load_data(data_source, img_size=img_size, seed=opts.seed, train_limit=opts.train_limit)
    if data.in_chans != arch.in_chans:
        msg = f"the data has {data.in_chans} channels but the learngene expects {arch.in_chans}; use matching data."
        raise DataError(msg)
    same_head = data.num_classes == arch.num_classes
    direct = evaluate(generator.recompose(**size), data.val) if same_head else None
    log(
        "recompose",
        f"{arch.name}; direct top-1 {direct:.2%} on {len(data.val)} validation images"
        if direct is not None
        else f"{arch.name}; new {data.num_classes}-class head (data has other classes than the learngene)",
    )

    # 3. fine-tune (resumable: checkpoints in the work directory) -------------------------------------------
    steps = opts.finetune_steps if opts.finetune_steps is not None else (None if opts.finetune_epochs else 150)
    lg_sha256 = sha256_file(lg_path)
    inputs = {  # everything the fine-tune depends on; a re-run with the same inputs resumes it
        "profile": {"sha256": profile.sha256, "backend": opts.backend, "precision": opts.precision},
        "learngene_sha256": lg_sha256,
        "size": size,
        "data": {k: v for k, v in data.info.items() if k != "source"},
        "finetune": {
            "mode": "unconstrained",
            "steps": steps,
            "epochs": opts.finetune_epochs,
            "lr": opts.finetune_lr,
            "batch_size": opts.finetune_batch,
            "train_limit": opts.train_limit,
            "seed": opts.seed,
        },
        "versions": {"learngene-deploy": __version__, "torch": torch.__version__},
    }
    cfg = TrainConfig(
        out=work.finetune_dir,
        epochs=opts.finetune_epochs or 1.0,
        max_steps=steps,
        batch_size=opts.finetune_batch,
        lr=opts.finetune_lr,
        warmup=0.1,
        seed=opts.seed,
        progress=True,
        ckpt_interval=opts.checkpoint_every,
    )
    try:
        resumed_from, note = work.reconcile(inputs)
        if note:
            log("finetune", note)
        tuned = finetune(generator, data, dataclasses.replace(cfg, resume=resumed_from > 0), size=size)
    except OSError as e:  # the checkpoint could not be written (full disk, quota, permissions)
        raise ArtifactError(os_error_message(e, f"the fine-tune checkpoint in {work.path}")) from e
    model = tuned.model.eval()
    log("finetune", f"{tuned.result.steps} steps in {tuned.result.wall_time_s:.0f} s; top-1 {tuned.top1:.2%}")

    # 4-8. export, simplify, verify, compile, bench: everything below lands in the artifact -------------------
    # Whole batches only: a static-batch model runs images in chunks of the profile's batch.
    n_val = min(opts.verify_images, len(data.val)) // budgets.batch * budgets.batch
    x_val, y_val = _numpy_split(data.val, n_val)
    x_cal, _ = _numpy_split(data.train, opts.calibration_images // budgets.batch * budgets.batch)
    shape = (budgets.batch, arch.in_chans, img_size, img_size)
    facts = {
        "lgdeploy.profile": profile.name,
        "lgdeploy.learngene_sha256": lg_sha256,
        "lgdeploy.arch": json.dumps(tuned.arch.to_dict(), sort_keys=True),
        "lgdeploy.size": json.dumps(size, sort_keys=True),
    }
    checks: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []

    def gated(result: Any) -> Any:
        """Record a verification result in the manifest, then stop the build if it failed."""
        checks.append(result.to_dict())
        gate(result)
        return result

    with ArtifactWriter(out_dir, force=opts.force) as writer:
        raw = torch2onnx(
            model,
            input_shape=shape,
            out_path=work.export_dir / "model.onnx",
            opset=rt.opset,
            exporter=opts.exporter,
            dynamic_batch=opts.dynamic_batch,
            metadata=facts,
        )
        fp32_tol = Tolerance(max_abs=opts.max_abs, top1_agreement=opts.min_agreement or 1.0)
        reference = torch_stage(model)
        raw_stage = _onnx_stage(raw.path, threads)
        result = gated(check(reference, raw_stage, x_val, reference="pytorch", candidate="onnx", tolerance=fp32_tol))
        log("export", f"{opts.exporter} opset {rt.opset}: max |Δ| {result.max_abs_diff:.2e} vs PyTorch")

        n_golden = -(-GOLDEN_IMAGES // budgets.batch) * budgets.batch
        golden_x = x_val[:n_golden]
        np.savez(writer.path / GOLDEN, images=golden_x, logits=reference(golden_x), labels=y_val[:n_golden])

        simplified = simplify(raw, writer.path / "model.onnx", tool=opts.simplifier)
        simplified_stage = _onnx_stage(simplified.path, threads)
        result = gated(
            check(raw_stage, simplified_stage, x_val, reference="onnx", candidate="onnx-simplified", tolerance=fp32_tol)
        )
        log("simplify", f"{opts.simplifier}: max |Δ| {result.max_abs_diff:.2e} vs exported ONNX")

        backend = get_backend(rt.backend)
        compiled = stats = accuracy = host_note = None
        reason = backend.unavailable_reason()
        if reason is not None:
            skipped.append({"stage": "compile", "reason": reason})
            skipped.append({"stage": "benchmark", "reason": f"no {rt.backend} model was compiled"})
            log("compile", f"SKIPPED: {reason}")
        else:
            compiled = backend.compile(
                simplified.path, writer.path, precision=rt.precision, profile=profile, calibration_data=x_cal
            )
            on_host, host_note = backend.host_variant(compiled)
            if host_note:
                log("compile", f"note: {host_note}")
            runner = backend.load_runner(on_host, threads=threads)
            tol = TOLERANCES[rt.precision] if rt.precision != "fp32" else fp32_tol
            if opts.min_agreement is not None:
                tol = dataclasses.replace(tol, top1_agreement=opts.min_agreement)
            name = f"{rt.backend}-{rt.precision}"
            result = gated(check(reference, runner, x_val, reference="pytorch", candidate=name, tolerance=tol))
            if rt.precision == "int8":
                accuracy = gated(
                    check_accuracy(
                        reference,
                        runner,
                        x_val,
                        y_val,
                        reference="pytorch-fp32",
                        candidate=name,
                        max_drop_points=opts.max_int8_drop,
                    )
                )
            log(
                "compile",
                f"{compiled.tool} {rt.precision} in {compiled.seconds:.1f} s; top-1 agreement "
                f"{result.top1_agreement:.1%}",
            )
            del runner
            from learngene_deploy.bench import benchmark

            stats = benchmark(
                on_host,
                threads=threads,
                batch=budgets.batch,
                min_runs=opts.bench_runs,
                min_time_s=opts.bench_min_time_s,
                rounds=opts.bench_rounds,
            ).to_dict()
            stats["model_path"] = _relative(stats["model_path"], writer.path)  # not the temporary directory's name
            log("bench", f"p50 {stats['p50_ms']:.3g} ms, p90 {stats['p90_ms']:.3g} ms on this machine")

        model_files = compiled.files if compiled is not None else (simplified.path,)
        files_mb = sum(Path(p).stat().st_size for p in model_files) / 2**20
        verdict = _judge(profile, chosen.latency_ms, chosen.latency_source, chosen.memory_mb, stats, files_mb)
        manifest = {
            "status": "complete" if not skipped else "complete-with-skipped-steps",
            "profile": {
                "name": profile.name,
                "sha256": profile.sha256,
                "source": profile.source,
                "host": profile.host,
                "runtime": dataclasses.asdict(rt),
                "budgets": dataclasses.asdict(budgets),
            },
            "learngene": {
                "path": str(lg_path),
                "sha256": facts["lgdeploy.learngene_sha256"],
                "method": meta["method"],
                "training": meta.get("training", {}),
            },
            "selection": {
                "size": size,
                "predictor": selection.predictor,
                "chosen": chosen.to_dict(),
                "candidates": len(selection.predictions),
                "notes": list(selection.notes),
            },
            "architecture": tuned.arch.to_dict(),
            "finetune": {
                "data": data.info,
                "mode": tuned.mode,
                "steps": tuned.result.steps,
                "resumed_from_step": resumed_from,
                "checkpoint_every": cfg.ckpt_interval,
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
                "seed": opts.seed,
                "trainable_params": tuned.trainable_params,
                "wall_time_s": tuned.result.wall_time_s,
                "top1_before": direct,
                "top1_after": tuned.top1,
            },
            "export": {
                "exported": {**raw.to_dict(), "path": None},  # intermediate file, not shipped
                "simplified": {**simplified.to_dict(), "path": "model.onnx", "source": "exported"},
            },
            "compile": _relative_record(compiled.to_dict(), writer.path) if compiled is not None else None,
            "checks": checks,
            "golden": {"file": GOLDEN, "images": len(golden_x), "reference": "pytorch"},
            "int8_accuracy": accuracy.to_dict() if accuracy is not None else None,
            "benchmark": {
                "measured_on": "target" if profile.host else "build machine (not the target device)",
                "host_differences": host_note,
                **(stats or {"p50_ms": None, "p90_ms": None, "p99_ms": None, "skipped": True}),
            },
            "latency": {
                "predicted_ms": chosen.latency_ms,
                "predicted_source": chosen.latency_source,
                "measured_ms": stats.get(f"p{budgets.percentile}_ms") if stats else None,
                "percentile": budgets.percentile,
            },
            "budgets": verdict,
            "skipped": skipped,
            "tools": tool_versions(),
            "host": host_facts(),
            "wall_time_s": time.perf_counter() - t_start,
        }
        manifest = json.loads(json.dumps(manifest, default=str))  # paths and tuples to plain JSON
        from learngene_deploy.report import write_report

        write_report(writer.path, manifest, selection)
        final = writer.finalize(manifest)
    summary = "; ".join(f"{name} {'ok' if v['passed'] else 'MISSED'}" for name, v in verdict.items())
    log("artifact", f"{final} (budgets: {summary})")
    if "note" in verdict["latency"]:
        log("artifact", f"latency budget missed: {verdict['latency']['note']}")
    return BuildResult(out_dir=final, manifest=manifest, skipped=tuple(skipped))


def _artifact_runner(root: Path, manifest: dict[str, Any]) -> tuple[Any, Any, str]:
    """(backend, Compiled, name) of the model an artifact ships: the compiled one, else model.onnx on ORT."""
    from learngene_deploy.backends import get_backend
    from learngene_deploy.backends.base import Compiled

    record = manifest.get("compile")
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

    from learngene_deploy.artifact import verify_artifact
    from learngene_deploy.verify import TOLERANCES, Tolerance, compare, gate

    root = Path(artifact_dir)
    manifest = verify_artifact(root)
    golden = np.load(root / manifest["golden"]["file"])
    backend, compiled, name = _artifact_runner(root, manifest)
    on_host, _ = backend.host_variant(compiled)  # verify anywhere, e.g. a GPU-targeted IR on this CPU
    runner = backend.load_runner(on_host, threads=local_threads(manifest["profile"]["runtime"]["threads"]))
    built = next((c for c in manifest["checks"] if c["candidate"] == name), None)
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


def require_compiled(root: Path, manifest: dict[str, Any]) -> None:
    """Refuse an artifact whose compile step was skipped (there is no runtime model to benchmark).

    Raises:
        ArtifactError: the manifest has no ``compile`` record.
    """
    from learngene_deploy.errors import ArtifactError

    if manifest.get("compile") is None:
        reasons = "; ".join(s["reason"] for s in manifest.get("skipped", []) if s["stage"] == "compile")
        msg = (
            f"artifact {root} has no compiled model to benchmark ({reasons or 'compile was skipped'}); rebuild it "
            "with `lgdeploy build` on a machine that has the profile's runtime."
        )
        raise ArtifactError(msg)


def record_target_benchmark(
    root: Path, manifest: dict[str, Any], record: dict[str, Any], *, where: str | None = None
) -> dict[str, Any]:
    """Append a target measurement to the manifest, let it decide the latency verdict, rewrite the manifest atomically.

    Args:
        root: the artifact directory.
        manifest: its verified manifest (updated in place and returned).
        record: ``{"measured": ISO time, "host": facts of the measuring machine, "stats": LatencyStats dict, ...}``.
        where: how the verdict's basis names the device (default: the record's host name).
    """
    from learngene_deploy.artifact import MANIFEST

    budgets = manifest["profile"]["budgets"]
    key = f"p{budgets['percentile']}_ms"
    measured = record["stats"][key]
    manifest.setdefault("target_benchmarks", []).append(record)
    manifest["latency"]["measured_ms"] = measured
    latency = manifest["budgets"]["latency"]
    latency.update(
        value_ms=measured,
        basis=f"measured {key} by `lgdeploy bench` on {where or record['host']['hostname']}",
        passed=measured <= budgets["latency_ms"],
    )
    note = latency_miss_note(
        measured,
        budgets["latency_ms"],
        manifest["latency"]["predicted_ms"],
        manifest["latency"].get("predicted_source", "roofline"),
        manifest["profile"]["name"],
    )
    latency.pop("note", None)  # an earlier measurement's note no longer applies
    if note:
        latency["note"] = note
    with atomic_path(root / MANIFEST) as tmp:  # a failed rewrite leaves no stray file in the artifact
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def bench_artifact(artifact_dir: str | Path, *, runs: int = 50, rounds: int = 3) -> dict[str, Any]:
    """Benchmark an artifact on this machine (meant to be the target) and record it in the manifest.

    The measurement replaces the prediction in the latency verdict; the manifest is rewritten atomically
    (it is not part of its own file table, so the artifact still verifies). :mod:`learngene_deploy.remote`
    does the same on an edge box over SSH or on a phone over adb.
    """
    from datetime import datetime, timezone

    from learngene_deploy.artifact import host_facts, verify_artifact
    from learngene_deploy.bench import benchmark

    root = Path(artifact_dir)
    manifest = verify_artifact(root)
    require_compiled(root, manifest)
    _, compiled, _ = _artifact_runner(root, manifest)
    runtime, budgets = manifest["profile"]["runtime"], manifest["profile"]["budgets"]
    stats = benchmark(compiled, threads=runtime["threads"], batch=budgets["batch"], min_runs=runs, rounds=rounds)
    record = {
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": host_facts(),
        "stats": stats.to_dict(),
    }
    return record_target_benchmark(root, manifest, record)
