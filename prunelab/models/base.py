"""What every model builder shares: the registry, option readers, :func:`build` and :func:`head_name`.

Every model is one ``(cfg) -> nn.Module`` function registered in :data:`MODELS` plus one YAML file in
``conf/model/``.

A model config carries ``input_shape`` ([C, H, W]) and ``num_classes``, normally interpolated from the
dataset (``${dataset.input_shape}``, ``${dataset.num_classes}``), and ``head``: the module name (as in
``model.named_modules()``) of the classifier layer, which the app excludes from pruning by default, or
``auto`` for the last Linear/Conv module. :func:`build` checks that the model runs on ``input_shape`` and
returns ``[B, num_classes]`` logits, and that the head exists, so a bad combination fails at build time with
a one-line :class:`ConfigError`.

Weights are initialised from torch's global RNG: seed it (``torch.manual_seed``) before :func:`build` for a
reproducible initialisation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry

MODELS: Registry[Callable[[Any], nn.Module]] = Registry("model.name")


@dataclass
class ModelOptions:
    """The keys every model takes (a builder's own options dataclass extends it, given as ``options=`` to
    ``MODELS.register``): ``input_shape`` [C, H, W] and ``num_classes`` (normally from the dataset) and ``head``
    (the classifier module's name, or ``auto``)."""

    name: str = ""
    input_shape: Optional[list[int]] = None
    num_classes: Optional[int] = None
    head: str = "auto"

_LAYER_TYPES: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_types() -> tuple[type, ...]:
    """The layer types a head (and, by default, a prunable layer) can be: Linear and Conv1d/2d/3d."""
    return _LAYER_TYPES


# ----------------------------------------------------------------------------------------------- helpers
def option(cfg: Any, key: str, default: Any = None) -> Any:
    value = cfg.get(key, None) if cfg is not None else None
    return default if value is None else value


def input_shape(cfg: Any) -> tuple[int, int, int]:
    value = option(cfg, "input_shape")
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError("model.input_shape", value, "a list [C, H, W] of positive integers") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError("model.input_shape", list(shape), "a list [C, H, W] of positive integers")
    return shape  # type: ignore[return-value]


def num_classes(cfg: Any) -> int:
    value = option(cfg, "num_classes")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("model.num_classes", value, "a positive integer")
    return value


def _check_forward(model: nn.Module, name: str, shape: tuple[int, ...], num_classes: int) -> None:
    """Run a batch of 2 zero images in eval mode (no grad, running stats untouched); wrap failures."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape))
    except Exception as e:  # noqa: BLE001 - any failure means this model cannot take this input
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError("model.input_shape", list(shape), f"model {name!r} cannot run on it: {msg}") from e
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError("model.name", name, f"a model whose output is [B, {num_classes}]; got {got}")


# -------------------------------------------------------------------------------------------------- build
def build(cfg: Any) -> nn.Module:
    """Build the model named by ``cfg.name`` (a DictConfig or a dict), check it runs on ``cfg.input_shape``
    with ``cfg.num_classes`` outputs, and check ``cfg.head`` names one of its Linear/Conv modules."""
    name = str(option(cfg, "name"))
    MODELS.get(name)
    MODELS.parse(name, cfg)
    model = MODELS.get(name)(cfg)
    _check_forward(model, name, input_shape(cfg), num_classes(cfg))
    head_name(model, cfg)
    return model


def head_name(model: nn.Module, cfg: Any) -> str:
    """The classifier layer's module name: ``cfg.head``, or with ``auto`` (or no ``head`` key) the last
    Linear/Conv module in ``named_modules()`` order. The name must be a Linear/Conv module of ``model``."""
    candidates = [n for n, m in model.named_modules() if isinstance(m, _LAYER_TYPES)]
    head = option(cfg, "head", "auto")
    if head == "auto":
        if not candidates:
            raise ConfigError("model.head", head, "the model has no Linear/Conv module to use as head")
        return candidates[-1]
    if head not in candidates:
        shown = candidates if len(candidates) <= 12 else candidates[:4] + ["..."] + candidates[-6:]
        raise ConfigError("model.head", head, f"auto, or a Linear/Conv module name: {', '.join(shown)}")
    return str(head)
