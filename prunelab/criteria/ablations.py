"""Sanity ablations of any criterion's masks (``criterion.ablation``): none, shuffle, invert, reinit.

Frankle, Dziugaite, Roy & Carbin 2021, "Pruning Neural Networks at Initialization: Why are We Missing the Mark?"
(https://arxiv.org/abs/2009.08576): if a method's accuracy survives shuffling each layer's mask or re-drawing the
kept weights, what it found is a per-layer sparsity, not which weights matter; inverting its scores tells whether
its ranking carries information at all. The pruner calls an ablation at three points of a pruning step:

* :meth:`Ablation.ranking` turns the criterion's scores into what the masks rank (``invert``), in every scoring
  round;
* :meth:`Ablation.masks` may replace the step's final masks (``shuffle``);
* :meth:`Ablation.weights` may re-draw the kept weights once the masks are applied (``reinit``).

The criterion's own scores (what is logged) are never changed. ``shuffle`` and ``reinit`` change one pruning
step's outcome, so they take a one-shot schedule (``schedule=at_init`` or any ``start_step == end_step``);
applied at every step of a gradual schedule they would churn masks or weights, which no paper's ablation does.
At a later one-shot step they mean: the criterion's per-layer sparsity with random positions (shuffle), and the
criterion's mask trained from fresh initial values for the remaining steps (reinit: the lottery-ticket
"random reinitialization" control, Frankle & Carbin 2019).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry
from ..sparsity.patterns import Tiling, as_2d, from_2d

ABLATIONS: Registry[type["Ablation"]] = Registry("criterion.ablation")
_SHUFFLE_SALT, _REINIT_SALT = 7_919, 104_729


def _seed(seed: int, salt: int, step: int) -> int:
    return (int(seed) * 1_000_003 + salt + 7 * int(step)) % (2**63)


class Ablation:
    """No ablation: the criterion's masks as it ranks them. Subclasses override one of the three points."""

    name: str = "none"
    paper: str = "Frankle, Dziugaite, Roy & Carbin 2021, Pruning Neural Networks at Initialization"
    #: True: meaningful for one pruning step only (a one-shot schedule)
    one_shot: bool = False
    #: True: :meth:`masks` may keep weights the criterion pruned (the pruner restores their values from before the
    #: step, so they are not kept at 0)
    moves_masks: bool = False

    def __init__(self, seed: int = 0, initializer: Callable[[], nn.Module] | None = None) -> None:
        self.seed = int(seed)
        self.initializer = initializer

    def ranking(self, scores: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        """What the masks rank (higher = kept), given the criterion's ``scores`` and the current ``masks``."""
        return scores

    def masks(self, masks: Mapping[str, Tensor], tiling: Tiling, step: int) -> dict[str, Tensor] | None:
        """The step's final masks replaced, or None to keep them."""
        return None

    def weights(self, modules: Mapping[str, nn.Module | Tensor], weights: Mapping[str, Tensor],
                masks: Mapping[str, Tensor], step: int) -> dict[Tensor, Tensor]:
        """Re-draw weights in place after the masks are applied; returns weight -> bool mask of the entries changed
        (the pruner resets their optimizer state)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"


ABLATIONS.register("none")(Ablation)


@ABLATIONS.register("shuffle")
class Shuffle(Ablation):
    """Shuffle: each layer's mask permuted at random within the layer (per-layer pruned count kept exactly).

    A seeded permutation per layer (a generator seeded from the run's seed and the step, drawn in layer order),
    as open_lth's ``randomly_prune`` with the ``layerwise`` strategy. It permutes the pattern's blocks, so the
    result is still the pattern: NxM blocks and channels move as wholes; with N:M, the groups made N:M are
    permuted and the N kept weights of each such group drawn at random. The weights the shuffled mask keeps have
    the values they had before the pruning step (their initial values at init), not the 0 the criterion's mask
    (or SynFlow's rounds) wrote into them.
    """

    name = "shuffle"
    one_shot = True
    moves_masks = True

    def masks(self, masks: Mapping[str, Tensor], tiling: Tiling, step: int) -> dict[str, Tensor] | None:
        gen = torch.Generator().manual_seed(_seed(self.seed, _SHUFFLE_SALT, step))
        return {name: shuffle_mask(m, tiling, gen) for name, m in masks.items()}


def _mean(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    return t.mean(dim=dims)


def shuffle_mask(mask: Tensor, tiling: Tiling, gen: torch.Generator) -> Tensor:
    """``mask`` (bool, a weight's shape, made of the tiling's blocks) with its pruned blocks moved to positions
    drawn uniformly at random among the layer's blocks, by ``gen``."""
    m2 = as_2d(mask)
    blocks, _, _ = tiling.blocks(m2.float(), _mean)
    pruned = (blocks < 0.5).cpu()  # a block is kept whole (1) or pruned whole (N:M: its group made N:M)
    perm = torch.randperm(pruned.numel(), generator=gen)
    shuffled = pruned[perm].to(mask.device)
    noise = torch.rand(m2.shape, generator=gen).to(mask.device)  # which N of an N:M group stay: at random
    _, _, expand = tiling.blocks(noise, _mean)
    return from_2d(expand(shuffled), mask.shape).contiguous()


@ABLATIONS.register("invert")
class Invert(Ablation):
    """Invert: prune the highest scores instead of the lowest (among the weights not pruned yet).

    The ranking is the negated score; weights the current masks already prune rank below everything (``-inf``),
    so iterative scoring (SynFlow's rounds) and gradual schedules keep pruned weights pruned, as the criterion's
    own ranking does (a pruned weight scores 0 there). Works with any schedule.
    """

    name = "invert"

    def ranking(self, scores: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        return {n: torch.where(masks[n], -s, -math.inf) for n, s in scores.items()}


@ABLATIONS.register("reinit")
class Reinit(Ablation):
    """Reinit: the kept weights re-drawn from the model's own initializer (pruned weights stay 0).

    The fresh values come from ``initializer()``, a newly built model of the same architecture (the app passes
    the model's builder, so a model's own initialisation, e.g. ResNet-20's kaiming-normal, is what is drawn),
    under a seed derived from the run's seed and the step, inside ``torch.random.fork_rng`` (the training RNG does
    not move). Without an initializer (a user's own loop), each pruned layer's copy is reset with its
    ``reset_parameters()``: PyTorch's default for that layer type, which differs from a model-level
    initialisation. Only the pruned layers' weights change: biases, normalisation layers and layers left dense
    keep their values (as Frankle et al. 2021 re-initialise the pruned network's weights).
    """

    name = "reinit"
    one_shot = True

    @torch.no_grad()
    def weights(self, modules: Mapping[str, nn.Module | Tensor], weights: Mapping[str, Tensor],
                masks: Mapping[str, Tensor], step: int) -> dict[Tensor, Tensor]:
        fresh = self.fresh_weights(modules, step)
        changed = {}
        for name, w in weights.items():
            keep = masks[name]
            w.copy_(torch.where(keep, fresh[name].to(w.device, w.dtype), torch.zeros_like(w)))
            changed[w] = keep
        return changed

    def fresh_weights(self, modules: Mapping[str, nn.Module | Tensor], step: int) -> dict[str, Tensor]:
        """Newly drawn weights of every layer in ``modules``, by name."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(self.seed, _REINIT_SALT, step))
            built = dict(self.initializer().named_modules()) if self.initializer is not None else {}
            out = {}
            for name, mod in modules.items():
                same = built.get(name)
                if same is None or getattr(same, "weight", None) is None or same.weight.shape != _shape(mod):
                    same = _reset_copy(name, mod)
                out[name] = same.weight.detach()
            return out


def _shape(mod: nn.Module | Tensor) -> torch.Size:
    return mod.shape if isinstance(mod, Tensor) else mod.weight.shape


def _reset_copy(name: str, mod: nn.Module | Tensor) -> nn.Module:
    if isinstance(mod, Tensor) or not hasattr(mod, "reset_parameters"):
        raise ConfigError("criterion.ablation", "reinit",
                          f"layers with reset_parameters() or a model initializer (layer {name} has neither)")
    fresh = copy.deepcopy(mod)
    fresh.reset_parameters()
    return fresh


def get_ablation(name: Any = "none", seed: int = 0, initializer: Callable[[], nn.Module] | None = None,
                 pruning_steps: int | None = None) -> Ablation:
    """The ablation called ``name`` (None: none), checked against a schedule of ``pruning_steps`` steps."""
    cls = check_ablation(name, pruning_steps)
    return cls(seed=seed, initializer=initializer)


def check_ablation(name: Any, pruning_steps: int | None = None) -> type[Ablation]:
    """The ablation class for ``name``; a one-line :class:`ConfigError` for an unknown name, or for ``shuffle`` /
    ``reinit`` with a schedule of more than one pruning step."""
    cls = ABLATIONS.get("none" if name is None else str(name))
    if cls.one_shot and pruning_steps is not None and pruning_steps > 1:
        raise ConfigError("criterion.ablation", cls.name,
                          f"none or invert with a schedule of {pruning_steps} pruning steps: {cls.name} applies to "
                          "one pruning step (schedule=at_init, or schedule.start_step == schedule.end_step)")
    return cls
