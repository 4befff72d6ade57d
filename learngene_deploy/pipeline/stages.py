"""The stages of ``lgdeploy build``, each a small function from the previous stage's result to its own.

Only :func:`learngene_deploy.pipeline.run.build` chains them. Every result is a frozen dataclass that records
where it came from; what lands in the artifact is assembled from them once, in :func:`manifest_for`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learngene_deploy.errors import ArtifactError, ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

    from learngene_deploy.backends.base import Compiled
    from learngene_deploy.data import DataSplits
    from learngene_deploy.data.presets import Preset
    from learngene_deploy.export import OnnxArtifact
    from learngene_deploy.gates import AccuracyResult, CheckResult, LogitsFn, Tolerance
    from learngene_deploy.learngene.base import WeightGenerator
    from learngene_deploy.models.vit import ArchSpec
    from learngene_deploy.pipeline.options import BuildOptions
    from learngene_deploy.pipeline.workdir import BuildWork
    from learngene_deploy.profile import DeviceProfile
    from learngene_deploy.sizing.select import Candidate, Selection
    from learngene_deploy.training.finetune import Finetuned

Log = Callable[[str, str], None]
GOLDEN = "golden.npz"  # validation images + PyTorch logits shipped with the artifact, for `lgdeploy verify`
GOLDEN_IMAGES = 16
DEFAULT_FINETUNE_STEPS = 150
DIRECT_EVAL_IMAGES = 2000  # validation images of the direct (before fine-tuning) top-1 the build logs


def default_data_source() -> str:
    from learngene_deploy.data import FASHION_MNIST_DIR

    return "fashion-mnist" if FASHION_MNIST_DIR.is_dir() else "digits"


# --- 1. select ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Picked:
    """The learngene and the size selection chose for the profile."""

    learngene: Path
    sha256: str
    meta: dict[str, Any]
    selection: Selection

    @property
    def size(self) -> dict[str, Any]:
        return self.selection.chosen.candidate.size


def pinned_candidate(learngene: str | None, size: dict[str, int]) -> Candidate:
    """The candidate of ``learngene`` that a pinned ``size`` names (reads only the file's header).

    Raises:
        SelectionError: the learngene does not offer ``size`` (the message lists the sizes it does).
    """
    from learngene_deploy.learngene.io import read_metadata
    from learngene_deploy.shipped import resolve_learngene
    from learngene_deploy.sizing.candidates import candidates_from_metadata, match_size

    path = resolve_learngene(learngene)
    return match_size(candidates_from_metadata(read_metadata(path)), size, path.name)


def pick(learngene: str | None, profile: DeviceProfile, log: Log, *, size: dict[str, int] | None = None) -> Picked:
    """The learngene and the size to build: the one selection chooses, or ``size`` when it is pinned (predicted all
    the same; a pinned size that misses a budget is built with a one-line warning)."""
    from learngene_deploy._fs import sha256_file
    from learngene_deploy.learngene.io import read_metadata
    from learngene_deploy.shipped import resolve_learngene
    from learngene_deploy.sizing.candidates import candidates_from_metadata, match_size
    from learngene_deploy.sizing.select import pin, pinned_misses_line, select

    path = resolve_learngene(learngene)
    meta = read_metadata(path)
    candidates = candidates_from_metadata(meta)
    if size is not None:
        selection = pin(candidates, match_size(candidates, size, path.name), profile)
    else:
        selection = select(candidates, profile)
    chosen = selection.chosen
    log(
        "select",
        f"{chosen.candidate.label} of {path.name}{' (pinned)' if selection.pinned else ''}: "
        f"{chosen.params / 1e6:.2f}M params, {chosen.latency_ms:.3g} ms predicted ({chosen.latency_source})",
    )
    if selection.pinned and not chosen.fits:
        log("select", f"warning: {pinned_misses_line(chosen)}; building it anyway because it was pinned (--size)")
    if selection.budget_use is not None:
        from learngene_deploy.sizing.select import budget_use_line

        log("select", f"note: {budget_use_line(selection.budget_use)}")
    return Picked(path, sha256_file(path), meta, selection)


# --- 2. recompose + data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recomposed:
    """The chosen size rebuilt from the learngene, the data it is tuned on, and its accuracy before tuning."""

    generator: WeightGenerator
    arch: ArchSpec
    data: DataSplits
    direct_top1: float | None  # None when the data has other classes than the learngene's head
    direct_images: int = 0  # validation images the direct top-1 was measured on


def recompose(picked: Picked, profile: DeviceProfile, opts: BuildOptions, log: Log) -> Recomposed:
    import numpy as np

    from learngene_deploy.data import load_data
    from learngene_deploy.learngene.io import learngene_contract, load_learngene
    from learngene_deploy.training.loop import evaluate

    generator = load_learngene(picked.learngene)
    arch, _ = generator.generate(**picked.size)
    img_size = arch.img_size if profile.budgets.input_size == "native" else profile.budgets.input_size
    if img_size != arch.img_size:
        msg = (
            f"profile '{profile.name}' asks for input size {img_size} but the learngene was trained at "
            f"{arch.img_size}; "
            "set budgets.input_size to native (resizing the position embedding is not supported yet)."
        )
        raise ConfigError(msg)
    contract = learngene_contract(picked.meta)  # image sources are read as the learngene was trained
    data = load_data(
        opts.data or default_data_source(),
        img_size=img_size,
        seed=opts.seed,
        train_limit=opts.train_limit,
        preprocessing=contract if contract.img_size == img_size else None,
        on_bad_image=opts.on_bad_image,  # type: ignore[arg-type]
    )
    if data.in_chans != arch.in_chans:
        msg = f"the data has {data.in_chans} channels but the learngene expects {arch.in_chans}; use matching data."
        raise DataError(msg)
    same_head = data.num_classes == arch.num_classes
    # informational, before the fine-tune: a bounded sample, so start-up does not grow with the validation split
    sample = data.val.subset(np.arange(min(len(data.val), DIRECT_EVAL_IMAGES)))
    direct = evaluate(generator.recompose(**picked.size), sample, workers=opts.workers) if same_head else None
    log(
        "recompose",
        f"{arch.name}; direct top-1 {direct:.2%} on {len(sample)} of {len(data.val)} validation images"
        if direct is not None
        else f"{arch.name}; new {data.num_classes}-class head (data has other classes than the learngene)",
    )
    return Recomposed(generator, arch, data, direct, len(sample))


# --- 3. fine-tune ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """The brief fine-tune's recipe, written once: the work directory's inputs, the loop's config, the manifest."""

    steps: int | None
    epochs: float | None
    lr: float
    batch_size: int
    train_limit: int | None
    seed: int
    checkpoint_every: int
    augmentation: Preset
    workers: int | None = None
    progress: bool = True
    mode: str = "unconstrained"

    @classmethod
    def from_options(cls, opts: BuildOptions, *, images: bool = True) -> Recipe:
        """The recipe ``opts`` ask for; ``auto`` is ``light`` on image sources (``images``) and ``none`` on the
        in-memory built-ins, whose shipped learngenes trained without augmentation (a light fine-tune costs them
        accuracy: docs/results.md section 6)."""
        from learngene_deploy.data.presets import resolve_recipe

        default = None if opts.finetune_epochs else DEFAULT_FINETUNE_STEPS
        name = ("light" if images else "none") if opts.recipe == "auto" else opts.recipe
        steps = opts.finetune_steps if opts.finetune_steps is not None else default
        return cls(
            steps,
            opts.finetune_epochs,
            opts.finetune_lr,
            opts.finetune_batch,
            opts.train_limit,
            opts.seed,
            opts.checkpoint_every,
            resolve_recipe(name, opts.aug),
            opts.workers,
            opts.progress,
        )

    def inputs(self) -> dict[str, Any]:
        """What a resumed fine-tune must share with the run it resumes (the work directory compares these)."""
        return {
            "mode": self.mode,
            "steps": self.steps,
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "train_limit": self.train_limit,
            "seed": self.seed,
            "augmentation": self.augmentation.to_dict(),
        }

    def train_config(self, out: Path, *, resume: bool) -> Any:
        from learngene_deploy.training.loop import TrainConfig

        return TrainConfig(
            out=out,
            epochs=self.epochs or 1.0,
            max_steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup=0.1,
            seed=self.seed,
            progress=self.progress,
            ckpt_interval=self.checkpoint_every,
            resume=resume,
            recipe=self.augmentation,
            workers=self.workers,
        )


@dataclass(frozen=True)
class Tuned:
    recipe: Recipe
    finetuned: Finetuned  # what the artifact ships: the fine-tuned model, or the recomposed one it did not beat
    resumed_from: int
    comparison: dict[str, Any] | None = None  # fine-tuned vs recomposed on the same validation images


def tune(
    picked: Picked, recomposed: Recomposed, profile: DeviceProfile, opts: BuildOptions, work: BuildWork, log: Log
) -> Tuned:
    """The brief fine-tune, resumable from the checkpoints in the work directory."""
    import torch

    from learngene_deploy._version import __version__
    from learngene_deploy.errors import os_error_message
    from learngene_deploy.training.finetune import finetune

    recipe = Recipe.from_options(opts, images=not getattr(recomposed.data.train, "in_memory", False))
    inputs = {  # everything the fine-tune depends on; a re-run with the same inputs resumes it
        "profile": {"sha256": profile.sha256, "backend": opts.backend, "precision": opts.precision},
        "learngene_sha256": picked.sha256,
        "size": picked.size,
        "data": {k: v for k, v in recomposed.data.info.items() if k != "source"},
        "finetune": recipe.inputs(),
        "versions": {"learngene-deploy": __version__, "torch": torch.__version__},
    }
    try:
        resumed_from, note = work.reconcile(inputs)
        if note:
            log("finetune", note)
        cfg = recipe.train_config(work.finetune_dir, resume=resumed_from > 0)
        tuned = finetune(recomposed.generator, recomposed.data, cfg, size=picked.size)
    except OSError as e:  # the checkpoint could not be written (full disk, quota, permissions)
        raise ArtifactError(os_error_message(e, f"the fine-tune checkpoint in {work.path}")) from e
    tuned.model.eval()
    skipped = f"; {len(tuned.result.bad_images)} unreadable images skipped" if tuned.result.bad_images else ""
    log(
        "finetune",
        f"{tuned.result.steps} steps ({recipe.augmentation.name} recipe) in {tuned.result.wall_time_s:.0f} s; "
        f"top-1 {tuned.top1:.2%}{skipped}",
    )
    shipped, comparison = keep_better(picked, recomposed, tuned, opts, log)
    return Tuned(recipe, shipped, resumed_from, comparison)


def keep_better(
    picked: Picked, recomposed: Recomposed, tuned: Finetuned, opts: BuildOptions, log: Log
) -> tuple[Finetuned, dict[str, Any] | None]:
    """The weights to ship: the fine-tuned ones, unless they score lower than the recomposed ones on the whole
    validation split (a brief fine-tune can undo what the learngene learned on its own data), then the recomposed
    ones, said in one line. ``opts.keep_finetuned`` ships the fine-tuned weights regardless. With a new head (other
    classes than the learngene's) the recomposed net has nothing to keep: the fine-tuned one ships.

    The fine-tuned model's top-1 is already measured on the whole split; this costs one more evaluation pass.
    """
    if recomposed.direct_top1 is None:
        return tuned, None
    import dataclasses

    from learngene_deploy.training.loop import evaluate

    n = len(recomposed.data.val)
    model = recomposed.generator.recompose(**picked.size).eval()
    before = evaluate(model, recomposed.data.val, workers=opts.workers)
    record: dict[str, Any] = {"images": n, "recomposed_top1": before, "finetuned_top1": tuned.top1}
    if tuned.top1 >= before:
        return tuned, {**record, "shipped": "fine-tuned"}
    lowered = f"the fine-tune lowered top-1 on the {n} validation images from {before:.2%} to {tuned.top1:.2%}"
    if opts.keep_finetuned:
        log("finetune", f"note: {lowered}; --keep-finetuned ships the fine-tuned weights anyway")
        return tuned, {**record, "shipped": "fine-tuned (--keep-finetuned)"}
    log("finetune", f"{lowered}: the artifact ships the recomposed weights; pass --keep-finetuned to ship the others")
    return dataclasses.replace(tuned, model=model, top1=before), {**record, "shipped": "recomposed"}


# --- 4-8. gates, export, simplify, compile, bench ------------------------------------------------------------
@dataclass
class Gates:
    """The numeric gates of one build: real validation images, the fp32 tolerance, and every check made so far."""

    x_val: np.ndarray
    y_val: np.ndarray
    x_cal: np.ndarray
    fp32: Tolerance
    threads: int | None
    checks: list[dict[str, Any]] = field(default_factory=list)
    y_cal: np.ndarray | None = None  # labels of x_cal (training images): accuracy-controlled INT8 searches on them

    def passed(self, result: CheckResult | AccuracyResult) -> Any:
        """Record a verification result for the manifest, then stop the build if it failed."""
        from learngene_deploy.gates import gate

        self.checks.append(result.to_dict())
        gate(result)
        return result

    def compare(self, reference: LogitsFn, candidate: LogitsFn, names: tuple[str, str], tolerance: Tolerance) -> Any:
        from learngene_deploy.gates import check

        ref, cand = names
        return self.passed(check(reference, candidate, self.x_val, reference=ref, candidate=cand, tolerance=tolerance))

    def onnx_logits(self, path: Path) -> LogitsFn:
        """An ONNX Runtime fp32 runner for an ONNX file (verifies the export and the simplifier)."""
        from learngene_deploy.backends import get_backend

        backend = get_backend("onnxruntime")
        compiled = backend.compile(path, path.parent, precision="fp32")
        return backend.load_runner(compiled, threads=self.threads)


def gates_for(data: DataSplits, profile: DeviceProfile, opts: BuildOptions) -> Gates:
    """Whole batches only: a static-batch model runs images in chunks of the profile's batch."""
    from learngene_deploy.bench import local_threads
    from learngene_deploy.gates import Tolerance

    batch = profile.budgets.batch
    x_val, y_val = data.arrays("val", min(opts.verify_images, len(data.val)) // batch * batch)
    x_cal, y_cal = data.arrays("train", min(opts.calibration_images, len(data.train)) // batch * batch)
    threads = profile.runtime.threads if profile.host else local_threads(profile.runtime.threads)
    fp32 = Tolerance(max_abs=opts.max_abs, top1_agreement=opts.min_agreement or 1.0)
    return Gates(x_val, y_val, x_cal, fp32, threads, y_cal=y_cal)


@dataclass(frozen=True)
class Onnx:
    """The exported and the simplified ONNX models (each verified) and the golden images shipped beside them."""

    exported: OnnxArtifact
    simplified: OnnxArtifact
    golden_images: int


def export_and_simplify(
    model: Any, tuned: Tuned, picked: Picked, profile: DeviceProfile, opts: BuildOptions, ctx: BuildContext
) -> Onnx:
    """Export to ONNX and simplify, each checked against its reference; write the golden images and logits."""
    import json

    import numpy as np

    from learngene_deploy.export import simplify, torch2onnx

    gates, budgets = ctx.gates, profile.budgets
    arch = tuned.finetuned.arch
    facts = {
        "lgdeploy.profile": profile.name,
        "lgdeploy.learngene_sha256": picked.sha256,
        "lgdeploy.arch": json.dumps(arch.to_dict(), sort_keys=True),
        "lgdeploy.size": json.dumps(picked.size, sort_keys=True),
        # the input contract and the class names in output order, for an application that reads only the model
        "lgdeploy.preprocessing": json.dumps(ctx.preprocessing, sort_keys=True),
        "lgdeploy.classes": json.dumps(ctx.classes),
    }
    shape = (budgets.batch, arch.in_chans, arch.img_size, arch.img_size)
    raw = torch2onnx(
        model,
        input_shape=shape,
        out_path=ctx.work.export_dir / "model.onnx",
        opset=profile.runtime.opset,
        exporter=opts.exporter,
        dynamic_batch=opts.dynamic_batch,
        metadata=facts,
    )
    raw_logits = gates.onnx_logits(raw.path)
    result = gates.compare(ctx.reference, raw_logits, ("pytorch", "onnx"), gates.fp32)
    ctx.log("export", f"{opts.exporter} opset {profile.runtime.opset}: max |Δ| {result.max_abs_diff:.2e} vs PyTorch")

    n_golden = -(-GOLDEN_IMAGES // budgets.batch) * budgets.batch
    golden_x = gates.x_val[:n_golden]
    np.savez(ctx.root / GOLDEN, images=golden_x, logits=ctx.reference(golden_x), labels=gates.y_val[:n_golden])

    simplified = simplify(raw, ctx.root / "model.onnx", tool=opts.simplifier)
    result = gates.compare(raw_logits, gates.onnx_logits(simplified.path), ("onnx", "onnx-simplified"), gates.fp32)
    ctx.log("simplify", f"{opts.simplifier}: max |Δ| {result.max_abs_diff:.2e} vs exported ONNX")
    return Onnx(raw, simplified, len(golden_x))


@dataclass(frozen=True)
class BuildContext:
    """What the stages inside the artifact share: where it is written, the gates, the PyTorch reference, the log."""

    root: Path  # the artifact's temporary directory
    work: BuildWork
    gates: Gates
    reference: LogitsFn
    log: Log
    preprocessing: dict[str, Any] | None = None  # the contract the model was tuned and verified with
    classes: list[str] = field(default_factory=list)  # class names in output order


@dataclass(frozen=True)
class Runtime:
    """The shipped compiled model (None when this machine lacks the runtime), its checks and its benchmark here."""

    compiled: Compiled | None = None
    stats: dict[str, Any] | None = None
    int8_accuracy: AccuracyResult | None = None
    host_note: str | None = None
    skipped: tuple[dict[str, str], ...] = ()
    choice: dict[str, Any] | None = None  # every contender side by side, the rule, the shipped one and why
    execution: dict[str, Any] | None = None  # where the shipped model ran, as its runtime reported it
    int8_speed: dict[str, Any] | None = None  # INT8's speed gate (None when the precision is not int8)
    deferred: dict[str, Any] | None = None  # compile left to the target: why, and the gate set it will use


RUNTIMES_DIR = "runtimes"  # contenders compile in the work directory; the shipped one moves into the artifact


def compile_and_bench(
    onnx: Onnx, profile: DeviceProfile, opts: BuildOptions, ctx: BuildContext, arch: ArchSpec | None = None
) -> Runtime:
    """Compile every contender (the profile's runtime, or every installed one for ``auto``; INT8's fp32 twins on the
    host), gate each against PyTorch and where it ran, benchmark the verified ones side by side, ship the fastest.

    ``arch`` is the chosen size as selection knows it (the INT8 speed gate of a target that is not this machine
    predicts it from the target's calibrated tables). See :mod:`learngene_deploy.backends.choice` for the rules.
    """
    import shutil

    from learngene_deploy.backends import choice as rules
    from learngene_deploy.backends import none_available, unavailable_runtimes
    from learngene_deploy.errors import VerificationError
    from learngene_deploy.names import AUTO_BACKEND

    rt = profile.runtime
    rules.check_fallback(opts.int8_fallback)
    auto, precision = rt.backend == AUTO_BACKEND, rt.precision
    int8_speed: dict[str, Any] | None = None
    if precision == "int8" and not profile.host:
        int8_speed = rules.table_speed_gate(profile, arch) if arch is not None else None
        if int8_speed is not None and not int8_speed["passed"]:
            if opts.int8_fallback != "fp32":
                msg = (
                    f"INT8 is rejected: {int8_speed['reason']}; pass --int8-fallback fp32 to ship the fp32 model "
                    "instead."
                )
                raise VerificationError(msg)
            precision = "fp32"
            int8_speed["decision"] = "--int8-fallback fp32: the fp32 model is shipped"
            ctx.log("compile", f"INT8 rejected ({int8_speed['reason']}); --int8-fallback fp32 ships fp32")
        elif int8_speed is not None and not int8_speed["applied"]:
            ctx.log("compile", f"note: INT8 speed gate not applied: {int8_speed['reason']}")
    planned = rules.plan(rt.backend, precision, host=profile.host, accelerator=profile.device.accelerator)
    missing = unavailable_runtimes(p.backend for p in planned)
    nothing_here = none_available(missing)
    if opts.defer_compile or nothing_here:  # compile on the target: ship what it needs to finish
        from learngene_deploy.pipeline.gateset import defer

        reason = "deferred by --defer-compile" if opts.defer_compile else str(nothing_here)
        return Runtime(deferred=defer(ctx, profile, reason), int8_speed=int8_speed, skipped=_deferred_skips(rt, reason))
    planned = [p for p in planned if p.role == "candidate" or not missing[p.backend]]  # a twin only where it runs
    scratch = ctx.work.path / RUNTIMES_DIR
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        contenders = [
            rules.Contender(p, rejected=rules.NOT_INSTALLED, notes=[str(missing[p.backend])])
            if missing[p.backend]
            else _verify_contender(p, onnx, profile, opts, ctx, scratch / p.name, strict=not auto)
            for p in planned
        ]
        shippable = [c for c in contenders if c.verified and (c.planned.role == "candidate" or opts.int8_fallback)]
        if not shippable:
            rules.choose(contenders, profile.budgets.percentile, precision, opts.int8_fallback)  # raises, with why
        _bench_contenders([c for c in contenders if c.verified], profile, opts, ctx)
        chosen = rules.choose(contenders, profile.budgets.percentile, precision, opts.int8_fallback)
        winner = chosen.winner
        compiled = _ship(winner.compiled, ctx.root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ctx.gates.checks.extend(winner.checks)
    if precision == "int8" and profile.host:
        int8_speed = {"basis": "measured side by side on this machine", "runtimes": list(chosen.speed_gate)}
        if chosen.fell_back:
            int8_speed["decision"] = "--int8-fallback fp32: the fp32 model is shipped"
    if len(contenders) > 1:
        ctx.log("choose", chosen.why)
    record = {
        "requested": rt.backend,
        "rule": f"the fastest contender at p{profile.budgets.percentile} among those that passed every gate, "
        "benchmarked side by side (one run, interleaved rounds in fresh processes)",
        "percentile": profile.budgets.percentile,
        "shipped": winner.name,
        "why": chosen.why,
        "fell_back_to_fp32": chosen.fell_back or precision != rt.precision,
        "contenders": [c.to_dict(profile.budgets.percentile) for c in contenders],
    }
    return Runtime(
        compiled,
        winner.stats,
        winner.extra_objects.get("accuracy"),
        winner.extra_objects.get("host_note"),
        choice=record,
        execution=winner.execution,
        int8_speed=int8_speed,
    )


def _deferred_skips(rt: Any, reason: str) -> tuple[dict[str, str], ...]:
    return (
        {"stage": "compile", "reason": f"{reason}; finish it on the target with `lgdeploy compile ARTIFACT`"},
        {"stage": "benchmark", "reason": f"no {rt.backend} model was compiled yet"},
    )


def _verify_contender(
    planned: Any, onnx: Onnx, profile: DeviceProfile, opts: BuildOptions, ctx: BuildContext, out: Path, *, strict: bool
) -> Any:
    """Compile one contender into ``out`` and gate it: where it ran, its logits against PyTorch, INT8's accuracy.

    An INT8 model over the accuracy limit gets the runtime's accuracy-controlled path (some layers kept in fp32)
    before it is rejected. ``strict`` (one named runtime): a failure raises; otherwise (auto) it rejects only this
    contender.
    """
    from learngene_deploy.backends import get_backend
    from learngene_deploy.backends.choice import Contender
    from learngene_deploy.errors import ConfigError, ExportError, VerificationError

    c = Contender(planned)
    backend = get_backend(planned.backend)
    try:
        try:
            compiled = backend.compile(
                onnx.simplified.path,
                out,
                precision=planned.precision,
                profile=profile,
                calibration_data=ctx.gates.x_cal,
            )
            _gate_compiled(c, backend, compiled, opts, ctx)
        except VerificationError as e:
            if "accuracy" not in c.extra_objects or backend.accuracy_control is None or ctx.gates.y_cal is None:
                raise  # not an INT8 accuracy or agreement failure, or the runtime has no accuracy-aware path
            ctx.log("compile", f"{c.name}: {e} Trying {backend.accuracy_control}.")
            _accuracy_controlled(c, backend, onnx, profile, opts, ctx, out / "accuracy-controlled", str(e))
    except (ExportError, VerificationError, ConfigError) as e:
        if strict and planned.role == "candidate":
            raise
        c.rejected = str(e)
        ctx.log("compile", f"{c.name} REJECTED: {e}")
    return c


def _gate_compiled(c: Any, backend: Any, compiled: Compiled, opts: BuildOptions, ctx: BuildContext) -> None:
    """Load a compiled model as this machine runs it and gate it; what it learns goes into contender ``c``."""
    c.tool = compiled.tool
    on_host, host_note = backend.host_variant(compiled)
    if host_note:
        ctx.log("compile", f"note: {host_note}")
        c.notes.append(host_note)
    runner = backend.load_runner(on_host, threads=ctx.gates.threads)
    c.extra_objects.update(compiled=compiled, on_host=on_host, host_note=host_note)
    c.execution = _check_execution(runner, backend.name)
    _check_compiled(runner, compiled, compiled.precision, opts, ctx, c)


def _accuracy_controlled(
    c: Any, backend: Any, onnx: Onnx, profile: DeviceProfile, opts: BuildOptions, ctx: BuildContext, out: Path,
    plain_failure: str,
) -> None:  # fmt: skip
    """Replace a plain INT8 contender that missed the accuracy limit by the runtime's accuracy-controlled INT8.

    The search runs on the labelled calibration images (training data); the build's gate then measures the drop on
    the validation images, as for any INT8 model. Its speed is the contender's benchmark, side by side with the rest.
    """
    plain = c.extra_objects["accuracy"]
    record: dict[str, Any] = {
        "method": backend.accuracy_control,
        "plain_int8": {"drop_points": plain.drop_points, "failure": plain_failure, "checks": c.checks},
    }
    c.checks = []
    c.extra["accuracy_control"] = record
    compiled = backend.compile_accuracy_controlled(
        onnx.simplified.path,
        out,
        calibration_data=ctx.gates.x_cal,
        calibration_labels=ctx.gates.y_cal,
        max_drop_points=opts.max_int8_drop,
        profile=profile,
    )
    record.update(compiled.settings.get("accuracy_control", {}))
    _gate_compiled(c, backend, compiled, opts, ctx)
    record["drop_points"] = c.extra_objects["accuracy"].drop_points
    ctx.log(
        "compile",
        f"{c.name} accuracy-controlled: drop {record['drop_points']:.2f} points (plain {plain.drop_points:.2f}) with "
        f"{len(record.get('fp32_layers', []))} layers in fp32",
    )


def _check_execution(runner: Any, backend: str) -> dict[str, Any]:
    """Where the runtime reports the model ran; a mismatch with the request fails the gate (no silent fallback)."""
    from learngene_deploy.errors import VerificationError

    execution = runner.execution()
    if execution is None:
        return {"backend": backend, "requested": None, "executed": None, "reported_by": None, "passed": True}
    if not execution.passed:
        raise VerificationError(execution.message())
    return execution.to_dict()


def _check_compiled(
    runner: Any, compiled: Compiled, precision: str, opts: BuildOptions, ctx: BuildContext, c: Any
) -> None:
    """Gate the compiled model against PyTorch and, for INT8, its accuracy drop; records into contender ``c``."""
    from learngene_deploy.gates import TOLERANCES, check, check_accuracy, gate

    gates = ctx.gates
    tol = TOLERANCES[precision] if precision != "fp32" else gates.fp32
    if opts.min_agreement is not None:
        tol = dataclasses.replace(tol, top1_agreement=opts.min_agreement)
    name = f"{compiled.backend}-{precision}"
    result = check(ctx.reference, runner, gates.x_val, reference="pytorch", candidate=name, tolerance=tol)
    c.checks.append(result.to_dict())
    if precision == "int8":  # measured before either gate stops, so a failed INT8 records both
        accuracy = check_accuracy(
            ctx.reference,
            runner,
            gates.x_val,
            gates.y_val,
            reference="pytorch-fp32",
            candidate=name,
            max_drop_points=opts.max_int8_drop,
        )
        c.checks.append(accuracy.to_dict())
        c.extra_objects["accuracy"] = accuracy
    gate(result)
    if precision == "int8":
        gate(accuracy)
    executed = ", ".join((c.execution or {}).get("executed") or ["(not reported)"])
    ctx.log(
        "compile",
        f"{compiled.tool} {precision} in {compiled.seconds:.1f} s; top-1 agreement {result.top1_agreement:.1%}; "
        f"ran on {executed}",
    )


def _bench_contenders(contenders: list[Any], profile: DeviceProfile, opts: BuildOptions, ctx: BuildContext) -> None:
    """Benchmark the verified contenders side by side: one run, rounds interleaved over them in fresh processes."""
    from learngene_deploy.bench import benchmark_many

    if not contenders:
        return
    all_stats = benchmark_many(
        [c.extra_objects["on_host"] for c in contenders],
        threads=ctx.gates.threads,
        batch=profile.budgets.batch,
        min_runs=opts.bench_runs,
        min_time_s=opts.bench_min_time_s,
        rounds=opts.bench_rounds,
    )
    for c, st in zip(contenders, all_stats, strict=True):
        stats = st.to_dict()
        stats["model_path"] = relative(stats["model_path"], ctx.root)  # not the temporary directory's name
        c.stats = stats
        where = "" if len(contenders) == 1 else f"{c.name}: "
        ctx.log("bench", f"{where}p50 {stats['p50_ms']:.3g} ms, p90 {stats['p90_ms']:.3g} ms on this machine")


def _ship(compiled: Compiled, root: Path) -> Compiled:
    """Move the shipped contender's files into the artifact directory (an fp32 ONNX copy replaces its identical
    source, model.onnx)."""
    import os

    files = []
    for f in compiled.files:
        dest = root / f.name
        if f.resolve() != dest.resolve():
            os.replace(f, dest)
        files.append(dest)
    return dataclasses.replace(compiled, model_path=root / compiled.model_path.name, files=tuple(files))


def relative(path: str, root: Path) -> str:
    """``path`` relative to the artifact directory (the build writes under a temporary name, then renames it)."""
    p = Path(path)
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name


def _relative_record(record: dict[str, Any], root: Path) -> dict[str, Any]:
    """A Compiled record with paths relative to the artifact directory."""
    return {
        **record,
        "model_path": relative(record["model_path"], root),
        "source": relative(record["source"], root),
        "files": [relative(f, root) for f in record["files"]],
    }


# --- the manifest --------------------------------------------------------------------------------------------
def manifest_for(
    picked: Picked,
    recomposed: Recomposed,
    tuned: Tuned,
    onnx: Onnx,
    runtime: Runtime,
    profile: DeviceProfile,
    ctx: BuildContext,
    started: float,
) -> dict[str, Any]:
    """Everything the build learnt, as the artifact's manifest (the writer adds schema, version and file table)."""
    import json

    from learngene_deploy.artifact.verdict import judge
    from learngene_deploy.facts import host_facts, tool_versions

    chosen = picked.selection.chosen
    model_files = runtime.compiled.files if runtime.compiled is not None else (onnx.simplified.path,)
    files_mb = sum(Path(p).stat().st_size for p in model_files) / 2**20
    stats = runtime.stats
    manifest = {
        "status": status_of(runtime),
        "profile": _profile_record(profile),
        "learngene": _learngene_record(picked),
        "selection": _selection_record(picked),
        "architecture": tuned.finetuned.arch.to_dict(),
        "preprocessing": ctx.preprocessing,
        "classes": ctx.classes,
        "finetune": _finetune_record(recomposed, tuned),
        "export": {
            "exported": {**onnx.exported.to_dict(), "path": None},  # intermediate file, not shipped
            "simplified": {**onnx.simplified.to_dict(), "path": "model.onnx", "source": "exported"},
        },
        "compile": _relative_record(runtime.compiled.to_dict(), ctx.root) if runtime.compiled is not None else None,
        "checks": ctx.gates.checks,
        "golden": {"file": GOLDEN, "images": onnx.golden_images, "reference": "pytorch"},
        "int8_accuracy": runtime.int8_accuracy.to_dict() if runtime.int8_accuracy is not None else None,
        "int8_speed_gate": runtime.int8_speed,
        "deferred": runtime.deferred,
        "runtime_choice": runtime.choice,
        "execution": runtime.execution,
        "benchmark": {
            "measured_on": "target" if profile.host else "build machine (not the target device)",
            "host_differences": runtime.host_note,
            **(stats or {"p50_ms": None, "p90_ms": None, "p99_ms": None, "skipped": True}),
        },
        "latency": {
            "predicted_ms": chosen.latency_ms,
            "predicted_source": chosen.latency_source,
            "measured_ms": stats.get(f"p{profile.budgets.percentile}_ms") if stats else None,
            "percentile": profile.budgets.percentile,
        },
        "budgets": judge(profile, chosen.latency_ms, chosen.latency_source, chosen.memory_mb, stats, files_mb),
        "skipped": list(runtime.skipped),
        "tools": tool_versions(),
        "host": host_facts(),
        "wall_time_s": time.perf_counter() - started,
    }
    return json.loads(json.dumps(manifest, default=str))  # paths and tuples to plain JSON


def status_of(runtime: Runtime) -> str:
    """An artifact's status: complete, awaiting its compile on the target, or complete with skipped steps."""
    from learngene_deploy.pipeline.gateset import AWAITING_COMPILE

    if runtime.deferred is not None:
        return AWAITING_COMPILE
    return "complete" if not runtime.skipped else "complete-with-skipped-steps"


def _profile_record(profile: DeviceProfile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "sha256": profile.sha256,
        "source": profile.source,
        "host": profile.host,
        "runtime": dataclasses.asdict(profile.runtime),
        "budgets": dataclasses.asdict(profile.budgets),
    }


def _learngene_record(picked: Picked) -> dict[str, Any]:
    return {
        "path": str(picked.learngene),
        "sha256": picked.sha256,
        "method": picked.meta["method"],
        "training": picked.meta.get("training", {}),
    }


def _selection_record(picked: Picked) -> dict[str, Any]:
    selection = picked.selection
    return {
        "size": picked.size,
        "predictor": selection.predictor,
        "chosen": selection.chosen.to_dict(),
        "candidates": len(selection.predictions),
        "notes": list(selection.notes),
        "budget_use": selection.budget_use,
        "pinned": selection.pinned,  # given with --size, not chosen; the notes say when it misses a budget
    }


def _finetune_record(recomposed: Recomposed, tuned: Tuned) -> dict[str, Any]:
    ft, recipe = tuned.finetuned, tuned.recipe
    return {
        "data": recomposed.data.info,
        "mode": ft.mode,
        "steps": ft.result.steps,
        "resumed_from_step": tuned.resumed_from,
        "checkpoint_every": recipe.checkpoint_every,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "augmentation": recipe.augmentation.to_dict(),
        "bad_images": {"skipped": len(ft.result.bad_images), "examples": ft.result.bad_images[:10]},
        "seed": recipe.seed,
        "trainable_params": ft.trainable_params,
        "wall_time_s": ft.result.wall_time_s,
        "startup_s": ft.result.startup_s,  # process start to the first fine-tune step
        "top1_before": recomposed.direct_top1,
        "top1_before_images": recomposed.direct_images,
        "top1_after": ft.top1,  # of the shipped weights, on the whole validation split
        "kept": tuned.comparison,  # fine-tuned vs recomposed on the same images, and which weights ship
    }
