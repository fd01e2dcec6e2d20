"""The generic training loop: calls the pruner's hooks, evaluates, checkpoints, reports to a tracker.

It knows nothing of any criterion (only the pruner's five hooks) and nothing of W&B (only the
:class:`~prunelab.tracking.Tracker` interface). Data are in-memory tensors; the order of every epoch comes from
``(seed, epoch)`` and the augmentation of every step from ``(seed, step)``, so a run resumed from a checkpoint
sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from . import distributed
from .distributed import DistInfo
from .errors import ConfigError
from .pruner import Pruner
from .tracking import Tracker, write_json_atomic

log = logging.getLogger("prunelab")

LR_SCHEDULES = ("none", "step", "cosine")
CHECKPOINT = "checkpoint.pt"


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf."""


class Interrupted(RuntimeError):
    """SIGINT / SIGTERM arrived; a checkpoint was written at the end of the step."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError("trainer.device", name, "auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device", name, "auto or cpu: no CUDA device is available here")
    return dev


def lr_lambda(kind: str, total: int, warmup: int = 0, step_size: int = 1, gamma: float = 0.1,
              min_factor: float = 0.0) -> Callable[[int], float]:
    """The learning-rate factor at a step: linear warmup, then none / step decay / cosine to ``min_factor``."""
    if kind not in LR_SCHEDULES:
        raise ConfigError("trainer.lr_schedule", kind, f"one of {', '.join(LR_SCHEDULES)}")

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        t = step - warmup
        if kind == "step":
            return gamma ** (t // max(1, step_size))
        if kind == "cosine":
            span = max(1, total - warmup)
            return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(t, span) / span))
        return 1.0

    return factor


def config_fingerprint(cfg: Mapping[str, Any]) -> str:
    """A hash of what determines a run's results (the trainer's resume/checkpoint knobs and logging left out),
    so a checkpoint is never resumed under another configuration."""
    d = json.loads(json.dumps(cfg, default=str))
    d.pop("logger", None)
    d.pop("tracking", None)
    for key in ("resume", "checkpoint_every", "log_every", "progress", "num_threads", "check_masks"):
        d.get("trainer", {}).pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainerConfig:
    """``cfg.trainer``: how long, how to batch, evaluate, checkpoint and where to run."""

    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 1024
    eval_every: int = 0
    log_every: int = 10
    finetune_steps: int | None = None
    lr_schedule: str = "none"
    warmup_steps: int = 0
    lr_step_size: int = 1000
    lr_gamma: float = 0.1
    lr_min_factor: float = 0.0
    grad_clip: float | None = None
    device: str = "auto"
    deterministic: bool = False
    checkpoint_every: int = 0
    resume: Any = False
    progress: str = "auto"
    check_masks: bool = False
    num_threads: int | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> "TrainerConfig":
        from .criteria import config_to_dict

        d = config_to_dict(cfg)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"trainer.{sorted(unknown)[0]}", d[sorted(unknown)[0]],
                              f"known keys: {', '.join(cls.__dataclass_fields__)}")
        return cls(**d)


class Trainer:
    """Trains ``model`` on ``data`` while ``pruner`` prunes it, reporting to ``tracker``.

    Args:
        cfg: the trainer section (:class:`TrainerConfig` or its config).
        optimizer: a callable ``params -> torch.optim.Optimizer`` (e.g. a Hydra ``_partial_`` instantiation).
        seed: seeds python, numpy and torch, the data order and the augmentation.
        run_dir: where checkpoints go.
        fingerprint: identifies the configuration inside checkpoints (see :func:`config_fingerprint`).
    """

    def __init__(self, cfg: TrainerConfig | Any, optimizer: Callable[..., torch.optim.Optimizer], seed: int = 0,
                 run_dir: str | os.PathLike = ".", fingerprint: str = "", dist: DistInfo | None = None) -> None:
        self.cfg = cfg if isinstance(cfg, TrainerConfig) else TrainerConfig.from_config(cfg)
        self.make_optimizer = optimizer
        self.seed = int(seed)
        self.run_dir = Path(run_dir)
        self.fingerprint = fingerprint
        self.dist = dist or DistInfo()
        self._signal: int | None = None

    # --- sizes ---
    @property
    def global_batch_size(self) -> int:
        """Samples per step over all data-parallel ranks."""
        return self.cfg.batch_size * self.dist.world_size

    def steps_per_epoch(self, n_train: int) -> int:
        return max(1, math.ceil(n_train / self.global_batch_size))

    def total_steps(self, n_train: int, pruner: Pruner | None = None) -> int:
        c = self.cfg
        if c.finetune_steps is not None and pruner is not None:
            return pruner.schedule.end_step + 1 + int(c.finetune_steps)
        if c.max_steps is not None:
            return int(c.max_steps)
        if c.epochs is not None:
            return int(c.epochs) * self.steps_per_epoch(n_train)
        raise ConfigError("trainer.max_steps", None, "a number of steps, or set trainer.epochs")

    # --- data ---
    def _order(self, epoch: int, n: int, device: torch.device) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=gen).to(device)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over a whole split (sharded over ranks, then summed)."""
        was_training = model.training
        model.eval()
        n = len(x)
        x, y = x[self.dist.rank::self.dist.world_size], y[self.dist.rank::self.dist.world_size]
        loss = torch.zeros((), device=x.device, dtype=torch.float64)
        correct = torch.zeros((), device=x.device, dtype=torch.float64)
        for i in range(0, len(x), self.cfg.eval_batch_size):
            out = model(x[i:i + self.cfg.eval_batch_size])
            tgt = y[i:i + self.cfg.eval_batch_size]
            loss += nn.functional.cross_entropy(out.float(), tgt, reduction="sum").double()
            correct += (out.argmax(1) == tgt).sum()
        distributed.all_reduce_sum(loss, correct)
        model.train(was_training)
        return float(loss) / max(1, n), float(correct) / max(1, n)

    # --- checkpoints ---
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomic: temporary file, fsync, rename. A kill mid-write leaves the previous checkpoint intact.
        Only rank 0 writes."""
        if not self.dist.is_main:
            return
        path = self.checkpoint_path()
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ConfigError("trainer.resume", str(path), "a run directory holding checkpoint.pt, or a checkpoint file") from None
        except Exception as exc:
            raise ConfigError("trainer.resume", str(path),
                              f"a readable prunelab checkpoint (this file is corrupted: {type(exc).__name__})") from None
        if not isinstance(state, dict) or "step" not in state:
            raise ConfigError("trainer.resume", str(path), "a prunelab checkpoint (this file is not one)")
        if self.fingerprint and state.get("fingerprint") != self.fingerprint:
            raise ConfigError("trainer.resume", str(path),
                              "a checkpoint of this same configuration (it was written by a run with another config)")
        return state

    def resume_path(self) -> Path | None:
        r = self.cfg.resume
        if r in (False, None, "", "false", "False"):
            return None
        if r in (True, "true", "True"):
            return self.checkpoint_path()
        if r == "auto":  # resume if there is a checkpoint (e.g. a requeued cluster job), else start afresh
            return self.checkpoint_path() if self.checkpoint_path().exists() else None
        p = Path(str(r))
        return p / CHECKPOINT if p.is_dir() else p

    # --- signals ---
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signum

    # --- the loop ---
    def check_length(self, n_train: int, pruner: Pruner | None) -> int:
        """The training length in steps; pruning must end inside it."""
        total = self.total_steps(n_train, pruner)
        if pruner is not None and pruner.schedule.end_step >= total:
            raise ConfigError("schedule.end_step", pruner.schedule.end_step,
                              f"< the training length ({total} steps; trainer.max_steps / trainer.epochs)")
        return total

    def fit(self, model: nn.Module, data: Any, pruner: Pruner | None, tracker: Tracker | None = None,
            resume_state: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Train (from ``resume_state``, a checkpoint, if given; else from the checkpoint ``trainer.resume`` names,
        if any); returns the summary (accuracies, sparsity, parameters kept, wall time)."""
        c = self.cfg
        tracker = tracker or Tracker()
        t_start = time.perf_counter()
        seed_everything(self.seed)
        if c.num_threads:
            torch.set_num_threads(int(c.num_threads))
        if c.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        device = resolve_device(c.device)
        if self.dist.enabled and device.type == "cuda":
            device = torch.device("cuda", self.dist.local_rank)
        model.to(device)
        net: nn.Module = model
        if self.dist.enabled:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        xtr, ytr = (t.to(device) for t in data.train.tensors)
        xva, yva = (t.to(device) for t in data.val.tensors)
        xte, yte = (t.to(device) for t in data.test.tensors)
        transform = getattr(data, "train_transform", None)
        n_train = len(xtr)
        spe = self.steps_per_epoch(n_train)
        total = self.check_length(n_train, pruner)

        optimizer = self.make_optimizer(model.parameters())
        sched = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(c.lr_schedule, total, c.warmup_steps, c.lr_step_size, c.lr_gamma, c.lr_min_factor))
        acc = {"loss": torch.zeros((), device=device, dtype=torch.float64),
               "correct": torch.zeros((), device=device, dtype=torch.float64),
               "seen": torch.zeros((), device=device, dtype=torch.float64)}
        best_eval = float("nan")
        start = 0
        if resume_state is None and (path := self.resume_path()) is not None:
            resume_state = self.load_checkpoint(path)
        if resume_state is not None:
            state = resume_state
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["lr_schedule"])
            if pruner is not None:
                pruner.load_state_dict(state["pruner"])
            tracker.load_state_dict(state.get("tracker", {}))
            _set_rng(state["rng"])
            acc = {k: state["acc"][k].to(device) for k in ("loss", "correct", "seen")}
            best_eval = float(state.get("best_eval", float("nan")))
            start = int(state["step"]) + 1
            log.info("prunelab: resumed at step %d", start)

        def checkpoint(step: int) -> None:
            if not bool(torch.isfinite(acc["loss"])):
                raise NonFiniteLoss(f"train/loss is not finite at step {step}; kept the last good checkpoint")
            self.save_checkpoint({
                "step": step, "fingerprint": self.fingerprint, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "lr_schedule": sched.state_dict(),
                "pruner": pruner.state_dict() if pruner is not None else {},
                "tracker": tracker.state_dict(), "rng": _get_rng(), "best_eval": best_eval,
                "acc": {k: v.cpu() for k, v in acc.items()},
            })

        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)} \
            if _main_thread() else {}
        try:
            model.train()
            if pruner is not None:
                pruner.on_train_begin()
            order = None
            for step in range(start, total):
                epoch, i = divmod(step, spe)
                if order is None or i == 0:
                    order = self._order(epoch, n_train, device)
                gbs = self.global_batch_size  # this rank's share of the global batch, as DistributedSampler
                idx = order[i * gbs:(i + 1) * gbs][self.dist.rank::self.dist.world_size]
                x, y = xtr[idx], ytr[idx]
                if transform is not None:
                    x = transform(x, torch.Generator(device=x.device).manual_seed(self.seed * 1_000_003 + step))
                metrics: dict[str, float] = {}
                if pruner is not None:
                    pruner.on_step_begin(step)
                    if pruner.pruned_at_step:
                        metrics.update(_sparsity_metrics(pruner))
                        if c.check_masks:
                            distributed.check_masks_equal(pruner.masks, step)
                    if pruner.score_step(step):
                        tracker.log_scores(pruner.criterion.scores, step)
                lr = sched.get_last_lr()[0]
                out = net(x)
                loss = nn.functional.cross_entropy(out, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                if pruner is not None:
                    pruner.on_before_optimizer_step()
                optimizer.step()
                sched.step()
                if pruner is not None:
                    pruner.on_after_optimizer_step()
                acc["loss"] += loss.detach().double() * len(y)
                acc["correct"] += (out.detach().argmax(1) == y).sum()
                acc["seen"] += len(y)
                last = step + 1 == total
                if (step + 1) % max(1, c.log_every) == 0 or last:
                    distributed.all_reduce_sum(acc["loss"], acc["correct"], acc["seen"])
                    train_loss = float(acc["loss"]) / float(acc["seen"])
                    if not math.isfinite(train_loss):
                        raise NonFiniteLoss(f"train/loss is {train_loss} at step {step}; "
                                            "kept the last good checkpoint (lower optimizer.lr?)")
                    metrics.update({"train/loss": train_loss, "train/acc": float(acc["correct"] / acc["seen"]),
                                    "lr": lr, "epoch": epoch + (i + 1) / spe})
                    for v in acc.values():
                        v.zero_()
                if (c.eval_every and (step + 1) % c.eval_every == 0) or last:
                    vl, va = self.evaluate(model, xva, yva)
                    best_eval = va if not va <= best_eval else best_eval
                    metrics.update({"eval/loss": vl, "eval/acc": va})
                    if pruner is not None and "sparsity/actual" not in metrics:
                        metrics.update(_sparsity_metrics(pruner))
                if metrics:
                    tracker.log(metrics, step)
                if self._signal is not None:
                    checkpoint(step)
                    raise Interrupted(f"stopped by signal {self._signal} after step {step}; "
                                      "resume with trainer.resume=true")
                if (c.checkpoint_every and (step + 1) % c.checkpoint_every == 0) or last:
                    checkpoint(step)
            if pruner is not None:
                pruner.on_train_end()
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)

        vl, va = self.evaluate(model, xva, yva)
        tl, ta = self.evaluate(model, xte, yte)
        n_params = sum(p.numel() for p in model.parameters())
        nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
        summary: dict[str, Any] = {
            "status": "finished", "steps": total, "val/acc": va, "val/loss": vl, "test/acc": ta, "test/loss": tl,
            "best_eval/acc": best_eval if math.isfinite(best_eval) else va,
            "params/total": n_params, "params/nonzero": nonzero, "params/kept_fraction": nonzero / n_params,
            "wall_time_s": time.perf_counter() - t_start, "batch_size": c.batch_size,
            "world_size": self.dist.world_size, "global_batch_size": self.global_batch_size,
        }
        if pruner is not None:
            sp = pruner.sparsity()
            summary.update({
                "sparsity/target": pruner.schedule.target_sparsity, "sparsity/actual": sp["overall"],
                "sparsity/layers": sp["layers"], "pruned_params": sp["total"], "pruned_zeros": sp["zeros"],
            })
        return summary


def _sparsity_metrics(pruner: Pruner) -> dict[str, float]:
    sp = pruner.sparsity()
    out = {"sparsity/target": pruner.target, "sparsity/actual": sp["overall"]}
    out.update({f"sparsity/{name}": v for name, v in sp["layers"].items()})
    return out


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _get_rng() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_summary(run_dir: str | os.PathLike, summary: Mapping[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / "summary.json", summary)
