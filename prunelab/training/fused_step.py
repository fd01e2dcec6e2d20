"""The pruned layers' optimizer step compiled with the pruner's per-step work, as one pass (``trainer.fused_step``).

After backward, an ordinary step of a pruned run reads every pruned weight three times: the criterion's score
update (snip_momentum reads W, g and S), the optimizer's step (W, g and the momentum) and the masks re-applied (W
and the mask). On a small model these passes cost as much as the step's arithmetic, since each reads data that
the forward and backward have pushed out of the caches: snip_momentum's ordinary MLP step took ~1.2x a dense one
on this project's CPU. Compiled together by inductor they are one loop per layer, which reads W, g, the
momentum, the score and the mask once.

What is fused, per parameter group that holds pruned weights: ``torch.optim.SGD``'s step (momentum, dampening,
Nesterov, weight decay, maximize, the group's own) of each of its parameters, written into the optimizer's own
momentum buffers so that checkpoints hold the same state; for the pruned weights also their masks and the
criterion's score update where it gives one as an expression
(:meth:`~prunelab.criteria.base.PruningCriterion.fused_rule`; snip_momentum). The group's other parameters
(biases, unpruned layers) are in the pass too, so that the optimizer's own step, still called, finds nothing to
do: it costs ~80 us right after a backward even then, ~115 us with four small parameters left. The numbers are
the eager step's, bitwise (:mod:`prunelab.criteria.fused` says how; tested on the CPU), so the option is not part
of a run's fingerprint: a run may resume with or without it.

Refused at config time where it cannot work: no inductor backend, another optimizer, fp16 with its gradient
scaler (a step the scaler skips must not move the pruned weights). A step at which a pruned weight has no
gradient or no momentum buffer yet (the first step creates them) takes the eager path.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional

import torch
from torch import Tensor

from ..criteria.fused import compile_graph, fma
from ..errors import ConfigError

log = logging.getLogger("prunelab")

#: what ``trainer.fused_step=true`` is refused with under fp16
FP16_REFUSAL = "false with trainer.amp=fp16 (a step its gradient scaler skips must not move the pruned weights)"

#: a criterion's score update as an expression ``(S, W, g) -> new S``, with a key that names its constants
ScoreRule = tuple[Hashable, Callable[[Tensor, Tensor, Tensor], Tensor]]


def unsupported(optimizer: torch.optim.Optimizer | type, kwargs: Optional[dict[str, Any]] = None) -> Optional[str]:
    """Why ``optimizer`` (an instance; or a class with its keyword arguments) has no fused step, or None."""
    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    if cls is not torch.optim.SGD:
        return f"{cls.__name__} (the fused step is torch.optim.SGD's)"
    groups = [kwargs or {}] if isinstance(optimizer, type) else optimizer.param_groups
    if any(g.get("fused") or g.get("differentiable") for g in groups):
        return "SGD(fused=True) or SGD(differentiable=True) (their own steps)"
    return None


@dataclass(frozen=True)
class SGDRule:
    """The hyperparameters of one parameter group that shape its step (the learning rate is an input: it moves)."""

    momentum: float
    dampening: float
    nesterov: bool
    weight_decay: float
    maximize: bool

    @classmethod
    def of(cls, group: dict[str, Any]) -> "SGDRule":
        return cls(float(group["momentum"]), float(group["dampening"]), bool(group["nesterov"]),
                   float(group["weight_decay"]), bool(group.get("maximize", False)))

    def update(self, w: Tensor, g: Tensor, b: Optional[Tensor], m: Optional[Tensor], neg_lr: Tensor) -> None:
        """One parameter's SGD step, rounded as ``torch.optim.SGD``'s eager step rounds it, then ``W *= mask``
        (a pruned weight's)."""
        d = -g if self.maximize else g
        if self.weight_decay != 0:
            d = fma(w, self.weight_decay, d)  # grad.add(param, alpha=weight_decay)
        if b is not None:
            nb = b * self.momentum  # buf.mul_(momentum): rounded before the add
            nb = nb + d if self.dampening == 0 else fma(d, 1.0 - self.dampening, nb)
            b.copy_(nb)
            d = fma(nb, self.momentum, d) if self.nesterov else nb
        new = fma(d, neg_lr, w)  # param.add_(grad, alpha=-lr)
        w.copy_(new * m if m is not None else new)  # then the mask


def _graph(n: int, extra: int, rule: SGDRule,
           score: Optional[Callable[[Tensor, Tensor, Tensor], Tensor]]) -> Callable[..., None]:
    """The step of ``n`` pruned and ``extra`` other parameters as one function of
    ``(neg_lr, *W, *G, [*B], [*S], *M)``: W, G and B hold the pruned ones first; S and M the pruned ones only."""
    total = n + extra
    momentum = rule.momentum != 0

    def step(neg_lr: Tensor, *flat: Tensor) -> None:
        w, g = flat[:total], flat[total:2 * total]
        b = flat[2 * total:3 * total] if momentum else [None] * total
        at = (2 + momentum) * total
        s = flat[at:at + n] if score is not None else [None] * n
        m = flat[len(flat) - n:]
        for i in range(total):
            if i < n and score is not None:
                s[i].copy_(score(s[i], w[i], g[i]))  # the scores read the weights before the step
            rule.update(w[i], g[i], b[i], m[i] if i < n else None, neg_lr)

    return step


class _GroupStep:
    """One parameter group's compiled step: its pruned weights and the group's other parameters that have a
    gradient (so that the optimizer's own step has nothing left to do but its bookkeeping), with the operands that
    persist from step to step (momentum buffers, scores, masks, the learning rate's tensor). Rebuilt only when one
    of them is replaced (a resumed optimizer's state, new hyperparameters, another set of parameters with
    gradients), so an ordinary step costs few Python calls."""

    def __init__(self, optimizer: torch.optim.Optimizer, k: int, weights: list[Tensor], others: list[Tensor],
                 masks: list[Tensor], scores: Optional[list[Tensor]], rule: Optional[ScoreRule]) -> None:
        self.group = optimizer.param_groups[k]
        self.sgd = SGDRule.of(self.group)
        self.params = [*weights, *others]
        self.others = others
        self.buffers = [optimizer.state[p]["momentum_buffer"] for p in self.params] if self.sgd.momentum else []
        self.masks, self.scores = masks, scores or []
        self.rule_key = rule[0] if rule is not None else None
        self.strides = [p.grad.stride() for p in self.params]
        self.rest = [*self.buffers, *self.scores, *(m.view(torch.uint8) for m in masks)]
        self.neg_lr = torch.zeros((), dtype=torch.float32, device=weights[0].device)
        self.lr: Any = None
        flat = [*self.params, *(p.grad for p in self.params), *self.rest]
        self.kernel = _kernel(self.sgd, rule, flat, len(weights), len(others), self.neg_lr)

    def fits(self, optimizer: torch.optim.Optimizer, others: list[Tensor], masks: list[Tensor],
             scores: Optional[list[Tensor]], rule: Optional[ScoreRule]) -> bool:
        """Whether this step was built for these operands and this group's hyperparameters."""
        return ((rule[0] if rule is not None else None) == self.rule_key
                and len(others) == len(self.others) and all(a is b for a, b in zip(others, self.others))
                and all(a is b for a, b in zip(masks, self.masks))
                and (scores is None and not self.scores or scores is not None
                     and all(a is b for a, b in zip(scores, self.scores)))
                and all(optimizer.state[p]["momentum_buffer"] is b for p, b in zip(self.params, self.buffers))
                and all(p.grad.stride() == st for p, st in zip(self.params, self.strides))
                and SGDRule.of(self.group) == self.sgd)

    def run(self) -> None:
        lr = self.group["lr"]
        if lr != self.lr:
            self.neg_lr.fill_(-float(lr))
            self.lr = lr
        self.kernel(self.neg_lr, *self.params, *(p.grad for p in self.params), *self.rest)


class FusedStep:
    """Steps the parameter groups that hold ``weights`` (the pruner's, in its order) in one compiled pass each; the
    optimizer then steps what is left. Call :meth:`ready`, then :meth:`step` before the optimizer's step and
    :meth:`release` after it. A compilation that fails turns it off for the rest of the run (logged): the eager
    step goes on."""

    def __init__(self, optimizer: torch.optim.Optimizer, weights: list[Tensor]) -> None:
        if (why := unsupported(optimizer)) is not None:
            raise ConfigError("trainer.fused_step", True, f"false with optimizer {why}")
        self.optimizer = optimizer
        group_of = {id(p): k for k, g in enumerate(optimizer.param_groups) for p in g["params"]}
        pruned = {id(w) for w in weights}
        #: per parameter group: its index, the positions (in ``weights``) of the pruned weights it holds, and its
        #: other parameters
        self.groups: list[tuple[int, list[int], list[Tensor]]] = [
            (k, [i for i, w in enumerate(weights) if group_of.get(id(w)) == k],
             [p for p in g["params"] if id(p) not in pruned])
            for k, g in enumerate(optimizer.param_groups)]
        self.groups = [gr for gr in self.groups if gr[1]]
        self.weights = weights
        self._steps: list[Optional[_GroupStep]] = [None] * len(self.groups)
        self._held: list[tuple[Tensor, Tensor]] = []
        self.failed = False
        self.compile_s = 0.0  # seconds spent building (compiling) the steps

    def ready(self) -> bool:
        """Whether this step can be fused: every trained pruned weight has a dense float32 gradient and, with
        momentum, its buffer (the optimizer's first step creates them)."""
        if self.failed:
            return False
        for k, idx, _ in self.groups:
            momentum = self.optimizer.param_groups[k]["momentum"] != 0
            for i in idx:
                if not _fusable(self.weights[i], self.optimizer, momentum):
                    return False
        return True

    @torch.no_grad()
    def step(self, masks: list[Tensor], scores: Optional[list[Tensor]] = None,
             rule: Optional[ScoreRule] = None) -> bool:
        """The fused step of the pruned weights (scores too, where ``rule`` is given: ``scores`` then holds one
        float32 tensor per weight) and of their groups' other parameters that can take it; their gradients are
        held back from the optimizer's step until :meth:`release`. False, with nothing written, where a step
        failed to compile (the caller takes the eager step)."""
        try:
            plans = [self._plan(j, masks, scores, rule) for j in range(len(self.groups))]
        except Exception as exc:  # noqa: BLE001 - compiled before anything is written: the eager step goes on
            self.failed = True
            log.warning("prunelab: trainer.fused_step: the step failed to compile (%s: %s); training goes on with "
                        "the eager step", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            return False
        for plan in plans:
            plan.run()
            for p in plan.params:
                self._held.append((p, p.grad))
                p.grad = None  # the optimizer's step skips a parameter without a gradient
        return True

    def _plan(self, j: int, masks: list[Tensor], scores: Optional[list[Tensor]],
              rule: Optional[ScoreRule]) -> _GroupStep:
        """Group ``j``'s step for this step's operands: the last one, or a new one where an operand changed."""
        k, idx, rest = self.groups[j]
        momentum = self.optimizer.param_groups[k]["momentum"] != 0
        others = [p for p in rest if _fusable(p, self.optimizer, momentum)]
        m = [masks[i] for i in idx]
        s = [scores[i] for i in idx] if rule is not None and scores is not None else None
        plan = self._steps[j]
        if plan is None or not plan.fits(self.optimizer, others, m, s, rule):
            t0 = time.perf_counter()
            try:
                plan = self._steps[j] = _GroupStep(self.optimizer, k, [self.weights[i] for i in idx], others, m, s,
                                                   rule)
            finally:
                self.compile_s += time.perf_counter() - t0
        return plan

    def release(self) -> None:
        """Give the held gradients back (after the optimizer's step), as an eager step leaves them."""
        for t, g in self._held:
            t.grad = g
        self._held.clear()


def _fusable(p: Tensor, optimizer: torch.optim.Optimizer, momentum: bool) -> bool:
    """Whether parameter ``p`` can take the fused step now: a dense float32 gradient, and its momentum buffer."""
    g = p.grad
    return (g is not None and not g.is_sparse and p.dtype == torch.float32 and g.dtype == torch.float32
            and (not momentum or optimizer.state.get(p, {}).get("momentum_buffer") is not None))


def _kernel(sgd: SGDRule, rule: Optional[ScoreRule], flat: list[Tensor], n: int, extra: int,
            neg_lr: Tensor) -> Callable[..., None]:
    """The compiled step for these operands (``flat``: parameters, gradients, then the rest), compiled once per
    process for what it was compiled for."""
    key = (sgd, rule[0] if rule is not None else None, n, extra,
           *((tuple(t.shape), t.stride(), t.dtype, t.device) for t in flat))
    kernel = _KERNELS.get(key)
    if kernel is None:
        log.info("prunelab: trainer.fused_step: compiling the step of %d parameters, %s (once per process and "
                 "shape; left out of the loop's samples/s)", n + extra,
                 "with the criterion's score update" if rule is not None else "SGD and masks")
        kernel = compile_graph(_graph(n, extra, sgd, rule[1] if rule is not None else None), [neg_lr, *flat])
        _KERNELS[key] = kernel
    return kernel


#: compiled steps by what they were compiled for (one process compiles each once: a run's steps with and without
#: scores, the same shapes in later runs of a benchmark or a test)
_KERNELS: dict[tuple[Any, ...], Callable[..., None]] = {}
