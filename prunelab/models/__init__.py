"""Models: every model is one registered ``(cfg) -> nn.Module`` builder plus one YAML in ``conf/model/``.
Importing this package registers them all; :func:`build` builds the one a config names and checks it."""
from .base import MODELS, build, head_name, prunable_types
from .lenet import LeNet5, build_lenet5
from .mlp import MLP, build_mlp
from .resnet import BasicBlock, CifarResNet, build_resnet20
from .tv import build_torchvision

__all__ = [
    "BasicBlock", "CifarResNet", "LeNet5", "MLP", "MODELS", "build", "build_lenet5", "build_mlp", "build_resnet20",
    "build_torchvision", "head_name", "prunable_types",
]
