"""`lgdeploy train ldr ...`: train learngenes (single process, or under ``torchrun`` via ``train/ldr.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from learngene_deploy.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Train learngenes (CPU single process or DDP under torchrun).")

LEARNGENE_FILE = "learngene.safetensors"

# Options both methods share: one definition each (defaults stay in the signatures, where they differ).
Data = Annotated[
    str,
    typer.Option(help="digits, fashion-mnist, or a directory (ImageFolder, IDX files, Hugging Face save_to_disk)."),
]
Out = Annotated[Path, typer.Option(help="Run directory: learngene.safetensors and checkpoint.pt go here.")]
ImgSize = Annotated[int, typer.Option(help="Input size in pixels.")]
PatchSize = Annotated[int, typer.Option(help="Patch size in pixels.")]
MaxSteps = Annotated[int | None, typer.Option(help="Optimiser steps per stage (overrides --epochs).")]
BatchSize = Annotated[int, typer.Option(help="Global batch size.")]
WeightDecay = Annotated[float, typer.Option(help="AdamW weight decay (>= 2-D tensors only).")]
Warmup = Annotated[float, typer.Option(help="Warm-up fraction of each stage's steps.")]
Teacher = Annotated[str | None, typer.Option(help="Learngene/model file of lgdeploy, or a timm model name.")]
TeacherCheckpoint = Annotated[Path | None, typer.Option(help="Local weights of a timm teacher.")]
Seed = Annotated[int, typer.Option(help="Seed of initialisation, split and data order.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue exactly from OUT/checkpoint.pt.")]
CkptInterval = Annotated[int, typer.Option(help="Checkpoint every N steps (0: at the end).")]
StopAfter = Annotated[int | None, typer.Option(help="Stop after this global step (resume later).")]
TrainLimit = Annotated[int | None, typer.Option(help="Use at most this many training images.")]
ValLimit = Annotated[int | None, typer.Option(help="Use at most this many validation images.")]
Device = Annotated[str | None, typer.Option(help="cpu or cuda[:i] (default: cuda when available).")]
Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]


def _report(result, out: Path, env) -> None:
    if env.master:
        if result.finished:
            typer.echo(f"wrote {out / LEARNGENE_FILE} ({result.steps} steps, {result.wall_time_s:.1f} s)")
        else:
            typer.echo(f"stopped at step {result.steps}/{result.total_steps}; continue with --resume")


@app.command("ldr")
def ldr(
    data: Data,
    out: Out,
    img_size: ImgSize = 28,
    patch_size: PatchSize = 4,
    embed_dim: Annotated[int, typer.Option(help="Token width D.")] = 64,
    depth: Annotated[int, typer.Option(help="Training depth L.")] = 4,
    num_heads: Annotated[int, typer.Option(help="Attention heads.")] = 2,
    layout: Annotated[str, typer.Option(help="avg (no class token, mean pool) or cls (DeiT).")] = "cls",
    genes: Annotated[int, typer.Option(help="Number of learngenes N.")] = 4,
    stages: Annotated[
        str | None, typer.Option(help="ICT cumulative counts, e.g. 1,2,4,8,12 (default 1,2,4..N).")
    ] = None,
    sct: Annotated[bool, typer.Option("--sct", help="Train all learngenes at once (one stage).")] = False,
    basis: Annotated[str, typer.Option(help="chebyshev, legendre, taylor, fourier or linear (TLEG).")] = "chebyshev",
    offset: Annotated[int | None, typer.Option(help="Index offset: 1 = T_n (paper), 0 = T_(n-1).")] = None,
    position: Annotated[str, typer.Option(help="Layer position: paper (l-1)/L, unit, centered.")] = "paper",
    epochs: Annotated[float, typer.Option(help="Epochs per stage.")] = 1.0,
    max_steps: MaxSteps = None,
    batch_size: BatchSize = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate per stage.")] = 8e-4,
    weight_decay: WeightDecay = 0.05,
    warmup: Warmup = 0.05,
    teacher: Teacher = None,
    teacher_checkpoint: TeacherCheckpoint = None,
    temperature: Annotated[float, typer.Option(help="Distillation temperature.")] = 1.0,
    seed: Seed = 0,
    resume: Resume = False,
    ckpt_interval: CkptInterval = 200,
    stop_after: StopAfter = None,
    train_limit: TrainLimit = None,
    val_limit: ValLimit = None,
    table_genes: Annotated[
        str | None, typer.Option(help="Learngene counts in the accuracy table (default: stages).")
    ] = None,
    device: Device = None,
    progress: Progress = True,
) -> None:
    """Train LDR learngenes with incremental (ICT, default) or simultaneous (SCT) training and save them."""
    recipe = {k: str(v) if isinstance(v, Path) else v for k, v in locals().items()}
    import torch

    from learngene_deploy.data import load_data
    from learngene_deploy.learngene.ldr import LDRGenerator, ict_phases, parse_stages
    from learngene_deploy.models.vit import ArchSpec
    from learngene_deploy.training.loop import TrainConfig, distributed
    from learngene_deploy.training.recipes import train_learngene
    from learngene_deploy.training.teacher import load_teacher

    counts = parse_stages(stages, genes, sct=sct)
    table_counts = parse_stages(table_genes, genes, sct=False) if table_genes else counts
    with distributed(device) as env:
        torch.manual_seed(seed)
        splits = load_data(data, img_size=img_size, seed=seed, train_limit=train_limit, val_limit=val_limit)
        arch = ArchSpec(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=splits.in_chans,
            num_classes=splits.num_classes,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            layout=layout,  # type: ignore[arg-type]
        )
        generator = LDRGenerator(arch, genes, basis=basis, offset=offset, position=position)  # type: ignore[arg-type]
        plan = ict_phases(generator, counts)
        cfg = TrainConfig(
            out=out,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup=warmup,
            temperature=temperature,
            ckpt_interval=ckpt_interval,
            stop_after=stop_after,
            resume=resume,
            seed=seed,
            progress=progress,
        )
        teacher_model = (
            load_teacher(teacher, checkpoint=teacher_checkpoint, num_classes=arch.num_classes) if teacher else None
        )
        sizes = [{"depth": d, "genes": k} for d in range(1, depth + 1) for k in table_counts]
        result = train_learngene(
            generator,
            splits,
            cfg,
            out_file=out / LEARNGENE_FILE,
            phases=plan,
            sizes=sizes,
            teacher=teacher_model,
            teacher_name=teacher,
            recipe=recipe,
            env=env,
        )
        _report(result, out, env)


@app.command("lets")
def lets(
    data: Data,
    out: Out,
    img_size: ImgSize = 28,
    patch_size: PatchSize = 4,
    head_dim: Annotated[int, typer.Option(help="Channels per attention head (every width is a multiple).")] = 16,
    learngene_depth: Annotated[int, typer.Option(help="Learngene layers L_g (even).")] = 4,
    learngene_dim: Annotated[int, typer.Option(help="Learngene width D_g.")] = 32,
    aux_depth: Annotated[int, typer.Option(help="Aux-Net layers, a multiple of L_g (paper: 2 L_g).")] = 8,
    aux_dim: Annotated[int, typer.Option(help="Aux-Net width (>= D_g).")] = 64,
    tie_rows: Annotated[bool, typer.Option(help="Share G rows between Aux layers 2i and 2i+1 (paper).")] = True,
    epochs: Annotated[float, typer.Option(help="Epochs over the training split.")] = 1.0,
    max_steps: MaxSteps = None,
    batch_size: BatchSize = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    weight_decay: WeightDecay = 0.05,
    warmup: Warmup = 0.05,
    teacher: Teacher = None,
    teacher_checkpoint: TeacherCheckpoint = None,
    temperature: Annotated[float, typer.Option(help="Distillation temperature (pure KD, alpha = 1).")] = 1.0,
    seed: Seed = 0,
    resume: Resume = False,
    ckpt_interval: CkptInterval = 200,
    stop_after: StopAfter = None,
    train_limit: TrainLimit = None,
    val_limit: ValLimit = None,
    table_depths: Annotated[
        str | None, typer.Option(help="Depths in the accuracy table, e.g. 4,6,8 (default: 1..aux depth).")
    ] = None,
    table_widths: Annotated[
        str | None, typer.Option(help="Widths in the accuracy table, e.g. 32,64 (default: every supported width).")
    ] = None,
    device: Device = None,
    progress: Progress = True,
) -> None:
    """Train a LeTs learngene (learngene + width matrices F + depth coefficients G) through its Aux-Net and save it.

    With --teacher the loss is DeiT's soft distillation with alpha = 1 (pure KD), as in the paper; without one, CE.
    The stored accuracy table holds the direct top-1 of Des-Nets over depths x widths (continuous selection).
    """
    recipe = {k: str(v) if isinstance(v, Path) else v for k, v in locals().items()}
    import torch

    from learngene_deploy.data import load_data
    from learngene_deploy.learngene.lets import LeTsGenerator
    from learngene_deploy.training.loop import TrainConfig, distributed
    from learngene_deploy.training.recipes import train_learngene
    from learngene_deploy.training.teacher import load_teacher

    def int_list(text: str | None, option: str, valid: list[int]) -> list[int]:
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

    with distributed(device) as env:
        torch.manual_seed(seed)
        splits = load_data(data, img_size=img_size, seed=seed, train_limit=train_limit, val_limit=val_limit)
        generator = LeTsGenerator(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=splits.in_chans,
            num_classes=splits.num_classes,
            head_dim=head_dim,
            learngene_depth=learngene_depth,
            learngene_dim=learngene_dim,
            aux_depth=aux_depth,
            aux_dim=aux_dim,
            tie_rows=tie_rows,
        )
        sizes = generator.supported_sizes()
        depths = int_list(table_depths, "--table-depths", list(range(1, aux_depth + 1)))
        widths = int_list(table_widths, "--table-widths", sizes["width"])
        cfg = TrainConfig(
            out=out,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup=warmup,
            distill="soft",
            temperature=temperature,
            alpha=1.0,
            ckpt_interval=ckpt_interval,
            stop_after=stop_after,
            resume=resume,
            seed=seed,
            progress=progress,
        )
        teacher_model = (
            load_teacher(teacher, checkpoint=teacher_checkpoint, num_classes=splits.num_classes) if teacher else None
        )
        result = train_learngene(
            generator,
            splits,
            cfg,
            out_file=out / LEARNGENE_FILE,
            sizes=[{"depth": d, "width": w} for d in depths for w in widths],
            teacher=teacher_model,
            teacher_name=teacher,
            recipe=recipe,
            env=env,
        )
        _report(result, out, env)
