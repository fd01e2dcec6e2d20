"""scikit-learn's embedded 8x8 digits: the default dataset (no download, trains in seconds on a CPU)."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from ..errors import ConfigError
from .base import DATASETS, DataSplits, fraction_option, normalise, option


@DATASETS.register("digits", paper="Alpaydin & Kaynak 1998, UCI optical recognition of handwritten digits")
def build_digits(cfg: Any) -> DataSplits:
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test set; 1,797 images, 10 classes), embedded in
    scikit-learn, so no download. Pixels are scaled by 1/16 to [0, 1], then normalised with the mean and std
    of the *train* split (one channel). The split is stratified by class and seeded by ``split_seed``:
    ``round(test_fraction * N)`` test, ``round(val_fraction * N)`` val, the rest train.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    val_fraction = fraction_option(cfg, "val_fraction", 0.1)
    test_fraction = fraction_option(cfg, "test_fraction", 0.2)
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            "dataset.val_fraction", val_fraction, f"val_fraction + test_fraction < 1 (test_fraction={test_fraction})"
        )
    seed = int(option(cfg, "split_seed", 0))

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).to(torch.float32).div_(16.0).unsqueeze(1)  # [N, 1, 8, 8]
    y = torch.from_numpy(bunch.target).to(torch.int64)
    n = x.shape[0]
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))

    idx = torch.arange(n).numpy()
    labels = y.numpy()

    def split(ids: Any, k: int, rs: int) -> tuple[Any, Any]:
        if k == 0:
            return ids, ids[:0]
        return train_test_split(ids, test_size=k, stratify=labels[ids], random_state=rs)

    rest, test_idx = split(idx, n_test, seed)
    train_idx, val_idx = split(rest, n_val, seed + 1)
    train_idx, val_idx, test_idx = (torch.as_tensor(i, dtype=torch.int64) for i in (train_idx, val_idx, test_idx))

    mean = (float(x[train_idx].mean()),)
    std = (float(x[train_idx].std()),)
    x = normalise(x, mean, std)
    return DataSplits(
        train=TensorDataset(x[train_idx], y[train_idx]),
        val=TensorDataset(x[val_idx], y[val_idx]),
        test=TensorDataset(x[test_idx], y[test_idx]),
        input_shape=(1, 8, 8),
        num_classes=10,
        name="digits",
        mean=mean,
        std=std,
    )
