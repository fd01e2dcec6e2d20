"""The mask bookkeeping of a mask update (prunelab/sparsity/maskops.py): the numpy fast paths and the torch
fallbacks (non-contiguous tensors, bfloat16) give the same counts, positions and zeros as indexing does."""
from __future__ import annotations

import math

import pytest
import torch

from prunelab.sparsity.maskops import count_true, fill_where, fill_where_all, select_where, true_positions


def _masks():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(6, 9, generator=g) < 0.3
    return [m, m.t(), m[:, ::2], torch.zeros(0, dtype=torch.bool), torch.ones(5, dtype=torch.bool)]


def test_counts_and_positions_match_indexing():
    masks = _masks()
    assert count_true(masks) == [sum(bool(v) for v in m.reshape(-1).tolist()) for m in masks]
    floats = [torch.tensor([0.0, -0.0, 1.5, math.nan]), torch.tensor([[0.0, 2.0], [3.0, 0.0]]).t()]
    assert count_true(floats) == [2, 2]  # -0.0 is zero, NaN is not
    for m in masks:
        want = [i for i, v in enumerate(m.reshape(-1).tolist()) if v]
        assert true_positions(m).tolist() == want


def test_select_where_keeps_the_selected_entries_in_order():
    for m in _masks():
        flat = m.reshape(-1)
        for x in (torch.arange(flat.numel()) * 3, torch.arange(flat.numel(), dtype=torch.float32) - 7.5):
            want = [v for v, keep in zip(x.tolist(), flat.tolist()) if keep]
            assert select_where(x, flat).tolist() == want
            strided = x.repeat_interleave(2)[::2], flat.repeat_interleave(2)[::2]  # not contiguous: torch's path
            assert strided[0].numel() < 2 or not strided[0].is_contiguous()
            assert select_where(*strided).tolist() == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_fill_where_writes_exact_values_in_place_and_nothing_else(dtype, layout):
    """Zeros (grown weights, their optimizer state) and -inf (drop-and-grow's excluded candidates)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, generator=g).to(dtype)
    x[0, 0], x[1, 1] = math.nan, math.inf  # zeroed too: not multiplied by 0
    mask = torch.rand(5, 7, generator=g) < 0.4
    mask[0, 0] = mask[1, 1] = True
    if layout == "transposed":
        x, mask = x.t(), mask.t()
    before = x.clone()
    assert fill_where(x, mask) is x
    assert torch.equal(x[mask], torch.zeros(int(mask.sum()), dtype=dtype))
    assert torch.equal(x[~mask], before[~mask])
    assert not torch.signbit(x[mask]).any()  # +0.0, as masked_fill_ writes
    fill_where(x, ~mask, -math.inf)
    assert torch.equal(x[~mask], torch.full((int((~mask).sum()),), -math.inf, dtype=dtype))
    assert torch.equal(x[mask], torch.zeros(int(mask.sum()), dtype=dtype))


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_fill_where_all_zeroes_every_tensor_where_the_mask_is_and_nothing_else(layout):
    """A grown weight and its optimizer state: by index through numpy views, or masked fills where there are none
    (bfloat16, non-contiguous); NaN and inf become exactly 0 too."""
    g = torch.Generator().manual_seed(2)
    mask = torch.rand(6, 9, generator=g) < 0.3
    mask[0, 0] = True
    xs = [torch.randn(6, 9, generator=g) for _ in range(3)] + [torch.randn(6, 9, generator=g).bfloat16()]
    xs[0][0, 0], xs[1][0, 0] = math.nan, math.inf
    if layout == "transposed":
        xs, mask = [x.t() for x in xs], mask.t()
    for group in (xs[:3], xs):  # numpy views (contiguous) / a bfloat16 among them: masked fills
        before = [x.clone() for x in group]
        fill_where_all(group, mask, 0.0)
        for x, b in zip(group, before):
            assert torch.equal(x[mask], torch.zeros(int(mask.sum()), dtype=x.dtype))
            assert not torch.signbit(x[mask]).any()
            assert torch.equal(x[~mask], b[~mask])
