"""Options given as dicts, OmegaConf configs or dataclasses, read into plain dicts (the core takes all three)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

AUTO = "auto"


def tristate(key: str, value: Any) -> bool | None:
    """An ``auto | true | false`` option (a bool or its string; YAML and the command line give either): None for
    auto, else the bool. Anything else is a one-line :class:`~prunelab.errors.ConfigError` naming ``key``."""
    text = str(value).strip().lower() if value is not None else AUTO
    if text in (AUTO, "true", "false"):
        return None if text == AUTO else text == "true"
    from .errors import ConfigError

    raise ConfigError(key, value, "auto, true or false")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Read a config given as a dict, an OmegaConf config, a dataclass or None into a plain dict (a string is the
    ``criterion_type`` of a criterion config)."""
    if config is None:
        return {}
    if isinstance(config, str):
        return {"criterion_type": config}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        return dict(OmegaConf.to_container(config, resolve=True))  # type: ignore[arg-type]
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"config must be a dict, an OmegaConf config or a dataclass, not {type(config).__name__}")
