"""Any torchvision classification model, randomly initialised, adapted to the input channels."""
from __future__ import annotations

from dataclasses import dataclass, field

from typing import Any

from torch import nn

from ..errors import ConfigError
from .base import MODELS, ModelOptions, input_shape, num_classes, option


def _adapt_first_conv(model: nn.Module, in_channels: int, arch: str) -> None:
    """Replace the first Conv2d (in ``named_modules()`` order: the stem of every torchvision classifier) by
    a freshly initialised one taking ``in_channels`` inputs, other hyper-parameters unchanged."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_channels:
                return
            if module.groups != 1:
                break
            new = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,  # type: ignore[arg-type]
                stride=module.stride,  # type: ignore[arg-type]
                padding=module.padding,  # type: ignore[arg-type]
                dilation=module.dilation,  # type: ignore[arg-type]
                bias=module.bias is not None,
                padding_mode=module.padding_mode,
            )
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
            return
    raise ConfigError("model.arch", arch, f"a model whose first layer is a plain Conv2d, for {in_channels}-channel input")


@dataclass
class TorchvisionOptions(ModelOptions):
    """``model=torchvision``: the architecture's name and extra keyword arguments of its builder."""

    arch: str = "resnet18"
    kwargs: dict[str, Any] = field(default_factory=dict)


@MODELS.register("torchvision", paper="torchvision.models", options=TorchvisionOptions)
def build_torchvision(cfg: Any) -> nn.Module:
    """Any torchvision classifier by ``arch``, randomly initialised. ``torchvision``: any classification model of ``torchvision.models`` by ``arch`` (e.g. resnet18), randomly
    initialised (``weights=None``), with ``num_classes`` outputs; ``kwargs`` (mapping, default {}) go to the
    model's builder. For inputs with other than 3 channels the stem conv is replaced to take them. googlenet
    and inception_v3 are built with ``aux_logits=False`` unless ``kwargs`` says otherwise (the auxiliary
    heads return a tuple in training mode). Head: ``auto`` (the last Linear/Conv, e.g. ``fc`` for ResNets).
    Note that torchvision's ImageNet architectures downsample 32x; small inputs work for ResNets, VGG,
    MobileNets etc. (global pooling) but not for every architecture (e.g. inception_v3 needs 75x75, ViT 224x224
    unless ``kwargs.image_size`` is set); :func:`build` reports those with a ConfigError."""
    import torchvision.models as tvm

    arch = option(cfg, "arch")
    allowed = tvm.list_models(module=tvm)
    if arch not in allowed:
        raise ConfigError("model.arch", arch, f"a torchvision classification model: {', '.join(allowed)}")
    kwargs_cfg = option(cfg, "kwargs", {})
    try:
        from omegaconf import DictConfig, OmegaConf

        kwargs = dict(OmegaConf.to_container(kwargs_cfg, resolve=True)) if isinstance(kwargs_cfg, DictConfig) else dict(kwargs_cfg)
    except (TypeError, ValueError):
        raise ConfigError("model.kwargs", kwargs_cfg, "a mapping of keyword arguments for the model builder") from None
    if arch in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)
    shape = input_shape(cfg)
    try:
        model = tvm.get_model(arch, weights=None, num_classes=num_classes(cfg), **kwargs)
    except TypeError as e:
        raise ConfigError("model.kwargs", kwargs, f"arguments {arch} accepts ({e})") from None
    if shape[0] != 3:
        _adapt_first_conv(model, shape[0], arch)
    return model
