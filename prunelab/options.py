"""Options given as dicts, OmegaConf configs or dataclasses, read into plain dicts (the core takes all three), and
checked against a typed ``Options`` dataclass (:func:`parse_options`: unknown keys and wrong types are one-line
errors)."""
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


def type_text(tp: Any) -> str:
    """What a value of annotation ``tp`` must be, in words: ``int`` -> "an integer", ``float | None`` -> "a number
    or null", ``list[str]`` -> "a list of strings"."""
    import types
    import typing

    if isinstance(tp, str):  # a postponed annotation that could not be resolved
        return f"a value of type {tp}"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(type_text(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        return f"a list of {_plural(type_text(args[0]))}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if tp in names:
        return names[tp]
    return "any value" if tp is Any else f"a value of type {getattr(tp, '__name__', tp)}"


def _plural(text: str) -> str:
    word = text.split(" ", 1)[1] if text.startswith(("a ", "an ")) else text
    return {"integer": "integers", "number": "numbers", "string": "strings"}.get(word, word)


def parse_options(prefix: str, options: type, config: Any, owner: str, ignore: tuple[str, ...] = ()) -> Any:
    """``config`` checked against the dataclass ``options``: an instance of it, or a one-line
    :class:`~prunelab.errors.ConfigError` for an unknown key (``prefix.key``) or a value of the wrong type.

    ``owner`` names what the keys belong to in the message (e.g. "model mlp"); keys in ``ignore`` are handled
    elsewhere and not checked here."""
    import typing

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .errors import ConfigError

    params = {k: v for k, v in config_to_dict(config).items() if k not in ignore}
    hints = typing.get_type_hints(options)
    fields = {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(options)}
    schema = OmegaConf.structured(options)
    for key, value in params.items():
        if key not in fields:
            known = ", ".join(k for k in fields if k not in ignore)
            raise ConfigError(f"{prefix}.{key}", value, f"a key of {owner} " +
                              (f"(its options: {known})" if known else "(it has no options)"))
        try:
            OmegaConf.merge(schema, {key: value})
        except OmegaConfBaseException:
            raise ConfigError(f"{prefix}.{key}", value, type_text(fields[key])) from None
    try:
        return OmegaConf.to_object(OmegaConf.merge(schema, params))
    except OmegaConfBaseException as exc:  # a required key (MISSING) not given
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"{prefix}.{key}", None, f"{type_text(fields.get(key, Any))} (required by {owner})") from None
