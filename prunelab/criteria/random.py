"""Random: the baseline every pruning paper compares against."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import PruningCriterion, ScoreHook, register_criterion

#: ``criterion.stream``: where the scores are drawn from
STREAMS = ("independent", "model_init")


@register_criterion("random")
class RandomCriterion(PruningCriterion):
    """Random: a seeded uniform score in [0, 1), drawn once at construction.

    The baseline of Blalock et al. 2020, "What is the State of Neural Network Pruning?". Scores are drawn on the
    CPU in layer order from a generator seeded by :func:`stream_seed` of ``config['seed']`` (the run's seed), so
    they are the same on every device and every data-parallel rank; gradual pruning then removes a growing,
    nested random set.

    The seed is derived, not the run's seed itself: the model is initialised from ``torch.manual_seed(seed)``,
    and a generator seeded with the same number draws the same uniforms, so the first layer's "random" scores
    were its initial weights rescaled (``kaiming_uniform``: W = b (2u - 1)) and random pruning kept exactly its
    most positive initial weights. ``stream: model_init`` draws that way, only to reproduce runs of versions before
    the fix (2026-12-08), whose configs lack the key: a config with it has their fingerprint
    (:data:`prunelab.rundir.ADDED_KEYS`), so such a run resumes, and is reused, under it.
    """

    paper = "Blalock et al. 2020, What is the State of Neural Network Pruning? (random baseline)"
    score_hook = ScoreHook.FIXED

    @dataclass
    class Options:
        seed: int = 0  #: the scores' seed (the app passes the run's seed)
        stream: str = "independent"  #: independent of the model's initialisation, or model_init (before 2026-12-08)

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        self.seed = int(self.options.seed)
        if self.options.stream not in STREAMS:
            raise ConfigError("criterion.stream", self.options.stream, " or ".join(STREAMS))
        seed = stream_seed(self.seed) if self.options.stream == "independent" else self.seed
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for score in self._score_list:
                score.copy_(torch.rand(score.shape, generator=gen))


def stream_seed(seed: int) -> int:
    """The random criterion's generator seed for run seed ``seed``: 32 bits of a SHA-256 of it (torch's CPU generator
    keeps the low 32 bits of a seed), so its stream is not the one ``torch.manual_seed(seed)`` gives the model's
    initialisation (nor, but by a 2^-32 chance, any other run seed's)."""
    return int.from_bytes(hashlib.sha256(f"prunelab.criteria.random:{int(seed)}".encode()).digest()[:4], "little")
