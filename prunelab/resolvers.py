"""OmegaConf resolvers that option YAMLs use and that the data layer needs as well as the app (registered on import).

``${prunelab.eval_resize:${.image_size}}`` (imagefolder's ``resize``): the side an evaluation resizes to before it
center-crops ``image_size``.
"""
from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def eval_resize(image_size: Any) -> Any:
    """8/7 of ``image_size`` (ImageNet's 256 -> 224: 73 for 64, 18 for 16); a value that is no size is handed on as
    it is, for the dataset's checks to name."""
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        return image_size
    return int(image_size * 8 / 7 + 0.5)


def register() -> None:
    """Register the resolvers (idempotent)."""
    if not OmegaConf.has_resolver("prunelab.eval_resize"):
        OmegaConf.register_new_resolver("prunelab.eval_resize", eval_resize)


register()
