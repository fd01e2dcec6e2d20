"""The speed levers of the training loop, each a trainer option: mixed precision, channels-last memory, compiling
the model, cudnn autotuning. What cannot work on the device is refused with one line before any work
(:func:`check_levers`); nothing falls back silently.

* ``trainer.amp``: ``none`` | ``bf16`` (autocast to bfloat16; CPU and GPUs with bf16) | ``fp16`` (autocast to
  float16 with a ``GradScaler``; CUDA only). Parameters, gradients, optimizer state and the pruner's scores stay
  float32. Under fp16 the gradients are unscaled before the pruner's ``on_before_optimizer_step`` hook, so
  gradient-based scores see true gradients; a step the scaler skips (inf/NaN gradients) also skips that hook,
  so no criterion takes in a non-finite gradient.
* ``trainer.channels_last``: model and 4-D inputs in NHWC memory format (faster convolutions on tensor cores and
  on oneDNN); values are the same tensors, only strides differ.
* ``trainer.compile``: ``torch.compile`` the model for training and evaluation. The pruner keeps working on
  the original module: the compiled module shares its parameters, so masks re-applied in place after every
  optimizer step are what the compiled graph reads next; checkpoints hold the original's state dict, and
  model-level criteria score on the original (eager) module. Refused where inductor cannot compile.
* ``trainer.fused_step``: the pruned layers' SGD step, masks and score update as one compiled pass
  (:mod:`prunelab.training.fused_step`); the same numbers. Refused where inductor cannot compile, with fp16, and
  with another optimizer.
* ``trainer.cudnn_benchmark``: ``auto`` (on for CUDA unless ``trainer.deterministic``) | ``true`` | ``false``.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Optional

import torch
from torch import Tensor, nn

from ..criteria.fused import compile_unavailable
from ..errors import ConfigError
from ..options import tristate
from .fused_step import FP16_REFUSAL

AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false")
    return value


def check_levers(cfg: Any, device: torch.device) -> None:
    """One-line :class:`ConfigError` for a lever that is misspelled or cannot work on ``device``."""
    amp = str(cfg.amp)
    if amp not in AMP:
        raise ConfigError("trainer.amp", cfg.amp, "none, bf16 or fp16")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("trainer.amp", amp, f"none or bf16 on {device.type} (fp16 with a GradScaler needs CUDA)")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("trainer.amp", amp, "none or fp16: this GPU has no bfloat16")
    _bool("trainer.channels_last", cfg.channels_last)
    if _bool("trainer.compile", cfg.compile) and (why := compile_unavailable(device)) is not None:
        raise ConfigError("trainer.compile", True, f"false here: {why}")
    if _bool("trainer.fused_step", cfg.fused_step):
        if (why := compile_unavailable(device)) is not None:
            raise ConfigError("trainer.fused_step", True, f"false here: {why}")
        if amp == "fp16":
            raise ConfigError("trainer.fused_step", True, FP16_REFUSAL)
    cudnn = tristate("trainer.cudnn_benchmark", cfg.cudnn_benchmark)
    if cudnn and device.type != "cuda":
        raise ConfigError("trainer.cudnn_benchmark", True, f"auto or false on {device.type} (cudnn needs CUDA)")
    if tristate("trainer.pin_memory", cfg.pin_memory) and device.type != "cuda":
        raise ConfigError("trainer.pin_memory", True, f"auto or false on {device.type} (pinned memory speeds copies "
                          "to a GPU; it was ignored here)")
    if cudnn and cfg.deterministic:
        raise ConfigError("trainer.cudnn_benchmark", True,
                          "auto or false with trainer.deterministic=true (autotuning may pick other algorithms)")


def cudnn_benchmark(cfg: Any, device: torch.device) -> bool:
    """Whether cudnn autotunes its convolution algorithms in this run."""
    mode = tristate("trainer.cudnn_benchmark", cfg.cudnn_benchmark)
    return device.type == "cuda" and not cfg.deterministic if mode is None else mode


def prepare_model(model: nn.Module, cfg: Any, device: torch.device,
                  ddp: Optional[Any] = None) -> tuple[nn.Module, nn.Module]:
    """Move ``model`` to ``device`` (channels-last if asked) and return ``(net, eval_net)``: the module the loop
    trains (DDP-wrapped by ``ddp`` when given, compiled when asked) and the one it evaluates (compiled when asked,
    never DDP-wrapped: evaluation shards the data itself)."""
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = cudnn_benchmark(cfg, device)
    net = ddp(model) if ddp is not None else model
    if not cfg.compile:
        return net, model
    eval_net = torch.compile(model)
    return (torch.compile(net) if ddp is not None else eval_net), eval_net


def to_input(x: Tensor, cfg: Any) -> Tensor:
    """A batch in the memory format the model runs in."""
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last and x.dim() == 4 else x


class Precision:
    """Autocast and, for fp16, the gradient scaler: what the loop does around forward, backward and the step."""

    def __init__(self, amp: str, device: torch.device) -> None:
        self.dtype = AMP[str(amp)]
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype is torch.float16 else None

    def autocast(self) -> ContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale the gradients in place (fp16); False when they hold inf/NaN (the scaler will skip the step)."""
        if self.scaler is None:
            return True
        self.scaler.unscale_(optimizer)
        return not any(bool(v) for v in self.scaler._found_inf_per_device(optimizer).values())

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
