"""Learngene recipes: train a weight generator through the loop, measure its accuracy table, save the learngene.

``train_learngene`` is what every method shares: it trains a ``GeneratedViT`` over the generator and (rank 0) writes
the learngene file with its provenance and the direct top-1 of every recomposed size (``accuracy_table``).
``train_ldr`` and ``train_lets`` are the whole runs behind ``lgdeploy train ldr|lets`` (data, generator, teacher,
phases, table sizes), single-process or under ``torchrun``; what the two share is ``_run``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from learngene_deploy.data import DataSplits, load_data
from learngene_deploy.data.presets import resolve_recipe
from learngene_deploy.errors import ConfigError, LearngeneError
from learngene_deploy.learngene.base import GeneratedViT, WeightGenerator
from learngene_deploy.learngene.ldr import LDRGenerator, ict_phases, parse_stages
from learngene_deploy.learngene.lets import LeTsGenerator
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.training.loop import (
    Dist,
    Phase,
    TrainConfig,
    TrainResult,
    current_dist,
    distributed,
    evaluate,
    train,
)
from learngene_deploy.training.options import LDROptions, LeTsOptions, RecipeOptions, TeacherOptions
from learngene_deploy.training.teacher import load_teacher

LEARNGENE_FILE = "learngene.safetensors"
TEACHER_FILE = "teacher.safetensors"
# What a method contributes to a run, given the loaded data: the generator, its phases, the accuracy table's sizes.
Setup = tuple[WeightGenerator, Sequence[Phase], list[dict[str, Any]]]
Method = Callable[[DataSplits], Setup]


@dataclass(frozen=True)
class Trained:
    """A recipe's run: the learngene file (written once the schedule has finished) and the loop's result."""

    path: Path
    result: TrainResult
    master: bool  # this process is rank 0, the one that wrote the file and reports


def accuracy_table(
    generator: WeightGenerator,
    sizes: Sequence[dict[str, Any]],
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> list[dict[str, Any]]:
    """Direct top-1 of the recomposed model of every size (``generator.recompose(**size)``), with parameter counts."""
    rows = []
    for size in sizes:
        model = generator.recompose(**size)
        params = sum(p.numel() for p in model.parameters())
        rows.append({**size, "params": params, "top1": evaluate(model, dataset, batch_size=batch_size, device=device)})
    return rows


def train_learngene(
    generator: WeightGenerator,
    data: DataSplits,
    cfg: TrainConfig,
    *,
    out_file: str | Path,
    phases: Sequence[Phase] = (Phase("train"),),
    sizes: Sequence[dict[str, Any]] = (),
    teacher: nn.Module | None = None,
    teacher_name: str | None = None,
    teacher_info: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
    env: Dist | None = None,
) -> TrainResult:
    """Train a generator, then (rank 0) measure its accuracy table and save it as a learngene file.

    Args:
        generator: the weight generator to train.
        data: train split for training, val split for the accuracy table.
        cfg: loop options.
        out_file: learngene file written when the schedule has finished (not after ``stop_after``).
        phases: training phases (see ``train``).
        sizes: one ``recompose(**size)`` keyword dict per row of the accuracy table.
        teacher: distillation teacher; ``teacher_name`` is what the metadata records for it, ``teacher_info`` its
            provenance (accuracy, training compute) when it is a model file of lgdeploy.
        recipe: the options of the run, stored in the metadata.
        env: rank/world/device; defaults to ``current_dist()``.
    """
    from learngene_deploy.learngene.io import save_learngene

    env = env or current_dist()
    result = train(GeneratedViT(generator), data, cfg, phases=phases, teacher=teacher, env=env)
    if result.finished and env.master:
        table = accuracy_table(generator, sizes, data.val, batch_size=cfg.eval_batch_size, device=env.device)
        training = {
            "data": data.info,
            "teacher": teacher_name,
            "teacher_info": teacher_info,
            "distill": cfg.distill if teacher is not None else "ce",
            "temperature": cfg.temperature,
            "seed": cfg.seed,
            "steps": result.steps,
            "stages": [p.name for p in phases],
            "world_size": env.world,
            "device": env.device.type,
            "wall_time_s": round(result.wall_time_s, 2),
            "final_loss": result.final_loss,
            "startup_s": result.startup_s,
            "augmentation": result.recipe,
            "bad_images": {"skipped": len(result.bad_images), "examples": result.bad_images[:10]},
            "recipe": recipe or {},
        }
        save_learngene(out_file, generator, training=training, accuracy=table)
    env.barrier()
    return result


def train_ldr(opts: LDROptions, *, recipe: dict[str, Any] | None = None) -> Trained:
    """Train LDR learngenes with incremental (ICT, default) or simultaneous (SCT) training and save them.

    Args:
        opts: the run's options (``lgdeploy train ldr``'s flags).
        recipe: what the learngene's metadata records as the run's options (default: ``opts.record()``).
    """
    counts = parse_stages(opts.stages, opts.genes, sct=opts.sct)
    table_counts = parse_stages(opts.table_genes, opts.genes, sct=False) if opts.table_genes else counts

    def method(splits: DataSplits) -> Setup:
        arch = ArchSpec(
            img_size=opts.img_size,
            patch_size=opts.patch_size,
            in_chans=splits.in_chans,
            num_classes=splits.num_classes,
            embed_dim=opts.embed_dim,
            depth=opts.depth,
            num_heads=opts.num_heads,
            layout=opts.layout,  # type: ignore[arg-type]
        )
        generator = LDRGenerator(
            arch,
            opts.genes,
            basis=opts.basis,  # type: ignore[arg-type]
            offset=opts.offset,
            position=opts.position,  # type: ignore[arg-type]
        )
        sizes = [{"depth": d, "genes": k} for d in range(1, opts.depth + 1) for k in table_counts]
        return generator, ict_phases(generator, counts), sizes

    return _run(opts, method, recipe=recipe)


def train_lets(opts: LeTsOptions, *, recipe: dict[str, Any] | None = None) -> Trained:
    """Train a LeTs learngene (learngene + width matrices F + depth coefficients G) through its Aux-Net and save it.

    With a teacher the loss is DeiT's soft distillation with alpha = 1 (pure KD), as in the paper; without one, CE.
    The stored accuracy table holds the direct top-1 of Des-Nets over depths x widths (continuous selection).

    Args:
        opts: the run's options (``lgdeploy train lets``'s flags).
        recipe: what the learngene's metadata records as the run's options (default: ``opts.record()``).
    """

    def method(splits: DataSplits) -> Setup:
        generator = LeTsGenerator(
            img_size=opts.img_size,
            patch_size=opts.patch_size,
            in_chans=splits.in_chans,
            num_classes=splits.num_classes,
            head_dim=opts.head_dim,
            learngene_depth=opts.learngene_depth,
            learngene_dim=opts.learngene_dim,
            aux_depth=opts.aux_depth,
            aux_dim=opts.aux_dim,
            tie_rows=opts.tie_rows,
        )
        depths = _int_list(opts.table_depths, "--table-depths", list(range(1, opts.aux_depth + 1)))
        widths = _int_list(opts.table_widths, "--table-widths", generator.supported_sizes()["width"])
        return generator, [Phase("train")], [{"depth": d, "width": w} for d in depths for w in widths]

    return _run(opts, method, distill="soft", recipe=recipe)


def _int_list(text: str | None, option: str, valid: list[int]) -> list[int]:
    """Comma-separated integers from ``valid`` (all of ``valid`` when ``text`` is None)."""
    if text is None:
        return valid
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        msg = f"{option} must be comma-separated integers like {valid[0]},{valid[-1]}, got {text!r}."
        raise ConfigError(msg) from e
    bad = [v for v in values if v not in valid]
    if not values or bad:
        msg = f"{option} {text!r} holds unsupported values {bad}; choose from {', '.join(map(str, valid))}."
        raise ConfigError(msg)
    return values


def _run(
    opts: RecipeOptions,
    method: Method,
    *,
    distill: Literal["ce+kl", "soft"] = "ce+kl",
    recipe: dict[str, Any] | None = None,
) -> Trained:
    """What both recipes do: seed, load the data, build the method's generator, load the teacher, train and save."""
    path = Path(opts.out) / LEARNGENE_FILE
    with distributed(opts.device) as env:
        torch.manual_seed(opts.seed)
        splits, preset = _data(opts)
        generator, phases, sizes = method(splits)
        cfg = _loop_config(opts, preset, distill)
        teacher = _teacher(opts, splits)
        result = train_learngene(
            generator,
            splits,
            cfg,
            out_file=path,
            phases=phases,
            sizes=sizes,
            teacher=teacher,
            teacher_name=opts.teacher,
            teacher_info=teacher_record(opts.teacher),
            recipe=opts.record() if recipe is None else recipe,
            env=env,
        )
    return Trained(path, result, env.master)


def _data(opts: RecipeOptions) -> tuple[DataSplits, Any]:
    """A recipe's data and its augmentation preset (``auto`` depends on whether the data are images on disk)."""
    splits = load_data(
        opts.data,
        img_size=opts.img_size,
        seed=opts.seed,
        train_limit=opts.train_limit,
        val_limit=opts.val_limit,
        on_bad_image=opts.on_bad_image,  # type: ignore[arg-type]
    )
    return splits, resolve_recipe(opts.recipe, opts.aug or (), images=not getattr(splits.train, "in_memory", False))


def _loop_config(opts: RecipeOptions, preset: Any, distill: Literal["ce+kl", "soft"]) -> TrainConfig:
    """The loop's options from a recipe's (every recipe maps its flags the same way)."""
    return TrainConfig(
        out=opts.out,
        epochs=opts.epochs,
        max_steps=opts.max_steps,
        batch_size=opts.batch_size,
        lr=opts.lr,
        weight_decay=opts.weight_decay,
        warmup=opts.warmup,
        distill=distill,
        temperature=opts.temperature,
        alpha=1.0,
        ckpt_interval=opts.ckpt_interval,
        stop_after=opts.stop_after,
        resume=opts.resume,
        seed=opts.seed,
        progress=opts.progress,
        recipe=preset,
        workers=opts.workers,
        compile=opts.compile,
    )


def _teacher(opts: RecipeOptions, splits: DataSplits) -> nn.Module | None:
    if not opts.teacher:
        return None
    return load_teacher(opts.teacher, checkpoint=opts.teacher_checkpoint, num_classes=splits.num_classes)


def teacher_record(spec: str | None) -> dict[str, Any] | None:
    """What a learngene records about its teacher when that is a teacher file of lgdeploy: accuracy and compute."""
    if not spec or not Path(spec).is_file():
        return None
    from learngene_deploy.models.io import read_model_info

    try:
        info = read_model_info(spec)
    except LearngeneError:  # not a model file (e.g. a learngene used as teacher): nothing to record
        return None
    keep = ("model", "top1", "params", "forward_gflops", "train_tflops", "wall_time_s", "steps", "images")
    return {k: info[k] for k in keep if k in info} or None


def forward_flops(model: nn.Module, in_chans: int, img_size: int) -> float:
    """FLOPs of one forward pass on one image, as ``torch.utils.flop_counter.FlopCounterMode`` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, in_chans, img_size, img_size, device=param.device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return float(counter.get_total_flops())


def train_teacher(opts: TeacherOptions, *, recipe: dict[str, Any] | None = None) -> Trained:
    """Train a timm model as a distillation teacher with the same loop, data and recipes, and save it as a model file.

    The file (``OUT/teacher.safetensors``) rebuilds without pickle (``load_model``) and records the teacher's top-1 on
    the validation split, its parameters, forward FLOPs and training compute, so that a learngene distilled from it
    can count the teacher's cost. Resumable like every recipe (``--resume``).
    """
    import timm

    if not timm.is_model(opts.model):
        msg = f"--model {opts.model!r} is not a timm model name; pass one such as resnet18 or resnet10t."
        raise ConfigError(msg)
    path = Path(opts.out) / TEACHER_FILE
    with distributed(opts.device) as env:
        torch.manual_seed(opts.seed)
        splits, preset = _data(opts)
        kwargs: dict[str, Any] = {"num_classes": splits.num_classes, "in_chans": splits.in_chans}
        if opts.output_stride:
            kwargs["output_stride"] = opts.output_stride
        if opts.drop_path:
            kwargs["drop_path_rate"] = opts.drop_path
        try:
            model = timm.create_model(opts.model, pretrained=False, **kwargs)
        except (TypeError, ValueError, AssertionError) as e:
            msg = f"timm cannot build {opts.model!r} with {kwargs} ({e}); drop --output-stride or choose another model."
            raise ConfigError(msg) from e
        result = train(model, splits, _loop_config(opts, preset, "soft"), teacher=_teacher(opts, splits), env=env)
        if result.finished and env.master:
            from learngene_deploy.models.io import save_timm_model

            top1 = evaluate(model, splits.val, batch_size=256, device=env.device)
            fwd = forward_flops(model, splits.in_chans, opts.img_size)
            images = result.steps * opts.batch_size
            info = {
                "kind": "teacher",
                "model": opts.model,
                "top1": top1,
                "params": sum(p.numel() for p in model.parameters()),
                "forward_gflops": fwd / 1e9,
                "images": images,
                "train_tflops": 3 * fwd * images / 1e12,  # forward + backward, the convention of the cost tables
                "steps": result.steps,
                "wall_time_s": round(result.wall_time_s, 2),
                "startup_s": result.startup_s,
                "data": splits.info,
                "teacher": opts.teacher,
                "augmentation": result.recipe,
                "bad_images": {"skipped": len(result.bad_images), "examples": result.bad_images[:10]},
                "world_size": env.world,
                "device": env.device.type,
                "recipe": opts.record() if recipe is None else recipe,
            }
            save_timm_model(path, model.cpu(), opts.model, kwargs, info)
        env.barrier()
    return Trained(path, result, env.master)
