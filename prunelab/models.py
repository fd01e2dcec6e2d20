"""Registered model builders: every model is one ``(cfg) -> nn.Module`` function plus one YAML file in
``prunelab/conf/model/``.

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

from collections import OrderedDict
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError
from .registry import Registry

__all__ = ["MODELS", "build", "head_name", "prunable_types", "MLP", "LeNet5", "CifarResNet", "BasicBlock"]

MODELS: Registry[Callable[[Any], nn.Module]] = Registry("model.name")

_LAYER_TYPES: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_types() -> tuple[type, ...]:
    """The layer types a head (and, by default, a prunable layer) can be: Linear and Conv1d/2d/3d."""
    return _LAYER_TYPES


# ----------------------------------------------------------------------------------------------- helpers
def _get(cfg: Any, key: str, default: Any = None) -> Any:
    value = cfg.get(key, None) if cfg is not None else None
    return default if value is None else value


def _shape(cfg: Any) -> tuple[int, int, int]:
    value = _get(cfg, "input_shape")
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError("model.input_shape", value, "a list [C, H, W] of positive integers") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError("model.input_shape", list(shape), "a list [C, H, W] of positive integers")
    return shape  # type: ignore[return-value]


def _num_classes(cfg: Any) -> int:
    value = _get(cfg, "num_classes")
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
    name = str(_get(cfg, "name"))
    model = MODELS.get(name)(cfg)
    _check_forward(model, name, _shape(cfg), _num_classes(cfg))
    head_name(model, cfg)
    return model


def head_name(model: nn.Module, cfg: Any) -> str:
    """The classifier layer's module name: ``cfg.head``, or with ``auto`` (or no ``head`` key) the last
    Linear/Conv module in ``named_modules()`` order. The name must be a Linear/Conv module of ``model``."""
    candidates = [n for n, m in model.named_modules() if isinstance(m, _LAYER_TYPES)]
    head = _get(cfg, "head", "auto")
    if head == "auto":
        if not candidates:
            raise ConfigError("model.head", head, "the model has no Linear/Conv module to use as head")
        return candidates[-1]
    if head not in candidates:
        shown = candidates if len(candidates) <= 12 else candidates[:4] + ["..."] + candidates[-6:]
        raise ConfigError("model.head", head, f"auto, or a Linear/Conv module name: {', '.join(shown)}")
    return str(head)


# ----------------------------------------------------------------------------------------------------- MLP
class MLP(nn.Sequential):
    """Multi-layer perceptron: flatten, then ``fc1 .. fcK`` (Linear + ReLU) for the hidden sizes, then the
    linear classifier ``head``. With hidden sizes [300, 100] on MNIST this is LeNet-300-100 (LeCun et al.
    1998), the fully connected baseline of the pruning literature (Han et al. 2015)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden_sizes: Sequence[int] = (256, 128)) -> None:
        layers: "OrderedDict[str, nn.Module]" = OrderedDict(flatten=nn.Flatten())
        width = 1
        for s in input_shape:
            width *= int(s)
        for i, h in enumerate(hidden_sizes, start=1):
            layers[f"fc{i}"] = nn.Linear(width, int(h))
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            width = int(h)
        layers["head"] = nn.Linear(width, num_classes)
        super().__init__(layers)


@MODELS.register("mlp")
def build_mlp(cfg: Any) -> nn.Module:
    """``mlp``: keys ``hidden_sizes`` (list of positive ints, may be empty; default [256, 128]); head ``head``."""
    sizes = _get(cfg, "hidden_sizes", [256, 128])
    try:
        sizes = [int(s) for s in sizes]
    except (TypeError, ValueError):
        raise ConfigError("model.hidden_sizes", sizes, "a list of positive integers") from None
    if any(s < 1 for s in sizes):
        raise ConfigError("model.hidden_sizes", sizes, "a list of positive integers")
    return MLP(_shape(cfg), _num_classes(cfg), sizes)


# ------------------------------------------------------------------------------------------------ LeNet-5
def _out(size: int, kernel: int, padding: int) -> int:
    return size + 2 * padding - kernel + 1


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document recognition"), in its common
    modern form: ``conv1`` 6@5x5 -> pool 2 -> ``conv2`` 16@5x5 -> pool 2 -> ``fc1`` 120 -> ``fc2`` 84 ->
    ``fc3`` (head). ReLU and max pooling by default (the paper: tanh-like squashing and average subsampling,
    selectable with ``activation=tanh``, ``pool=avg``).

    Adaptation to the input size (each spatial dimension separately):
    - ``conv1`` is padded by 2 ("same") when the input is smaller than the paper's 32: a 28x28 MNIST image
      then follows the paper's 32x32 geometry (28 -> 14 -> 10 -> 5), 3x32x32 CIFAR is unpadded;
    - ``conv2`` is padded by 2 when its input is smaller than 5 (e.g. 8x8 digits: 8 -> 4 -> 4 -> 2);
    - ``fc1`` takes whatever ``16 x h x w`` remains (400 for 28x28 and 32x32, 64 for 8x8).
    Inputs need at least 4x4 pixels.
    """

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, activation: str = "relu", pool: str = "max"
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in input_shape)
        pad1 = tuple(2 if s < 32 else 0 for s in (h, w))
        h1, w1 = _out(h, 5, pad1[0]) // 2, _out(w, 5, pad1[1]) // 2
        pad2 = tuple(2 if s < 5 else 0 for s in (h1, w1))
        h2, w2 = _out(h1, 5, pad2[0]) // 2, _out(w1, 5, pad2[1]) // 2
        if min(h1, w1, h2, w2) < 1:
            raise ConfigError("model.input_shape", list(input_shape), "LeNet-5 needs at least 4x4 pixels")
        self.conv1 = nn.Conv2d(c, 6, 5, padding=pad1)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad2)
        self.fc1 = nn.Linear(16 * h2 * w2, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.act: Callable[[Tensor], Tensor] = torch.relu if activation == "relu" else torch.tanh
        self.pool: Callable[[Tensor, int], Tensor] = F.max_pool2d if pool == "max" else F.avg_pool2d

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.act(self.conv1(x)), 2)
        x = self.pool(self.act(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)


@MODELS.register("lenet5")
def build_lenet5(cfg: Any) -> nn.Module:
    """``lenet5``: keys ``activation`` (relu|tanh, default relu), ``pool`` (max|avg, default max); head ``fc3``."""
    activation = _get(cfg, "activation", "relu")
    if activation not in ("relu", "tanh"):
        raise ConfigError("model.activation", activation, "relu or tanh")
    pool = _get(cfg, "pool", "max")
    if pool not in ("max", "avg"):
        raise ConfigError("model.pool", pool, "max or avg")
    return LeNet5(_shape(cfg), _num_classes(cfg), activation, pool)


# ------------------------------------------------------------------------------------------- CIFAR ResNet
class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers with an identity shortcut (He et al. 2016). Where the block halves the
    resolution and doubles the width, the shortcut is option A (stride-2 subsampling and zero-padded extra
    channels: no parameters, the paper's choice for CIFAR) or option B (1x1 conv + BatchNorm)."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.extra = planes - in_planes
        self.shortcut: Optional[nn.Module] = None
        if (stride != 1 or in_planes != planes) and shortcut == "B":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def _identity(self, x: Tensor) -> Tensor:
        if self.shortcut is not None:
            return self.shortcut(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra > 0:
            x = F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._identity(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. 2016 ("Deep residual learning for image recognition", Sec. 4.2):
    ``conv1`` 3x3@16 + BN, three stages ``layer1..3`` of n basic blocks with 16/32/64 channels (stride 2 at
    the start of stages 2 and 3), global average pooling and the linear head ``fc``; depth = 6n + 2
    (20, 32, 44, 56, 110 in the paper). ResNet-20 with option A has 19 convs + 1 fc and 0.27M parameters.
    Any input of at least 8x8 works (global pooling); the first conv takes the input's channel count."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 20, shortcut: str = "A") -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(int(input_shape[0]), 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes = 16
        stages = []
        for i, width in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(planes, width, stride, shortcut))
                planes = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


@MODELS.register("resnet20")
def build_resnet20(cfg: Any) -> nn.Module:
    """``resnet20``: keys ``depth`` (6n+2, default 20), ``shortcut`` (A|B, default A); head ``fc``."""
    depth = _get(cfg, "depth", 20)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ConfigError("model.depth", depth, "6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110, ...")
    shortcut = str(_get(cfg, "shortcut", "A")).upper()
    if shortcut not in ("A", "B"):
        raise ConfigError("model.shortcut", _get(cfg, "shortcut"), "A (zero-padding identity) or B (1x1 conv)")
    shape = _shape(cfg)
    if min(shape[1:]) < 8:
        raise ConfigError("model.input_shape", list(shape), "a CIFAR ResNet needs at least 8x8 pixels")
    return CifarResNet(shape, _num_classes(cfg), depth, shortcut)


# ------------------------------------------------------------------------------------------- torchvision
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


@MODELS.register("torchvision")
def build_torchvision(cfg: Any) -> nn.Module:
    """``torchvision``: any classification model of ``torchvision.models`` by ``arch`` (e.g. resnet18), randomly
    initialised (``weights=None``), with ``num_classes`` outputs; ``kwargs`` (mapping, default {}) go to the
    model's builder. For inputs with other than 3 channels the stem conv is replaced to take them. googlenet
    and inception_v3 are built with ``aux_logits=False`` unless ``kwargs`` says otherwise (the auxiliary
    heads return a tuple in training mode). Head: ``auto`` (the last Linear/Conv, e.g. ``fc`` for ResNets).
    Note that torchvision's ImageNet architectures downsample 32x; small inputs work for ResNets, VGG,
    MobileNets etc. (global pooling) but not for every architecture (e.g. inception_v3 needs 75x75, ViT 224x224
    unless ``kwargs.image_size`` is set); :func:`build` reports those with a ConfigError."""
    import torchvision.models as tvm

    arch = _get(cfg, "arch")
    allowed = tvm.list_models(module=tvm)
    if arch not in allowed:
        raise ConfigError("model.arch", arch, f"a torchvision classification model: {', '.join(allowed)}")
    kwargs_cfg = _get(cfg, "kwargs", {})
    try:
        from omegaconf import DictConfig, OmegaConf

        kwargs = dict(OmegaConf.to_container(kwargs_cfg, resolve=True)) if isinstance(kwargs_cfg, DictConfig) else dict(kwargs_cfg)
    except (TypeError, ValueError):
        raise ConfigError("model.kwargs", kwargs_cfg, "a mapping of keyword arguments for the model builder") from None
    if arch in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)
    shape = _shape(cfg)
    try:
        model = tvm.get_model(arch, weights=None, num_classes=_num_classes(cfg), **kwargs)
    except TypeError as e:
        raise ConfigError("model.kwargs", kwargs, f"arguments {arch} accepts ({e})") from None
    if shape[0] != 3:
        _adapt_first_conv(model, shape[0], arch)
    return model
