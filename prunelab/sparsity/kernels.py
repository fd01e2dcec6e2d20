"""A layer's drop-and-grow as one compiled kernel (numba) on the CPU: the same sets as the numpy path, in a few passes.

Dynamic sparse training's update (``regrowth.drop_and_grow``) is ~30 numpy calls per layer, each a few microseconds
of fixed cost and most a pass over the kept positions or the layer; on the MLP that is more than a dense training
step. Here the whole layer is two or three passes in compiled loops:

* ranking by bit pattern: for non-negative floats the IEEE-754 bits, read as unsigned integers, order as the values
  do, so ``|x|`` is ``bits & 0x7FFFFFFF`` and the k-th smallest is found by a radix selection (three histogram
  rounds over 11, 11 and 10 bits) instead of a sort; every NaN counts as one value above every number (as a sort
  puts it), and ``-0.0`` equals ``0.0``;
* ties by position, as everywhere in prunelab: the drop takes the earlier of equal ``|W|``, the growth the later of
  equal ``|gradient|`` (RigL);
* RigL's growth among the ~90% of a layer not kept: a value from a fixed sample bounds the tail that can hold the
  ``n`` highest (as ``selection.highest_k_positions`` does), one pass counts it and one copies it out, and the
  selection runs on that tail alone; SET's random ranks (drawn by the caller's generator, as on the numpy path) are
  mapped to positions by one merge;
* the change written on the way (the pruner asks for it): the mask updated, the dropped and grown weights and the
  grown weights' optimizer state zeroed, while those entries are in cache, with the layer's views kept from one
  update to the next (:class:`Operands`).

Used where numba imports and the tensors are float32, contiguous and on the CPU (:func:`unavailable` says why not);
elsewhere the numpy path runs. Tests compare the two on random layers and on layers made of ties.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch
from torch import Tensor

try:  # the compiled path is optional: without numba the numpy path gives the same sets
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; a platform without its wheels falls back
    numba = None
try:  # the count of trailing zero bits as one instruction (an intrinsic numba uses itself)
    from numba.cpython.unsafe.numbers import trailing_zeros as _trailing_zeros
except ImportError:  # pragma: no cover - no numba, or a version without it: a loop (below)
    _trailing_zeros = None

_ABS = np.uint32(0x7FFFFFFF)  # |x| of a float32's bits
_NAN = np.uint32(0x7F800001)  # every NaN's key: one value above inf
_SAMPLE = 4096  # entries sampled to bound RigL's tail (a fixed random set per layer size)


#: Why no kernel runs at all (read once, at import), or None.
OFF = ("numba is not installed" if numba is None else
       "PRUNELAB_COMPILED_REGROWTH=0" if os.environ.get("PRUNELAB_COMPILED_REGROWTH", "1") == "0" else None)
_TAKES = (torch.float32, torch.bool)
#: The most optimizer-state tensors a kernel zeroes with a change (Adam with amsgrad has three).
STATES = 3
_NONE = np.empty(0, np.uint32)


def unavailable(*tensors: Tensor, states: Sequence[Tensor] = ()) -> Optional[str]:
    """Why the compiled kernels cannot take these tensors (and these optimizer ``states`` to zero) here, or None
    when they can."""
    if OFF is not None:
        return OFF
    if len(states) > STATES:
        return f"{len(states)} optimizer state tensors (the kernels zero at most {STATES})"
    for t in (*tensors, *states):
        if t.is_cuda or t.dtype not in _TAKES or not t.is_contiguous() or t.device.type != "cpu":
            return f"a {t.dtype} tensor on {t.device.type} (the kernels take contiguous float32 on the CPU)"
    return None


def operands(mask: Tensor, weight: Tensor, apply: Optional[Sequence[Tensor]] = None) -> Optional["Operands"]:
    """The layer's :class:`Operands`, or None where the kernels cannot take these tensors."""
    return None if unavailable(mask, weight, states=apply or ()) else Operands(mask, weight, apply)


def warm() -> None:
    """Compile (or load from numba's cache) every kernel now, on a tiny layer: the first compile takes seconds once
    per machine, which a run takes before training (``DropAndGrow.prepare``) rather than at its first update."""
    if OFF is not None:
        return
    mask, w = torch.tensor([True, True, False, False]), torch.tensor([1.0, 2.0, 0.0, 0.0])
    kept = np.array([0, 1], dtype=np.int64)
    drop_grow_highest(Operands(mask, w), w, kept, 1)
    drop_grow_ranks(Operands(mask, w), kept, 1, np.array([0], dtype=np.int64))
    first_distinct(np.array([1, 0], dtype=np.int64), 1)


def _bits(t: Tensor) -> np.ndarray:
    """A float32 tensor's flat bits as uint32 (a view: no copy)."""
    return t.detach().numpy().reshape(-1).view(np.uint32)


class Operands:
    """What a kernel call reads and writes of one layer, as numpy views: the mask's bytes, the weight's bits, the
    bits of the optimizer state to zero with the change (``apply``: padded to :data:`STATES` with empty arrays,
    so that every optimizer gets one compiled kernel; None: the change is not written) and RigL's sample
    positions. Made once per layer and reused while they view the same tensors (:meth:`views`): right after a
    training step each of the ~20 Python calls that make them costs ~10 us, not ~1 (its caches are cold), which
    on the MLP is a good part of what an update adds to a step (``benchmarks/README.md``). Build them where
    :func:`unavailable` says the kernels take the tensors."""

    def __init__(self, mask: Tensor, weight: Tensor, apply: Optional[Sequence[Tensor]] = None) -> None:
        from .selection import _sample_positions

        self.viewed = (mask, weight, *(apply or ()))
        self.ptrs = tuple(t.data_ptr() for t in self.viewed)
        self.apply = apply is not None
        self.marks, self.wbits = _marks(mask), _bits(weight)
        self.states = tuple(_bits(t) for t in apply or ()) + (_NONE,) * (STATES - len(apply or ()))
        size = weight.numel()
        self.at = _sample_positions(size) if size > 16 * _SAMPLE else np.empty(0, dtype=np.int64)

    def views(self, mask: Tensor, weight: Tensor, apply: Optional[Sequence[Tensor]] = None) -> bool:
        """Whether these are the views of exactly these tensors (the same objects, on the same memory)."""
        now = (mask, weight, *(apply or ()))
        return (self.apply == (apply is not None) and len(now) == len(self.viewed)
                and all(a is b and a.data_ptr() == p for a, b, p in zip(now, self.viewed, self.ptrs)))


def drop_grow_highest(ops: Operands, score: Tensor, kept: np.ndarray, n: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RigL's layer update: drop the ``n`` kept entries of smallest ``|weight|``, grow the ``n`` of largest ``|score|``
    among those not kept after the drop. Returns (kept after, turned off, turned on), ascending int64 positions.
    The mask marks the dropped entries on the way and is restored before this returns, unless the operands have
    ``apply``: then the change is written in the same pass (:func:`_apply`): the mask left updated, the weights
    turned off and on zeroed, the optimizer state zeroed where on."""
    return _drop_grow_highest(ops.marks, ops.wbits, _bits(score), kept, n, ops.at, ops.apply, ops.states)


def drop_grow_ranks(ops: Operands, kept: np.ndarray, n: int, ranks: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SET's layer update: drop the ``n`` kept entries of smallest ``|weight|``, grow the entries of ascending
    ``ranks`` among those not kept after the drop (rank r: the r-th, 0-based, such position). Returns (kept after,
    turned off, turned on), ascending int64 positions. The change written as in :func:`drop_grow_highest`."""
    return _drop_grow_ranks(ops.marks, ops.wbits, kept, n, ranks, ops.apply, ops.states)


def _marks(mask: Tensor) -> np.ndarray:
    """A bool mask's flat bytes as uint8 (a view): the kernels mark entries in it (2: dropped) and restore it."""
    return mask.numpy().reshape(-1).view(np.uint8)


def _jit(fn):  # compiled and cached on first use (a few seconds once per machine); plain Python without numba
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


if _trailing_zeros is None:  # pragma: no cover - see the import
    @_jit
    def _trailing_zeros(x):
        k = 0
        while not x & np.uint64(1):
            x >>= np.uint64(1)
            k += 1
        return k


@_jit
def _key(bits):  # pragma: no cover - compiled
    """The rank key of ``|x|`` from ``x``'s float32 bits (every NaN one value above inf)."""
    return min(bits & _ABS, _NAN)


@_jit
def _lowest(keys, n, later):  # pragma: no cover - compiled
    """Bool over ``keys``: the ``n`` lowest; of equal keys the earlier (``later``: the later) positions."""
    m = keys.size
    out = np.zeros(m, np.bool_)
    if n <= 0:
        return out
    if n >= m:
        out[:] = True
        return out
    prefix, fixed, rank = np.uint32(0), np.uint32(0), n  # rank: the threshold's rank among keys with that prefix
    for shift, width in ((21, 11), (10, 11), (0, 10)):
        digit_mask = np.uint32((1 << width) - 1)
        hist = np.zeros(1 << width, np.int64)
        for i in range(m):
            if keys[i] & fixed == prefix:
                hist[(keys[i] >> shift) & digit_mask] += 1
        below, digit = 0, 0
        while below + hist[digit] < rank:
            below += hist[digit]
            digit += 1
        rank -= below
        prefix |= np.uint32(digit) << shift
        fixed |= digit_mask << shift
    for i in range(m):  # every key below the threshold, then ``rank`` of those equal to it
        out[i] = keys[i] < prefix
    i, step = (m - 1, -1) if later else (0, 1)
    while rank > 0:
        if keys[i] == prefix:
            out[i] = True
            rank -= 1
        i += step
    return out


@_jit
def _drop(wbits, kept, n):  # pragma: no cover - compiled
    """Bool over ``kept``: the ``n`` of smallest ``|W|``, of equal ones the earlier."""
    keys = np.empty(kept.size, np.uint32)
    for i in range(kept.size):
        keys[i] = _key(wbits[kept[i]])
    return _lowest(keys, n, False)


@_jit
def _compact(values, keep):  # pragma: no cover - compiled
    """``values[keep]`` (branch-free)."""
    out = np.empty(values.size, values.dtype)
    c = 0
    for i in range(values.size):
        out[c] = values[i]
        c += keep[i]
    return out[:c]


@_jit
def _merge(a, b):  # pragma: no cover - compiled
    """The ascending union of the disjoint ascending ``a`` and ``b`` (branch-free)."""
    out = np.empty(a.size + b.size, np.int64)
    end = np.iinfo(np.int64).max
    i = j = 0
    for o in range(out.size):
        x = a[i] if i < a.size else end
        y = b[j] if j < b.size else end
        first = x < y
        out[o] = x if first else y
        i += first
        j += not first
    return out


@_jit
def _assemble(marks, kept, dropped, grown):  # pragma: no cover - compiled
    """(kept after, off, on) from the kept positions, which of them are dropped, and the grown positions (none of
    them kept after the drop); ``marks``: the mask as uint8 with the dropped entries at 2, restored to 1 here. A
    dropped position grown again (marked 3 on the way) is neither off nor on."""
    on = np.empty(grown.size, np.int64)
    c = 0
    for p in grown:
        v = marks[p]
        on[c] = p
        c += v == 0
        marks[p] = v | (v >> 1)  # dropped (2) and grown again: 3
    off = np.empty(kept.size, np.int64)
    b = 0
    for i in range(kept.size):
        p = kept[i]
        off[b] = p
        b += marks[p] == 2
        marks[p] = 1
    return _merge(_compact(kept, ~dropped), grown), off[:b], on[:c]


@_jit
def _apply(marks, wbits, off, on, states):  # pragma: no cover - compiled
    """The change written where it was found: the mask off at ``off`` and on at ``on``, the weights at both zeroed
    (dropped; grown: a grown weight starts at 0) and each state tensor at ``on``. The kernel has just read or
    marked most of these entries, so the writes find them in cache, and the pruner's index fills (~6 torch and
    numpy calls per layer) are not needed (``benchmarks/README.md``)."""
    for p in off:
        marks[p] = 0
        wbits[p] = 0
    for p in on:
        marks[p] = 1
        wbits[p] = 0
    for s in states:
        if s.size:  # empty: padding, no such state
            for p in on:
                s[p] = 0


@_jit
def _tail(marks, sbits, limit):  # pragma: no cover - compiled
    """The positions, ascending, of the candidates (``marks != 1``) whose inverted key is at most ``limit``: one
    vectorisable pass into a byte per entry, then :func:`_nonzero`."""
    size = sbits.size
    hit = np.zeros((size + 7) // 8 * 8, np.uint8)
    count = 0
    for p in range(size):
        h = ((_ABS - _key(sbits[p])) | (np.uint32(0) - np.uint32(marks[p] == 1))) <= limit
        hit[p] = h
        count += h
    return _nonzero(hit, count)


@_jit
def _nonzero(flags, count):  # pragma: no cover - compiled
    """The positions of the ``count`` bytes of ``flags`` that are 1 (the others 0; its size a multiple of 8),
    ascending: an 8-byte word without any is skipped whole."""
    out = np.empty(count + 8, np.int64)
    words = flags.view(np.uint64)
    c = 0
    for w in range(words.size):
        if words[w] != 0:
            for p in range(8 * w, 8 * w + 8):
                out[c] = p
                c += flags[p]
    return out[:c]


@_jit
def _drop_grow_highest(marks, wbits, sbits, kept, n, at, apply, states):  # pragma: no cover - compiled
    dropped = _drop(wbits, kept, n)
    for i in range(kept.size):  # candidates: not kept after the drop (marks != 1); the dropped are 2 until restored
        if dropped[i]:
            marks[kept[i]] = 2
    top, limit = _ABS, _ABS  # keys inverted (top - key): the highest |score| is the lowest key. The tail: <= limit
    if at.size:  # the sample's quantile 4 standard errors past n / size: at least n candidates below it, nearly always
        q = n / sbits.size
        i = int(np.ceil((q + 4.0 * np.sqrt(q * (1.0 - q) / at.size) + 2.0 / at.size) * at.size))
        if i < at.size:
            sample = np.empty(at.size, np.uint32)
            for k in range(at.size):
                sample[k] = np.uint32(0xFFFFFFFF) if marks[at[k]] == 1 else top - _key(sbits[at[k]])
            limit = min(np.partition(sample, i)[i], top)
    pos = _tail(marks, sbits, limit)
    if pos.size < n:  # the sample missed: every candidate
        pos = _tail(marks, sbits, top)
    keys = np.empty(pos.size, np.uint32)
    for i in range(pos.size):
        keys[i] = top - _key(sbits[pos[i]])
    grown = _compact(pos, _lowest(keys, n, True))
    kept_now, off, on = _assemble(marks, kept, dropped, grown)
    if apply:
        _apply(marks, wbits, off, on, states)
    return kept_now, off, on


@_jit
def _drop_grow_ranks(marks, wbits, kept, n, ranks, apply, states):  # pragma: no cover - compiled
    dropped = _drop(wbits, kept, n)
    for i in range(kept.size):
        if dropped[i]:
            marks[kept[i]] = 2
    still = _compact(kept, ~dropped)
    grown = np.empty(ranks.size, np.int64)
    s = 0  # rank r is at r + #{i : still[i] - i <= r} (still[i] - i: the candidates below still[i])
    for j in range(ranks.size):
        while s < still.size and still[s] - s <= ranks[j]:
            s += 1
        grown[j] = ranks[j] + s
    kept_now, off, on = _assemble(marks, kept, dropped, grown)
    if apply:
        _apply(marks, wbits, off, on, states)
    return kept_now, off, on


@_jit
def first_distinct(draws, n):  # pragma: no cover - compiled
    """The first ``n`` distinct values of ``draws`` (non-negative) in draw order, ascending; empty if it holds fewer
    (``regrowth.first_distinct``'s result, by marking each value seen in a bitset instead of sorting the draws:
    for 7,000 of 212,000 candidates the bitset is 26 KB, read back a word at a time)."""
    top = 0
    for v in draws:
        top = max(top, v)
    seen = np.zeros((top >> 6) + 1, np.uint64)
    got = 0
    for v in draws:
        if got == n:
            break
        bit = np.uint64(1) << np.uint64(v & 63)
        got += (seen[v >> 6] & bit) == 0
        seen[v >> 6] |= bit
    if got < n:
        return np.empty(0, np.int64)
    out = np.empty(n, np.int64)
    c = 0
    for w in range(seen.size):
        x = seen[w]
        while x != 0:
            out[c] = (w << 6) + _trailing_zeros(x)
            c += 1
            x &= x - np.uint64(1)
    return out
