"""Short runs of the Trainer itself (no CLI, no run directory contract) with a probe callback that watches the
pruner's masks and hooks at every step."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from prunelab import data, models
from prunelab.pruner import Pruner
from prunelab.schedule import Schedule
from prunelab.training.callbacks import Callback, PruningCallback
from prunelab.training.trainer import Trainer, TrainerConfig


class Probe(Callback):
    """After the pruner's hooks: masked weights must be exactly 0 before every forward and after every optimizer
    step; records the steps whose ``on_before_optimizer_step`` ran and whether conv weights were channels-last."""

    def __init__(self, pruner: Pruner) -> None:
        self.pruner = pruner
        self.grad_steps: list[int] = []
        self.step = -1
        self.channels_last: set[bool] = set()
        self.checked = 0

    def _masked_are_zero(self) -> None:
        for name, mask in self.pruner.masks.items():
            w = self.pruner.criterion.modules[name].weight
            assert bool((w.detach()[~mask] == 0).all()), (name, self.step)
            self.checked += 1

    def on_step_begin(self, loop: Any, step: int, metrics: dict) -> None:
        self.step = step
        self._masked_are_zero()

    def on_before_optimizer_step(self, loop: Any) -> None:
        self.grad_steps.append(self.step)
        for m in self.pruner.criterion.modules.values():
            if m.weight.dim() == 4:
                self.channels_last.add(m.weight.is_contiguous(memory_format=torch.channels_last))

    def on_after_optimizer_step(self, loop: Any) -> None:
        self._masked_are_zero()


def train_digits(tmp_path: Path, model: str = "mlp", steps: int = 16, criterion: Any = "snip_momentum",
                 in_memory: bool = True, seed: int = 0, **trainer: Any) -> tuple[torch.nn.Module, Pruner, Probe, dict]:
    """``steps`` SGD steps of ``model`` on digits, pruning to 0.8 from step steps/4 to 3 steps/4 every steps/4
    (16 steps: at 4, 8, 12); returns the model, the pruner, the probe and the summary."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    splits = data.build({"name": "digits", "in_memory": in_memory})
    mcfg = {"name": model, "input_shape": [1, 8, 8], "num_classes": 10}
    net = models.build(mcfg)
    pruner = Pruner(net, criterion, "1x1", Schedule(0.8, start_step=steps // 4, end_step=3 * steps // 4,
                                                       pruning_frequency=max(1, steps // 4)),
                    head=models.head_name(net, mcfg))
    probe = Probe(pruner)
    cfg = TrainerConfig(max_steps=steps, batch_size=32, eval_every=8, progress="none", device="cpu",
                        workers=0, **trainer)
    t = Trainer(cfg, functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9), seed=seed, run_dir=tmp_path)
    summary = t.fit(net, splits, [PruningCallback(pruner), probe], end_step=3 * steps // 4)
    return net, pruner, probe, summary
