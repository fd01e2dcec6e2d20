"""The checks of a run before Hydra creates anything: :class:`StartChecks`, a Hydra callback.

Hydra's ``run_job`` creates the run directory before it calls the app, so the app's own checks come too late to
leave nothing behind. This callback runs before that: the whole config (:func:`prunelab.config.validate`) and
what the run directory holds (:func:`prunelab.rundir.decide`), and it notes the directories the run is about to
create, so that a run refused later in its start removes them again (:func:`prunelab.rundir.remove_new_dirs`).
It imports no torch until the config's keys and values passed (a typo is answered at once).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from . import rundir
from .config import task_config, validate
from .errors import Abort


def world_size() -> int:
    """The number of data-parallel processes (torchrun's ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def fingerprint_of(cfg: DictConfig, world: int) -> str:
    """The run-directory fingerprint of a composed config (see :func:`prunelab.rundir.config_fingerprint`)."""
    return rundir.config_fingerprint(task_config(cfg), world)


def check_start(config: DictConfig) -> None:
    """The config and the run directory of a single run, before Hydra creates the directory."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(config)
    validate(config)
    if int(os.environ.get("RANK", "0")) > 0:
        return  # rank 0 owns the run directory
    run_dir = Path(str(config.hydra.run.dir)).absolute()
    rundir.check_target(run_dir, "hydra.run.dir")
    rundir.decide(rundir.inspect(run_dir), fingerprint_of(config, world_size()), config.trainer.resume, world_size(),
                  config=task_config(config))
    rundir.note_new_dirs(run_dir)


class StartChecks(Callback):
    """Hydra callback: :func:`check_start` at the start of a single run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_start(config)
        except Exception as exc:  # Hydra would turn it into a warning and go on
            raise Abort(exc) from exc
