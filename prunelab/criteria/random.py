"""Random: the baseline every pruning paper compares against."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .base import PruningCriterion, ScoreHook, register_criterion


@register_criterion("random")
class RandomCriterion(PruningCriterion):
    """Random: a seeded uniform score in [0, 1), drawn once at construction.

    The baseline of Blalock et al. 2020, "What is the State of Neural Network Pruning?". Scores are drawn on the
    CPU from ``config['seed']`` (default 0) in layer order, so they are the same on every device and every
    data-parallel rank; gradual pruning then removes a growing, nested random set.
    """

    paper = "Blalock et al. 2020, What is the State of Neural Network Pruning? (random baseline)"
    score_hook = ScoreHook.FIXED

    @dataclass
    class Options:
        seed: int = 0  #: the scores' seed (the app passes the run's seed)

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        self.seed = int(self.options.seed)
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for score in self._score_list:
                score.copy_(torch.rand(score.shape, generator=gen))
