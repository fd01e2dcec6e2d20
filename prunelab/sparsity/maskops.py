"""Mask bookkeeping at a mask update: counts, positions and zeroing, on the CPU in numpy.

numpy counts a bool mask ~5x faster than ``torch.count_nonzero``, and fills the entries of a sparse mask (the
~1% of a layer that a mask update grows) ~2x faster than ``masked_fill_`` (for a mask of ~7% it is ~2x slower:
fill dense selections by index, as the drop-and-grow does); a mask update of dynamic sparse training does several
of each per layer. Elsewhere (GPU tensors, dtypes numpy lacks) the torch operations. The results are identical.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

_NUMPY_DTYPES = (torch.bool, torch.float32, torch.float64, torch.float16)


def _numpy(x: Tensor, dtypes: tuple[torch.dtype, ...] = _NUMPY_DTYPES) -> np.ndarray | None:
    """A numpy view of ``x`` (shared memory), or None where there is none (not CPU, not contiguous, bfloat16)."""
    if x.device.type != "cpu" or x.dtype not in dtypes or not x.is_contiguous():
        return None
    return x.detach().numpy()


def count_true(masks: Sequence[Tensor]) -> list[int]:
    """The number of nonzero entries of each tensor (one device sync for all of them off the CPU)."""
    views = [_numpy(m) for m in masks]
    if all(v is not None for v in views):
        return [int(np.count_nonzero(v)) for v in views]
    return torch.stack([torch.count_nonzero(m) for m in masks]).tolist()


def true_positions(mask: Tensor) -> Tensor:
    """The flat positions of ``mask``'s True entries, ascending (int64)."""
    view = _numpy(mask)
    if view is None:
        return mask.reshape(-1).nonzero().flatten()
    return torch.from_numpy(np.flatnonzero(view))


def select_where(x: Tensor, mask: Tensor) -> Tensor:
    """The entries of 1-D ``x`` where ``mask`` is True, in order (numpy's ``compress``: ~3x ``masked_select`` on
    the CPU)."""
    view, where = _numpy(x, (*_NUMPY_DTYPES, torch.int64)), _numpy(mask)  # int64: positions
    if view is None or where is None:
        return x.masked_select(mask)
    return torch.from_numpy(np.compress(where, view))


@torch.no_grad()
def fill_where(x: Tensor, mask: Tensor, value: float = 0.0) -> Tensor:
    """``x[mask] = value`` in place (exactly ``value``, whatever x held there: also NaN or inf); returns ``x``. The
    numpy path writes through a view and does not bump autograd's version counter: for weights, optimizer state
    and scratch scores between steps, where no graph holds them."""
    view, where = _numpy(x), _numpy(mask)
    if view is None or where is None:
        return x.masked_fill_(mask, value)
    np.copyto(view, value, where=where)
    return x


@torch.no_grad()
def fill_where_all(xs: Sequence[Tensor], mask: Tensor, value: float = 0.0) -> None:
    """:func:`fill_where` of every tensor in ``xs`` (each of ``mask``'s shape; a grown weight and its optimizer
    state): the mask's positions found once, each tensor then written by index through a numpy view (for a weight
    and its momentum at 2.5% of a 784x300 layer ~1.6x faster than a masked fill each; one tensor: a masked fill)."""
    views, where = [_numpy(x) for x in xs], _numpy(mask)
    if len(xs) < 2 or where is None or any(v is None for v in views):
        for x in xs:
            fill_where(x, mask.to(x.device), value)
        return
    at = np.flatnonzero(where)
    for view in views:
        view.reshape(-1)[at] = value
