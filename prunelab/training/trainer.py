"""The generic training loop: batches, forward/backward, optimizer and lr steps, evaluation; everything else is a
callback (pruning, tracking, checkpointing: :mod:`prunelab.training.callbacks`).

It knows nothing of pruning or of W&B. Batches come from a batch source (:mod:`prunelab.training.batches`):
tensors on the device, or a ``DataLoader`` that streams; either way the order of every epoch comes from
``(seed, epoch)`` and the augmentation of every step from ``(seed, step)``, so a run resumed from a checkpoint
sees exactly the batches an uninterrupted run would. The speed levers (mixed precision, channels-last,
``torch.compile``, cudnn autotuning) are in :mod:`prunelab.training.accel`.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..criteria.base import Calibration
from ..errors import ConfigError
from ..rundir import RESUME_AUTO, RESUME_OFF, RESUME_TRUE, resume_mode
from . import distributed
from .accel import Precision, check_levers, prepare_model, to_input
from .batches import BatchSource, batch_source, epoch_order
from .callbacks import Callback, Callbacks, CheckpointCallback
from .config import TrainerConfig
from .checkpoint import CHECKPOINT, get_rng, load_checkpoint, save_checkpoint, seed_everything, set_rng
from .distributed import DistInfo
from .lr import lr_lambda

log = logging.getLogger("prunelab")


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf."""


class Interrupted(RuntimeError):
    """SIGINT / SIGTERM arrived; a checkpoint was written at the end of the step. The message says how to resume:
    with the command line's overrides where they are known (:meth:`with_command`)."""

    def __init__(self, signum: int | None, step: int, run_dir: str | os.PathLike, world_size: int = 1) -> None:
        self.signum, self.step, self.run_dir, self.world_size = signum, step, Path(run_dir), world_size
        super().__init__(self._text(None))

    def with_command(self, overrides: Sequence[str]) -> Interrupted:
        """This stop, its message naming the whole command that resumes it (``overrides``: the command line's)."""
        self.args = (self._text(list(overrides)),)
        return self

    def _text(self, overrides: list[str] | None) -> str:
        import shlex

        how = f"signal {signal.Signals(self.signum).name}" if self.signum else "a signal to another rank"
        if overrides is None:
            command = "the same overrides and "
        else:
            kept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in ("hydra.run.dir", "trainer.resume")]
            # the interpreter that runs this (a venv's, which `python` on the PATH need not be)
            launcher = shlex.quote(sys.executable) if self.world_size == 1 else \
                f"torchrun --nproc_per_node={self.world_size}"
            command = " ".join([launcher, "-m", "prunelab", *map(shlex.quote, kept)]) + " "
        return f"stopped by {how} after step {self.step}; resume with {command}" \
               f"hydra.run.dir={shlex.quote(str(self.run_dir))} trainer.resume=true"


def resolve_device(name: str) -> torch.device:
    """The device ``trainer.device`` names: auto (CUDA where there is one), cpu, cuda or cuda:N, checked here
    (torch parses mps, xpu, meta, ... too, and a run on one of them would fail after its directory is made)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError("trainer.device", name, "auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device", name, "auto or cpu: no CUDA device is available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError("trainer.device", name, f"cuda or cuda:N with N < {torch.cuda.device_count()} (the "
                          "CUDA devices here)")
    return dev


@dataclass
class Loop:
    """What callbacks see of a run in progress: the model, optimizer, lr schedule, device, length and step."""

    model: nn.Module
    net: nn.Module  # the model as trained (DistributedDataParallel-wrapped under DDP)
    optimizer: torch.optim.Optimizer
    lr_schedule: torch.optim.lr_scheduler.LambdaLR
    device: torch.device
    total: int
    steps_per_epoch: int
    dist: DistInfo
    calibration: Callable[[Calibration], list[tuple[Tensor, Tensor]]]
    acc: dict[str, Tensor] = field(default_factory=dict)  # train loss / correct / seen since the last log
    best_eval: float = float("nan")
    start: int = 0
    checkpoint: Callable[[int], None] = lambda step: None  # writes the checkpoint of the end of a step
    source: BatchSource | None = None  # where batches come from (in memory or streamed)
    precision: Precision | None = None  # autocast and the fp16 gradient scaler
    eval_net: nn.Module | None = None  # the model as evaluated (compiled, never DDP-wrapped)
    data_identity: dict[str, Any] = field(default_factory=dict)  # what the checkpoint records of the data
    compile_s: float = 0.0  # seconds the loop spent compiling (trainer.fused_step): left out of its throughput


def _rank_row(saved: Tensor, rank: int) -> Tensor:
    """This rank's accumulator from a checkpoint (one row per rank; a scalar in checkpoints of one process)."""
    return saved if saved.dim() == 0 else saved[rank]


class Trainer:
    """Trains ``model`` on ``data``, calling ``callbacks`` at every point of a step.

    Args:
        cfg: the trainer section (:class:`TrainerConfig` or its config).
        optimizer: a callable ``params -> torch.optim.Optimizer`` (e.g. a Hydra ``_partial_`` instantiation).
        seed: seeds python, numpy and torch, the data order and the augmentation.
        run_dir: where checkpoints go.
        fingerprint: identifies the configuration inside checkpoints (see :func:`prunelab.rundir.config_fingerprint`).
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

    def total_steps(self, n_train: int, end_step: int | None = None) -> int:
        """The training length in steps: ``finetune_steps`` after ``end_step`` (the last step that changes masks),
        else ``max_steps``, else ``epochs`` of the data."""
        c = self.cfg
        if c.finetune_steps is not None and end_step is not None:
            return end_step + 1 + int(c.finetune_steps)
        if c.max_steps is not None:
            return int(c.max_steps)
        if c.epochs is not None:
            return int(c.epochs) * self.steps_per_epoch(n_train)
        raise ConfigError("trainer.max_steps", None, "a number of steps, or set trainer.epochs")

    def check_length(self, n_train: int, end_step: int | None) -> int:
        """The training length in steps; pruning (which ends at ``end_step``) must end inside it. A global batch
        larger than the training split is refused: every step would take the whole split, fewer samples than the
        batch the run reports (and its samples/s) say."""
        if self.global_batch_size > n_train:
            ranks = f" ({self.cfg.batch_size} x {self.dist.world_size} ranks)" if self.dist.world_size > 1 else ""
            raise ConfigError("trainer.batch_size", self.cfg.batch_size, f"a global batch{ranks} of at most the "
                              f"{n_train} training samples (a larger one is the whole split every step)")
        total = self.total_steps(n_train, end_step)
        if end_step is not None and end_step >= total:
            raise ConfigError("schedule.end_step", end_step,
                              f"< the training length ({total} steps; trainer.max_steps / trainer.epochs)")
        return total

    # --- data ---
    def _order(self, epoch: int, n: int, device: torch.device) -> Tensor:
        return epoch_order(self.seed, epoch, n).to(device)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], n: int,
                 device: torch.device, precision: Precision | None = None) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over a whole split of ``n`` samples, from this rank's shard of it in
        ``batches`` (summed over ranks)."""
        was_training = model.training
        model.eval()
        loss = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.float64)
        for x, tgt in batches:
            with precision.autocast() if precision is not None else contextlib.nullcontext():
                out = model(to_input(x, self.cfg))
            loss += nn.functional.cross_entropy(out.float(), tgt, reduction="sum").double()
            correct += (out.argmax(1) == tgt).sum()
        distributed.all_reduce_sum(loss, correct)
        model.train(was_training)
        return float(loss) / max(1, n), float(correct) / max(1, n)

    def _evaluate_split(self, loop: Loop, split: str) -> tuple[float, float]:
        source = loop.source
        assert source is not None and loop.eval_net is not None
        return self.evaluate(loop.eval_net, source.eval(split), source.split_size(split), loop.device, loop.precision)

    # --- checkpoints ---
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def load_checkpoint(self, path: Path, also: tuple[str, ...] = ()) -> dict[str, Any]:
        """The checkpoint at ``path`` if it is this config's (``also``: fingerprints of this config by an earlier
        version, see :func:`prunelab.training.checkpoint.load_checkpoint`)."""
        return load_checkpoint(path, self.fingerprint, world_size=self.dist.world_size, also=also)

    def resume_path(self) -> Path | None:
        """The checkpoint ``trainer.resume`` names (the app decides with :func:`prunelab.rundir.decide`; this is
        for a trainer used on its own)."""
        mode = resume_mode(self.cfg.resume)
        if mode == RESUME_OFF:
            return None
        if mode == RESUME_TRUE:
            return self.checkpoint_path()
        if mode == RESUME_AUTO:  # resume if there is a checkpoint (e.g. a requeued cluster job), else start afresh
            return self.checkpoint_path() if self.checkpoint_path().exists() else None
        p = Path(str(self.cfg.resume))
        return p / CHECKPOINT if p.is_dir() else p

    def checkpoint(self, loop: Loop, callbacks: Callbacks, step: int) -> None:
        """Write the state of the loop and of every callback at the end of ``step`` (every rank calls it at the
        same steps; rank 0 writes). The train-metric accumulators since the last log are per rank: each rank's
        goes in, as a row of ``acc[name]``, so a resumed rank continues its own window."""
        acc = {k: distributed.gather_rows(v) for k, v in loop.acc.items()}
        if not bool(torch.isfinite(acc["loss"]).all()):
            raise NonFiniteLoss(f"train/loss is not finite at step {step}; kept the last good checkpoint")
        if not self.dist.is_main:
            return
        save_checkpoint(self.checkpoint_path(), {
            "step": step, "fingerprint": self.fingerprint, "world_size": self.dist.world_size,
            "model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
            "lr_schedule": loop.lr_schedule.state_dict(), **callbacks.state_dict(), "rng": get_rng(),
            "best_eval": loop.best_eval, "acc": {k: v.cpu() for k, v in acc.items()},
            "scaler": loop.precision.state_dict() if loop.precision is not None else {},
            "data": loop.data_identity,
        })

    # --- signals ---
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signum

    # --- the loop ---
    def _setup(self, model: nn.Module, data: Any, end_step: int | None,
               resume_state: Mapping[str, Any] | None) -> Loop:
        c = self.cfg
        seed_everything(self.seed)
        if c.num_threads:
            torch.set_num_threads(int(c.num_threads))
        if c.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        device = resolve_device(c.device)
        if self.dist.enabled and device.type == "cuda":
            device = torch.device("cuda", self.dist.local_rank)
        check_levers(c, device)
        ddp = None
        if self.dist.enabled:
            ddp = lambda m: nn.parallel.DistributedDataParallel(  # noqa: E731
                m, device_ids=[device.index] if device.type == "cuda" else None)
        net, eval_net = prepare_model(model, c, device, ddp)
        source = batch_source(data, self.seed, c.batch_size, c.eval_batch_size, self.dist, device, workers=c.workers,
                              pin_memory=c.pin_memory, persistent_workers=c.persistent_workers,
                              prefetch_factor=c.prefetch_factor)
        total = self.check_length(source.n_train, end_step)
        optimizer = self.make_optimizer(model.parameters())
        sched = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(c.lr_schedule, total, c.warmup_steps, c.lr_step_size, c.lr_gamma, c.lr_min_factor))
        acc = {k: torch.zeros((), device=device, dtype=torch.float64) for k in ("loss", "correct", "seen")}
        loop = Loop(model, net, optimizer, sched, device, total, source.steps_per_epoch, self.dist,
                    source.calibration, acc, source=source, precision=Precision(c.amp, device), eval_net=eval_net,
                    data_identity=dict(getattr(data, "identity", None) or {}))
        if resume_state is not None:
            model.load_state_dict(resume_state["model"])
            optimizer.load_state_dict(resume_state["optimizer"])
            sched.load_state_dict(resume_state["lr_schedule"])
            set_rng(resume_state["rng"])
            loop.precision.load_state_dict(resume_state.get("scaler", {}))
            loop.acc = {k: _rank_row(resume_state["acc"][k], self.dist.rank).to(device)
                        for k in ("loss", "correct", "seen")}
            loop.best_eval = float(resume_state.get("best_eval", float("nan")))
            loop.start = int(resume_state["step"]) + 1
        return loop

    def fit(self, model: nn.Module, data: Any, callbacks: Sequence[Callback] = (), end_step: int | None = None,
            resume_state: Mapping[str, Any] | None = None, decided: bool = False) -> dict[str, Any]:
        """Train (from ``resume_state``, a checkpoint, if given; else, unless the caller ``decided`` already, from the
        checkpoint ``trainer.resume`` names, if any); returns the summary (accuracies, parameters kept, wall time,
        and what callbacks add). ``end_step`` is the last step at which masks change (for
        ``trainer.finetune_steps``)."""
        t_start = time.perf_counter()
        cbs = Callbacks([*callbacks, CheckpointCallback(self.cfg.checkpoint_every, self.cfg.eval_every)])
        if resume_state is None and not decided and (path := self.resume_path()) is not None:
            resume_state = self.load_checkpoint(path)
        loop = self._setup(model, data, end_step, resume_state)
        # through a weak reference: a closure over the loop stored in it would be a reference cycle that keeps the
        # trained net (under DDP, the process group) alive until a later collection, at worst interpreter exit
        ref = weakref.ref(loop)
        loop.checkpoint = lambda step: self.checkpoint(ref(), cbs, step)
        if resume_state is not None:
            cbs.load_state_dict(resume_state)
            log.info("prunelab: resumed at step %d", loop.start)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)} \
            if threading.current_thread() is threading.main_thread() else {}
        try:
            model.train()
            cbs.on_train_begin(loop)
            t_loop = time.perf_counter()  # the loop's throughput leaves out setting up (loaders, compiling a model)
            for step, (x, y) in zip(range(loop.start, loop.total), loop.source.train(loop.start, loop.total)):
                epoch, i = divmod(step, loop.steps_per_epoch)
                metrics: dict[str, float] = {}
                cbs.on_step_begin(loop, step, metrics)
                lr = loop.lr_schedule.get_last_lr()[0]
                out, loss, finite = self._forward_backward(loop, x, y)
                if finite:  # fp16: a step the gradient scaler skips does not reach the criteria either
                    cbs.on_before_optimizer_step(loop)
                loop.precision.step(loop.optimizer)
                loop.lr_schedule.step()
                cbs.on_after_optimizer_step(loop)
                self._accumulate(loop, out, loss, y)
                metrics.update(self._train_metrics(loop, step, lr, epoch + (i + 1) / loop.steps_per_epoch))
                metrics.update(self._eval_metrics(loop, step))
                cbs.on_step_end(loop, step, metrics)
                if distributed.any_rank(self._signal is not None, loop.device):  # every rank stops at one step
                    loop.checkpoint(step)
                    raise Interrupted(self._signal, step, self.run_dir, self.dist.world_size)
            summary = self._summary(loop, t_start, t_loop)
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            loop.source.close()
        cbs.on_train_end(loop, summary)
        return summary

    def _forward_backward(self, loop: Loop, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, bool]:
        """Forward (under autocast if set), loss, backward; the gradients unscaled (fp16) and clipped. Returns the
        output, the loss and whether the gradients are finite (always True without fp16)."""
        assert loop.precision is not None
        with loop.precision.autocast():
            out = loop.net(to_input(x, self.cfg))
            loss = nn.functional.cross_entropy(out, y)
        loop.optimizer.zero_grad(set_to_none=True)
        loop.precision.backward(loss)
        finite = loop.precision.unscale(loop.optimizer)
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(loop.model.parameters(), self.cfg.grad_clip)
        return out, loss, finite

    @staticmethod
    def _accumulate(loop: Loop, out: Tensor, loss: Tensor, y: Tensor) -> None:
        loop.acc["loss"] += loss.detach().double() * len(y)
        loop.acc["correct"] += (out.detach().argmax(1) == y).sum()
        loop.acc["seen"] += len(y)

    def _train_metrics(self, loop: Loop, step: int, lr: float, epoch: float) -> dict[str, float]:
        """train/loss, train/acc, lr and epoch at log steps (accumulated since the last, over all ranks)."""
        if (step + 1) % max(1, self.cfg.log_every) and step + 1 != loop.total:
            return {}
        acc = loop.acc
        distributed.all_reduce_sum(acc["loss"], acc["correct"], acc["seen"])
        train_loss = float(acc["loss"]) / float(acc["seen"])
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(f"train/loss is {train_loss} at step {step}; "
                                "kept the last good checkpoint (lower optimizer.lr?)")
        metrics = {"train/loss": train_loss, "train/acc": float(acc["correct"] / acc["seen"]), "lr": lr,
                   "epoch": epoch}
        for v in acc.values():
            v.zero_()
        return metrics

    def _eval_metrics(self, loop: Loop, step: int) -> dict[str, float]:
        if not ((self.cfg.eval_every and (step + 1) % self.cfg.eval_every == 0) or step + 1 == loop.total):
            return {}
        if not loop.source.split_size("val"):  # dataset.val_fraction=0: nothing to evaluate on (not 0% accuracy)
            return {}
        vl, va = self._evaluate_split(loop, "val")
        loop.best_eval = va if not va <= loop.best_eval else loop.best_eval
        return {"eval/loss": vl, "eval/acc": va}

    def _summary(self, loop: Loop, t_start: float, t_loop: float) -> dict[str, Any]:
        model = loop.model
        vl, va = self._evaluate_split(loop, "val") if loop.source.split_size("val") else (None, None)
        tl, ta = self._evaluate_split(loop, "test")
        n_params = sum(p.numel() for p in model.parameters())
        nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
        best = loop.best_eval
        now = time.perf_counter()
        workers = getattr(loop.source, "workers", None)
        path = "in memory" if workers is None else f"streamed ({workers} worker{'' if workers == 1 else 's'})"
        return {
            "status": "finished", "steps": loop.total, "val/acc": va, "val/loss": vl, "test/acc": ta, "test/loss": tl,
            "best_eval/acc": best if math.isfinite(best) else va,
            "params/total": n_params, "params/nonzero": nonzero, "params/kept_fraction": nonzero / n_params,
            "wall_time_s": now - t_start, "batch_size": self.cfg.batch_size,
            "world_size": self.dist.world_size, "global_batch_size": self.global_batch_size,
            "num_threads": torch.get_num_threads(),
            "data_path": path,
            # training samples per second of the training loop of this attempt (its evaluations included, the fused
            # step's compilation left out)
            "samples_per_s": (loop.total - loop.start) * self.global_batch_size
            / max(now - t_loop - loop.compile_s, 1e-9),
        }
