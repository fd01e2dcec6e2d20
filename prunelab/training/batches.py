"""Batch sources: where the training loop's batches come from, behind one interface for both data paths.

* :class:`MemoryBatches`: every split is a tensor on the device; a batch is a slice (the fast path).
* :class:`StreamBatches`: a ``torch.utils.data.DataLoader`` reads samples in worker processes, with pinned
  memory and persistent workers, and hands each step's batch to the device.

Both give the same batches. The order of epoch ``e`` is ``randperm(n)`` from a generator seeded with
``seed * 1_000_003 + e`` (:func:`epoch_order`); step ``i`` of the epoch takes positions ``[i * B, (i + 1) * B)``
of it (B the global batch, the last batch of an epoch may be short), and rank ``r`` of ``w`` takes every
``w``-th of those from ``r``, as ``DistributedSampler`` shards. The stream's sampler yields, per step, keys
``(step_seed, index)`` so that a per-sample random transform is seeded from ``(seed, step, index)`` (see
:mod:`prunelab.data.samples`) and not from a worker's state. The batch-level augmentation runs on the batch
after it reached the device, from a generator seeded with ``seed * 1_000_003 + step``, on both paths. Nothing
here has state beyond the seed and the step: a run resumed at step ``k`` starts the sampler at ``k`` and sees
exactly the batches of an uninterrupted run.
"""
from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from ..criteria.base import Calibration
from ..options import tristate
from .calibration import calibration_batches, split_calibration
from .distributed import DistInfo

log = logging.getLogger("prunelab")
Batch = tuple[Tensor, Tensor]
_STEP = 1_000_003


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or a scheduler's share, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def epoch_order(seed: int, epoch: int, n: int) -> Tensor:
    """The order of the ``n`` training samples in ``epoch`` (on the CPU)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * _STEP + epoch))


def step_seed(seed: int, step: int) -> int:
    """The seed of a step's augmentation (the batch-level transform's generator, the per-sample transforms')."""
    return seed * _STEP + step


def step_indices(order: Tensor, i: int, global_batch: int, dist: DistInfo) -> Tensor:
    """This rank's share of step ``i`` of an epoch in ``order``."""
    return order[i * global_batch:(i + 1) * global_batch][dist.rank::dist.world_size]


class BatchSource:
    """What the loop asks of the data: this rank's batch of every step, its shard of an evaluation split, and
    calibration batches (un-augmented train samples for model-level criteria)."""

    def __init__(self, data: Any, seed: int, batch_size: int, eval_batch_size: int, dist: DistInfo,
                 device: torch.device) -> None:
        self.data, self.seed, self.dist, self.device = data, int(seed), dist, device
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.transform: Optional[Callable[[Tensor, torch.Generator], Tensor]] = getattr(data, "train_transform", None)
        self.n_train = len(data.train)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.dist.world_size

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.n_train / self.global_batch))

    def split_size(self, split: str) -> int:
        return len(getattr(self.data, split))

    def train(self, start: int, total: int) -> Iterator[Batch]:
        """This rank's batch of each step ``start, ..., total - 1``, on the device, augmented."""
        raise NotImplementedError

    def eval(self, split: str) -> Iterable[Batch]:
        """This rank's shard of ``split`` (every ``world_size``-th sample from ``rank``) in batches, on the device."""
        raise NotImplementedError

    def calibration(self, request: Calibration) -> list[Batch]:
        """The batches a model-level criterion asks for (seeded, un-augmented, the same on every rank)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop worker processes, if any."""

    def _augment(self, x: Tensor, step: int) -> Tensor:
        if self.transform is None:
            return x
        return self.transform(x, torch.Generator(device=x.device).manual_seed(step_seed(self.seed, step)))


class MemoryBatches(BatchSource):
    """Every split moved to the device once; batches are slices of it."""

    def __init__(self, data: Any, seed: int, batch_size: int, eval_batch_size: int, dist: DistInfo,
                 device: torch.device) -> None:
        super().__init__(data, seed, batch_size, eval_batch_size, dist, device)
        self.tensors = {s: tuple(t.to(device) for t in getattr(data, s).tensors) for s in ("train", "val", "test")}

    def train(self, start: int, total: int) -> Iterator[Batch]:
        x, y = self.tensors["train"]
        order, current = None, -1
        for step in range(start, total):
            epoch, i = divmod(step, self.steps_per_epoch)
            if epoch != current:
                order, current = epoch_order(self.seed, epoch, self.n_train).to(self.device), epoch
            idx = step_indices(order, i, self.global_batch, self.dist)
            yield self._augment(x[idx], step), y[idx]

    def eval(self, split: str) -> Iterable[Batch]:
        x, y = (t[self.dist.rank::self.dist.world_size] for t in self.tensors[split])
        return ((x[i:i + self.eval_batch_size], y[i:i + self.eval_batch_size])
                for i in range(0, len(x), self.eval_batch_size))

    def calibration(self, request: Calibration) -> list[Batch]:
        x, y = self.tensors["train"]
        return calibration_batches(x, y, request, self.batch_size, self.seed)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Per step ``start .. total - 1``: this rank's share of the step's global batch, as ``(step_seed, index)``."""

    def __init__(self, n: int, seed: int, global_batch: int, dist: DistInfo, start: int, total: int) -> None:
        self.n, self.seed, self.global_batch, self.dist = n, seed, global_batch, dist
        self.start, self.total = start, total
        self.steps_per_epoch = max(1, math.ceil(n / global_batch))

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order, current = None, -1
        for step in range(self.start, self.total):
            epoch, i = divmod(step, self.steps_per_epoch)
            if epoch != current:
                order, current = epoch_order(self.seed, epoch, self.n), epoch
            key = step_seed(self.seed, step)
            yield [(key, j) for j in step_indices(order, i, self.global_batch, self.dist).tolist()]


class _Keyed(Dataset):
    """A ``TensorDataset`` read by ``(step_seed, index)`` keys (it has no per-sample transforms)."""

    def __init__(self, ds: TensorDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: Any) -> Any:
        return self.ds[key[1] if isinstance(key, tuple) else key]


def _quiet_worker(worker_id: int) -> None:
    """Signals in a worker: SIGINT (a terminal's Ctrl-C reaches the whole process group) is ignored, since the
    main process stops the run at the end of the step and then stops the workers; SIGTERM (a cluster's to every
    process of a job, or multiprocessing's ``terminate()`` at exit) ends the worker with status 0 at once, so that
    the main process is not interrupted by a "worker killed by signal" error while it finishes its step and
    writes its checkpoint. (Ignoring SIGTERM too would leave ``terminate()`` unable to stop a worker.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))


class StreamBatches(BatchSource):
    """Batches read by a ``DataLoader``: ``workers`` processes, ``pin_memory`` (auto: on for CUDA), persistent
    workers for the evaluation splits, ``prefetch_factor`` batches ahead per worker."""

    def __init__(self, data: Any, seed: int, batch_size: int, eval_batch_size: int, dist: DistInfo,
                 device: torch.device, workers: int = 2, pin_memory: Any = "auto", persistent_workers: bool = True,
                 prefetch_factor: int = 2) -> None:
        super().__init__(data, seed, batch_size, eval_batch_size, dist, device)
        pin = tristate("trainer.pin_memory", pin_memory)
        self.workers = int(workers)
        cpus = usable_cpus()
        if self.workers > 2 * cpus and dist.is_main:
            log.warning("prunelab: trainer.workers=%d on %d CPUs: each worker is a process (the train, val and test "
                        "loaders have their own) competing for the CPUs and memory; about one per CPU is enough",
                        self.workers, cpus)
        self.pin = device.type == "cuda" if pin is None else bool(pin) and device.type == "cuda"
        self.loader_kwargs: dict[str, Any] = {"num_workers": self.workers, "pin_memory": self.pin}
        if self.workers > 0:
            self.loader_kwargs.update(worker_init_fn=_quiet_worker, prefetch_factor=int(prefetch_factor))
        self.persistent = bool(persistent_workers) and self.workers > 0
        self.datasets = {s: self._keyed(getattr(data, s)) for s in ("train", "val", "test")}
        self._eval_loaders: dict[str, DataLoader] = {}
        self._live: list[Any] = []

    @staticmethod
    def _keyed(ds: Any) -> Dataset:
        return _Keyed(ds) if isinstance(ds, TensorDataset) else ds

    def _loader(self, ds: Dataset, batch_sampler: Iterable[Any], persistent: bool) -> DataLoader:
        # the loader's own generator (worker base seeds) is seeded, so that making it never draws from the global
        # RNG the model and the criteria use; sample randomness comes from the keys, not from it
        return DataLoader(ds, batch_sampler=batch_sampler, persistent_workers=persistent,
                          generator=torch.Generator().manual_seed(self.seed), **self.loader_kwargs)

    def _to_device(self, batch: Sequence[Tensor]) -> Batch:
        x, y = batch[0], batch[1]
        return x.to(self.device, non_blocking=self.pin), y.to(self.device, non_blocking=self.pin)

    def train(self, start: int, total: int) -> Iterator[Batch]:
        sampler = StepBatchSampler(self.n_train, self.seed, self.global_batch, self.dist, start, total)
        it = iter(self._loader(self.datasets["train"], sampler, persistent=False))
        self._live.append(it)
        for step, batch in zip(range(start, total), it):
            x, y = self._to_device(batch)
            yield self._augment(x, step), y

    def eval(self, split: str) -> Iterable[Batch]:
        if split not in self._eval_loaders:
            n = self.split_size(split)
            shard = list(range(self.dist.rank, n, self.dist.world_size))
            chunks = [shard[i:i + self.eval_batch_size] for i in range(0, len(shard), self.eval_batch_size)]
            self._eval_loaders[split] = self._loader(self.datasets[split], chunks, self.persistent and split == "val")
        return (self._to_device(b) for b in self._eval_loaders[split])

    def calibration(self, request: Calibration) -> list[Batch]:
        return [self._to_device(b) for b in split_calibration(self.data.train, self.data.train_labels(), request,
                                                                self.batch_size, self.seed)]

    def close(self) -> None:
        self._live.clear()
        self._eval_loaders.clear()  # their iterators (and worker processes) go with them


def check_loader(cfg: Any) -> None:
    """One-line errors for the streaming path's trainer options."""
    from ..errors import ConfigError

    for key, minimum in (("workers", 0), ("prefetch_factor", 1)):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"trainer.{key}", value, f"an integer >= {minimum}")
    tristate("trainer.pin_memory", cfg.pin_memory)
    if not isinstance(cfg.persistent_workers, bool):
        raise ConfigError("trainer.persistent_workers", cfg.persistent_workers, "true or false")


def batch_source(data: Any, seed: int, batch_size: int, eval_batch_size: int, dist: DistInfo,
                 device: torch.device, **loader: Any) -> BatchSource:
    """:class:`MemoryBatches` when ``data.in_memory`` (the default of a ``DataSplits``) and every split is a
    ``TensorDataset``, else :class:`StreamBatches` with the ``loader`` options."""
    splits = (data.train, data.val, data.test)
    if getattr(data, "in_memory", True) and all(isinstance(s, TensorDataset) for s in splits):
        return MemoryBatches(data, seed, batch_size, eval_batch_size, dist, device)
    return StreamBatches(data, seed, batch_size, eval_batch_size, dist, device, **loader)
