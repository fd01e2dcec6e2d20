"""The trackers a run's config asks for: local files always, console progress, W&B with ``logger=wandb`` (its run
config and job type: :func:`wandb_config`, :func:`job_type`)."""
from __future__ import annotations

import copy
import os
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..rundir import method_name
from ..sparsity.distribution import resolve_distribution
from .base import Tracker, Trackers
from .console import ConsoleTracker
from .local import LocalTracker
from .wandb import WANDB_MAX_BINS, WandbTracker, resolve_wandb_mode


def in_hydra_multirun() -> bool:
    """True inside a job of a Hydra multirun (``-m``)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def resuming_run_dir(resume: Any, run_dir: str | os.PathLike) -> bool:
    """Whether ``trainer.resume`` continues this same run directory (true, or a path into it)."""
    if resume in (False, None, "", "false", "False"):
        return False
    if resume in (True, "true", "True"):
        return True
    p = Path(str(resume))
    d = p if p.is_dir() else p.parent
    try:
        return d.resolve() == Path(run_dir).resolve()
    except OSError:
        return False


def _get(cfg: Any, path: str) -> Any:
    """``cfg.a.b`` for ``"a.b"``, None where a part is missing (a DictConfig or plain dicts)."""
    node = cfg
    for part in path.split("."):
        node = node.get(part) if node is not None and hasattr(node, "get") else None
    return node


def run_tags(cfg: Any) -> list[str]:
    """``criterion:<c>``, ``ablation:<a>`` (unless none), ``pattern:<p>``, ``distribution:<d>`` (the
    ``pattern.scope`` alias applied), ``model:<m>``, ``dataset:<d>``, ``method:<m>`` (rigl, static_erk, ... as the
    report names it; ``dense`` for a dense baseline), then ``logger.tags``."""
    get = partial(_get, cfg)
    distribution = resolve_distribution(get("distribution"), get("pattern.scope")).name
    ablation = get("criterion.ablation")
    tags = [f"{key}:{val}" for key, val in (
        ("criterion", get("criterion.criterion_type")), ("ablation", None if ablation in (None, "none") else ablation),
        ("pattern", get("pattern.type")),
        ("distribution", distribution), ("model", get("model.name")), ("dataset", get("dataset.name")),
        ("method", run_method(cfg)),
    ) if val is not None]
    extra = get("logger.tags") or []
    if isinstance(extra, str):
        extra = [extra]
    return tags + [str(t) for t in extra]


#: ``logger.job_type`` of a dense baseline (``schedule.target_sparsity`` 0), whatever its criterion
DENSE_JOB_TYPE = "dense"


def job_type(cfg: Any) -> str | None:
    """``logger.job_type`` when set, else :func:`run_method`."""
    explicit = _get(cfg, "logger.job_type")
    return str(explicit) if explicit else run_method(cfg)


def run_method(cfg: Any) -> str | None:
    """The run's method as the report names its series: ``dense`` for a dense baseline (``schedule.target_sparsity
    == 0``: nothing is pruned, so the criterion is no part of it), else :func:`prunelab.rundir.method_name`
    (``snip``, ``rigl``, ``static_erk``)."""
    target = _get(cfg, "schedule.target_sparsity")
    if isinstance(target, (int, float)) and not isinstance(target, bool) and float(target) == 0.0:
        return DENSE_JOB_TYPE
    return None if _get(cfg, "criterion.criterion_type") is None else method_name(cfg)


def wandb_config(cfg: Any) -> dict[str, Any]:
    """The W&B run config: the resolved config, nested, with what prunelab derives filled in, so a panel can group
    by it: ``distribution.name`` after the ``pattern.scope`` alias, ``logger.job_type`` (:func:`job_type`) and
    ``method`` (:func:`run_method`: the dashboards' grouping; ``dense`` for a dense baseline, its own line at
    compression 1, not the first point of its nominal criterion's)."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else copy.deepcopy(dict(cfg))
    config.setdefault("distribution", {})
    if isinstance(config["distribution"], dict):
        dist = resolve_distribution(_get(cfg, "distribution"), _get(cfg, "pattern.scope"))
        config["distribution"]["name"] = dist.name
    if isinstance(config.get("logger"), dict):
        config["logger"]["job_type"] = job_type(cfg)
    if _get(cfg, "criterion.criterion_type") is not None:
        config["method"] = run_method(cfg)  # what dashboards group by: rigl and static_erk both prune with random
    return config


def check_logger_config(cfg: Any) -> None:
    """Raise :class:`~prunelab.errors.ConfigError` (one line) for a bad ``logger`` section: the backend, the W&B
    mode, more histogram bins than W&B takes. Cheap, imports nothing; the app may call it with its other checks."""
    lg = cfg.get("logger", None) or {}
    backend = lg.get("backend", "none") or "none"
    if backend not in ("wandb", "none"):
        raise ConfigError("logger.backend", backend, "wandb or none (logger=wandb / logger=none)")
    if backend == "wandb":
        bins = (cfg.get("tracking", {}) or {}).get("histogram_bins", 64)
        if isinstance(bins, int) and bins > WANDB_MAX_BINS:
            raise ConfigError("tracking.histogram_bins", bins, f"at most {WANDB_MAX_BINS} with logger=wandb")
        resolve_wandb_mode(lg.get("mode"))


def build_tracker(cfg: Any, run_dir: str | os.PathLike, total_steps: int, name: str, start_step: int = 0,
                  resume: bool | None = None) -> Tracker:
    """The trackers a run's config asks for: always local files and console progress (plain lines in a Hydra
    multirun); W&B with ``logger.backend: wandb`` (``logger=none``: wandb is not even imported). ``resume``: the
    run continues this directory's checkpoint (None: as ``trainer.resume`` says)."""
    check_logger_config(cfg)  # a bad logger section fails here, before anything is created
    tr = cfg.get("tracking", {}) or {}
    bins = int(tr.get("histogram_bins", 64))
    log_scale = tr.get("histogram_scale", "log10") == "log10"
    lg = cfg.get("logger", None) or {}
    backend = lg.get("backend", "none") or "none"

    trackers: list[Tracker] = [LocalTracker(run_dir, bins=bins, log_scale=log_scale)]
    trainer = cfg.get("trainer", None) or {}
    progress = trainer.get("progress", "auto")
    if progress != "none":
        bar = None if progress == "auto" else progress == "bar"
        if bar is None and in_hydra_multirun():
            bar = False  # jobs of a sweep share a terminal (or none): one plain line now and then, no bars
        trackers.append(ConsoleTracker(total_steps, every=max(50, total_steps // 20), bar=bar, start_step=start_step))
    if backend == "wandb":
        trackers.append(WandbTracker(
            run_dir, name=lg.get("name") or name, project=lg.get("project"), entity=lg.get("entity"),
            group=lg.get("group"), job_type=job_type(cfg), tags=run_tags(cfg), config=wandb_config(cfg),
            mode=lg.get("mode"), notes=lg.get("notes"), bins=bins, log_scale=log_scale,
            resume=resuming_run_dir(trainer.get("resume", False), run_dir) if resume is None else resume,
        ))
    return Trackers(*trackers)
