"""Any ``torchvision.datasets`` image-classification class by name, streamed (or held in memory when it fits)."""
from __future__ import annotations

import inspect
from typing import Any

import torch

from ..errors import ConfigError
from .base import DATASETS, DataSplits, constant_option, data_root, fraction_option, option, val_split
from .samples import ArrayImages, Pipeline, SampleDataset, build_transforms


def split_kwargs(cls: type, split: str) -> dict[str, Any]:
    """How ``cls`` chooses its ``train`` or ``test`` split, read from its signature: ``train=True/False`` (CIFAR,
    the MNIST family) or ``split='train'/'test'`` (SVHN, STL10, Food101); nothing if it takes neither."""
    params = inspect.signature(cls.__init__).parameters
    if "train" in params:
        return {"train": split == "train"}
    return {"split": split} if "split" in params else {}


def _kwargs(cfg: Any, key: str, cls: type) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    value = option(cfg, key, None)
    if value is None:  # the class's own split argument
        return split_kwargs(cls, "train" if key == "train_kwargs" else "test")
    value = OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value
    if not isinstance(value, dict):
        raise ConfigError(f"dataset.{key}", value, "a mapping of keyword arguments for the dataset class")
    return dict(value)


def _open(cls: type, cfg: Any, key: str, root: str, download: bool) -> Any:
    """``cls`` opened on ``root`` with the split's keyword arguments (a ``root`` among them wins: ImageFolder's test
    data is another folder)."""
    given = _kwargs(cfg, key, cls)
    try:
        return cls(**{"root": root, **({"download": True} if download else {}), **given})
    except (TypeError, ValueError) as exc:  # ValueError: a split the class does not have (ImageNet: no "test")
        raise ConfigError(f"dataset.{key}", given, f"arguments {cls.__name__} accepts ({exc})") from None
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise ConfigError("dataset.root", root, f"{cls.__name__} files there ({str(exc).splitlines()[0]}; classes "
                          "that check their files' checksums take the official files only); set "
                          "dataset.download=true to fetch them") from None


def classes_in(*datasets: Any) -> int | None:
    """How many classes the datasets hold: the length of their ``classes`` list, else their largest label + 1
    (None where a dataset has neither: its labels would be read image by image, too slow for a check)."""
    found = []
    for ds in datasets:
        names = getattr(ds, "classes", None)
        labels = next((v for a in ("targets", "labels", "_labels") if (v := getattr(ds, a, None)) is not None), None)
        if names is not None and len(names):
            found.append(len(names))
        elif labels is not None and len(labels):
            found.append(int(torch.as_tensor(labels).max()) + 1)
        else:
            return None
    return max(found) if found else None


def _as_arrays(ds: Any) -> Any:
    """A dataset that holds its images as one uint8 array ``[N, H, W, C]`` or ``[N, H, W]`` (CIFAR, MNIST, SVHN
    ``[N, C, H, W]``) read without PIL; any other is used as it is (PIL images)."""
    data = getattr(ds, "data", None)
    if data is None or not hasattr(data, "shape") or str(getattr(data, "dtype", "")) not in ("uint8", "torch.uint8"):
        return ds
    x = torch.as_tensor(data)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    elif not (x.dim() == 4 and x.shape[1] in (1, 3)):  # [N, C, H, W] (SVHN) is taken as it is
        return ds
    try:
        from .samples import labels_of

        return ArrayImages(x, labels_of(ds))
    except (TypeError, ValueError):
        return ds


@DATASETS.register("torchvision", paper="torchvision.datasets")
def build_torchvision(cfg: Any) -> DataSplits:
    """Any ``torchvision.datasets`` class by ``cls`` (e.g. SVHN, STL10, Food101), opened twice from ``root``:
    with ``train_kwargs`` for the train split (``val_fraction`` of it, seeded, for validation) and with
    ``test_kwargs`` for the test split (null: the class's own split argument, :func:`split_kwargs`; or a mapping
    that replaces it, e.g. ``{split: extra}``). Samples go through
    ``train_transforms`` / ``eval_transforms`` (torchvision v2), then ``/ 255`` and ``mean`` / ``std`` (default
    0.5 per channel, i.e. pixels to [-1, 1], where the dataset's own are not known); ``input_shape`` and ``num_classes`` must be given (models are built from them before the data)."""
    import torchvision.datasets as tvd

    name = str(option(cfg, "cls"))
    cls = getattr(tvd, name, None)
    if not (isinstance(cls, type) and issubclass(cls, tvd.VisionDataset)):
        raise ConfigError("dataset.cls", name, "a torchvision.datasets class, e.g. SVHN, STL10, Food101")
    shape, classes = option(cfg, "input_shape"), option(cfg, "num_classes")
    if shape is None or classes is None:
        raise ConfigError("dataset.input_shape" if shape is None else "dataset.num_classes", None,
                          f"the {name} data's shape [C, H, W] and number of classes")
    if not split_kwargs(cls, "test") and option(cfg, "test_kwargs", None) is None:
        raise ConfigError("dataset.test_kwargs", None, f"the keyword arguments that open {name}'s test data, e.g. "
                          "{root: /path/to/test} (it takes neither train= nor split=: both splits would be the same "
                          "images, and the test accuracy the training data's; a folder tree: dataset=imagefolder)")
    channels = int(shape[0])
    mean = constant_option(cfg, "mean", (0.5,) * channels)
    std = constant_option(cfg, "std", (0.5,) * channels)
    root, download = data_root(cfg), bool(option(cfg, "download", False))
    train_raw, test_raw = (_open(cls, cfg, key, root, download) for key in ("train_kwargs", "test_kwargs"))
    names = [list(getattr(ds, "classes", None) or []) for ds in (train_raw, test_raw)]
    if all(names) and names[0] != names[1]:  # class indices are positions in these lists: the labels would not match
        only = sorted(set(names[0]) ^ set(names[1]))
        raise ConfigError("dataset.test_kwargs", option(cfg, "test_kwargs", None), f"a test split with the training "
                          f"split's classes in its order ({len(names[0])} there, {len(names[1])} here"
                          f"{'; in one only: ' + ', '.join(map(str, only[:5])) if only else ''})")
    found = classes_in(train_raw, test_raw)
    if found is not None and found != int(classes):
        raise ConfigError("dataset.num_classes", classes, f"the {name} data has {found} classes")
    train_base, test_base = _as_arrays(train_raw), _as_arrays(test_raw)
    plain = Pipeline(build_transforms(option(cfg, "eval_transforms"), "eval_transforms"), mean, std)
    augment = build_transforms(option(cfg, "train_transforms"), "train_transforms")
    train_idx, val_idx = val_split(len(train_base), fraction_option(cfg, "val_fraction", 0.1),
                                   int(option(cfg, "split_seed", 0)))
    return DataSplits(
        train=SampleDataset(train_base, Pipeline(augment, mean, std, augment=True) if augment else plain, train_idx, plain),
        val=SampleDataset(train_base, plain, val_idx),
        test=SampleDataset(test_base, plain),
        input_shape=tuple(int(s) for s in shape),
        num_classes=int(classes),
        name=f"torchvision.{name}",
        mean=mean,
        std=std,
    )
