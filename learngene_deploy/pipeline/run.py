"""`lgdeploy build`: profile -> select -> recompose -> fine-tune -> export -> simplify -> verify -> compile -> bench.

This is the only module that chains stages (:mod:`learngene_deploy.pipeline.stages`). Each stage returns a small
result that records where it came from, and everything the build learns goes into the artifact's ``manifest.json``.
The artifact directory is written under a temporary name and renamed only when every gate passed (see
:mod:`learngene_deploy.artifact`).
The fine-tune checkpoints into a work directory beside the output (see :mod:`learngene_deploy.pipeline.workdir`), so the
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

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learngene_deploy.artifact.writer import check_output
from learngene_deploy.errors import ConfigError
from learngene_deploy.pipeline import stages
from learngene_deploy.pipeline.options import BuildOptions
from learngene_deploy.pipeline.stages import DEFAULT_FINETUNE_STEPS, GOLDEN, GOLDEN_IMAGES, Log, default_data_source
from learngene_deploy.pipeline.workdir import BuildWork
from learngene_deploy.profile import DeviceProfile, resolve_profile

__all__ = ["GOLDEN", "GOLDEN_IMAGES", "BuildOptions", "BuildResult", "build", "default_data_source"]


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]
    skipped: tuple[dict[str, str], ...] = field(default_factory=tuple)
    manifest_sha256: str = ""  # the trust anchor: `lgdeploy verify OUT --expect manifest_sha256`


def _silent(stage: str, message: str) -> None:
    del stage, message


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
    validate(opts)
    torch.manual_seed(opts.seed)
    profile = resolve_profile(opts.profile, opts.backend, opts.precision)
    if profile.budgets.batch > opts.verify_images:
        msg = (
            f"profile {profile.name} has batch {profile.budgets.batch}, more than the {opts.verify_images} validation "
            f"images the numeric gates run in whole batches; use a profile with 'budgets.batch' of at most "
            f"{opts.verify_images}."
        )
        raise ConfigError(msg)
    out_dir = Path(opts.out) if opts.out is not None else Path("artifacts") / profile.name
    # Refuse an output that exists (or that --force may not replace) before spending minutes on fine-tuning.
    check_output(out_dir, force=opts.force)
    work = BuildWork(out_dir)  # takes its lock, so no other build of out_dir runs; leftovers of killed ones go
    for stale in work.acquire():
        log("work", f"removed {stale}, left by a build of {out_dir} that did not finish")
    success = False
    try:
        result = _run(opts, profile, out_dir, work, log, t_start)
        success = True
    finally:
        work.release(success=success)
    return result


def validate(opts: BuildOptions) -> None:
    """Refuse options no build can use, before any work (one sentence naming the option and what is valid).

    Raises:
        ConfigError: a bad choice, an empty or contradictory fine-tune, empty data, an unknown recipe knob.
        SelectionError: a pinned size (``size``) the learngene does not offer (the valid sizes listed).
    """
    from learngene_deploy.data.presets import resolve_recipe
    from learngene_deploy.names import EXPORTERS, INT8_FALLBACKS, PRECISIONS, RUNTIME_CHOICES, SIMPLIFIERS

    choices = (
        (opts.backend, RUNTIME_CHOICES, "backend", "--backend"),
        (opts.precision, PRECISIONS, "precision", "--precision"),
        (opts.exporter, EXPORTERS, "exporter", "--exporter"),
        (opts.simplifier, SIMPLIFIERS, "simplifier", "--simplifier"),
        (opts.int8_fallback, INT8_FALLBACKS, "int8_fallback", "--int8-fallback"),
    )
    for value, valid, name, flag in choices:
        if value is not None and value not in valid:
            raise ConfigError(f"{name} ({flag}) {value!r} is not one of: {', '.join(valid)}.")
    if opts.data is not None and not str(opts.data).strip():
        raise ConfigError("data (--data) is empty; pass digits, fashion-mnist or a data directory, or leave it unset.")
    if opts.finetune_epochs is not None and not math.isfinite(opts.finetune_epochs):
        raise ConfigError(f"finetune_epochs must be a finite number of passes, got {opts.finetune_epochs}.")
    if opts.finetune_epochs is not None and opts.finetune_epochs <= 0:
        msg = (
            f"finetune_epochs must be greater than 0, got {opts.finetune_epochs}; leave it unset for "
            f"{DEFAULT_FINETUNE_STEPS} steps."
        )
        raise ConfigError(msg)
    if opts.finetune_steps is not None and opts.finetune_epochs is not None:
        raise ConfigError(
            "pass either finetune_steps (--finetune-steps) or finetune_epochs (--finetune-epochs), not both."
        )
    if opts.finetune_steps is not None and opts.finetune_steps < 1:
        msg = (
            f"finetune_steps must be at least 1, got {opts.finetune_steps}; leave it unset for the default "
            f"{DEFAULT_FINETUNE_STEPS} steps."
        )
        raise ConfigError(msg)
    if not (math.isfinite(opts.finetune_lr) and opts.finetune_lr > 0):
        raise ConfigError(f"finetune_lr must be a positive number (--finetune-lr), got {opts.finetune_lr}; e.g. 3e-4.")
    resolve_recipe(opts.recipe, opts.aug)  # a bad preset or knob fails here, not after the data has loaded
    if opts.size is not None:  # a size the learngene does not offer fails here, not after the fine-tune
        stages.pinned_candidate(opts.learngene, dict(opts.size))
    if opts.on_bad_image not in ("error", "skip"):
        raise ConfigError(f"on_bad_image must be 'error' or 'skip', not {opts.on_bad_image!r}.")


def _run(
    opts: BuildOptions, profile: DeviceProfile, out_dir: Path, work: BuildWork, log: Log, started: float
) -> BuildResult:
    """The stages of :func:`build` once the output is claimed (``work``: its locked :class:`BuildWork`)."""
    from learngene_deploy.artifact import ArtifactWriter
    from learngene_deploy.artifact.report import write_report
    from learngene_deploy.artifact.store import manifest_sha256
    from learngene_deploy.gates import torch_logits

    picked = stages.pick(opts.learngene, profile, log, size=None if opts.size is None else dict(opts.size))
    recomposed = stages.recompose(picked, profile, opts, log)
    if len(recomposed.data.val) < profile.budgets.batch:  # the gates would have no whole batch (after the fine-tune)
        msg = (
            f"the validation split has {len(recomposed.data.val)} images, fewer than profile {profile.name}'s batch "
            f"{profile.budgets.batch}; use more data or a profile with a smaller 'budgets.batch'."
        )
        raise ConfigError(msg)
    tuned = stages.tune(picked, recomposed, profile, opts, work, log)
    model = tuned.finetuned.model
    gates = stages.gates_for(recomposed.data, profile, opts)
    with ArtifactWriter(out_dir, force=opts.force) as writer:  # everything below lands in the artifact
        data = recomposed.data
        contract = data.preprocessing.to_dict() if data.preprocessing is not None else None
        ctx = stages.BuildContext(writer.path, work, gates, torch_logits(model), log, contract, list(data.class_names))
        onnx = stages.export_and_simplify(model, tuned, picked, profile, opts, ctx)
        runtime = stages.compile_and_bench(onnx, profile, opts, ctx, picked.selection.chosen.candidate.arch)
        manifest = stages.manifest_for(picked, recomposed, tuned, onnx, runtime, profile, ctx, started)
        write_report(writer.path, manifest, picked.selection)
        final = writer.finalize(manifest)
    verdict = manifest["budgets"]
    summary = "; ".join(f"{name} {'ok' if v['passed'] else 'MISSED'}" for name, v in verdict.items())
    digest = manifest_sha256(final)  # the trust anchor outside the manifest: `lgdeploy verify DIR --expect DIGEST`
    log("artifact", f"{final} (budgets: {summary}; manifest sha256 {digest}, check with `verify --expect`)")
    if "note" in verdict["latency"]:
        log("artifact", f"latency budget missed: {verdict['latency']['note']}")
    return BuildResult(out_dir=final, manifest=manifest, skipped=runtime.skipped, manifest_sha256=digest)
