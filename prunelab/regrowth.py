"""Mask updaters that may grow weights back (dynamic sparse training), and the optimizer-state surgery they need.

A :class:`MaskUpdater` changes the masks at its own update steps (after the schedule's pruning, or instead of it):
it may turn pruned weights back on. It hands the pruner each layer's change by position (:class:`MaskChange`: the
kept positions after it, and those turned off and on), so an update at 90% sparsity touches the few percent of a
layer that change rather than every weight. The pruner then sets grown weights to exactly 0 and, when the updater
asks for it (:attr:`MaskUpdater.resets_grown_state`), zeroes their optimizer state (SGD momentum buffers, Adam's
first and second moments: every per-parameter state tensor of the weight's shape) through
:func:`reset_optimizer_state`, so a grown weight starts from scratch. Masks are then no longer monotone: the
pruner counts the weights whose mask flipped at each update (``masks/changed``).
"""
from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .registry import Registry
from .sparsity.selection import lowest_k, round_count
from .sparsity.maskops import (fill_at_all, fill_where_all, gather, nth_outside, positions_mask, sorted_minus,
                               sorted_union, true_positions)

if TYPE_CHECKING:
    from .pruner import Pruner
    from .sparsity import kernels

UPDATERS: Registry[type["MaskUpdater"]] = Registry("regrowth.name")


class Grow:
    """A layer's growth rule: called with the positions kept after the drop (ascending int64 numpy array) and how
    many to grow, the grown positions (the same, none of them kept). :meth:`fused` may do the layer's whole
    drop-and-grow instead, as one compiled kernel (:mod:`prunelab.sparsity.kernels`) with the same result."""

    def __call__(self, still: np.ndarray, n: int) -> np.ndarray:
        raise NotImplementedError

    def fused(self, ops: "kernels.Operands", kept: np.ndarray, n: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The layer's (kept after, off, on) from one kernel that drops the ``n`` kept entries of smallest
        ``|weight|`` and grows ``n`` by this rule, on the layer's operands (with ``ops.apply`` writing the change
        too); None where no kernel can (then the caller runs the numpy path)."""
        return None


@dataclass(frozen=True)
class MaskChange:
    """One layer's mask update by flat position (ascending int64 tensors on the CPU): ``kept``, every kept position
    after the update; ``off``, those kept before and pruned now; ``on``, those pruned before and kept now.
    ``applied``: already written by the kernel that found it (the mask updated, the weights at ``off`` and ``on``
    zeroed, and the optimizer state at ``on`` where the updater resets it); the pruner only records it."""

    kept: Tensor
    off: Tensor
    on: Tensor
    applied: bool = False

    @classmethod
    def between(cls, old: Tensor, new: Tensor) -> "MaskChange":
        """The change from keep-mask ``old`` to ``new``."""
        return cls(*(true_positions(m).cpu() for m in (new, old & ~new, new & ~old)))

    def mask(self, like: Tensor) -> Tensor:
        """The new keep-mask (bool, ``like``'s shape and device)."""
        return positions_mask(self.kept, like)


class MaskUpdater:
    """Changes masks at its update steps. Subclasses implement :meth:`is_update_step` and :meth:`update` (new
    masks), or :meth:`changes` (the same by position, what the pruner applies)."""

    name: str = ""
    paper: str = ""

    @dataclass
    class Options:
        """The config keys of this updater (``regrowth.<key>``), besides ``name``, typed."""

    #: Zero the optimizer state of weights whose mask turns on (the regrowth methods' rule).
    resets_grown_state: bool = True
    #: The update ranks the gradient the last backward left on the weights (RigL): a checkpoint written right before
    #: an update step carries it, so a run resumed there grows exactly what it would have grown.
    grows_by_gradient: bool = False

    def is_update_step(self, step: int) -> bool:
        return False

    @property
    def last_step(self) -> int:
        """The last step at which this updater may change masks (scores are kept up to date until then)."""
        return -1

    def prepare(self) -> None:
        """Before training (the pruner's ``on_train_begin``): work that would otherwise stall the first update."""

    def update(self, pruner: "Pruner", step: int) -> dict[str, Tensor]:
        """New keep-masks (bool, the weights' shapes) for every pruned layer."""
        return {n: c.mask(pruner.masks[n]) for n, c in self.changes(pruner, step).items()}

    def changes(self, pruner: "Pruner", step: int, in_place: bool = False) -> dict[str, MaskChange]:
        """Every pruned layer's change at update step ``step``, which the pruner applies (by default found from
        :meth:`update`'s masks). ``in_place``: the pruner takes changes that are already written (``applied``),
        where writing them on the way is cheaper; otherwise nothing is written."""
        if type(self).update is MaskUpdater.update:
            raise NotImplementedError(f"{type(self).__name__} implements neither update nor changes")
        return {n: MaskChange.between(pruner.masks[n], m) for n, m in self.update(pruner, step).items()}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore after a resume (e.g. an RNG's state)."""


@torch.no_grad()
def shaped_state(optimizer: torch.optim.Optimizer | None, param: Tensor) -> list[Tensor]:
    """``param``'s optimizer state tensors of its shape (what a grown weight's reset zeroes); none without state."""
    state = optimizer.state.get(param, {}).values() if optimizer is not None else ()
    return [v for v in state if isinstance(v, Tensor) and v.shape == param.shape]


def reset_optimizer_state(optimizer: torch.optim.Optimizer | None, grown: Mapping[Tensor, Tensor]) -> int:
    """Zero, for every parameter in ``grown`` (parameter -> its grown entries: a bool mask of its shape, or flat
    positions as int64), the entries of each of its optimizer state tensors that have the parameter's shape (SGD
    ``momentum_buffer``; Adam/AdamW ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``). Scalar state (Adam's
    ``step``) is left alone. Returns the number of state tensors touched."""
    touched = 0
    for param, where in grown.items():
        tensors = shaped_state(optimizer, param)
        touched += len(tensors)
        (fill_where_all if where.dtype == torch.bool else fill_at_all)(tensors, where)
    return touched


class DropAndGrow(MaskUpdater):
    """Dynamic sparse training's mask update at constant per-layer sparsity: every ``delta_t`` steps after the
    initial pruning (``start_step``) and before ``t_end``, each pruned layer drops ``n = floor(f(t) * kept)`` of
    its kept weights, those of smallest ``|W|``, and grows ``n`` among the positions not kept after the drop
    (the just-dropped ones included, as in the references: a weight dropped and grown again keeps its value and
    optimizer state) by the rule of :meth:`growth`. Grown weights start at 0 with their optimizer state zeroed
    (the pruner does that). Ties: the earlier position is dropped first (the exact-count rule of every ranking
    here: earlier = lower).

    ``f(t)``: ``drop_fraction`` constant, or ``cosine``: ``drop_fraction / 2 * (1 + cos(pi * t / t_end))`` (Evci
    et al. 2020). Unstructured (1x1) masks only.
    """

    decay: str = "cosine"

    @dataclass
    class Options:
        """The keys of ``regrowth`` (typed: a wrong type is a one-line error before any work)."""

        delta_t: int = 100  #: steps between mask updates
        t_end: Any = 0.75  #: the last update is before this step; a float in (0, 1] is a fraction of training
        drop_fraction: float = 0.3  #: the fraction of kept weights replaced at the first update
        decay: str | None = None  #: cosine | constant (None: the updater's own)

    def __init__(self, delta_t: int = 100, t_end: int = 1, drop_fraction: float = 0.3, decay: str | None = None,
                 start_step: int = 0, seed: int = 0) -> None:
        from .errors import ConfigError

        if isinstance(delta_t, bool) or not isinstance(delta_t, int) or delta_t < 1:
            raise ConfigError("regrowth.delta_t", delta_t, "an integer >= 1 (steps between mask updates)")
        if not 0.0 < float(drop_fraction) <= 1.0:
            raise ConfigError("regrowth.drop_fraction", drop_fraction, "a number in (0, 1]")
        decay = decay or self.decay
        if decay not in ("constant", "cosine"):
            raise ConfigError("regrowth.decay", decay, "constant or cosine")
        if t_end <= start_step:
            raise ConfigError("regrowth.t_end", t_end,
                              f"a step after the initial pruning (schedule.end_step = {start_step})")
        self.delta_t, self.t_end, self.alpha, self.decay = delta_t, int(t_end), float(drop_fraction), decay
        self.start_step, self.seed = int(start_step), int(seed)

    def is_update_step(self, step: int) -> bool:
        return self.start_step < step < self.t_end and step % self.delta_t == 0

    @property
    def last_step(self) -> int:
        last = (self.t_end - 1) // self.delta_t * self.delta_t
        return last if last > self.start_step else -1

    def prepare(self) -> None:
        """Compile the drop-and-grow kernels now (loaded from numba's cache after the first run on a machine), so
        that the first update does not stall; says so when that took a while."""
        start = time.perf_counter()
        _kernels().warm()
        took = time.perf_counter() - start
        if took > 2.0:
            logging.getLogger("prunelab").info(
                "prunelab: compiled the drop-and-grow kernels in %.1f s (once per machine: numba caches them)", took)

    def drop_fraction(self, step: int) -> float:
        """f(t): the fraction of each layer's kept weights replaced at update step ``t``."""
        if self.decay == "constant":
            return self.alpha
        return self.alpha / 2 * (1 + math.cos(math.pi * step / self.t_end))

    def growth(self, pruner: "Pruner", step: int) -> Iterator[Grow]:
        """Per pruned layer, in order, its growth rule at update step ``step``. A rule may use scratch that the
        next layer's reuses (:meth:`scratch`): each is called before the next is asked for."""
        raise NotImplementedError

    def scratch(self, like: Tensor) -> Tensor:
        """A float32 buffer of ``like``'s shape and device, shared by all layers (grown to the largest): a fresh
        megabyte tensor per layer and update costs a page fault per 4 KiB, as much as the selection."""
        buf = self.__dict__.get("_scratch")
        if buf is None or buf.numel() < like.numel() or buf.device != like.device:
            buf = torch.empty(like.numel(), dtype=torch.float32, device=like.device)
            self.__dict__["_scratch"] = buf
        return buf[: like.numel()].view(like.shape)

    @torch.no_grad()
    def changes(self, pruner: "Pruner", step: int, in_place: bool = False) -> dict[str, MaskChange]:
        f, out = self.drop_fraction(step), {}
        layers = zip(pruner.names, pruner.criterion.weights, self.growth(pruner, step))
        for name, w, grow in layers:  # each layer's rule is used before the next layer's is made
            mask = pruner.masks[name]
            state = (shaped_state(pruner.optimizer, w) if self.resets_grown_state else []) if in_place else None
            out[name] = drop_and_grow(mask, w, grow, f, pruner.kept_positions(name), apply=state,
                                      operands=self._operands(name, mask, w, state))
        return out

    def _operands(self, name: str, mask: Tensor, weight: Tensor, state: Sequence[Tensor] | None
                  ) -> "kernels.Operands | None":
        """Layer ``name``'s kernel operands: those of the last update while they view the same tensors, else made
        anew; None where the kernels cannot take these tensors."""
        cache = self.__dict__.setdefault("_ops", {})
        ops = cache.get(name)
        if ops is None or not ops.views(mask, weight, state):
            ops = cache[name] = _kernels().operands(mask, weight, state)
        return ops


def drop_and_grow(mask: Tensor, weight: Tensor, grow: Grow, fraction: float, kept_at: Tensor | None = None,
                  compiled: bool = True, apply: Sequence[Tensor] | None = None,
                  operands: "kernels.Operands | None" = None) -> MaskChange:
    """One layer's update: drop ``n = floor(fraction * kept)`` kept entries of smallest ``|weight|`` (of equal ones
    the earlier position), then ``grow(still, n)`` among the entries not kept after the drop. ``kept_at``: the
    mask's kept positions where the caller has them.

    Where the growth rule has a compiled kernel for these tensors (:meth:`Grow.fused`; ``compiled=False`` turns it
    off) that kernel does it all; otherwise everything but the growth rule works on the kept positions (a tenth of
    the layer at 90% sparsity) and on the changed ones, in numpy (a torch call costs ~5x a numpy one, and a layer's
    update is ~30 of them). A weight dropped and grown again is neither on nor off. ``apply`` (the weight's optimizer
    state, or None): the kernel also writes the change (``MaskChange.applied``); the numpy path never does.
    ``operands``: the kernel's views of ``mask``, ``weight`` and ``apply`` where the caller keeps them.
    """
    kept = (true_positions(mask).cpu() if kept_at is None else kept_at).numpy()
    n = math.floor(round_count(fraction * kept.size))
    if n == 0:
        return MaskChange(*(torch.from_numpy(a) for a in (kept, kept[:0], kept[:0])), applied=True)  # no change
    if compiled:  # the compiled path in few Python calls: right after a training step each costs ~10x its usual
        ops = operands or _kernels().operands(mask, weight, apply)
        done = grow.fused(ops, kept, n) if ops is not None else None
        if done is not None:
            return MaskChange(torch.from_numpy(done[0]), torch.from_numpy(done[1]), torch.from_numpy(done[2]),
                              ops.apply)
    with torch.no_grad():
        return _drop_and_grow_numpy(mask, weight, grow, kept, n)


@functools.cache
def _kernels() -> Any:
    """:mod:`prunelab.sparsity.kernels`, imported on first use (it imports numba: ~0.5 s a run need not pay)."""
    from .sparsity import kernels

    return kernels


def _drop_and_grow_numpy(mask: Tensor, weight: Tensor, grow: Grow, kept: np.ndarray, n: int) -> MaskChange:
    """:func:`drop_and_grow` without a kernel: numpy on the kept positions, and the growth rule."""
    kept_w = np.abs(gather(weight, kept)).astype(np.float32, copy=False)
    dropped = lowest_k(torch.from_numpy(kept_w), n).numpy()
    still = np.compress(~dropped, kept)
    grown = grow(still, n)
    back = gather(mask, grown)  # kept before: dropped, and grown again
    regrown = np.compress(back, grown)
    if regrown.size:  # not off after all
        dropped[np.searchsorted(kept, regrown)] = False
    kept_now = sorted_union(still, grown)
    return MaskChange(*(torch.from_numpy(a) for a in (kept_now, np.compress(dropped, kept), np.compress(~back, grown))))


class GrowHighest(Grow):
    """Grow the ``n`` highest of ``|score|`` (the layer's shape) among the entries not kept; of equal values the
    later position (RigL's rule, with the dense gradient as the score). ``scratch(like)``: a float32 buffer of
    ``like``'s shape for ``|score|`` on the numpy path (else a new tensor)."""

    def __init__(self, score: Tensor, scratch: Callable[[Tensor], Tensor] | None = None) -> None:
        self.score, self.scratch = score, scratch

    def __call__(self, still: np.ndarray, n: int) -> np.ndarray:
        from .sparsity.selection import highest_k_positions

        s = self.score
        s = torch.abs(s, out=self.scratch(s)) if self.scratch is not None and s.dtype == torch.float32 \
            else s.abs().float()
        fill_at_all([s], torch.from_numpy(still), -math.inf)
        return highest_k_positions(s.reshape(-1), n).cpu().numpy()

    def fused(self, ops: "kernels.Operands", kept: np.ndarray, n: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        kernels = _kernels()
        if kernels.unavailable(self.score):
            return None
        return kernels.drop_grow_highest(ops, self.score, kept, n)


def grow_highest(score: Tensor, scratch: Callable[[Tensor], Tensor] | None = None) -> GrowHighest:
    """RigL's growth rule: the highest ``|score|`` (:class:`GrowHighest`)."""
    return GrowHighest(score, scratch)


class GrowAtRandom(Grow):
    """Grow ``n`` of the entries not kept, uniformly at random without replacement (SET's rule): ``n`` distinct
    ranks among the ``C`` candidates (:func:`random_subset`, from ``generator``), mapped to their positions. The
    compiled kernel draws the same ranks from the generator, so both paths grow the same weights."""

    def __init__(self, numel: int, generator: torch.Generator) -> None:
        self.numel, self.generator = numel, generator

    def __call__(self, still: np.ndarray, n: int) -> np.ndarray:
        return nth_outside(still, random_subset(self.numel - still.size, n, self.generator))

    def fused(self, ops: "kernels.Operands", kept: np.ndarray, n: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        ranks = random_subset(self.numel - (kept.size - n), n, self.generator)  # C: all but the kept after the drop
        return _kernels().drop_grow_ranks(ops, kept, n, ranks)


def grow_at_random(numel: int, generator: torch.Generator) -> GrowAtRandom:
    """SET's growth rule: ``n`` candidates uniformly at random (:class:`GrowAtRandom`)."""
    return GrowAtRandom(numel, generator)


def random_subset(c: int, n: int, generator: torch.Generator) -> np.ndarray:
    """``n`` distinct integers of ``[0, c)``, ascending, every n-subset equally likely: the first ``n`` distinct
    values of a sequence of uniform integer draws (which subset that gives does not depend on the labels, so all
    are equally likely). The sequence is drawn long enough to hold ``n`` distinct values nearly always, and
    extended when it does not. Above ``c / 2`` the complement is drawn instead."""
    if 2 * n > c:
        return sorted_minus(np.arange(c), random_subset(c, c - n, generator))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    # m draws hold c (1 - (1 - 1/c)^m) distinct values on average: n at m = -c ln(1 - n / c), plus a margin
    m = math.ceil(-c * math.log1p(-n / c) + 4 * math.sqrt(n) + 16)
    draws = torch.randint(c, (m,), generator=generator).numpy()
    while (found := distinct(draws, n)) is None:
        draws = np.concatenate([draws, torch.randint(c, (n,), generator=generator).numpy()])
    return found


def distinct(draws: np.ndarray, n: int) -> np.ndarray | None:
    """:func:`first_distinct`, by the compiled kernel where there is one (the same values)."""
    kernels = _kernels()
    if kernels.OFF is not None:
        return first_distinct(draws, n)
    found = kernels.first_distinct(draws, n)
    return found if found.size else None


def first_distinct(draws: np.ndarray, n: int) -> np.ndarray | None:
    """The first ``n`` distinct values of ``draws`` (non-negative) in draw order, ascending; None if it holds
    fewer. Sorting the keys ``value, index`` (bit-packed) puts each value's first draw first among its repeats
    (numpy's default sort of distinct int64 keys: ~6x its stable argsort of the draws)."""
    m, bits = draws.size, int(draws.size).bit_length()
    keys = np.sort((draws << bits) | np.arange(m))
    values, drawn_at = keys >> bits, keys & ((1 << bits) - 1)
    first = np.empty(m, dtype=bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    values, drawn_at = values[first], drawn_at[first]
    if values.size < n:
        return None
    return values[drawn_at <= np.partition(drawn_at, n - 1)[n - 1]]


@UPDATERS.register("set")
class SETUpdater(DropAndGrow):
    """SET: drop the smallest-|W| fraction of kept weights, grow as many uniformly at random (Mocanu et al. 2018).

    The original drops positive and negative weights separately (the smallest positive and the largest negative)
    and restarts momentum every epoch; like most re-implementations (e.g. jaxpruner) we drop by |W| and reset only
    the grown weights' state. The grown positions are a uniformly random subset of the candidates drawn from a
    generator seeded by (seed, step): identical on every data-parallel rank and after a resume, with no state to
    checkpoint, and drawn as n integers rather than a score per weight. Drop fraction constant (zeta = 0.3).
    """

    paper = "Mocanu et al. 2018, Scalable training of artificial neural networks with adaptive sparse connectivity"
    decay = "constant"

    @dataclass
    class Options(DropAndGrow.Options):
        seed: int = 0  #: the grown positions' generator (``${seed}`` in conf/regrowth/set.yaml)

    def growth(self, pruner: "Pruner", step: int) -> Iterator[Grow]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)  # on the CPU: the same on every device
        for w in pruner.criterion.weights:
            yield grow_at_random(w.numel(), gen)


@UPDATERS.register("rigl")
class RigLUpdater(DropAndGrow):
    """RigL: drop the smallest-|W| fraction of kept weights, grow as many of largest dense gradient |dL/dW| among
    the rest (Evci et al. 2020), the fraction decaying as alpha / 2 * (1 + cos(pi t / T_end)).

    The gradient is the one the last backward left on the weights (dense: gradients are not masked), i.e. the
    previous step's batch, already all-reduced under DDP; the reference computes the update from the current
    batch and skips that step's weight update instead. Of equal gradients the later position grows. Defaults:
    alpha = 0.3, delta_t = 100, T_end = 75% of training, ERK initial masks (``criterion=rigl``).
    """

    paper = "Evci et al. 2020, Rigging the Lottery: Making All Tickets Winners"
    decay = "cosine"
    grows_by_gradient = True

    def growth(self, pruner: "Pruner", step: int) -> Iterator[Grow]:
        for n, w in zip(pruner.names, pruner.criterion.weights):
            if w.grad is None:
                from .errors import ConfigError

                raise ConfigError("regrowth", "rigl", f"a gradient on {n} at step {step} (RigL grows by the last "
                                  "backward's gradient: call the pruner's hooks after a backward)")
            yield grow_highest(w.grad.detach(), self.scratch)


def build_updater(cfg: object, total_steps: int, start_step: int, seed: int = 0) -> MaskUpdater | None:
    """The mask updater a ``regrowth`` config names (None for ``none``); ``t_end`` may be a fraction of
    ``total_steps`` (0.75) or a step. One-line errors for a key the updater does not have or a value of the wrong
    type (its ``Options``), a ``t_end`` past the training, and an updater left no update step (a run named after it
    would never drop and grow)."""
    from .errors import ConfigError
    from .options import config_to_dict

    params = config_to_dict(cfg) if cfg is not None else {}
    name = params.pop("name", "none")
    if name in (None, "none"):
        return None
    cls = UPDATERS.get(str(name))
    given = set(params)  # a key rigl lacks (a seed force-added in a sweep: it grows by gradient) is refused here
    params = asdict(UPDATERS.parse(str(name), params))
    t_end = _t_end_step(params.pop("t_end"), total_steps)
    if "seed" in params:
        params["seed"] = params["seed"] if "seed" in given else seed
        if not 0 <= params["seed"] < 2**32:
            raise ConfigError("regrowth.seed", params["seed"], "an integer in [0, 4294967295]")
    updater = cls(t_end=t_end, start_step=start_step, **params)
    if updater.last_step < 0:  # a run named after its updater that never updates
        raise ConfigError("regrowth.delta_t", params.get("delta_t", getattr(updater, "delta_t", None)),
                          f"a period that leaves an update step after the initial pruning (schedule.end_step = "
                          f"{start_step}) and before regrowth.t_end (step {getattr(updater, 't_end', '?')})")
    return updater


def _t_end_step(t_end: Any, total_steps: int) -> int:
    """``regrowth.t_end`` as a step: a float in (0, 1] is that fraction of ``total_steps``; an integer (or a whole
    float such as 400.0) is a step, at most ``total_steps``."""
    from .errors import ConfigError

    number = isinstance(t_end, (int, float)) and not isinstance(t_end, bool)
    if not number or (isinstance(t_end, float) and not (0.0 < t_end <= 1.0 or t_end.is_integer())):
        raise ConfigError("regrowth.t_end", t_end, "a fraction of training in (0, 1], or a step (an integer)")
    if isinstance(t_end, float) and 0.0 < t_end <= 1.0:
        return int(t_end * total_steps)
    if t_end > total_steps:
        raise ConfigError("regrowth.t_end", t_end, f"a step <= the training length ({total_steps} steps), or a "
                          "fraction of training in (0, 1]")
    return int(t_end)


def check_regrowth(cfg: object, pattern: object, schedule: object, max_steps: int | None,
                   distribution: object = None) -> None:
    """One-line errors for a ``regrowth`` config, before any work: the name, its options, the pattern (unstructured
    only), a distribution whose counts drop-and-grow would not keep (per row), and that its updates start after the
    schedule's last pruning step."""
    from .errors import ConfigError
    from .options import config_to_dict

    params = config_to_dict(cfg) if cfg is not None else {}
    if params.get("name", "none") in (None, "none"):
        extra = sorted(k for k, v in params.items() if k != "name" and v is not None)
        if extra:  # force-added in a sweep (``++regrowth.delta_t=50``) to a job without regrowth
            raise ConfigError(f"regrowth.{extra[0]}", params[extra[0]], "no regrowth key with regrowth=none (they "
                              "apply to criterion=rigl|set, or regrowth=rigl|set)")
        return
    if getattr(pattern, "pattern", "1x1") not in ("1x1",):
        raise ConfigError("pattern.type", getattr(pattern, "pattern", None),
                          f"1x1 with regrowth={params['name']} (drop-and-grow works on single weights)")
    if getattr(distribution, "below_layer", False):
        raise ConfigError("distribution", getattr(distribution, "name", distribution), f"a per-layer split (global, "
                          f"uniform, erk, er) with regrowth={params['name']}: drop-and-grow keeps each layer's "
                          "count but moves weights between rows")
    # the training length is known here with trainer.max_steps; with trainer.epochs the app builds the updater
    # (and checks it the same way) once the data are loaded
    build_updater(cfg, int(max_steps or 10**9), int(getattr(schedule, "end_step", 0)))
