"""``hydra/sweeper=dense_once``: Hydra's basic sweeper, with the dense baseline once per seed.

The logic is :func:`prunelab.sweeper.canonical_jobs`; this class only hooks it into Hydra's
:class:`BasicSweeper` (the cartesian product of the sweep overrides, batches, validation, launch). Hydra imports
every module under ``hydra_plugins`` when any Hydra app starts, so this one imports prunelab only when sweeping.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override


class DenseOnceSweeper(BasicSweeper):
    """A :class:`BasicSweeper` whose dense jobs (target sparsity 0) run once per seed, criterion-independent."""

    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 dense_criterion: str = "magnitude") -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.dense_criterion = dense_criterion

    def split_arguments(self, overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:  # type: ignore[override]
        from prunelab.sweeper import announce, canonical_jobs, recorded_by

        jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
        plan = canonical_jobs(jobs, self._compose, self.dense_criterion, recorded_by(self._sweep_dir()))
        announce(len(jobs), plan)
        kept = plan.jobs
        if max_batch_size is None:
            return [kept]
        return list(BasicSweeper.split_overrides_to_chunks(kept, max_batch_size))

    def _sweep_dir(self) -> str:
        """The sweep's directory (its manifest says whether this is a re-run); "" if it cannot be resolved yet."""
        from omegaconf import OmegaConf

        try:
            return str(OmegaConf.select(self.config, "hydra.sweep.dir") or "")
        except Exception:  # noqa: BLE001 - an interpolation only a job resolves: a new sweep's directory
            return ""

    def _compose(self, overrides: List[str]) -> Any:
        assert self.hydra_context is not None and self.config is not None
        return self.hydra_context.config_loader.load_sweep_config(master_config=self.config,
                                                                  sweep_overrides=list(overrides))
