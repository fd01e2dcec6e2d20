"""``prunelab list [criteria|ablations|patterns|distributions|schedules|regrowth|models|datasets|experiments|
optimizers|loggers|trainers] [NAME]``: what is registered, from the registries themselves (name, one line, paper,
its own config keys with their defaults), and the config options (``conf/<group>/*.yaml``) that select them; an
option that is no registered name (``criterion=rigl``: a preset of criterion, schedule, distribution and
regrowth) is listed with the first sentence of its file's leading comment, and so are the options of the groups
without a registry (the experiment presets, optimizers, loggers, trainers). With a NAME, that one entry whole: its
docstring, its keys, its config option's comment and what the option sets."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from .registry import Registry


def registries() -> dict[str, tuple[Registry, str]]:
    """Listing name -> (registry, config group). Importing the packages registers everything."""
    from . import data, models
    from .criteria import ABLATIONS, CRITERIA
    from .regrowth import UPDATERS
    from .schedule import DECAYS
    from .sparsity import DISTRIBUTIONS, PATTERNS

    return {
        "criteria": (CRITERIA, "criterion"), "ablations": (ABLATIONS, "ablation"), "patterns": (PATTERNS, "pattern"),
        "distributions": (DISTRIBUTIONS, "distribution"), "schedules": (DECAYS, "schedule"),
        "regrowth": (UPDATERS, "regrowth"), "models": (models.MODELS, "model"), "datasets": (data.DATASETS, "dataset"),
    }


#: listing name -> config group, for the groups whose options are no registered names: the comparisons ready to
#: run (``+experiment=NAME``), the optimizers, loggers and trainers
OPTION_GROUPS = {"experiments": "experiment", "optimizers": "optimizer", "loggers": "logger", "trainers": "trainer"}


def conf_dir() -> Path:
    from . import conf

    return Path(conf.__file__).parent


def render(kind: str, registry: Registry, group: str, width: int = 110) -> str:
    """One section: a line per registered name (summary, then its paper), then the group's config options."""
    lines = [f"{kind} ({registry.kind}):"]
    names = registry.names()
    described = [registry.describe(name) for name in names]
    lines += rows([(n, summary + (f" [{paper}]" if paper else "") + (f". Keys: {keys}" if (keys := option_keys(
        registry, n)) else "")) for n, (summary, paper) in zip(names, described)], width, "  ")
    if not names:
        lines.append("  (none registered yet)")
    files = sorted((conf_dir() / group).glob("*.yaml"))
    presets = [(f.stem, option_summary(f)) for f in files if f.stem not in names]
    if presets:
        lines.append(f"  other options (conf/{group}/NAME.yaml; presets set more than a registered name):")
        lines += rows(presets, width, "    ")
    if files:
        lines.append(f"  config options: {group}={'|'.join(f.stem for f in files)}  (conf/{group}/; "
                     f"`prunelab list {group} NAME` shows one whole)")
    return "\n".join(lines)


def option_keys(registry: Registry, name: str) -> str:
    """The config keys an entry declares (its ``Options`` dataclass, inherited fields too), each with its default
    and its ``#:`` comment: ``criterion.alpha=0.9 (weight of the history); ...``; '' where it declares none."""
    return "; ".join(option_key_list(registry, name))


def option_key_list(registry: Registry, name: str) -> list[str]:
    """:func:`option_keys` as a list, one ``key=default (comment)`` each."""
    cls = registry.options(name)
    if cls is None:
        return []
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        docs.update((m.group(1), m.group(2).strip()) for m in re.finditer(r"^\s+(\w+)\s*:[^=\n]*=[^#\n]*#:(.+)$",
                                                                           source, re.MULTILINE))
    prefix = registry.kind.split(".")[0]
    parts = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else \
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "???"
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
        parts.append(f"{prefix}.{f.name}={shown}" + (f" ({docs[f.name]})" if f.name in docs else ""))
    return parts


def render_options(kind: str, group: str, width: int = 110) -> str:
    """One section for a group without a registry: each option with its file's first sentence (or ``_target_``)."""
    files = sorted((conf_dir() / group).glob("*.yaml"))
    select = f"+{group}=NAME" if group == "experiment" else f"{group}=NAME"
    targets = [re.search(r"^_target_:\s*(\S+)", f.read_text(), re.MULTILINE) for f in files]
    texts = [option_summary(f) or (t.group(1) if t else "") for f, t in zip(files, targets)]
    return "\n".join([f"{kind} ({select}, conf/{group}/NAME.yaml; `prunelab list {group} NAME` shows one whole):",
                      *rows([(f.stem, text) for f, text in zip(files, texts)], width, "  ")])


def rows(items: Sequence[tuple[str, str]], width: int, indent: str) -> list[str]:
    """``name  text`` lines, the names padded to one column and each text wrapped within ``width``."""
    pad = max((len(name) for name, _ in items), default=0) + 2
    out: list[str] = []
    for name, text in items:
        wrapped = textwrap.wrap(text, width - pad - len(indent)) or [""]
        out.append(f"{indent}{name:<{pad}}{wrapped[0]}")
        out += [f"{indent}{'':<{pad}}{w}" for w in wrapped[1:]]
    return out


def option_summary(path: Path, most: int = 240) -> str:
    """The first sentence of a config file's leading comment (after ``# @package``), or ''; one longer than
    ``most`` characters is cut at a word, with an ellipsis."""
    text = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            text.append(line.lstrip("#").strip())
    joined = " ".join(t for t in text if t)
    # a period, then a space and anything but a lowercase word (a capital, a command in backquotes, ...), or a
    # comment line's end: not "et al. 2020", "e.g. x", "i.e. x", "vs. x"
    end = re.search(r"(?<!\bal)(?<!e\.g)(?<!i\.e)(?<!\bvs)\.(\s+(?![a-z])|$)", joined)
    first = joined if end is None else joined[: end.start() + 1]
    return first if len(first) <= most else textwrap.shorten(first, most, placeholder=" ...")


def render_entry(kind: str, name: str, width: int = 110) -> str:
    """One entry in full (``prunelab list criterion gmp``): the registered class's docstring, paper and keys, and
    the config option's file: its whole leading comment and what it sets. Raises ConfigError for an unknown name."""
    registry, group = registries()[kind] if kind in registries() else (None, OPTION_GROUPS[kind])
    path = conf_dir() / group / f"{name}.yaml"
    if not path.exists() and (registry is None or name not in registry):
        from .errors import ConfigError

        options = sorted(f.stem for f in (conf_dir() / group).glob("*.yaml"))
        names = [n for n in (registry.names() if registry else ()) if n not in options]
        raise ConfigError(group, name, f"an option ({', '.join(options)})" + (
            f" or a registered {registry.kind} ({', '.join(names)})" if names else ""))
    lines = [f"{group}={name}" if path.exists() else f"{registry.kind}={name}"]
    if registry is not None and name in registry:
        _, paper = registry.describe(name)
        doc = re.sub(r":\w+:`~?([^`]+)`", r"\1", inspect.getdoc(registry.get(name)) or "").replace("``", "`")
        lines += [f"  registered {registry.kind} {name!r}" + (f" [{paper}]" if paper else "") + ":"]
        lines += [w for para in doc.split("\n\n") for w in
                  textwrap.wrap(" ".join(para.split()), width, initial_indent="    ", subsequent_indent="    ")]
        keys = option_key_list(registry, name)
        lines += rows([("keys:" if i == 0 else "", k) for i, k in enumerate(keys)], width, "  ")
    if path.exists():
        select = f"+{group}={name}" if group == "experiment" else f"{group}={name}"
        text = [ln for ln in path.read_text().splitlines() if not ln.startswith("# @package")]
        lead = next((i for i, ln in enumerate(text) if not ln.startswith("#")), len(text))
        comment = [ln[2:] if ln.startswith("# ") else ln[1:] for ln in text[:lead]]  # as written: tables, commands
        body = [ln for ln in text[lead:] if ln.strip()]  # with the comments among its keys
        lines += [f"  config option {select} (conf/{group}/{name}.yaml):"]
        lines += [f"    {ln}".rstrip() for ln in comment]
        lines += ["    sets:"] + [f"      {ln}" for ln in body]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    regs = registries()
    parser = argparse.ArgumentParser(prog="prunelab list", description="What is registered, from the registries "
                                     "themselves (name, one line, paper), and the config options that select it.")
    groups = {group: kind for kind, (_, group) in regs.items() if group != kind}
    groups.update({group: kind for kind, group in OPTION_GROUPS.items()})
    parser.add_argument("kind", nargs="?", choices=sorted([*regs, *OPTION_GROUPS]), help="what to list (default: "
                        "everything; a config group's name, e.g. criterion, lists its kind)")
    parser.add_argument("name", nargs="?", help="one entry of that kind, shown whole: its docstring, keys, and its "
                        "config option's comment and settings")
    args = parser.parse_args([groups.get(a, a) if i == 0 else a
                              for i, a in enumerate(sys.argv[1:] if argv is None else argv)])
    if args.name:
        from .errors import ConfigError

        try:
            print(render_entry(args.kind, args.name))
        except ConfigError as exc:
            print(f"prunelab list: error: {exc}", file=sys.stderr)
            return 2
        return 0
    kinds = [args.kind] if args.kind else [*regs, *OPTION_GROUPS]
    print("\n\n".join(render(k, *regs[k]) if k in regs else render_options(k, OPTION_GROUPS[k]) for k in kinds))
    return 0
