"""Datasets: every dataset is one registered ``(cfg) -> DataSplits`` builder plus one YAML in ``conf/dataset/``.
Importing this package registers them all; :func:`build` builds the one a config names."""
from .augment import RandomCropFlip
from .base import DATASETS, DataSplits, build
from .cifar import CIFAR10_MEAN, CIFAR10_STD, build_cifar10
from .digits import build_digits
from .mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD, MNIST_MEAN, MNIST_STD, build_fashion_mnist, build_mnist

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "DATASETS", "DataSplits", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "MNIST_MEAN",
    "MNIST_STD", "RandomCropFlip", "build", "build_cifar10", "build_digits", "build_fashion_mnist", "build_mnist",
]
