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
from .errors import ConfigError
from .pruner import Pruner, build_pattern, check_compatible
from .schedule import Schedule
from .tracking import build_tracker, write_json_atomic
from .trainer import Trainer, TrainerConfig, config_fingerprint, seed_everything

log = logging.getLogger("prunelab")


def run_name(cfg: DictConfig) -> str:
    """``<criterion>-s<target>-seed<seed>``, e.g. ``snip_momentum-s0.90-seed0``."""
    return f"{cfg.criterion.criterion_type}-s{float(cfg.schedule.target_sparsity):.2f}-seed{cfg.seed}"


def validate(cfg: DictConfig) -> None:
    """Check the whole composed config before any data or model is built (each error: one line)."""
    CRITERIA.get(str(cfg.criterion.criterion_type))
    data_mod.DATASETS.get(str(cfg.dataset.name))
    models_mod.MODELS.get(str(cfg.model.name))
    schedule = Schedule.from_config(cfg.schedule)
    pattern = build_pattern(cfg.pattern)
    check_compatible(CRITERIA.get(str(cfg.criterion.criterion_type)), pattern, schedule)
    tc = TrainerConfig.from_config(cfg.trainer)
    for key in ("batch_size", "eval_batch_size"):
        _positive_int(f"trainer.{key}", getattr(tc, key))
    for key in ("max_steps", "epochs", "finetune_steps"):
        val = getattr(tc, key)
        if val is not None:
            _positive_int(f"trainer.{key}", val, allow_zero=key == "finetune_steps")
    if tc.max_steps is None and tc.epochs is None and tc.finetune_steps is None:
        raise ConfigError("trainer.max_steps", None, "a number of steps >= 1 (or set trainer.epochs)")
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
    if tc.progress not in ("auto", "bar", "lines", "none"):
        raise ConfigError("trainer.progress", tc.progress, "auto, bar, lines or none")
    tr = cfg.get("tracking", {})
    if tr.get("histogram_scale", "log10") not in ("log10", "linear"):
        raise ConfigError("tracking.histogram_scale", tr.get("histogram_scale"), "log10 or linear")
    _positive_int("tracking.histogram_bins", tr.get("histogram_bins", 64))


def _positive_int(key: str, val: Any, allow_zero: bool = False) -> None:
    ok = isinstance(val, int) and not isinstance(val, bool) and (val >= 0 if allow_zero else val >= 1)
    if not ok:
        raise ConfigError(key, val, "an integer >= 0" if allow_zero else "an integer >= 1")


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Validate, build, train and summarise one experiment; returns the summary."""
    validate(cfg)
    run_dir = Path(run_dir)
    tc = TrainerConfig.from_config(cfg.trainer)
    summary_path = run_dir / "summary.json"
    if summary_path.exists() and not tc.resume:
        prev = json.loads(summary_path.read_text()).get("status")
        if prev == "finished":
            raise ConfigError("hydra.run.dir", str(run_dir),
                              "a directory without a finished run (it holds one): use a new one, or trainer.resume=true")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    fingerprint = config_fingerprint(resolved)  # type: ignore[arg-type]

    seed_everything(int(cfg.seed))
    model = models_mod.build(cfg.model)
    head = models_mod.head_name(model, cfg.model)
    pruner = Pruner.from_config(model, cfg, head=head)
    print(f"[prunelab] {run_name(cfg)}: {pruner.criterion.name}, pattern {pruner.pattern.pattern} "
          f"({pruner.pattern.scope}), target {pruner.schedule.target_sparsity}\n{pruner.describe()}", flush=True)
    data = data_mod.build(cfg.dataset)
    optimizer = _optimizer_factory(cfg.optimizer)
    trainer = Trainer(tc, optimizer, seed=int(cfg.seed), run_dir=run_dir, fingerprint=fingerprint)
    total = trainer.total_steps(len(data.train), pruner)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    tracker = build_tracker(cfg, run_dir, total_steps=total, name=run_name(cfg))
    try:
        summary = trainer.fit(model, data, pruner, tracker)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "Interrupted" \
            else "failed"
        write_json_atomic(summary_path, {"status": status, "error": f"{type(exc).__name__}: {exc}",
                                         "name": run_name(cfg)})
        tracker.finish(status)
        raise
    summary = {"name": run_name(cfg), "criterion": cfg.criterion.criterion_type, "pattern": pruner.pattern.pattern,
               "scope": pruner.pattern.scope, "model": cfg.model.name, "dataset": cfg.dataset.name,
               "seed": int(cfg.seed), **summary}
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
        ("val acc / test acc", f"{s['val/acc']:.4f} / {s['test/acc']:.4f}"),
        ("best eval acc", f"{s['best_eval/acc']:.4f}"),
        ("sparsity target / actual", f"{s['sparsity/target']:.4f} / {s['sparsity/actual']:.4f}"),
        ("params kept (all layers)", f"{s['params/nonzero']:,} of {s['params/total']:,} "
                                     f"({s['params/kept_fraction']:.2%})"),
        ("wall time", f"{s['wall_time_s']:.1f} s"),
    ]
    rows += [(f"  sparsity {name}", f"{v:.4f}") for name, v in s.get("sparsity/layers", {}).items()]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def report_error(exc: ConfigError) -> None:
    """The one-line error a user sees: the last line of stderr."""
    print(f"prunelab: error: {exc}", file=sys.stderr, flush=True)


__all__ = ["run", "validate", "run_name", "format_summary", "report_error"]
