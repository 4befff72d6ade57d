"""One training loop (nanoGPT style) for every learngene method and for fine-tuning.

``train(model, data, cfg, phases=..., teacher=...)`` trains any ``nn.Module`` that maps images to logits: a
``GeneratedViT`` (a weight generator driving a timm skeleton: learngene training, constrained fine-tuning) or a plain
timm ViT (unconstrained fine-tuning). It runs single-process (CPU or one GPU) or under ``torchrun`` with DDP (gloo on
CPU, NCCL on GPU), with a ``DistributedSampler``-ordered data stream decoded and augmented in DataLoader workers
(``training/batches.py``), AdamW (weight decay only on >= 2-D tensors, never on position embeddings or the class
token), a linear warm-up + cosine schedule that restarts at every phase, bf16 autocast, channels-last non-blocking
copies and optional ``torch.compile`` on GPU, optional distillation, atomic checkpoints and exact resume.

The recipe (``cfg.recipe``: a :class:`~learngene_deploy.data.presets.Preset` or its name) sets the augmentation (timm
``create_transform`` per image, ``Mixup``/``CutMix`` per batch), label smoothing, stochastic depth and an optional
weight EMA (whose weights are the result when it is on). The teacher sees the same mixed images as the student.

Phases (``Phase``) run one after another for the same number of steps each; before a phase its ``setup`` callback
decides which parameters train (e.g. LDR's incremental training freezes the earlier learngenes), and a fresh
optimiser is built over the parameters that then have ``requires_grad=True``. Frozen parameters are therefore never
in the optimiser and never decayed.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from learngene_deploy._fs import atomic_path
from learngene_deploy.data import DataSplits
from learngene_deploy.data.presets import Preset, get_preset
from learngene_deploy.errors import ConfigError
from learngene_deploy.facts import process_age_s
from learngene_deploy.training.batches import Schedule, Stream, eval_batches, schedule
from learngene_deploy.training.regularize import make_ema, set_drop_path

if TYPE_CHECKING:
    from rich.progress import Progress

CHECKPOINT_NAME = "checkpoint.pt"
NO_DECAY_NAMES = ("pos_embed", "cls_token")


@dataclass
class TrainConfig:
    """Options of one training run; ``epochs``/``max_steps`` are per phase."""

    out: Path | None = None  # directory for checkpoint.pt (None: no checkpoints)
    epochs: float = 1.0  # passes over the training split per phase (used when max_steps is None)
    max_steps: int | None = None  # optimiser steps per phase (overrides epochs)
    batch_size: int = 128  # global batch, split evenly over the ranks
    lr: float = 8e-4  # peak learning rate of each phase
    min_lr: float = 1e-5  # learning rate at the end of each cosine
    weight_decay: float = 0.05  # AdamW decay on >= 2-D tensors only
    warmup: float = 0.05  # fraction of each phase's steps spent in linear warm-up
    grad_clip: float = 1.0  # max global gradient norm (0 disables)
    distill: Literal["ce+kl", "soft"] = "ce+kl"  # LDR: CE + KL (1:1); LeTs/TLEG: DeiT soft KD mixed by alpha
    temperature: float = 1.0  # distillation temperature τ
    alpha: float = 1.0  # weight of KD in "soft" mode (1.0 = pure KD, no CE)
    ckpt_interval: int = 0  # write a checkpoint every N steps (0: only at the end)
    stop_after: int | None = None  # stop cleanly after this global step, checkpoint written (time-sliced jobs)
    resume: bool = False  # continue from out/checkpoint.pt
    seed: int = 0  # data order and any randomness in the loop
    progress: bool = True  # rich progress bar (rank 0)
    eval_batch_size: int = 256
    recipe: str | Preset = "none"  # augmentation/regularisation preset or its name (deit, light, none)
    workers: int | None = None  # DataLoader workers (default: 0 for in-memory data, else min(8, CPUs))
    compile: bool = False  # torch.compile the model for the training steps


@dataclass(frozen=True)
class Phase:
    """One phase of training; ``setup`` (if any) sets ``requires_grad`` before the phase's optimiser is built."""

    name: str
    setup: Callable[[], None] | None = None


@dataclass
class TrainResult:
    steps: int  # global steps completed
    total_steps: int  # steps the full schedule has
    wall_time_s: float  # training time, including the runs this one resumed
    final_loss: float  # mean loss of the last few steps
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) per step
    bad_images: list[str] = field(default_factory=list)  # unreadable images skipped (on_bad_image="skip")
    recipe: dict[str, Any] = field(default_factory=dict)  # the preset the run used (Preset.to_dict)
    startup_s: float | None = None  # process start to the end of this process's first optimiser step (Linux)

    @property
    def finished(self) -> bool:
        return self.steps >= self.total_steps


@dataclass(frozen=True)
class Dist:
    """Where this process runs: rank, world size and device."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def master(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def current_dist(device: str | None = None) -> Dist:
    """The rank, world size and device of this process (from ``torchrun``'s environment when present)."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    if device is not None:
        return Dist(rank, world, torch.device(device))
    if torch.cuda.is_available():
        return Dist(rank, world, torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))))
    return Dist(rank, world, torch.device("cpu"))


@contextlib.contextmanager
def distributed(device: str | None = None) -> Iterator[Dist]:
    """Initialise the process group when launched by ``torchrun`` (NCCL on GPU, gloo on CPU); tear it down after."""
    owns = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if owns:
        use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield current_dist(device)
    finally:
        if owns:
            dist.destroy_process_group()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; decay on >= 2-D tensors except position embeddings and class token."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            skip = p.ndim < 2 or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES
            (no_decay if skip else decay).append(p)
    if not decay and not no_decay:
        msg = "nothing to train: every parameter has requires_grad=False; check the stage definition."
        raise ConfigError(msg)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to ``min_lr``; ``step`` counts from the start of the phase."""
    warmup = int(cfg.warmup * total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def distill_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    cfg: TrainConfig,
    *,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """CE without a teacher; with one, ``"ce+kl"``: CE + τ²·KL(teacher ‖ student) (batch mean, LDR, 1:1), or
    ``"soft"``: (1-α)·CE + α·τ²·KL summed and divided by batch × classes (DeiT's soft distillation, LeTs/TLEG).

    ``targets`` are int labels (smoothed by ``label_smoothing``) or Mixup's soft targets (B x classes, already
    smoothed), for which the CE is the soft-target cross-entropy.
    """
    smoothing = label_smoothing if targets.ndim == 1 else 0.0
    ce = F.cross_entropy(logits, targets, label_smoothing=smoothing)
    if teacher_logits is None:
        return ce
    tau = cfg.temperature
    student = F.log_softmax(logits / tau, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    if cfg.distill == "ce+kl":
        return ce + F.kl_div(student, teacher, reduction="batchmean", log_target=True) * tau * tau
    kd = F.kl_div(student, teacher, reduction="sum", log_target=True) * tau * tau / logits.numel()
    return (1 - cfg.alpha) * ce + cfg.alpha * kd


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    # Serialised in memory, then written by Python: a full disk (or quota) surfaces as OSError with its errno,
    # where torch.save into a file or file object reports an opaque RuntimeError from its C++ stream writer.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint (``weights_only=True``: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        msg = f"no checkpoint at {path} to resume from; run without --resume first or point --out at the run."
        raise ConfigError(msg)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        # torch's message advises retrying with weights_only=False, i.e. running arbitrary pickled code: never
        msg = (
            f"{path} is not a checkpoint lgdeploy wrote (it holds objects other than tensors and plain containers, "
            "or is truncated); it is never unpickled, so start the run again without --resume."
        )
        raise ConfigError(msg) from e


def _resume(
    model: nn.Module, ema: Any, path: Path | None, plan: Schedule, phases: int, preset: Preset, env: Dist
) -> dict[str, Any]:
    """Load ``path`` into ``model`` (and ``ema``) and restore the random state; the checkpoint (optimiser, step)."""
    if path is None:
        raise ConfigError("--resume needs an output directory holding checkpoint.pt; pass --out.")
    ckpt = load_checkpoint(path)
    if ckpt["total_steps"] != plan.total or ckpt["stages"] != phases:
        msg = (
            f"checkpoint {path} is for {ckpt['stages']} stage(s) / {ckpt['total_steps']} steps but this run "
            f"has {phases} / {plan.total}; resume with the original options."
        )
        raise ConfigError(msg)
    if ckpt.get("recipe", preset.to_dict()) != preset.to_dict():
        msg = (
            f"checkpoint {path} was trained with recipe {ckpt['recipe'].get('name')!r} and other knobs than this "
            f"run's {preset.name!r}; resume with the original recipe."
        )
        raise ConfigError(msg)
    model.load_state_dict(ckpt["model"])
    if ema is not None:
        if ckpt.get("ema") is None:
            raise ConfigError(f"checkpoint {path} holds no EMA weights; resume with the original recipe (ema off).")
        ema.module.load_state_dict(ckpt["ema"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    random.setstate(ckpt["rng"]["python"])
    if env.device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"], env.device)
    return ckpt


def _progress(cfg: TrainConfig, env: Dist) -> Progress:
    """A rich progress bar with the loss and learning rate (shown on rank 0 when ``cfg.progress``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f} lr {task.fields[lr]:.2e}"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, disable=not (cfg.progress and env.master))


def _phase_optimizer(
    model: nn.Module, phase: Phase, index: int, cfg: TrainConfig, plan: Schedule, ckpt: dict[str, Any] | None
) -> torch.optim.AdamW:
    """Set up phase ``index`` and build its optimiser, restored from ``ckpt`` when that stopped inside this phase."""
    if phase.setup is not None:
        phase.setup()
    optimizer = make_optimizer(model, cfg)
    if ckpt is not None and ckpt["stage"] == index and ckpt["step"] > index * plan.phase_steps:
        optimizer.load_state_dict(ckpt["optimizer"])
    return optimizer


@dataclass
class _Step:
    """What every optimiser step needs besides its batch and learning rate."""

    net: nn.Module  # the model, or its DDP / compiled wrapper
    model: nn.Module
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    teacher: nn.Module | None
    label_smoothing: float
    ema: Any

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor], lr: float, step: int) -> float:
        """One optimiser step at learning rate ``lr``; the batch's loss. The teacher sees the same (mixed) images."""
        images, targets = batch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with _autocast(images.device):
            logits = self.net(images)
            with torch.no_grad():
                teacher_logits = self.teacher(images) if self.teacher is not None else None
        loss = distill_loss(logits.float(), targets, teacher_logits, self.cfg, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, step=step)
        return loss.item()


def _checkpoint(path: Path, step_fn: _Step, cfg: TrainConfig, env: Dist, stream: Stream, **progress: Any) -> None:
    """Rank 0 writes weights, optimiser, EMA, ``progress`` (step, phase, time ...) and random state; all ranks wait."""
    if env.master:
        state = {
            "model": step_fn.model.state_dict(),
            "optimizer": step_fn.optimizer.state_dict(),
            "ema": step_fn.ema.module.state_dict() if step_fn.ema is not None else None,
            **progress,
            "bad_images": list(stream.bad_images),
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state(env.device) if env.device.type == "cuda" else None,
            },
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        }
        _save_checkpoint(path, state)
    env.barrier()


def _wrap(model: nn.Module, cfg: TrainConfig, env: Dist) -> nn.Module:
    """The module the steps call: DDP across ranks, compiled when asked."""
    net = nn.parallel.DistributedDataParallel(model) if env.world > 1 else model
    return torch.compile(net) if cfg.compile else net  # type: ignore[return-value]


def _place(model: nn.Module, teacher: nn.Module | None, preset: Preset, env: Dist) -> None:
    """Models on the run's device (channels-last on GPU), the recipe's drop-path in, the teacher frozen."""
    model.to(env.device)
    if env.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    set_drop_path(model, preset.drop_path)
    if teacher is not None:
        teacher.to(env.device).eval().requires_grad_(False)


def _plan(train_size: int, cfg: TrainConfig, env: Dist, phases: int, preset: Preset) -> Schedule:
    mixes = bool(preset.mixup or preset.cutmix) and preset.mixup_prob > 0
    return schedule(
        train_size,
        batch_size=cfg.batch_size,
        world=env.world,
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        phases=phases,
        stop_after=cfg.stop_after,
        even=mixes,  # Mixup pairs the images of a batch
    )


def train(
    model: nn.Module,
    data: DataSplits,
    cfg: TrainConfig,
    *,
    phases: Sequence[Phase] = (Phase("train"),),
    teacher: nn.Module | None = None,
    env: Dist | None = None,
) -> TrainResult:
    """Train ``model`` (images -> logits) on ``data.train`` through ``phases``, checkpointing into ``cfg.out``.

    Args:
        model: the module to train (a ``GeneratedViT`` or a plain ViT); moved to the run's device. With an EMA in
            the recipe it holds the EMA weights when the schedule has finished.
        data: splits; only ``train`` is used here.
        cfg: options (``cfg.recipe`` sets augmentation and regularisation).
        phases: run in order, each for the same number of steps, each with a fresh optimiser and schedule.
        teacher: distillation teacher (images -> logits over the same classes); plain CE when ``None``.
        env: rank/world/device; defaults to ``current_dist()``.

    Returns:
        Steps done, wall time, loss history (rank 0's losses), skipped images and the recipe used.
    """
    env = env or current_dist()
    preset = get_preset(cfg.recipe)
    _place(model, teacher, preset, env)
    plan = _plan(len(data.train), cfg, env, len(phases), preset)  # type: ignore[arg-type]
    ema = make_ema(model, preset.ema)
    ckpt_path = Path(cfg.out) / CHECKPOINT_NAME if cfg.out is not None else None
    ckpt = _resume(model, ema, ckpt_path, plan, len(phases), preset, env) if cfg.resume else None
    step, earlier_time = (ckpt["step"], ckpt["wall_time_s"]) if ckpt is not None else (0, 0.0)
    stream = Stream(
        data.train, plan, preset=preset, num_classes=data.num_classes, seed=cfg.seed, rank=env.rank,
        world=env.world, device=env.device, first_step=step, workers=cfg.workers,
    )  # fmt: skip
    stream.bad_images.extend(ckpt.get("bad_images", []) if ckpt is not None else [])
    start, history, startup = time.perf_counter(), [], None
    smoothing = 0.0 if stream.mix is not None else preset.label_smoothing
    with _progress(cfg, env) as bar:
        task = bar.add_task("train", total=plan.total, completed=step, loss=float("nan"), lr=0.0)
        while step < plan.stop:
            index = step // plan.phase_steps
            optimizer = _phase_optimizer(model, phases[index], index, cfg, plan, ckpt)
            step_fn = _Step(_wrap(model, cfg, env), model, optimizer, cfg, teacher, smoothing, ema)
            step_fn.net.train()
            bar.update(task, description=f"{phases[index].name} ({index + 1}/{len(phases)})")
            while step < min(plan.stop, (index + 1) * plan.phase_steps):
                lr = lr_at(step - index * plan.phase_steps, plan.phase_steps, cfg)
                loss = step_fn(next(stream), lr, step)
                if startup is None:
                    startup = process_age_s()
                step += 1
                history.append((step, loss))
                bar.update(task, advance=1, loss=loss, lr=lr)
                boundary = step == plan.stop or (cfg.ckpt_interval > 0 and step % cfg.ckpt_interval == 0)
                if ckpt_path is not None and boundary:
                    wall = earlier_time + time.perf_counter() - start
                    progress = {"step": step, "stage": index, "stages": len(phases), "total_steps": plan.total}
                    _checkpoint(
                        ckpt_path, step_fn, cfg, env, stream, **progress, wall_time_s=wall, recipe=preset.to_dict()
                    )
            ckpt = None
    set_drop_path(model, 0.0)
    if ema is not None and step >= plan.total:
        model.load_state_dict(ema.module.state_dict())
    recent = [loss for _, loss in history[-10:]]
    final = sum(recent) / len(recent) if recent else float("nan")
    wall = earlier_time + time.perf_counter() - start
    return TrainResult(step, plan.total, wall, final, history, list(stream.bad_images), preset.to_dict(), startup)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
    workers: int | None = None,
) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (direct evaluation, no fine-tuning)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.to(device).eval()
    correct = seen = 0
    for images, labels in eval_batches(dataset, batch_size=batch_size, device=device, workers=workers):
        with _autocast(device):
            correct += int((model(images).argmax(-1) == labels).sum())
        seen += len(labels)
    model.train(was_training)
    return correct / max(1, seen)
