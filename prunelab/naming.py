"""What a run is called: one name for its console lines, its W&B display name, its summary and its directory.

``<criterion>-s<target>-seed<seed>`` (``snip_momentum-s0.90-seed0``, ``magnitude-s0.9375-seed1``); with an
ablation ``<criterion>-<ablation>-s<target>-seed<seed>`` (``synflow-shuffle-s0.90-seed0``); a run whose masks a
regrowth updater moves is named after the updater (``criterion=rigl`` prunes its initial masks with ``random``:
``rigl-s0.90-seed0``, not ``random-...``), and a run of a criterion preset that sets ``criterion.label`` after the
label (``criterion=static_erk``: ``static_erk-s0.90-seed0``; ``criterion=gmp``: ``gmp-...``); a dense run (target
0, whatever its criterion) is ``dense-seed<seed>``.
A run directory is ``<time>_<random>_<name>`` and a sweep's job directory ``<name>_<fingerprint>``
(``conf/config.yaml``), so what a directory holds can be read from its name.
"""
from __future__ import annotations

import copy
from typing import Any

from .rundir import method_name, sparsity_text
from .sweeper import is_dense


def run_name(cfg: Any) -> str:
    """The run's name (see the module docstring) from its composed config."""
    if is_dense(cfg):
        return f"dense-seed{cfg.seed}"
    criterion = method_name(cfg)
    ablation = ablation_of(cfg)
    criterion = criterion if ablation == "none" else f"{criterion}-{ablation}"
    return f"{criterion}-s{sparsity_text(cfg.schedule.target_sparsity)}-seed{cfg.seed}"


def earlier_names(cfg: Any) -> list[str]:
    """Names this run's directory may carry from earlier versions: before ``criterion.label``, a labelled preset's
    run was named after its criterion type (``random-s0.90-seed0`` for ``criterion=static_erk``)."""
    if not (cfg.get("criterion") or {}).get("label") or is_dense(cfg):
        return []
    from omegaconf import open_dict

    unlabelled = copy.deepcopy(cfg)
    with open_dict(unlabelled):
        del unlabelled.criterion["label"]
    return [run_name(unlabelled)]


def ablation_of(cfg: Any) -> str:
    """``criterion.ablation`` (``none`` when unset)."""
    return str(cfg.criterion.get("ablation") or "none")


def dir_name(cfg: Any) -> str:
    """:func:`run_name` for a directory: where the config is not yet checked (a directory is named before the
    checks' one-line error can refuse the run), a value that is not what it should be is used as it reads."""
    try:
        return run_name(cfg)
    except Exception:  # e.g. target_sparsity=abc: the checks refuse it before anything is created
        crit = cfg.get("criterion") or {}
        return f"{crit.get('criterion_type')}-s{(cfg.get('schedule') or {}).get('target_sparsity')}-seed{cfg.get('seed')}"
