"""`lgdeploy train ldr|lets ...`: train learngenes (single process, or under ``torchrun`` via ``train/*.py``).

A thin shell over ``learngene_deploy.training.recipes``: each command turns its flags into the recipe's options
(whose defaults are the flags' defaults), runs the recipe and says what it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from learngene_deploy.training.options import LDROptions, LeTsOptions, TeacherOptions, plain

if TYPE_CHECKING:
    from learngene_deploy.training.recipes import Trained

app = typer.Typer(
    no_args_is_help=True, help="Train learngenes and their teachers (CPU single process or DDP under torchrun)."
)

# Options both methods share: one definition each.
Data = Annotated[
    str,
    typer.Option(help="digits, fashion-mnist, or a directory (ImageFolder, IDX files, Hugging Face save_to_disk)."),
]
Out = Annotated[Path, typer.Option(help="Run directory: learngene.safetensors and checkpoint.pt go here.")]
ImgSize = Annotated[int, typer.Option(help="Input size in pixels.")]
PatchSize = Annotated[int, typer.Option(help="Patch size in pixels.")]
MAX_STEPS = 100_000_000  # far beyond any run on this project's scale; a typo (an extra 000) is refused up front
MaxSteps = Annotated[
    int | None, typer.Option(min=1, max=MAX_STEPS, help="Optimiser steps per stage (overrides --epochs).")
]
BatchSize = Annotated[int, typer.Option(min=1, max=65536, help="Global batch size.")]
WeightDecay = Annotated[float, typer.Option(help="AdamW weight decay (>= 2-D tensors only).")]
Warmup = Annotated[float, typer.Option(help="Warm-up fraction of each stage's steps.")]
Teacher = Annotated[str | None, typer.Option(help="Learngene/model file of lgdeploy, or a timm model name.")]
TeacherCheckpoint = Annotated[Path | None, typer.Option(help="Local weights of a timm teacher.")]
Seed = Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of initialisation, split and data order.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue exactly from OUT/checkpoint.pt.")]
CkptInterval = Annotated[int, typer.Option(min=0, max=MAX_STEPS, help="Checkpoint every N steps (0: at the end).")]
StopAfter = Annotated[int | None, typer.Option(help="Stop after this global step (resume later).")]
TrainLimit = Annotated[int | None, typer.Option(help="Use at most this many training images.")]
ValLimit = Annotated[int | None, typer.Option(help="Use at most this many validation images.")]
Recipe = Annotated[
    str,
    typer.Option(
        help="Augmentation preset: auto (deit on image sources, none on the built-ins), deit (the seeds' DeiT "
        "recipe), light or none."
    ),
]
Aug = Annotated[
    list[str] | None,
    typer.Option(
        help="Override one knob of the preset, KEY=VALUE (repeatable), e.g. --aug mixup=0 --aug ema=0.9998; "
        "knobs: scale, ratio, hflip, auto_augment, color_jitter, re_prob, re_mode, re_count, interpolation, mixup, "
        "cutmix, mixup_prob, switch_prob, mixup_mode, label_smoothing, drop_path, ema."
    ),
]
Workers = Annotated[
    int | None, typer.Option(min=0, help="DataLoader worker processes (default: 0 in memory, else min(8, CPUs)).")
]
OnBadImage = Annotated[
    str, typer.Option(help="An unreadable image: error (stop, naming it) or skip (leave it out, counted).")
]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the model (worth it on a GPU).")]
Device = Annotated[str | None, typer.Option(help="cpu or cuda[:i] (default: cuda when available).")]
Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]

LDR, LETS, TEACHER = LDROptions, LeTsOptions, TeacherOptions  # the flags' defaults


def _check_flags(flags: dict[str, object]) -> None:
    """What typer's ranges cannot say: a non-empty --data, a finite --epochs, a --device this machine has."""
    import math

    from learngene_deploy.errors import ConfigError

    data = flags.get("data")
    if isinstance(data, str) and not data.strip():
        raise ConfigError("data (--data) is empty; pass digits, fashion-mnist or a data directory.")
    epochs = flags.get("epochs")
    if isinstance(epochs, float) and not math.isfinite(epochs):
        raise ConfigError(f"--epochs must be a finite number of passes, got {epochs}; pass e.g. --epochs 10.")
    check_device(flags.get("device"))  # type: ignore[arg-type]


def check_device(device: str | None) -> None:
    """Refuse a --device that is not cpu or cuda[:i], or a CUDA device this machine does not have, in one sentence."""
    import re

    from learngene_deploy.errors import ConfigError

    if device is None:
        return
    match = re.fullmatch(r"cpu|cuda(?::(\d+))?", device)
    if match is None:
        raise ConfigError(f"--device {device!r} is not cpu, cuda or cuda:INDEX; pass one of those or leave it unset.")
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(match.group(1) or 0)
        if index >= count:
            have = f"only {count} CUDA device(s)" if count else "no CUDA GPU that torch can use"
            msg = (
                f"--device {device} needs a CUDA GPU, but this machine has {have}; pass --device cpu or leave it unset."
            )
            raise ConfigError(msg)


def _report(trained: Trained) -> None:
    result = trained.result
    if trained.master:
        if result.bad_images:
            typer.echo(f"skipped {len(result.bad_images)} unreadable images, e.g. {result.bad_images[0]}")
        if result.finished:
            typer.echo(f"wrote {trained.path} ({result.steps} steps, {result.wall_time_s:.1f} s)")
        else:
            typer.echo(f"stopped at step {result.steps}/{result.total_steps}; continue with --resume")


@app.command("ldr")
def ldr(
    data: Data,
    out: Out,
    img_size: ImgSize = LDR.img_size,
    patch_size: PatchSize = LDR.patch_size,
    embed_dim: Annotated[int, typer.Option(help="Token width D.")] = LDR.embed_dim,
    depth: Annotated[int, typer.Option(help="Training depth L.")] = LDR.depth,
    num_heads: Annotated[int, typer.Option(help="Attention heads.")] = LDR.num_heads,
    layout: Annotated[str, typer.Option(help="avg (no class token, mean pool) or cls (DeiT).")] = LDR.layout,
    genes: Annotated[int, typer.Option(help="Number of learngenes N.")] = LDR.genes,
    stages: Annotated[
        str | None, typer.Option(help="ICT cumulative counts, e.g. 1,2,4,8,12 (default 1,2,4..N).")
    ] = LDR.stages,
    sct: Annotated[bool, typer.Option("--sct", help="Train all learngenes at once (one stage).")] = LDR.sct,
    basis: Annotated[str, typer.Option(help="chebyshev, legendre, taylor, fourier or linear (TLEG).")] = LDR.basis,
    offset: Annotated[int | None, typer.Option(help="Index offset: 1 = T_n (paper), 0 = T_(n-1).")] = LDR.offset,
    position: Annotated[str, typer.Option(help="Layer position: paper (l-1)/L, unit, centered.")] = LDR.position,
    epochs: Annotated[float, typer.Option(min=0.0, max=10_000.0, help="Epochs per stage.")] = LDR.epochs,
    max_steps: MaxSteps = LDR.max_steps,
    batch_size: BatchSize = LDR.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate per stage.")] = LDR.lr,
    weight_decay: WeightDecay = LDR.weight_decay,
    warmup: Warmup = LDR.warmup,
    teacher: Teacher = LDR.teacher,
    teacher_checkpoint: TeacherCheckpoint = LDR.teacher_checkpoint,
    temperature: Annotated[float, typer.Option(help="Distillation temperature.")] = LDR.temperature,
    seed: Seed = LDR.seed,
    resume: Resume = LDR.resume,
    ckpt_interval: CkptInterval = LDR.ckpt_interval,
    stop_after: StopAfter = LDR.stop_after,
    train_limit: TrainLimit = LDR.train_limit,
    val_limit: ValLimit = LDR.val_limit,
    table_genes: Annotated[
        str | None, typer.Option(help="Learngene counts in the accuracy table (default: stages).")
    ] = LDR.table_genes,
    recipe: Recipe = LDR.recipe,
    aug: Aug = LDR.aug,
    workers: Workers = LDR.workers,
    on_bad_image: OnBadImage = LDR.on_bad_image,
    compile: Compile = LDR.compile,
    device: Device = LDR.device,
    progress: Progress = LDR.progress,
) -> None:
    """Train LDR learngenes with incremental (ICT, default) or simultaneous (SCT) training and save them."""
    flags = dict(locals())
    _check_flags(flags)
    from learngene_deploy.training.recipes import train_ldr

    _report(train_ldr(LDROptions(**flags), recipe=plain(flags)))


@app.command("lets")
def lets(
    data: Data,
    out: Out,
    img_size: ImgSize = LETS.img_size,
    patch_size: PatchSize = LETS.patch_size,
    head_dim: Annotated[
        int, typer.Option(help="Channels per attention head (every width is a multiple).")
    ] = LETS.head_dim,
    learngene_depth: Annotated[int, typer.Option(help="Learngene layers L_g (even).")] = LETS.learngene_depth,
    learngene_dim: Annotated[int, typer.Option(help="Learngene width D_g.")] = LETS.learngene_dim,
    aux_depth: Annotated[int, typer.Option(help="Aux-Net layers, a multiple of L_g (paper: 2 L_g).")] = LETS.aux_depth,
    aux_dim: Annotated[int, typer.Option(help="Aux-Net width (>= D_g).")] = LETS.aux_dim,
    tie_rows: Annotated[
        bool, typer.Option(help="Share G rows between Aux layers 2i and 2i+1 (paper).")
    ] = LETS.tie_rows,
    epochs: Annotated[float, typer.Option(min=0.0, max=10_000.0, help="Epochs over the training split.")] = LETS.epochs,
    max_steps: MaxSteps = LETS.max_steps,
    batch_size: BatchSize = LETS.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = LETS.lr,
    weight_decay: WeightDecay = LETS.weight_decay,
    warmup: Warmup = LETS.warmup,
    teacher: Teacher = LETS.teacher,
    teacher_checkpoint: TeacherCheckpoint = LETS.teacher_checkpoint,
    temperature: Annotated[
        float, typer.Option(help="Distillation temperature (pure KD, alpha = 1).")
    ] = LETS.temperature,
    seed: Seed = LETS.seed,
    resume: Resume = LETS.resume,
    ckpt_interval: CkptInterval = LETS.ckpt_interval,
    stop_after: StopAfter = LETS.stop_after,
    train_limit: TrainLimit = LETS.train_limit,
    val_limit: ValLimit = LETS.val_limit,
    table_depths: Annotated[
        str | None, typer.Option(help="Depths in the accuracy table, e.g. 4,6,8 (default: 1..aux depth).")
    ] = LETS.table_depths,
    table_widths: Annotated[
        str | None, typer.Option(help="Widths in the accuracy table, e.g. 32,64 (default: every supported width).")
    ] = LETS.table_widths,
    recipe: Recipe = LETS.recipe,
    aug: Aug = LETS.aug,
    workers: Workers = LETS.workers,
    on_bad_image: OnBadImage = LETS.on_bad_image,
    compile: Compile = LETS.compile,
    device: Device = LETS.device,
    progress: Progress = LETS.progress,
) -> None:
    """Train a LeTs learngene (learngene + width matrices F + depth coefficients G) through its Aux-Net and save it.

    With --teacher the loss is DeiT's soft distillation with alpha = 1 (pure KD), as in the paper; without one, CE.
    The stored accuracy table holds the direct top-1 of Des-Nets over depths x widths (continuous selection).
    """
    flags = dict(locals())
    _check_flags(flags)
    from learngene_deploy.training.recipes import train_lets

    _report(train_lets(LeTsOptions(**flags), recipe=plain(flags)))


@app.command("teacher")
def teacher(
    data: Data,
    out: Out,
    model: Annotated[
        str, typer.Option(help="timm model name, built without pretrained weights (e.g. resnet18).")
    ] = TEACHER.model,
    output_stride: Annotated[
        int | None, typer.Option(help="CNNs: 8 or 16 keeps larger feature maps on small images.")
    ] = TEACHER.output_stride,
    drop_path: Annotated[float, typer.Option(min=0.0, max=0.9, help="Stochastic depth rate.")] = TEACHER.drop_path,
    img_size: ImgSize = TEACHER.img_size,
    epochs: Annotated[
        float, typer.Option(min=0.0, max=10_000.0, help="Epochs over the training split.")
    ] = TEACHER.epochs,
    max_steps: MaxSteps = TEACHER.max_steps,
    batch_size: BatchSize = TEACHER.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = TEACHER.lr,
    weight_decay: WeightDecay = TEACHER.weight_decay,
    warmup: Warmup = TEACHER.warmup,
    teacher: Teacher = TEACHER.teacher,
    teacher_checkpoint: TeacherCheckpoint = TEACHER.teacher_checkpoint,
    temperature: Annotated[float, typer.Option(help="Distillation temperature.")] = TEACHER.temperature,
    seed: Seed = TEACHER.seed,
    resume: Resume = TEACHER.resume,
    ckpt_interval: CkptInterval = TEACHER.ckpt_interval,
    stop_after: StopAfter = TEACHER.stop_after,
    train_limit: TrainLimit = TEACHER.train_limit,
    val_limit: ValLimit = TEACHER.val_limit,
    recipe: Recipe = TEACHER.recipe,
    aug: Aug = TEACHER.aug,
    workers: Workers = TEACHER.workers,
    on_bad_image: OnBadImage = TEACHER.on_bad_image,
    compile: Compile = TEACHER.compile,
    device: Device = TEACHER.device,
    progress: Progress = TEACHER.progress,
) -> None:
    """Train a distillation teacher (any timm model) with the same loop and recipes; writes OUT/teacher.safetensors.

    Pass the file to `lgdeploy train lets|ldr --teacher OUT/teacher.safetensors`; the learngene then records the
    teacher's accuracy and training compute. Nothing is downloaded: the model starts from timm's initialisation.
    """
    flags = dict(locals())
    _check_flags(flags)
    from learngene_deploy.training.recipes import train_teacher

    trained = train_teacher(TeacherOptions(**flags), recipe=plain(flags))
    _report(trained)
    if trained.master and trained.result.finished:
        from learngene_deploy.models.io import read_model_info

        info = read_model_info(trained.path)
        typer.echo(
            f"teacher {info['model']}: top-1 {100 * info['top1']:.2f} % on the validation split, "
            f"{info['params']:,} parameters, {info['train_tflops']:.1f} training TFLOPs"
        )
