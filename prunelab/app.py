"""One experiment from a composed config: check, claim the run directory, build, train, summarise.

``python -m prunelab`` (the Hydra app in ``__main__``) calls :func:`run`. The order is the contract:

1. :class:`~prunelab.checks.StartChecks` (a Hydra callback, before Hydra creates anything) and :func:`run` check the whole
   config (:func:`prunelab.config.validate`) and what the run directory holds (:func:`prunelab.rundir.decide`);
2. the directory is claimed: locked for the run's life; a finished run of this config is returned, an
   unfinished one resumed from its checkpoint or restarted (the earlier attempt moved aside);
3. data, model, pruner and trainer are built (and the checkpoint read): a refusal here removes what the start
   created, so a refused run leaves nothing;
4. only then is anything written: ``summary.json`` (``running``), ``config.yaml``, ``.hydra/``; the run trains
   and its summary records ``finished``, ``failed`` or ``interrupted``.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from . import config as config_mod
from . import data as data_mod
from . import models as models_mod
from . import rundir
from .criteria.base import ScoreHook
from .errors import ConfigError, raise_if_signalled
from .pruner import Pruner
from .naming import ablation_of, run_name
from .regrowth import build_updater
from .schedule import Schedule
from .sweeper import is_dense
from .tracking.build import build_tracker, run_method
from .training import distributed
from .training.calibration import check_calibration
from .training.callbacks import PruningCallback, TrackingCallback
from .training.checkpoint import seed_everything
from .training.trainer import Interrupted, Trainer, TrainerConfig

log = logging.getLogger("prunelab")


def validate(cfg: DictConfig, trains: bool = True) -> None:
    """Check the whole composed config before any data or model is built (each error: one line)."""
    config_mod.validate(cfg, trains=trains)


def run(cfg: DictConfig, run_dir: str | Path, hydra_files: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check, claim, build, train and summarise one experiment; returns the summary.

    Nothing in ``run_dir`` is written before every check passed (config, directory, data, model, checkpoint),
    so a refused run never touches an earlier run's files. ``hydra_files`` (name -> config) are written to
    ``run_dir/.hydra`` once the checks passed.
    """
    validate(cfg)
    config_mod.check_overrides(cfg, list((hydra_files or {}).get("overrides.yaml") or []))
    tc = TrainerConfig.from_config(cfg.trainer)
    dist = distributed.init(tc.device)
    try:
        return _run(cfg, Path(distributed.broadcast_str(str(Path(run_dir).absolute()))), tc, dist, hydra_files)
    finally:
        distributed.shutdown()


class Claim:
    """This process's hold on a run directory: the lock (rank 0) and the decision every rank shares."""

    def __init__(self, run_dir: Path, cfg: DictConfig, resume: Any, dist: distributed.DistInfo) -> None:
        self.run_dir, self.config, self.resume, self.dist = run_dir, config_mod.task_config(cfg), resume, dist
        self.fingerprint = rundir.config_fingerprint(self.config, dist.world_size)
        self.lock = rundir.RunLock(run_dir)
        self.started = False
        self.attempt = 1

    def acquire(self) -> rundir.Decision:
        """Lock (rank 0) and decide; every rank gets rank 0's decision or its error."""
        outcome: Any
        if self.dist.is_main:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.lock.acquire()
                outcome = rundir.decide(rundir.inspect(self.run_dir, locked_here=True), self.fingerprint, self.resume,
                                        self.dist.world_size, config=self.config)
            except ConfigError as exc:
                outcome = (exc.key, exc.value, exc.allowed)
            except OSError as exc:
                err = rundir.write_error(exc, self.run_dir)
                outcome = (err.key, err.value, err.allowed)
        else:
            outcome = None
        outcome = distributed.broadcast_object(outcome)
        if isinstance(outcome, tuple):
            self.abandon()
            raise ConfigError(*outcome)
        return outcome  # type: ignore[return-value]

    def begin(self, cfg: DictConfig, decision: rundir.Decision, hydra_files: dict[str, Any] | None) -> None:
        """Everything checked: the directory becomes this run's (rank 0 writes). A write that fails here (a full
        or read-only disk) is a one-line refusal, and what this start wrote is removed again."""
        if self.dist.is_main:
            created = [p for p in (self.run_dir / rundir.SUMMARY, self.run_dir / rundir.CONFIG,
                                   self.run_dir / rundir.HYDRA) if not p.exists()]
            try:
                self._write_start(cfg, decision, hydra_files)
            except BaseException as exc:  # a full disk, or Ctrl-C / SIGTERM halfway: nothing of this start stays
                for path in reversed(created):
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                if isinstance(exc, OSError):
                    raise rundir.write_error(exc, self.run_dir) from None
                raise
        self.started = True
        rundir.mark_started()

    def _write_start(self, cfg: DictConfig, decision: rundir.Decision, hydra_files: dict[str, Any] | None) -> None:
        moved = None
        if decision.kind == "restart":
            moved = rundir.move_attempt_aside(self.run_dir)
            print(f"[prunelab] {self.run_dir}: the earlier attempt stopped before its first checkpoint; "
                  f"restarting from step 0 (its files: {moved})", flush=True)
        previous = rundir.read_json(self.run_dir / rundir.SUMMARY)[0] or {}
        self.attempt = int(previous.get("attempt", 0) or 0) + 1 if decision.kind == "resume" else \
            int(moved.name) + 1 if moved is not None else 1
        rundir.write_json_atomic(self.run_dir / rundir.SUMMARY, {
            "status": "running", "name": run_name(cfg), "fingerprint": self.fingerprint,
            "world_size": self.dist.world_size, "attempt": self.attempt, "pid": os.getpid(),
            "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        (self.run_dir / rundir.HYDRA).mkdir(exist_ok=True)
        for name, content in (hydra_files or {}).items():
            with rundir.atomic_write(self.run_dir / rundir.HYDRA / name) as f:
                OmegaConf.save(content, f)
        with rundir.atomic_write(self.run_dir / rundir.CONFIG) as f:
            OmegaConf.save(cfg, f, resolve=True)

    def end(self, status: str, **fields: Any) -> None:
        if self.dist.is_main and self.started:
            rundir.write_status(self.run_dir, status, **fields)

    def abandon(self) -> None:
        """The run was refused before it began: remove what its start created (never an earlier run's files)."""
        if not self.started:
            self.lock.release(remove=True)
            rundir.remove_new_dirs()

    def release(self) -> None:
        self.lock.release()


def _run(cfg: DictConfig, run_dir: Path, tc: TrainerConfig, dist: distributed.DistInfo,
         hydra_files: dict[str, Any] | None) -> dict[str, Any]:
    claim = Claim(run_dir, cfg, tc.resume, dist)
    decision = claim.acquire()
    try:
        if decision.kind == "finished":
            summary = dict(decision.summary or {})
            print(f"[prunelab] {run_dir} holds the finished run of this config; its result:\n"
                  f"{format_summary(summary)}", flush=True)
            return summary
        try:
            built = _build(cfg, run_dir, tc, dist, claim.fingerprint, decision)
            raise_if_signalled()  # a Ctrl-C that an import swallowed while building still stops the run here
            claim.begin(cfg, decision, hydra_files)
        except BaseException:
            claim.abandon()
            raise
        return _train(cfg, run_dir, tc, dist, claim, *built)
    finally:
        claim.release()


def _build(cfg: DictConfig, run_dir: Path, tc: TrainerConfig, dist: distributed.DistInfo, fingerprint: str,
           decision: rundir.Decision) -> tuple[Any, ...]:
    """Data, the training length, the schedule, model, pruner, trainer and the checkpoint to resume (on every
    rank; a rank that fails makes every rank stop)."""
    error: BaseException | None = None
    try:
        data = data_mod.build(cfg.dataset)
        trainer = Trainer(tc, _optimizer_factory(cfg.optimizer), seed=int(cfg.seed), run_dir=run_dir,
                          fingerprint=fingerprint, dist=dist)
        total = _training_length(cfg, trainer, len(data.train))
        schedule = Schedule.from_config(cfg.schedule, total_steps=total)
        seed_everything(int(cfg.seed))
        model = models_mod.build(cfg.model)
        head = models_mod.head_name(model, cfg.model)
        pruner = Pruner.from_config(model, cfg, head=head, schedule=schedule,
                                    initializer=lambda: models_mod.build(cfg.model))
        total = trainer.check_length(len(data.train), pruner.schedule.end_step)
        _say_when_not_at_init(pruner, cfg, dist)
        pruner.bind(updater=build_updater(cfg.get("regrowth"), total, pruner.schedule.end_step, int(cfg.seed)))
        end_step = pruner.last_mask_step
        if pruner.criterion.score_hook is ScoreHook.MODEL:  # its calibration batches are drawn at the pruning step
            check_calibration(data.train_labels(), pruner.criterion.calibration, tc.batch_size)
        resume_state = trainer.load_checkpoint(decision.checkpoint, also=(decision.recorded,) if decision.recorded
                                               else ()) if decision.kind == "resume" else None
        if resume_state is not None:
            data_mod.check_same_data(resume_state.get("data"), data, int(resume_state["step"]))
        pruning = PruningCallback(pruner, check_masks=tc.check_masks, fused_step=tc.fused_step)
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after every rank knows
        error = exc
    if distributed.any_rank(error is not None):
        if error is not None:
            raise error
        raise ConfigError("torchrun", f"rank {dist.rank}", "every rank to start (another rank was refused: its "
                          "message is above)")
    return model, data, trainer, pruner, pruning, end_step, total, resume_state, decision


def _say_when_not_at_init(pruner: Pruner, cfg: DictConfig, dist: distributed.DistInfo) -> None:
    """A criterion made to score once at initialization, under a schedule that prunes several times (re-scored at
    every pruning step) or once after step 0 (scoring trained weights), is a method of its own, not the published
    one, and easy to run by forgetting ``schedule=at_init``. Say so at the start (rank 0)."""
    sch = pruner.schedule
    if not pruner.criterion.at_init or (sch.one_shot and sch.start_step == 0) or dist.rank != 0:
        return
    name = cfg.criterion.criterion_type
    when = f"prunes {len(sch.steps)} times (steps {sch.start_step}-{sch.end_step}), so it is re-scored during " \
        "training" if not sch.one_shot else f"prunes once, at step {sch.start_step}, so it scores trained weights"
    log.warning("prunelab: criterion=%s scores once per pruning step; this schedule %s. Pruning at initialization "
                "as published: add schedule=at_init", name, when)


def _training_length(cfg: DictConfig, trainer: Trainer, n_train: int) -> int:
    """The length in steps the schedule's fractions refer to (with ``finetune_steps``: from its steps)."""
    if trainer.cfg.finetune_steps is not None:
        return trainer.total_steps(n_train, Schedule.from_config(cfg.schedule).end_step)
    return trainer.total_steps(n_train)


def _train(cfg: DictConfig, run_dir: Path, tc: TrainerConfig, dist: distributed.DistInfo, claim: Claim,
           model: Any, data: Any, trainer: Trainer, pruner: Pruner, pruning: PruningCallback, end_step: int,
           total: int, resume_state: dict[str, Any] | None, decision: rundir.Decision) -> dict[str, Any]:
    if not dist.is_main:
        return trainer.fit(model, data, [pruning], end_step=end_step, resume_state=resume_state, decided=True)
    print(f"[prunelab] {run_name(cfg)}: {pruner.criterion.name}, pattern {pruner.pattern.pattern} "
          f"({pruner.distribution.name}), target {pruner.schedule.target_sparsity}, {total} steps -> {run_dir}\n"
          f"{pruner.describe()}", flush=True)
    start = int(resume_state["step"]) + 1 if resume_state is not None else 0
    resumes_here = resume_state is not None and decision.checkpoint is not None and \
        decision.checkpoint.parent.resolve() == run_dir.resolve()
    every = int((cfg.get("tracking") or {}).get("log_scores_every", 0) or 0)
    tracker = None
    try:  # from here on a stop or an error is recorded in the run's directory (and in W&B, once it is open)
        tracker = build_tracker(cfg, run_dir, total_steps=total, name=run_name(cfg), start_step=start,
                                resume=resumes_here)
        callbacks = [pruning, TrackingCallback(tracker, pruning, log_scores_every=every)]
        # the run directory's decision (rundir.decide) stands: a restart of an attempt stopped before its first
        # checkpoint starts from step 0 also under trainer.resume=true, which names a checkpoint that is not there
        summary = trainer.fit(model, data, callbacks, end_step=end_step, resume_state=resume_state, decided=True)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "failed"
        claim.end(status, error=f"{type(exc).__name__}: {exc}", name=run_name(cfg))
        if isinstance(exc, KeyboardInterrupt):
            exc.run_dir = run_dir  # type: ignore[attr-defined] - its one line says how to go on
        if tracker is not None:
            tracker.finish(status)
        raise
    summary = {"name": run_name(cfg), "method": run_method(cfg), "criterion": cfg.criterion.criterion_type,
               "ablation": ablation_of(cfg),
               "pattern": pruner.pattern.pattern, "distribution": pruner.distribution.name, "model": cfg.model.name,
               "dataset": cfg.dataset.name, "seed": int(cfg.seed), "dense": is_dense(cfg),
               "fingerprint": claim.fingerprint, "attempt": claim.attempt, **summary}
    tracker.log_final(pruner.masks, summary)
    tracker.finish("finished")
    print(format_summary(summary), flush=True)
    return summary


def _optimizer_factory(cfg: DictConfig) -> Any:
    from hydra.utils import instantiate

    return instantiate(cfg)


def format_summary(s: dict[str, Any]) -> str:
    """The end-of-run table: accuracies, target vs actual sparsity, per-layer sparsity, parameters, time."""
    rows = [
        ("run", s["name"]),
        ("val acc / test acc", f"{_acc(s['val/acc'])} / {s['test/acc']:.4f}"),
        ("best eval acc", _acc(s["best_eval/acc"])),
        ("sparsity target / actual", f"{s['sparsity/target']:.4f} / {s['sparsity/actual']:.4f}"),
        ("params kept (all layers)", f"{s['params/nonzero']:,} of {s['params/total']:,} "
                                     f"({s['params/kept_fraction']:.2%})"),
        ("batch (global)", f"{s['batch_size']} x {s.get('world_size', 1)} ranks = {s.get('global_batch_size', s['batch_size'])}"
         if s.get("world_size", 1) > 1 else str(s["batch_size"])),
        ("wall time", f"{s['wall_time_s']:.1f} s of training and its evaluations (not start-up or loading data)"
                      + (f"; attempt {s['attempt']}, since its resume" if int(s.get("attempt", 1) or 1) > 1 else "")),
    ]
    if s.get("samples_per_s") and s.get("data_path"):
        threads = s.get("num_threads", "?")
        rows.append(("data", f"{s['data_path']}, {s['samples_per_s']:,.0f} samples/s in the training loop "
                             f"(evaluations included; {threads} torch thread{'' if threads == 1 else 's'})"))
    rows += [(f"  sparsity {name}", f"{v:.4f}") for name, v in s.get("sparsity/layers", {}).items()]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _acc(value: float | None) -> str:
    return "n/a (no validation split)" if value is None else f"{value:.4f}"


def record_failure(cfg: DictConfig, run_dir: str | Path, exc: BaseException) -> None:
    """Mark a failed multirun job in its run directory, unless the directory holds a run (its own failure is
    recorded already; an earlier run's files are never touched) or another process holds it."""
    state = rundir.inspect(run_dir)
    if state.has_run or state.holder is not None or state.status in rundir.STATUSES:
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    rundir.write_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}", name=run_name(cfg))


__all__ = ["run", "validate", "run_name", "format_summary", "record_failure"]
