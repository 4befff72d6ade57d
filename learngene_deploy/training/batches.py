"""Where each training step's batch comes from: the schedule of a run and the loader stream behind it.

A run is counted in optimiser steps. :func:`schedule` maps them onto epochs of this rank's share of the training split
(``DistributedSampler`` order, ``drop_last``), and :class:`Stream` serves the batch of any step through
:func:`learngene_deploy.data.make_loader`: DataLoader workers decode and augment (per-sample seeded, so the result
does not depend on the worker count), and a resumed run starts the loader at the exact sample it stopped at
(``start=``), decoding nothing it skips. The recipe's batch-level augmentation (timm ``Mixup``/``CutMix``) runs here,
in the main process, with numpy's generator seeded from (seed, rank, step), which is what makes a resumed run
bit-identical to an unbroken one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from learngene_deploy.data.loader import Loader, make_loader, sample_seed
from learngene_deploy.data.presets import Preset, mixup_fn, train_transform
from learngene_deploy.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    """How a run's global steps map onto its phases and onto this rank's share of the data stream."""

    per_rank: int  # images per step on this rank
    steps_per_epoch: int
    phase_steps: int  # every phase runs this many steps
    total: int  # steps of the whole schedule
    stop: int  # the step this process stops at (``stop_after`` or ``total``)

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, samples of that epoch this rank has consumed) before ``step``."""
        epoch, batch = divmod(step, self.steps_per_epoch)
        return epoch, batch * self.per_rank


def schedule(
    train_size: int,
    *,
    batch_size: int,
    world: int,
    epochs: float,
    max_steps: int | None,
    phases: int,
    stop_after: int | None,
    even: bool = False,
) -> Schedule:
    """The run's step counts; refuses a batch the ranks cannot share or the training split cannot fill.

    ``even`` asks for an even batch on every rank (timm's Mixup pairs each image with another of its batch).
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, not {batch_size}; pass e.g. --batch-size 64.")
    if batch_size % world:
        msg = f"batch size {batch_size} is not divisible by the {world} processes; pick a multiple."
        raise ConfigError(msg)
    per_rank = batch_size // world
    if even and per_rank % 2:
        msg = (
            f"Mixup/CutMix mixes pairs of images, so each process needs an even batch, not {per_rank}; "
            "pick an even batch per process or turn mixing off (mixup=0, cutmix=0)."
        )
        raise ConfigError(msg)
    per_rank_images = train_size // world  # DistributedSampler(drop_last=True) gives every rank this many
    steps_per_epoch = per_rank_images // per_rank
    if steps_per_epoch == 0:
        msg = (
            f"batch size {batch_size} exceeds the {train_size} training images; use a smaller batch "
            "(--batch-size of `lgdeploy train`, finetune_batch of the build) or more data."
        )
        raise ConfigError(msg)
    phase_steps = max_steps or max(1, math.ceil(epochs * steps_per_epoch))
    total = phase_steps * phases
    stop = min(total, stop_after) if stop_after is not None else total
    return Schedule(per_rank, steps_per_epoch, phase_steps, total, stop)


class Stream:
    """This rank's (images, targets) at consecutive steps from ``first_step`` on, on ``device``.

    Targets are int labels, or soft targets (B x classes) when the preset mixes. Batches are whole except where an
    unreadable image was skipped (``on_bad_image="skip"``); a mixed batch then drops its last image to stay even.
    """

    def __init__(
        self,
        dataset: Dataset,
        plan: Schedule,
        *,
        preset: Preset,
        num_classes: int,
        seed: int,
        rank: int,
        world: int,
        device: torch.device,
        first_step: int,
        workers: int | None = None,
    ) -> None:
        contract = getattr(dataset, "contract", None)
        if preset.augments:
            if contract is None or not hasattr(dataset, "with_transform"):
                msg = f"recipe {preset.name!r} augments images but the training data has no contract; use recipe none."
                raise ConfigError(msg)
            dataset = dataset.with_transform(train_transform(preset, contract))  # type: ignore[attr-defined]
        self.plan, self.seed, self.rank, self.device = plan, seed, rank, device
        self.mix: Callable[..., Any] | None = mixup_fn(preset, num_classes)
        self.step = first_step
        epoch, start = plan.position(first_step)
        self.epoch = epoch
        self.loader: Loader = make_loader(
            dataset,
            batch_size=plan.per_rank,
            shuffle=True,
            seed=seed,
            epoch=epoch,
            start=start,
            workers=workers,
            rank=rank,
            world_size=world,
            drop_last=True,
            pin_memory=device.type == "cuda",
        )
        self._it: Iterator[Any] = iter(self.loader)

    @property
    def bad_images(self) -> list[str]:
        return self.loader.bad_images

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(2):  # at most one epoch boundary between two steps
            try:
                return next(self._it)
            except StopIteration:
                self.epoch += 1
                self.loader.set_epoch(self.epoch)
                self._it = iter(self.loader)
        msg = "the training split yields no batch in a whole epoch (every image unreadable?); check the data."
        raise ConfigError(msg)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self._next_batch()
        cuda = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=True)
        if cuda and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        if self.mix is not None:
            if len(images) % 2:
                images, labels = images[:-1], labels[:-1]
            # timm's Mixup draws lambda and the CutMix box from numpy's global generator: seed it per (rank, step)
            np.random.seed(sample_seed(self.seed, -1 - self.rank, self.step) % 2**32)
            images, labels = self.mix(images, labels)
        self.step += 1
        return images, labels

    def __iter__(self) -> Stream:
        return self


def eval_batches(dataset: Dataset, *, batch_size: int, device: torch.device, workers: int | None = None) -> Iterator:
    """(images, labels) of ``dataset`` in index order, on ``device`` (every image; an unreadable one stops)."""
    loader = make_loader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        workers=workers,
        pin_memory=device.type == "cuda",
        on_bad_image="error" if not hasattr(dataset, "on_bad_image") else None,
    )
    for images, labels in loader:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
