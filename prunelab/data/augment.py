"""Batch-level augmentation on in-memory tensors, drawn from a generator the trainer seeds per step."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError


class RandomCropFlip:
    """Random crop after ``padding`` pixels of zero padding, then a random horizontal flip (p=0.5), per sample.

    The standard CIFAR augmentation of He et al. 2016 (4-pixel padding, 32x32 crop, flip). It works on a
    batch of already-normalised images ``[B, C, H, W]``, so the padding value per channel is ``fill`` =
    ``(0 - mean) / std``: a black pixel, as in the usual pad-then-normalise pipeline. Vectorised (two
    ``gather`` calls and one ``where``); the random draws (row offsets, column offsets, flips, in that order)
    come from ``generator`` only, so the result is deterministic given the generator's state. The generator
    may live on another device than ``x``.
    """

    def __init__(self, padding: int = 4, fill: Sequence[float] = (0.0,), flip: bool = True) -> None:
        if padding < 0:
            raise ConfigError("dataset.crop_padding", padding, "an integer >= 0")
        self.padding = int(padding)
        self.fill = tuple(float(f) for f in fill)
        self.flip = bool(flip)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"RandomCropFlip expects a batch [B, C, H, W], got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        p = self.padding
        gdev = generator.device
        out = x
        if p > 0:
            fill = torch.tensor(self.fill, dtype=x.dtype, device=x.device)
            fill = fill.expand(c) if fill.numel() == 1 else fill
            padded = fill.view(1, c, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p : p + h, p : p + w] = x
            oy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=gdev).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=gdev).to(x.device)
            rows = oy[:, None] + torch.arange(h, device=x.device)  # [B, H]
            cols = ox[:, None] + torch.arange(w, device=x.device)  # [B, W]
            out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * p))
            out = out.gather(3, cols[:, None, None, :].expand(b, c, h, w))
        if self.flip:
            flip = (torch.rand(b, generator=generator, device=gdev) < 0.5).to(x.device)
            out = torch.where(flip[:, None, None, None], out.flip(3), out)
        return out

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"
