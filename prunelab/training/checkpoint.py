"""Checkpoints: atomic writes, validated reads, and every RNG state a bitwise resume needs."""
from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..rundir import atomic_write

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Atomic (:func:`prunelab.rundir.atomic_write`): a kill mid-write leaves the previous checkpoint intact."""
    with atomic_write(path, "wb") as f:
        torch.save(dict(state), f)


def load_checkpoint(path: Path, fingerprint: str = "", world_size: int | None = None,
                    also: tuple[str, ...] = ()) -> dict[str, Any]:
    """A prunelab checkpoint (weights only: no code runs while loading), refused when it is missing, corrupted,
    not a checkpoint, written by a run of another number of data-parallel processes (``world_size``) or of
    another configuration (``fingerprint``; ``also``: fingerprints an earlier version gave this same config, see
    :class:`prunelab.rundir.Decision`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError("trainer.resume", str(path), "a run directory holding checkpoint.pt, or a checkpoint file") from None
    except Exception as exc:
        raise ConfigError("trainer.resume", str(path),
                          f"a readable prunelab checkpoint (this file is corrupted: {type(exc).__name__})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ConfigError("trainer.resume", str(path), "a prunelab checkpoint (this file is not one)")
    saved_world = int(state.get("world_size", 1))
    if world_size is not None and saved_world != world_size:
        def procs(n: int) -> str:
            return "1 process" if n == 1 else f"{n} data-parallel processes"

        raise ConfigError("trainer.resume", str(path), f"a checkpoint of {procs(world_size)} (this one was written by "
                          f"{procs(saved_world)}: resume with torchrun --nproc_per_node={saved_world})"
                          if saved_world > 1 else f"a checkpoint of {procs(world_size)} (this one was written by "
                          "1 process: resume it without torchrun)")
    if fingerprint and state.get("fingerprint") not in (fingerprint, *also):
        raise ConfigError("trainer.resume", str(path),
                          "a checkpoint of this same configuration (it was written by a run with another config)")
    return state


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng() -> dict[str, Any]:
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


def set_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
