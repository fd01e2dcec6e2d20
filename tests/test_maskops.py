"""The mask bookkeeping of a mask update (prunelab/sparsity/maskops.py): the numpy fast paths and the torch
fallbacks (non-contiguous tensors, bfloat16) give the same counts, positions and zeros as indexing does."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prunelab.sparsity.maskops import count_true, fill_where, fill_where_all, true_positions


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


@pytest.mark.parametrize("layout", ["contiguous", "bfloat16", "transposed", "channels_last"])
def test_fill_at_all_writes_the_flat_positions_of_every_layout(layout):
    """Positions are row-major over the logical shape, whatever the memory layout (a channels-last conv weight
    and its momentum); numpy views, ``index_fill_`` (bfloat16: no numpy view) and masked fills alike."""
    from prunelab.sparsity.maskops import fill_at_all

    g = torch.Generator().manual_seed(4)
    xs = [torch.randn(3, 4, 2, 2, generator=g) for _ in range(2)]
    if layout == "bfloat16":
        xs = [x.bfloat16() for x in xs]
    elif layout == "transposed":
        xs = [x.transpose(0, 1) for x in xs]
    elif layout == "channels_last":
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    at = torch.tensor([0, 5, 17, 47])
    want = [x.clone().reshape(-1).index_fill_(0, at, 0.0).view(x.shape) for x in xs]
    fill_at_all(xs, at)
    assert all(torch.equal(x, w) for x, w in zip(xs, want))
    fill_at_all(xs, at[:0], 9.0)  # no positions: nothing written
    assert all(torch.equal(x, w) for x, w in zip(xs, want))


def test_position_set_operations_match_python_sets():
    from prunelab.sparsity.maskops import gather, nth_outside, sorted_minus, sorted_union

    g = torch.Generator().manual_seed(5)
    for _ in range(20):
        universe = torch.randperm(60, generator=g)
        a, b = universe[:15].sort().values.numpy(), universe[15:27].sort().values.numpy()
        assert sorted_union(a, b).tolist() == sorted(a.tolist() + b.tolist())
        c = np.sort(np.concatenate([a[::2], b[:4]]))
        assert sorted_minus(a, c).tolist() == sorted(set(a.tolist()) - set(c.tolist()))
        outside = [p for p in range(80) if p not in set(a.tolist())]
        assert nth_outside(a, np.arange(len(outside))).tolist() == outside
    assert sorted_minus(a, a[:0]).tolist() == a.tolist() and sorted_minus(a[:0], a).size == 0
    assert sorted_minus(a, a[:3]).tolist() == a[3:].tolist()  # entries above all of b
    x = torch.arange(24.0).view(4, 6)
    for t in (x, x.t(), x.bfloat16()):  # a numpy view / torch's gather (not contiguous; bfloat16)
        assert gather(t, np.array([0, 7, 23])).tolist() == [t.reshape(-1)[i].item() for i in (0, 7, 23)]
