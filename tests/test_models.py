"""Models: each builds from its YAML (shapes interpolated from a dataset), runs forward, names its head."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunelab import models
from prunelab.errors import ConfigError

CONF = Path(__file__).parents[1] / "conf"


def _cfg(model: str, dataset: str = "digits", input_shape=None, **overrides):
    """The model's YAML composed with a dataset's YAML, as Hydra would place them (``cfg.model``)."""
    ds = OmegaConf.load(CONF / "dataset" / f"{dataset}.yaml")
    if input_shape is not None:
        ds.input_shape = list(input_shape)
    root = OmegaConf.create({"dataset": ds, "model": OmegaConf.load(CONF / "model" / f"{model}.yaml")})
    root.model = OmegaConf.merge(root.model, overrides)
    return root.model


CASES = [
    ("mlp", "digits", None),
    ("lenet5", "digits", None),
    ("resnet20", "digits", None),
    ("lenet5", "mnist", None),
    ("lenet5", "cifar10", None),
    ("resnet20", "cifar10", None),
    ("torchvision", "cifar10", None),
    ("torchvision", "mnist", None),  # 1-channel input: stem conv adapted
    ("mlp", "mnist", None),
]


@pytest.mark.parametrize("model,dataset,shape", CASES)
def test_builds_runs_and_names_head(model, dataset, shape):
    torch.manual_seed(0)
    cfg = _cfg(model, dataset, shape)
    net = models.build(cfg)
    c, h, w = cfg.input_shape
    out = net(torch.randn(3, c, h, w))
    assert out.shape == (3, cfg.num_classes)
    out.sum().backward()  # trainable end to end
    head = models.head_name(net, cfg)
    layer = net.get_submodule(head)
    assert isinstance(layer, nn.Linear) and layer.out_features == cfg.num_classes


def test_head_names_are_the_documented_ones():
    assert models.head_name(models.build(_cfg("mlp")), _cfg("mlp")) == "head"
    assert models.head_name(models.build(_cfg("lenet5")), _cfg("lenet5")) == "fc3"
    assert models.head_name(models.build(_cfg("resnet20")), _cfg("resnet20")) == "fc"
    cfg = _cfg("torchvision", "cifar10")
    assert cfg.head == "auto" and models.head_name(models.build(cfg), cfg) == "fc"


def test_bad_head_lists_candidates():
    cfg = _cfg("mlp", hidden_sizes=[16])
    net = models.build(_cfg("mlp", hidden_sizes=[16]))
    cfg.head = "classifier"
    with pytest.raises(ConfigError, match=r"model.head='classifier': auto, or a Linear/Conv module name: fc1, head"):
        models.head_name(net, cfg)
    with pytest.raises(ConfigError, match="model.head"):
        models.build(cfg)


def test_mlp_hidden_sizes():
    net = models.build(_cfg("mlp", hidden_sizes=[32, 16, 8]))
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    assert names == ["fc1", "fc2", "fc3", "head"] and net.fc1.in_features == 64
    assert [n for n, m in models.build(_cfg("mlp", hidden_sizes=[])).named_modules() if isinstance(m, nn.Linear)] == ["head"]
    with pytest.raises(ConfigError, match="model.hidden_sizes"):
        models.build(_cfg("mlp", hidden_sizes=[0]))


def test_lenet5_geometry():
    assert models.build(_cfg("lenet5", "mnist")).fc1.in_features == 400  # 28x28 with conv1 padding 2
    assert models.build(_cfg("lenet5", "cifar10")).fc1.in_features == 400  # 32x32, no padding
    assert models.build(_cfg("lenet5", "cifar10")).conv1.padding == (0, 0)
    assert models.build(_cfg("lenet5")).fc1.in_features == 64  # 8x8 digits: 8 -> 4 -> 4 -> 2
    with pytest.raises(ConfigError, match="model.pool"):
        models.build(_cfg("lenet5", pool="median"))


def test_resnet20_structure_and_size():
    net = models.build(_cfg("resnet20", "cifar10"))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 19 and len(fcs) == 1  # option A: no shortcut convs
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == 269_722  # "0.27M" in He et al. 2016, Table 6
    b = models.build(_cfg("resnet20", "cifar10", shortcut="B"))
    assert sum(isinstance(m, nn.Conv2d) for m in b.modules()) == 21
    n32 = models.build(_cfg("resnet20", "cifar10", depth=32))
    assert sum(isinstance(m, nn.Conv2d) for m in n32.modules()) == 31
    assert models.build(_cfg("resnet20", "digits")).conv1.in_channels == 1


@pytest.mark.parametrize("depth", [21, 4, 0, "deep"])
def test_resnet_invalid_depth(depth):
    # "deep" is refused by the model's typed options (an integer), the others by the builder (6n+2)
    with pytest.raises(ConfigError, match=r"model.depth=.*(6n\+2|an integer$)"):
        models.build(_cfg("resnet20", "cifar10", depth=depth))


def test_torchvision_arch_errors_and_channels():
    with pytest.raises(ConfigError, match=r"model.arch='resnet_nope': a torchvision classification model: .*resnet18"):
        models.build(_cfg("torchvision", "cifar10", arch="resnet_nope"))
    net = models.build(_cfg("torchvision", "mnist"))
    assert net.conv1.in_channels == 1 and net.fc.out_features == 10
    with pytest.raises(ConfigError, match="model.input_shape"):  # squeezenet downsamples 8x8 to nothing
        models.build(_cfg("torchvision", "digits", arch="squeezenet1_0"))


def test_unknown_model_and_bad_shape():
    with pytest.raises(ConfigError, match=r"model.name='nope': registered: lenet5, mlp, resnet20, torchvision"):
        models.build({"name": "nope", "input_shape": [1, 8, 8], "num_classes": 10})
    with pytest.raises(ConfigError, match="model.input_shape"):
        models.build({"name": "mlp", "input_shape": [8, 8], "num_classes": 10})
    with pytest.raises(ConfigError, match="model.num_classes"):
        models.build({"name": "mlp", "input_shape": [1, 8, 8], "num_classes": 0})
    with pytest.raises(ConfigError, match="model.input_shape"):
        models.build({"name": "resnet20", "input_shape": [3, 4, 4], "num_classes": 10})
