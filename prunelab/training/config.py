"""``cfg.trainer`` as the trainer reads it: a typed dataclass that imports nothing heavy (the config schema of
the ``trainer`` group, :mod:`prunelab.config`, is this class)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..options import config_to_dict


@dataclass
class TrainerConfig:
    """``cfg.trainer``: how long, how to batch, evaluate, checkpoint and where to run."""

    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 1024
    eval_every: int = 0
    log_every: int = 10
    finetune_steps: int | None = None
    lr_schedule: str = "none"
    warmup_steps: int = 0
    lr_step_size: int = 1000
    lr_gamma: float = 0.1
    lr_min_factor: float = 0.0
    grad_clip: float | None = None
    device: str = "auto"
    deterministic: bool = False
    checkpoint_every: int | None = None  #: None: at every evaluation (eval_every), else every 10% of training
    resume: Any = False
    progress: str = "auto"
    check_masks: bool = False
    num_threads: int | None = None
    amp: str = "none"  #: none | bf16 | fp16 (CUDA; with a GradScaler)
    channels_last: bool = False
    compile: bool = False  #: torch.compile the model
    fused_step: bool = False  #: the pruned layers' SGD step, masks and scores compiled as one pass
    cudnn_benchmark: Any = "auto"  #: auto (CUDA and not deterministic) | true | false
    workers: int = 2  #: DataLoader worker processes of the streaming path (0: in the main process)
    pin_memory: Any = "auto"  #: auto (on for CUDA) | true | false
    persistent_workers: bool = True
    prefetch_factor: int = 2  #: batches each worker reads ahead

    @classmethod
    def from_config(cls, cfg: Any) -> "TrainerConfig":
        d = config_to_dict(cfg)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"trainer.{sorted(unknown)[0]}", d[sorted(unknown)[0]],
                              f"known keys: {', '.join(cls.__dataclass_fields__)}")
        return cls(**d)
