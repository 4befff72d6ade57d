"""The DataLoader factory: distributed, resumable, and deterministic per sample whatever the worker count.

``make_loader`` wraps ``torch.utils.data.DataLoader``. The order of an epoch is ``DistributedSampler``'s (seed +
epoch, this rank's share); ``start`` skips the samples this rank already consumed in that epoch by slicing the index
list, so nothing skipped is decoded. Each sample's random state (torch, ``random``, numpy) is seeded from
(seed, epoch, index) inside ``__getitem__``, so a sample's augmentation does not depend on the worker that decodes
it, the number of workers, or where the epoch was resumed. The epoch travels with each index, so persistent workers
serve every epoch.

An unreadable image never kills a worker: the worker hands a :class:`~learngene_deploy.data.sources.BadImage` to the
collate function, and the main process raises a one-sentence ``DataError`` naming the file (``on_bad_image="error"``)
or drops it from its batch and records it in :attr:`Loader.bad_images` (``"skip"``; batches may then be smaller).
"""

from __future__ import annotations

import hashlib
import os
import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler, default_collate

from learngene_deploy.data.sources import ArrayImages, BadImage, ImageDataset
from learngene_deploy.errors import DataError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample of one epoch (sha256, so nearby triples give unrelated streams)."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _Seeded(Dataset):
    """Indexed by (epoch, index): seeds the sample's RNGs, returns the sample or a BadImage (never raises for one)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        s = sample_seed(self.seed, epoch, index)
        in_worker = torch.utils.data.get_worker_info() is not None
        saved = None if in_worker else (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            # the CPU generator only: torch.manual_seed also queues lazy CUDA/XPU/MTIA seeding, formatting a stack
            # trace each time (about 2 ms per sample on this CPU); augmentation runs on the CPU
            torch.default_generator.manual_seed(s)
            random.seed(s)
            np.random.seed(s % 2**32)
            if isinstance(self.dataset, ImageDataset):
                return self.dataset.sample(index)
            return self.dataset[index]
        finally:
            if saved is not None:  # the main process's streams (dropout, init) stay untouched
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])


class EpochSampler(Sampler):
    """``DistributedSampler``'s order for one epoch from ``start`` on, yielding (epoch, index) pairs."""

    def __init__(self, dataset: Dataset, *, shuffle: bool, seed: int, rank: int, world_size: int, drop_last: bool):
        self.order = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        self.order.set_epoch(self.epoch)
        return iter([(self.epoch, i) for i in list(self.order)[self.start :]])

    def __len__(self) -> int:
        return max(0, len(self.order) - self.start)


class _ArrayBatches(Dataset):
    """In-memory images under the contract's (deterministic) transform: a whole batch per fetch, no seeding."""

    def __init__(self, dataset: ArrayImages) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, keys: list[tuple[int, int]]) -> tuple[Any, list[BadImage]]:
        return self.dataset.batch([index for _, index in keys]), []


def _as_is(batch: Any) -> Any:
    return batch


def collate(items: list[Any]) -> tuple[Any, list[BadImage]]:
    """default_collate of the good samples, and the bad ones apart (runs in the worker)."""
    bad = [it for it in items if isinstance(it, BadImage)]
    good = [it for it in items if not isinstance(it, BadImage)]
    return (default_collate(good) if good else None), bad


class Loader:
    """Iterates (images, labels) batches; ``set_epoch(epoch, start)`` moves it; ``bad_images`` lists skipped files."""

    def __init__(self, loader: DataLoader, sampler: EpochSampler, policy: str) -> None:
        self.loader, self.sampler, self.policy = loader, sampler, policy
        self.bad_images: list[str] = []

    @property
    def skipped(self) -> int:
        return len(self.bad_images)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.sampler.set_epoch(epoch, start)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch, bad in self.loader:
            if bad and self.policy == "error":
                raise bad[0].error()
            for item in bad:
                if item.where not in self.bad_images:  # once per file, not once per epoch
                    warnings.warn(f"skipped unreadable image {item.where} ({item.why})", stacklevel=2)
                    self.bad_images.append(item.where)
            if batch is not None:
                yield batch


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    start: int = 0,
    workers: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    on_bad_image: str | None = None,
) -> Loader:
    """A ``Loader`` over ``dataset`` for one rank (``Loader.set_epoch`` moves it to another epoch).

    Args:
        dataset: a map-style dataset; a lazy :class:`ImageDataset` reports unreadable images by name.
        batch_size: samples per batch on this rank.
        shuffle: ``DistributedSampler`` order (seed + epoch) instead of index order.
        seed: seeds the order and every sample's augmentation.
        epoch: the epoch to iterate first.
        start: samples of that epoch this rank already consumed (steps x batch_size), skipped without decoding.
        workers: DataLoader worker processes (default: 0 for in-memory sources, else min(8, CPUs)).
        rank, world_size: this process's share of each epoch (``DistributedSampler``).
        drop_last: drop the tail that does not fill a batch (and pad no rank: DistributedSampler drops instead).
        pin_memory: pin batches for the GPU (default: when CUDA is available).
        on_bad_image: ``"error"`` or ``"skip"`` (default: the dataset's own setting, else ``"error"``).
    """
    policy = on_bad_image or getattr(dataset, "on_bad_image", "error")
    if policy not in ("error", "skip"):
        raise DataError(f"on_bad_image must be 'error' or 'skip', not {policy!r}.")
    if batch_size < 1 or start < 0:
        raise DataError(f"batch_size must be >= 1 and start >= 0, not {batch_size} and {start}.")
    if workers is None:
        workers = 0 if getattr(dataset, "in_memory", False) else min(8, os.cpu_count() or 1)
    sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
    sampler.set_epoch(epoch, start)
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    if isinstance(dataset, ArrayImages) and dataset.evaluates and not workers:
        batches = BatchSampler(sampler, batch_size, drop_last)  # type: ignore[arg-type]
        fast = DataLoader(_ArrayBatches(dataset), batch_size=None, sampler=batches, collate_fn=_as_is, pin_memory=pin)
        return Loader(fast, sampler, policy)
    loader = DataLoader(
        _Seeded(dataset, seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),  # DataLoader's own base seed: not from the global stream
    )
    return Loader(loader, sampler, policy)
