"""Data-parallel training on PyTorch's own engine: ``torchrun --nproc_per_node=N -m prunelab ...``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init` joins the process group (nccl on GPUs,
gloo on CPU). Every rank builds the same model from the same seed and prunes with the same masks: gradient
scores are computed after DDP has all-reduced the gradients, magnitude scores from identical weights, and
``random`` from a seed all ranks share. Only rank 0 logs and writes checkpoints; every rank resumes from them.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str = "auto", timeout_s: float = 300.0) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return info


def shutdown() -> None:
    """Leave the process group. Garbage is collected first, so that anything a reference cycle still holds on
    to the group with (a DDP wrapper) is freed now, while the group and the interpreter are alive, and not by a
    later collection or during interpreter exit, where a gloo group's teardown can abort the process."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_str(value: str) -> str:
    """Rank 0's value on every rank (e.g. the run directory, whose name holds a time stamp)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def broadcast_object(obj: object) -> object:
    """Rank 0's (picklable) object on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(t: Tensor) -> Tensor:
    """Every rank's value of the scalar ``t``, stacked (rank order): ``[world_size]`` (``[1]`` alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return t.reshape(1)
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.stack(out)


def any_rank(flag: bool, device: torch.device | str | None = None) -> bool:
    """True on every rank if ``flag`` is true on any (without a process group: ``flag``). ``device``: where the
    reduction runs (default: the current CUDA device under nccl, else the CPU)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_reduce_sum(*tensors: Tensor) -> None:
    """Sum tensors over all ranks, in place (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


@torch.no_grad()
def masks_checksum(masks: dict[str, Tensor]) -> Tensor:
    """One float64 number that differs when any mask differs: the sum of (position + 1) of kept entries, per
    layer, weighted by the layer's index."""
    device = next(iter(masks.values())).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    for i, m in enumerate(masks.values()):
        flat = m.reshape(-1)
        pos = torch.arange(1, flat.numel() + 1, device=device, dtype=torch.float64)
        total += (i + 1) * (pos * flat).sum()
    return total


def check_masks_equal(masks: dict[str, Tensor], step: int) -> None:
    """Debug check (``trainer.check_masks``): raise if any rank's masks differ from the others' at ``step``."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    c = masks_checksum(masks)
    hi, lo = c.clone(), -c.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MAX)
    if float(hi) != -float(lo):
        raise RuntimeError(f"masks differ across ranks at step {step} (checksums {float(-lo)} .. {float(hi)})")
