"""One experiment from a composed config: validate, build, train, summarise.

``python -m prunelab`` (the Hydra app in ``__main__``) calls :func:`run`. Validation of the whole config comes
first, before data or models are built; bad input raises :class:`~prunelab.errors.ConfigError` (one line).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from . import data as data_mod
from . import models as models_mod
from .criteria import CRITERIA
from .criteria.ablations import check_ablation
from .criteria.base import ScoreHook
from .errors import ConfigError
from .pruner import Pruner, build_pattern, check_compatible
from .regrowth import build_updater, check_regrowth
from .rundir import config_fingerprint, sparsity_text, write_json_atomic
from .schedule import Schedule
from .sparsity.distribution import resolve_distribution
from .sweeper import is_dense
from .tracking.build import build_tracker, check_logger_config
from .training import distributed
from .training.calibration import check_calibration
from .training.callbacks import PruningCallback, TrackingCallback
from .training.checkpoint import seed_everything
from .training.accel import check_levers
from .training.batches import check_loader
from .training.trainer import Interrupted, Trainer, TrainerConfig, resolve_device

log = logging.getLogger("prunelab")


def run_name(cfg: DictConfig) -> str:
    """``<criterion>-s<target>-seed<seed>``, e.g. ``snip_momentum-s0.90-seed0`` or ``magnitude-s0.9375-seed1``;
    with an ablation ``<criterion>-<ablation>-s<target>-seed<seed>``, e.g. ``synflow-shuffle-s0.90-seed0``; a
    dense run (target 0, whatever its criterion) is ``dense-seed<seed>``."""
    if is_dense(cfg):
        return f"dense-seed{cfg.seed}"
    ablation = ablation_of(cfg)
    criterion = cfg.criterion.criterion_type if ablation == "none" else f"{cfg.criterion.criterion_type}-{ablation}"
    return f"{criterion}-s{sparsity_text(cfg.schedule.target_sparsity)}-seed{cfg.seed}"


def ablation_of(cfg: DictConfig) -> str:
    """``criterion.ablation`` (``none`` when unset)."""
    return str(cfg.criterion.get("ablation") or "none")


def validate(cfg: DictConfig) -> None:
    """Check the whole composed config before any data or model is built (each error: one line)."""
    CRITERIA.get(str(cfg.criterion.criterion_type))
    data_mod.DATASETS.get(str(cfg.dataset.name))
    for key in ("input_shape", "num_classes"):  # models are built from them, before the data
        if OmegaConf.is_missing(cfg.dataset, key):
            raise ConfigError(f"dataset.{key}", "???", f"a value for dataset {cfg.dataset.name} (set dataset.{key}=...)")
    models_mod.MODELS.get(str(cfg.model.name))
    schedule = Schedule.from_config(cfg.schedule)
    pattern = build_pattern(cfg.pattern)
    distribution = resolve_distribution(cfg.get("distribution"), pattern.scope)
    check_compatible(CRITERIA.get(str(cfg.criterion.criterion_type)), pattern, schedule, distribution)
    check_regrowth(cfg.get("regrowth"), pattern, schedule, cfg.trainer.get("max_steps"))
    check_ablation(ablation_of(cfg), len(schedule.steps))
    tc = TrainerConfig.from_config(cfg.trainer)
    for key in ("batch_size", "eval_batch_size"):
        _positive_int(f"trainer.{key}", getattr(tc, key))
    for key in ("max_steps", "epochs", "finetune_steps"):
        val = getattr(tc, key)
        if val is not None:
            _positive_int(f"trainer.{key}", val, allow_zero=key == "finetune_steps")
    if tc.max_steps is None and tc.epochs is None and tc.finetune_steps is None:
        raise ConfigError("trainer.max_steps", None, "a number of steps >= 1 (or set trainer.epochs)")
    if tc.num_threads is not None:
        _positive_int("trainer.num_threads", tc.num_threads)
    for key in ("eval_every", "log_every", "checkpoint_every", "warmup_steps"):
        _positive_int(f"trainer.{key}", getattr(tc, key), allow_zero=True)
    if tc.finetune_steps is None and tc.max_steps is not None and schedule.end_step >= tc.max_steps:
        raise ConfigError("schedule.end_step", schedule.end_step,
                          f"< trainer.max_steps ({tc.max_steps}): pruning must end inside training")
    lr = cfg.optimizer.get("lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ConfigError("optimizer.lr", lr, "a number > 0")
    if not str(cfg.optimizer.get("_target_", "")).startswith("torch.optim."):
        raise ConfigError("optimizer._target_", cfg.optimizer.get("_target_"), "a torch.optim optimizer class")
    check_levers(tc, resolve_device(tc.device))
    check_loader(tc)
    if tc.progress not in ("auto", "bar", "lines", "none"):
        raise ConfigError("trainer.progress", tc.progress, "auto, bar, lines or none")
    check_logger_config(cfg)
    tr = cfg.get("tracking", {})
    if tr.get("histogram_scale", "log10") not in ("log10", "linear"):
        raise ConfigError("tracking.histogram_scale", tr.get("histogram_scale"), "log10 or linear")
    _positive_int("tracking.histogram_bins", tr.get("histogram_bins", 64))
    _positive_int("tracking.log_scores_every", tr.get("log_scores_every", 0), allow_zero=True)


def _positive_int(key: str, val: Any, allow_zero: bool = False) -> None:
    ok = isinstance(val, int) and not isinstance(val, bool) and (val >= 0 if allow_zero else val >= 1)
    if not ok:
        raise ConfigError(key, val, "an integer >= 0" if allow_zero else "an integer >= 1")


def run(cfg: DictConfig, run_dir: str | Path, hydra_files: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate, build, train and summarise one experiment; returns the summary.

    Nothing in ``run_dir`` is written before every check passed (config, layers, data, checkpoint), so a
    refused run never touches an earlier run's files. ``hydra_files`` (name -> config) are written to
    ``run_dir/.hydra`` once the checks passed.
    """
    validate(cfg)
    tc = TrainerConfig.from_config(cfg.trainer)
    dist = distributed.init(tc.device)
    try:
        return _run(cfg, Path(distributed.broadcast_str(str(run_dir))), tc, dist, hydra_files)
    finally:
        distributed.shutdown()


def _run(cfg: DictConfig, run_dir: Path, tc: TrainerConfig, dist: distributed.DistInfo,
         hydra_files: dict[str, Any] | None) -> dict[str, Any]:
    summary_path = run_dir / "summary.json"
    previous = _previous_run(run_dir)
    if previous is not None and not tc.resume:
        raise ConfigError("hydra.run.dir", str(run_dir),
                          f"a directory without an earlier run (it holds a {previous} one): "
                          "trainer.resume=true continues it, or choose a new directory")
    if previous == "finished" and tc.resume:
        summary = json.loads(summary_path.read_text())
        print(f"[prunelab] {run_dir} holds a finished run; nothing to resume.\n{format_summary(summary)}", flush=True)
        return summary
    resolved = OmegaConf.to_container(cfg, resolve=True)
    fingerprint = config_fingerprint(resolved)  # type: ignore[arg-type]

    seed_everything(int(cfg.seed))
    model = models_mod.build(cfg.model)
    head = models_mod.head_name(model, cfg.model)
    pruner = Pruner.from_config(model, cfg, head=head, initializer=lambda: models_mod.build(cfg.model))
    data = data_mod.build(cfg.dataset)
    trainer = Trainer(tc, _optimizer_factory(cfg.optimizer), seed=int(cfg.seed), run_dir=run_dir,
                      fingerprint=fingerprint, dist=dist)
    total = trainer.check_length(len(data.train), pruner.schedule.end_step)
    pruner.bind(updater=build_updater(cfg.get("regrowth"), total, pruner.schedule.end_step, int(cfg.seed)))
    end_step = pruner.last_mask_step
    if pruner.criterion.score_hook is ScoreHook.MODEL:  # its calibration batches are drawn at the pruning step
        check_calibration(data.train_labels(), pruner.criterion.calibration, tc.batch_size)
    resume_path = trainer.resume_path()
    resume_state = trainer.load_checkpoint(resume_path) if resume_path is not None else None
    pruning = PruningCallback(pruner, check_masks=tc.check_masks)

    # every check passed (on every rank): from here on the run directory is this run's, written by rank 0 only
    distributed.barrier()
    if not dist.is_main:
        return trainer.fit(model, data, [pruning], end_step=end_step, resume_state=resume_state)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    for name, content in (hydra_files or {}).items():
        OmegaConf.save(content, run_dir / ".hydra" / name)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    print(f"[prunelab] {run_name(cfg)}: {pruner.criterion.name}, pattern {pruner.pattern.pattern} "
          f"({pruner.distribution.name}), target {pruner.schedule.target_sparsity}, {total} steps -> {run_dir}\n"
          f"{pruner.describe()}", flush=True)
    start = int(resume_state["step"]) + 1 if resume_state is not None else 0
    tracker = build_tracker(cfg, run_dir, total_steps=total, name=run_name(cfg), start_step=start)
    every = int((cfg.get("tracking") or {}).get("log_scores_every", 0) or 0)
    callbacks = [pruning, TrackingCallback(tracker, pruning, log_scores_every=every)]
    try:
        summary = trainer.fit(model, data, callbacks, end_step=end_step, resume_state=resume_state)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "failed"
        write_json_atomic(summary_path, {"status": status, "error": f"{type(exc).__name__}: {exc}",
                                         "name": run_name(cfg)})
        tracker.finish(status)
        raise
    summary = {"name": run_name(cfg), "criterion": cfg.criterion.criterion_type, "ablation": ablation_of(cfg),
               "pattern": pruner.pattern.pattern, "distribution": pruner.distribution.name, "model": cfg.model.name,
               "dataset": cfg.dataset.name, "seed": int(cfg.seed), "dense": is_dense(cfg), **summary}
    tracker.log_final(pruner.masks, summary)
    tracker.finish("finished")
    print(format_summary(summary), flush=True)
    return summary


def _previous_run(run_dir: Path) -> str | None:
    """The status of an earlier run in ``run_dir`` (finished, failed, interrupted, unfinished), or None."""
    summary = run_dir / "summary.json"
    if summary.exists():
        try:
            return str(json.loads(summary.read_text()).get("status", "unfinished"))
        except ValueError:
            return "unfinished"
    if any((run_dir / f).exists() for f in ("checkpoint.pt", "metrics.jsonl")):
        return "unfinished"
    return None


def _optimizer_factory(cfg: DictConfig) -> Any:
    from hydra.utils import instantiate

    return instantiate(cfg)


def format_summary(s: dict[str, Any]) -> str:
    """The end-of-run table: accuracies, target vs actual sparsity, per-layer sparsity, parameters, time."""
    rows = [
        ("run", s["name"]),
        ("val acc / test acc", f"{s['val/acc']:.4f} / {s['test/acc']:.4f}"),
        ("best eval acc", f"{s['best_eval/acc']:.4f}"),
        ("sparsity target / actual", f"{s['sparsity/target']:.4f} / {s['sparsity/actual']:.4f}"),
        ("params kept (all layers)", f"{s['params/nonzero']:,} of {s['params/total']:,} "
                                     f"({s['params/kept_fraction']:.2%})"),
        ("batch (global)", f"{s['batch_size']} x {s.get('world_size', 1)} ranks = {s.get('global_batch_size', s['batch_size'])}"
         if s.get("world_size", 1) > 1 else str(s["batch_size"])),
        ("wall time", f"{s['wall_time_s']:.1f} s"),
    ]
    rows += [(f"  sparsity {name}", f"{v:.4f}") for name, v in s.get("sparsity/layers", {}).items()]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def report_error(exc: BaseException) -> None:
    """The one-line error a user sees: the last line of stderr."""
    print(f"prunelab: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr,
          flush=True)


def record_failure(cfg: DictConfig, run_dir: str | Path, exc: BaseException) -> None:
    """Mark a failed multirun job in its run directory (unless the directory holds an earlier run's files, or
    the run already recorded its failure)."""
    run_dir = Path(run_dir)
    if _previous_run(run_dir) is not None:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "summary.json", {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "name": run_name(cfg)})


__all__ = ["run", "validate", "run_name", "format_summary", "report_error", "record_failure"]
