"""A finished run's pruned model, loaded back from its run directory: ``prunelab.load_pruned(run_dir)``.

The directory holds all it takes (:mod:`prunelab.rundir`): the resolved ``config.yaml`` builds the model from the
model registry, ``checkpoint.pt`` (read with ``weights_only``: no code runs) gives its trained weights, and
``masks.pt`` the keep-mask of every pruned layer. Nothing needs the pruner, the schedule or the data. The loaded
model is checked against what the run recorded, so a model that does not hold its masks, or a directory whose files
do not belong together, is refused with one line instead of being evaluated.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from . import rundir
from .errors import ConfigError


@dataclass
class PrunedRun:
    """A finished run's trained model (pruned weights exactly 0, in eval mode), its masks (layer name -> bool
    keep-mask of the weight's shape), resolved config and summary."""

    model: nn.Module
    masks: dict[str, Tensor]
    config: DictConfig
    summary: dict[str, Any]

    def weight(self, layer: str) -> Tensor:
        """The weight of pruned layer ``layer`` (a name of :attr:`masks`)."""
        return self.model.get_submodule(layer).weight

    def sparsity(self) -> float:
        """The fraction of the pruned layers' weights that the masks turn off (the run's ``sparsity/masked``)."""
        off = sum(int((~m).sum()) for m in self.masks.values())
        return off / max(1, sum(m.numel() for m in self.masks.values()))


def load_pruned(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> PrunedRun:
    """The model a finished run trained, from its directory, on ``device``. Refused (one-line
    :class:`~prunelab.errors.ConfigError`) for a directory without a finished run, and for one whose checkpoint is
    of another config or whose masks the weights do not hold (a masked weight that is not 0)."""
    from .models import build

    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError("run_dir", str(path), "a finished run's directory (" +
                          ("it is a file)" if path.exists() else "no such directory)"))
    state = rundir.inspect(path)
    if state.status != "finished":
        held = {"empty": "it holds no run", "running": "its run is still training: wait for it to finish"}.get(
            state.observed, f"it holds {'an' if state.observed[0] in 'aeiou' else 'a'} {state.observed} run: "
            f"finish it with its overrides, hydra.run.dir={path} and trainer.resume=auto (from its last checkpoint, "
            "or from step 0 if it stopped before its first)")
        raise ConfigError("run_dir", str(path), f"a finished run's directory ({held})")
    try:
        config = OmegaConf.load(path / rundir.CONFIG)
        checkpoint = torch.load(path / rundir.CHECKPOINT, map_location=device, weights_only=True)
        masks = torch.load(path / rundir.MASKS, map_location=device, weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ConfigError("run_dir", str(path), f"a run directory with readable {rundir.CONFIG}, "
                          f"{rundir.CHECKPOINT} and {rundir.MASKS} ({type(exc).__name__})") from None
    if not state.describes():
        raise ConfigError("run_dir", str(path), f"a {rundir.CONFIG} of the run recorded there (its fingerprint is "
                          f"not the run's, {state.fingerprint}: it was edited, or copied from another run)")
    if not state.computes(str(checkpoint.get("fingerprint"))):
        raise ConfigError("run_dir", str(path), f"a checkpoint of the run its {rundir.CONFIG} describes (it holds "
                          f"one of fingerprint {checkpoint.get('fingerprint')}, the run's is {state.fingerprint})")
    saved = (checkpoint.get("pruner") or {}).get("masks")
    if saved is not None and (saved.keys() != masks.keys() or
                              any(not torch.equal(saved[n].bool(), masks[n].bool()) for n in saved)):
        raise ConfigError("run_dir", str(path), f"a {rundir.MASKS} equal to the masks in its {rundir.CHECKPOINT} "
                          f"(they differ: {rundir.MASKS} was replaced or edited)")
    model = build(config.model)
    model.load_state_dict(checkpoint["model"])
    model.to(device).eval()
    run = PrunedRun(model, dict(masks), config, dict(state.summary or {}))
    for layer, keep in run.masks.items():
        revived = int(torch.count_nonzero(run.weight(layer).detach()[~keep]))
        if revived:
            raise ConfigError("run_dir", str(path), f"a model that holds its masks ({layer} has {revived} masked "
                              "weights that are not 0)")
    return run


__all__ = ["PrunedRun", "load_pruned"]
