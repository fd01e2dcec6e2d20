"""Datasets: every dataset is one registered ``(cfg) -> DataSplits`` builder plus one YAML in ``conf/dataset/``.
Importing this package registers them all; :func:`build` builds the one a config names."""
from .augment import RandomCropFlip
from .base import DATASETS, DataSplits, build, check_same_data
from .cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, build_cifar10, build_cifar100
from .digits import build_digits
from .folder import IMAGENET_MEAN, IMAGENET_STD, build_imagefolder
from .mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD, MNIST_MEAN, MNIST_STD, build_fashion_mnist, build_mnist
from .samples import ArrayImages, Pipeline, SampleDataset
from .tv import build_torchvision

__all__ = [
    "ArrayImages", "CIFAR100_MEAN", "CIFAR100_STD", "CIFAR10_MEAN", "CIFAR10_STD", "DATASETS", "DataSplits",
    "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "IMAGENET_MEAN", "IMAGENET_STD", "MNIST_MEAN", "MNIST_STD", "Pipeline",
    "RandomCropFlip", "SampleDataset", "build", "build_cifar10", "build_cifar100", "build_digits",
    "build_fashion_mnist", "build_imagefolder", "build_mnist", "build_torchvision", "check_same_data",
]
