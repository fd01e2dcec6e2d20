"""The typed schemas of every config group and the checks of a composed config, in one place.

The fixed groups (``trainer``, ``logger``, ``tracking``, ``prune``, ``schedule``, ``pattern``) and the top level
are dataclasses stored in Hydra's ConfigStore as ``prunelab_schema``, the first entry of ``conf/config.yaml``'s
defaults list: Hydra checks every YAML file and every override against them while it composes (``seed=abc`` or
``trainer.deterministic=maybe`` fail there). The pluggable groups (``model``, ``dataset``, ``criterion``,
``distribution``, ``regrowth``, ``optimizer``) take their keys from what is registered: each entry declares an options
dataclass (``criteria/base.py: Options``; ``options=`` at ``MODELS.register`` / ``DATASETS.register``), and an
optimizer's keys are the parameters of its ``torch.optim`` class.

:func:`validate` runs every check that can be made from the config alone, before a single file is written:
keys (also those added with ``+``, which Hydra lets through), :data:`RULES` (ranges and allowed values), the
registered options, and the cross-field rules (the schedule inside the training length, pattern vs criterion,
the device, the optimizer's values). :func:`as_config_error` turns Hydra's and OmegaConf's composition errors
into the same one-line :class:`~prunelab.errors.ConfigError`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import secrets
import time
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError
from .options import config_to_dict, type_text
from .training.config import TrainerConfig


@dataclass
class ScheduleSchema:
    """``schedule``: when to prune and to what target. Start and end are fractions of the training length
    (``start``, ``end``) or steps (``start_step``, ``end_step``; a step, when set, wins over its fraction)."""

    target_sparsity: float = 0.9
    initial_sparsity: float = 0.0
    start: float | None = None
    end: float | None = None
    start_step: int | None = None
    end_step: int | None = None
    pruning_frequency: int = 1
    sparsity_decay_type: str = "exp"


@dataclass
class PatternSchema:
    """``pattern``: the tiling (``type``: NxM, N:M or channel), block score reduction and per-layer bounds."""

    type: str = "1x1"
    scope: str | None = None
    block_reduce: str = "mean"
    min_sparsity_ratio_per_op: float = 0.0
    max_sparsity_ratio_per_op: float = 0.98


@dataclass
class PruneSchema:
    """``prune``: which layers are pruned."""

    op_types: list[str] = field(default_factory=lambda: ["Linear", "Conv1d", "Conv2d", "Conv3d"])
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    exclude_head: bool = True


@dataclass
class TrackingSchema:
    """``tracking``: score histograms."""

    log_scores_every: int = 0
    histogram_bins: int = 64
    histogram_scale: str = "log10"


@dataclass
class LoggerSchema:
    """``logger``: ``backend`` wandb or none, and the W&B run's settings."""

    backend: str = "none"
    project: str | None = "prunelab"
    entity: str | None = None
    group: str | None = None
    job_type: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    mode: str | None = None


@dataclass
class PrunelabSchema:
    """The top level. The pluggable groups are ``Any`` here: their keys come from what is registered."""

    dataset: Any = None
    model: Any = None
    criterion: Any = None
    distribution: Any = None
    regrowth: Any = None
    optimizer: Any = None
    schedule: ScheduleSchema = field(default_factory=ScheduleSchema)
    pattern: PatternSchema = field(default_factory=PatternSchema)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerSchema = field(default_factory=LoggerSchema)
    prune: PruneSchema = field(default_factory=PruneSchema)
    tracking: TrackingSchema = field(default_factory=TrackingSchema)
    seed: int = 0
    group: str = "default"


#: the fixed groups and their schemas (checked key by key, also for keys added with `+`)
FIXED_GROUPS: dict[str, type] = {"schedule": ScheduleSchema, "pattern": PatternSchema, "trainer": TrainerConfig,
                                 "logger": LoggerSchema, "prune": PruneSchema, "tracking": TrackingSchema}
SCHEMA_NAME = "prunelab_schema"


def register_schemas() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent) and register the resolvers the configs use."""
    from hydra.core.config_store import ConfigStore

    from .resolvers import register as register_shared

    ConfigStore.instance().store(name=SCHEMA_NAME, node=PrunelabSchema)
    register_shared()  # the resolvers the data layer uses too
    resolvers = (("prunelab.run_id", run_id), ("prunelab.fingerprint", fingerprint_resolver),
                 ("prunelab.run_name", run_name_resolver))
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


# ----------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """What a value must be beyond its type: a range and/or a set of choices (None: no bound)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None

    def allowed(self, kind: str) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.options()))
        lo = f">= {_num(self.ge)}" if self.ge is not None else f"> {_num(self.gt)}" if self.gt is not None else ""
        hi = f"<= {_num(self.le)}" if self.le is not None else f"< {_num(self.lt)}" if self.lt is not None else ""
        if lo and hi:
            left = "[" if self.ge is not None else "("
            right = "]" if self.le is not None else ")"
            lo_v = self.ge if self.ge is not None else self.gt
            hi_v = self.le if self.le is not None else self.lt
            return f"{kind} in {left}{_num(lo_v)}, {_num(hi_v)}{right}"
        return f"{kind} {lo or hi}".strip()

    def options(self) -> tuple[Any, ...]:
        return self.choices() if callable(self.choices) else tuple(self.choices or ())

    def ok(self, v: Any) -> bool:
        if self.choices is not None:
            return v in self.options()
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return all((b is None or test) for b, test in (
            (self.ge, self.ge is not None and v >= self.ge), (self.gt, self.gt is not None and v > self.gt),
            (self.le, self.le is not None and v <= self.le), (self.lt, self.lt is not None and v < self.lt)))


def _num(v: float | None) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _decays() -> tuple[str, ...]:
    from .schedule import DECAYS

    return tuple(DECAYS)


def _lr_schedules() -> tuple[str, ...]:
    from .training.lr import LR_SCHEDULES

    return LR_SCHEDULES


SEED_MAX = 2**32 - 1
#: ranges and allowed values of the fixed groups and the top level (types are the schemas'); null always passes
RULES: dict[str, Rule] = {
    "seed": Rule(ge=0, le=SEED_MAX),
    "schedule.target_sparsity": Rule(ge=0.0, lt=1.0),
    "schedule.initial_sparsity": Rule(ge=0.0, lt=1.0),
    "schedule.start": Rule(ge=0.0, lt=1.0),
    "schedule.end": Rule(ge=0.0, lt=1.0),
    "schedule.start_step": Rule(ge=0),
    "schedule.end_step": Rule(ge=0),
    "schedule.pruning_frequency": Rule(ge=1),
    "schedule.sparsity_decay_type": Rule(choices=_decays),
    "pattern.scope": Rule(choices=("global", "local")),
    "pattern.block_reduce": Rule(choices=("mean", "sum", "max")),
    "pattern.min_sparsity_ratio_per_op": Rule(ge=0.0, lt=1.0),
    "pattern.max_sparsity_ratio_per_op": Rule(gt=0.0, le=1.0),
    "trainer.max_steps": Rule(ge=1),
    "trainer.epochs": Rule(ge=1),
    "trainer.batch_size": Rule(ge=1),
    "trainer.eval_batch_size": Rule(ge=1),
    "trainer.eval_every": Rule(ge=0),
    "trainer.log_every": Rule(ge=1),
    "trainer.finetune_steps": Rule(ge=0),
    "trainer.lr_schedule": Rule(choices=_lr_schedules),
    "trainer.warmup_steps": Rule(ge=0),
    "trainer.lr_step_size": Rule(ge=1),
    "trainer.lr_gamma": Rule(gt=0.0),
    "trainer.lr_min_factor": Rule(ge=0.0, le=1.0),
    "trainer.grad_clip": Rule(gt=0.0),
    "trainer.checkpoint_every": Rule(ge=0),
    "trainer.progress": Rule(choices=("auto", "bar", "lines", "none")),
    "trainer.num_threads": Rule(ge=1),
    "tracking.log_scores_every": Rule(ge=0),
    "tracking.histogram_bins": Rule(ge=1),
    "tracking.histogram_scale": Rule(choices=("log10", "linear")),
    "logger.backend": Rule(choices=("wandb", "none")),
}


def _kind(schema: type, key: str) -> str:
    return type_text(typing.get_type_hints(schema).get(key, Any)).removesuffix(" or null")


def check_rules(cfg: Mapping[str, Any]) -> None:
    """Every :data:`RULES` entry (a list's items are checked one by one)."""
    for dotted, rule in RULES.items():
        group, _, key = dotted.rpartition(".")
        node = cfg.get(group) if group else cfg
        if node is None or key not in node:
            continue
        value = node[key]
        schema = FIXED_GROUPS.get(group, PrunelabSchema)
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if v is not None and not rule.ok(v):
                raise ConfigError(dotted, v, rule.allowed(_kind(schema, key)))


def check_keys(cfg: Mapping[str, Any]) -> None:
    """No key outside the schemas: Hydra lets keys added with ``+`` (or ``++``) through; they are errors here."""
    top = [f.name for f in dataclasses.fields(PrunelabSchema)]
    for key in cfg:
        if key not in top and key != "hydra":
            raise ConfigError(str(key), cfg[key], f"a top-level key: {', '.join(top)}")
    for group, schema in FIXED_GROUPS.items():
        names = [f.name for f in dataclasses.fields(schema)]
        for key in cfg.get(group) or {}:
            if key not in names:
                raise ConfigError(f"{group}.{key}", cfg[group][key], f"a key of {group}: {', '.join(names)}")


# ----------------------------------------------------------------------------------------------- registered
def check_registered(cfg: Mapping[str, Any]) -> None:
    """The pluggable groups against what is registered: the names, and every key against the entry's options."""
    from . import data as data_mod
    from . import models as models_mod
    from .criteria import CRITERIA
    from .criteria.base import parse_options
    from .sparsity.distribution import DISTRIBUTIONS

    crit = cfg.get("criterion") or {}
    parse_options(CRITERIA.get(str(crit.get("criterion_type"))), crit)
    check_criterion_values(crit)
    for registry, group in ((models_mod.MODELS, "model"), (data_mod.DATASETS, "dataset")):
        node = cfg.get(group) or {}
        name = str(node.get("name"))
        registry.get(name)
        registry.parse(name, node)
    dist = cfg.get("distribution")
    if isinstance(dist, Mapping):
        name = str(dist.get("name", "global"))
        DISTRIBUTIONS.get(name)
        DISTRIBUTIONS.parse(name, dist, ignore=("name",))


def check_criterion_values(crit: Mapping[str, Any]) -> None:
    """A criterion's own value checks (``criterion.rounds=0``, ``criterion.alpha=-1``), which its constructor makes,
    run on a stand-in layer before the data is loaded: a bad value is refused at once, not after seconds of
    loading. Only the one-line refusal counts; anything else the stand-in cannot take is left to the real run."""
    from torch import nn

    from .criteria import CRITERIA

    cls = CRITERIA.get(str(crit.get("criterion_type")))
    try:
        cls({"probe": nn.Linear(4, 4)}, {k: v for k, v in crit.items() if k not in ("ablation", "label")})
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - e.g. a criterion that needs a model or data: checked when the run builds it
        pass


def check_op_types(op_types: Any) -> None:
    """``prune.op_types``: names of torch.nn layer classes."""
    from torch import nn

    for name in op_types or []:
        cls = getattr(nn, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ConfigError("prune.op_types", name, "names of torch.nn layer classes, e.g. Linear, Conv2d")


def optimizer_class(opt: Mapping[str, Any]) -> type:
    """The ``torch.optim`` class ``optimizer._target_`` names."""
    import torch

    target = str(opt.get("_target_", ""))
    cls = None
    if target.startswith("torch.optim."):
        obj: Any = torch
        for part in target.split(".")[1:]:
            obj = getattr(obj, part, None)
        cls = obj
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError("optimizer._target_", opt.get("_target_"), "a torch.optim optimizer class, e.g. "
                          "torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW")
    return cls


def check_optimizer(opt: Mapping[str, Any]) -> None:
    """``optimizer``: a torch.optim class; every key one of its parameters, of the type of its default; values
    the class accepts (constructed on an empty parameter list, so torch's own checks run before any file is
    written)."""
    cls = optimizer_class(opt)
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n not in ("self", "params")}
    for key, value in opt.items():
        if key in ("_target_", "_partial_"):
            continue
        if key not in params:
            raise ConfigError(f"optimizer.{key}", value, f"a parameter of {cls.__name__}: {', '.join(params)}")
        want = _kind_of_default(params[key].default)
        if want is not None and not _is_kind(value, want):
            raise ConfigError(f"optimizer.{key}", value, f"{type_text(want)} ({cls.__name__}'s {key})")
    if opt.get("_partial_") is not True:
        raise ConfigError("optimizer._partial_", opt.get("_partial_"), "true (the trainer passes the parameters)")
    lr = opt.get("lr")
    if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0):
        raise ConfigError("optimizer.lr", lr, "a number > 0")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in opt.items() if not k.startswith("_")}
    try:
        # torch.optim checks every hyper-parameter in __init__ before it looks at the parameters: an empty list
        # runs those checks and stops there, before add_param_group, whose first call imports torch._dynamo
        # (~2.5 s of CPU a refused command need not pay)
        cls([], **kwargs)
    except ValueError as exc:
        if str(exc) != "optimizer got an empty parameter list":
            _optimizer_error(cls, kwargs, exc)
    except (TypeError, RuntimeError) as exc:
        _optimizer_error(cls, kwargs, exc)


def _optimizer_error(cls: type, kwargs: Mapping[str, Any], exc: Exception) -> None:
    """The one-line error for a value ``cls`` refused, naming the key its message names."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    low = msg.lower()
    key = next((k for k in kwargs if k.replace("_", " ") in low or k in low or k.rstrip("s") in low), None)
    if key is None and "nesterov" in low:
        key = "nesterov"
    shown = f"optimizer.{key}" if key else "optimizer"
    raise ConfigError(shown, kwargs.get(key) if key else cls.__name__, f"a value {cls.__name__} accepts ({msg})") \
        from None


def _kind_of_default(default: Any) -> Any:
    if default is inspect.Parameter.empty or default is None:
        return None
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float
    if isinstance(default, tuple):
        return list[float]
    if isinstance(default, str):
        return str
    return None


def _is_kind(value: Any, want: Any) -> bool:
    if value is None:
        return True
    if want is bool:
        return isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if want is str:
        return isinstance(value, str)
    if typing.get_origin(want) is list:
        return isinstance(value, (list, tuple)) and all(_is_kind(v, float) for v in value)
    return True


# ----------------------------------------------------------------------------------------------- validate
def training_steps(cfg: Mapping[str, Any]) -> int | None:
    """The training length in steps where the config alone says it (``trainer.max_steps``), else None
    (``trainer.epochs`` needs the data's size; ``trainer.finetune_steps`` the schedule's end)."""
    tr = cfg.get("trainer") or {}
    if tr.get("finetune_steps") is None and tr.get("max_steps") is not None:
        return int(tr["max_steps"])
    return None


def check_overrides(cfg: DictConfig | Mapping[str, Any], overrides: Sequence[str]) -> None:
    """What the composed config alone cannot show, checked against the overrides as typed: ``pattern.scope=local``
    (the wave-1 alias of ``distribution=uniform``) with ``distribution=global`` asked for explicitly. Global is
    also the default, which the scope alias replaces, so the composed config reads the same as with the default
    and the run would prune uniformly while its config said global."""
    scope = (cfg.get("pattern") or {}).get("scope")
    if scope != "local":
        return
    for override in overrides:
        key, _, value = str(override).lstrip("+~").partition("=")
        if key in ("distribution", "distribution.name") and value.strip("'\"") == "global":
            raise ConfigError("pattern.scope", scope, f"null with {override} (scope=local is the wave-1 alias of "
                              "distribution=uniform)")


def validate(cfg: DictConfig | Mapping[str, Any], trains: bool = True) -> None:
    """Every check the config alone allows, before any data, model or file (each error: one line). ``trains``:
    False for a command that uses the config without training it (``prunelab collapse``: no batch to fill)."""
    if isinstance(cfg, DictConfig) and isinstance(cfg.get("dataset"), DictConfig):
        for key in ("input_shape", "num_classes"):  # models are built from them, before the data
            if OmegaConf.is_missing(cfg.dataset, key):
                raise ConfigError(f"dataset.{key}", None, f"a value for dataset {cfg.dataset.get('name')}, which "
                                  f"leaves it to you (models are built before the data): dataset.{key}=...")
    plain = task_config(cfg) if isinstance(cfg, DictConfig) else config_to_dict(cfg)
    check_keys(plain)
    check_rules(plain)  # the checks up to here import no torch: a typo is answered at once
    from .criteria import CRITERIA
    from .criteria.ablations import check_ablation
    from .pruner import build_pattern, check_compatible
    from .regrowth import check_regrowth
    from .schedule import Schedule
    from .sparsity.distribution import resolve_distribution
    from .tracking.build import check_logger_config
    from .training.trainer import resolve_device

    check_registered(plain)
    tr = plain["trainer"]
    limit, batch = (plain.get("dataset") or {}).get("limit"), tr.get("batch_size")
    if trains and isinstance(limit, int) and isinstance(batch, int) and 0 < limit < batch:  # the run checks it on the data too;
        # here a sweep's pre-check sees it before any job runs
        raise ConfigError("trainer.batch_size", batch, f"a global batch of at most the {limit} training samples "
                          "(dataset.limit; a larger one is the whole split every step)")
    if tr.get("max_steps") is None and tr.get("epochs") is None and tr.get("finetune_steps") is None:
        raise ConfigError("trainer.max_steps", None, "a number of steps >= 1 (or set trainer.epochs)")
    sched = plain["schedule"]
    if sched.get("start_step") is None and sched.get("end_step") is None and None not in (sched.get("start"),
                                                                                           sched.get("end")):
        if sched["start"] > sched["end"]:
            raise ConfigError("schedule.start", sched["start"], f"<= schedule.end ({sched['end']})")
    total = training_steps(plain)
    # with trainer.epochs the length needs the data: fractions are placed on a provisional length here, and the
    # app checks the schedule again once the data are loaded
    provisional = total if total is not None or tr.get("finetune_steps") is not None else 1_000_000
    schedule = Schedule.from_config(plain["schedule"], total_steps=provisional)
    pattern = build_pattern(plain["pattern"])
    distribution = resolve_distribution(plain.get("distribution"), pattern.scope)
    check_compatible(CRITERIA.get(str(plain["criterion"]["criterion_type"])), pattern, schedule, distribution)
    check_regrowth(plain.get("regrowth"), pattern, schedule, total, distribution)
    check_ablation(str(plain["criterion"].get("ablation") or "none"), len(schedule.steps))
    label = plain["criterion"].get("label")
    if label is not None and (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", str(label)) or label == "dense"):
        raise ConfigError("criterion.label", label, "a name of up to 64 letters, digits, '_', '.' or '-' that starts "
                          "with a letter or digit, other than 'dense' (it names the run and its directory)")
    if total is not None and schedule.end_step >= total:
        # a window set in steps (here or by a preset such as criterion=gmp) takes precedence over fractions
        raise ConfigError("schedule.end_step", schedule.end_step, f"a step below the training length of {total} "
                          "(trainer.max_steps); or the window as fractions of training, e.g. schedule.start_step=null "
                          "schedule.end_step=null schedule.start=0.1 schedule.end=0.6")
    check_op_types(plain["prune"].get("op_types"))
    from .training.accel import check_levers
    from .training.batches import check_loader

    tc = TrainerConfig.from_config(tr)
    check_levers(tc, resolve_device(str(tr.get("device", "auto"))))
    check_loader(tc)
    from .rundir import resume_mode

    if resume_mode(tr.get("resume")) == "path" and not os.path.exists(str(tr["resume"])):
        raise ConfigError("trainer.resume", tr["resume"], "true, false, auto, or an existing checkpoint file or run "
                          "directory")
    check_optimizer(plain.get("optimizer") or {})
    if tc.fused_step:
        from .training.fused_step import unsupported

        opt = plain.get("optimizer") or {}
        if (why := unsupported(optimizer_class(opt), opt)) is not None:
            raise ConfigError("trainer.fused_step", True, f"false with optimizer {why}")
    check_logger_config(plain)


# ----------------------------------------------------------------------------------------------- errors
def as_config_error(exc: BaseException) -> ConfigError | None:
    """The one-line error for an exception Hydra or OmegaConf raised while composing the config, or None when it
    is not a config error (a bug: its traceback is shown)."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, ConfigError):
        return exc
    if isinstance(exc, MissingConfigException):
        return _missing_option(exc)
    if isinstance(exc, OverrideParseException):
        first = str(exc).splitlines()[0] if str(exc) else "cannot be parsed"
        return ConfigError("override", _unparsable_override() or "?", f"key=value in Hydra's override grammar ({first})")
    cause = exc.__cause__ if isinstance(exc, ConfigCompositionException) else exc
    if isinstance(cause, OmegaConfBaseException):
        return _omegaconf_error(cause, str(exc))
    if isinstance(exc, ConfigCompositionException):
        present = re.search(r"An item is already at '([^']+)'", str(exc))
        if present:  # +key=value where the chosen options already set the key
            key = present.group(1)
            value = _command_line_value(f"+{key}")
            return ConfigError(key, value if value is not None else "?", f"a key the config already has: set it "
                               f"without '+' ({key}=...), or with '++' to set it whether or not a job's config has it")
        ambiguous = re.match(r"Ambiguous value for argument '([^=']+)=([^']*)'", str(exc))
        if ambiguous:  # key=a,b without -m
            key, value = ambiguous.groups()
            listed = f"; a list is written {key}=[{value}]" if "." in key else ""  # a group takes one option
            return ConfigError(key, value, f"one value in a single run: to sweep over {value} add -m (prunelab -m "
                               f"{key}={value} ...){listed}")
        text = str(exc).splitlines()[0] if str(exc) else "cannot be composed"
        return ConfigError("config", _override_of(exc) or "?", text)
    return None


def _command_line_value(key: str) -> str | None:
    """The value the command line gives ``key`` (``+criterion.label=foo`` -> ``foo``), or None."""
    import sys

    return next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith(f"{key}=")), None)


def _unparsable_override() -> str | None:
    """The first command-line override Hydra's grammar rejects."""
    import sys

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in sys.argv[1:]:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            parser.parse_overrides([arg])
        except OverrideParseException:
            return arg
    return None


def _override_of(exc: BaseException) -> str | None:
    m = re.search(r"override '?([^'\s]+=[^'\s]*)", str(exc))
    return m.group(1) if m else None


def _missing_option(exc: Any) -> ConfigError:
    missing = str(getattr(exc, "missing_cfg_file", "") or "")
    group, _, name = missing.rpartition("/")
    options = getattr(exc, "options", None)
    if options is None:
        m = re.search(r"Could not find '([^']+)'", str(exc))
        group, _, name = (m.group(1) if m else missing).rpartition("/")
        options = _group_options(group)
    allowed = f"one of {', '.join(sorted(options))}" if options else "an existing config"
    return ConfigError(group or "config", name, allowed)


def _group_options(group: str) -> list[str]:
    from pathlib import Path

    from . import conf

    folder = Path(conf.__file__).parent / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _declared_options(group: str, name: str) -> list[str]:
    """The option names that ``group`` entry ``name`` declares (its registered ``Options``), or none."""
    from .criteria.base import COMMON_KEYS
    from .listing import registries

    registry = next((reg for reg, grp in registries().values() if grp == group), None)
    options = registry.options(name) if registry is not None and name in registry else None
    common = [k for k in COMMON_KEYS if k != "criterion_type"] if group == "criterion" else []
    return [f.name for f in dataclasses.fields(options)] + common if options is not None else common


def _omegaconf_error(err: Any, context: str) -> ConfigError:
    key = str(getattr(err, "full_key", "") or "")
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    value: Any = "?"
    m = re.search(r"Value '([^']*)'", msg) or re.search(r"override [^=]+=(\S+)", context)
    if m:
        value = m.group(1)
    group, _, leaf = key.rpartition(".")
    schema = FIXED_GROUPS.get(group) if group else PrunelabSchema
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ConfigTypeError

    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and ("not in" in msg or "not in struct" in msg):
        o = _override_of(context)
        value = o.split("=", 1)[1] if o else value
        names = [f.name for f in dataclasses.fields(schema)] if schema else []
        if names:
            return ConfigError(key, value, f"{'a key of ' + group if group else 'a top-level key'}: {', '.join(names)}"
                               f"{did_you_mean(leaf, names)}")
        node = getattr(err, "parent_node", None)  # the chosen option's node: its keys are the allowed ones
        chosen = [str(k) for k in node.keys()] if hasattr(node, "keys") else []
        named = next((k for k in ("name", "criterion_type") if k in chosen), None)  # what the option is called
        name = f" ({node.get(named)})" if named else ""
        declared = _declared_options(group, str(node.get(named))) if named else []
        if leaf in declared:  # an option the option's file leaves out
            return ConfigError(key, value, f"an option of {group} {node.get(named)} that conf/{group}/"
                               f"{node.get(named)}.yaml does not set: add it with +{key}={value}")
        chosen += [d for d in declared if d not in chosen]
        if chosen:
            return ConfigError(key, value, f"a key of the chosen {group or 'config'}{name}: {', '.join(chosen)}"
                               f"{did_you_mean(leaf, chosen)}")
        return ConfigError(key, value, f"a key the chosen {group or 'config'} has (prunelab --cfg job lists them)")
    if isinstance(err, ConfigTypeError) and "deletion" in msg:
        return ConfigError(f"~{key}", "", "a key that may be removed (this one is part of the schema; set it to "
                           "another value instead)")
    if schema is not None and leaf in {f.name for f in dataclasses.fields(schema)}:
        kind = type_text(typing.get_type_hints(schema)[leaf])
        rule = RULES.get(key)
        return ConfigError(key, value, rule.allowed(kind.removesuffix(" or null")) if rule and rule.choices is None
                           else kind)
    return ConfigError(key or "config", value, msg)


def did_you_mean(word: str, names: Sequence[str]) -> str:
    """`` (did you mean alpha?)`` for the closest of ``names`` to a mistyped ``word``, or ""."""
    import difflib

    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


# ----------------------------------------------------------------------------------------------- resolvers
RUN_ID_ENV = "PRUNELAB_RUN_ID"
_PROCESS_RUN_ID: list[str] = []


def new_run_id() -> str:
    """A name part no two runs share: the local time to the second and 6 random hex digits."""
    return time.strftime("%Y-%m-%d_%H-%M-%S") + "_" + secrets.token_hex(3)


def run_id() -> str:
    """``${prunelab.run_id:}``: this invocation's id (the CLI sets it once in ``$PRUNELAB_RUN_ID``, which the
    processes of a sweep inherit, so they agree on the sweep directory); one per process otherwise."""
    if os.environ.get(RUN_ID_ENV):
        return os.environ[RUN_ID_ENV]
    if not _PROCESS_RUN_ID:
        _PROCESS_RUN_ID.append(new_run_id())
    return _PROCESS_RUN_ID[0]


def fingerprint_resolver(*, _root_: DictConfig) -> str:
    """``${prunelab.fingerprint:}``: the first 8 hex digits of the job's config fingerprint (job directories
    of a sweep are named by what they compute, so a re-run sweep finds each job's directory whatever the order)."""
    from .rundir import config_fingerprint

    return config_fingerprint(task_config(_root_), int(os.environ.get("WORLD_SIZE", "1")))[:8]


def run_name_resolver(*, _root_: DictConfig) -> str:
    """``${prunelab.run_name:}``: the run's name (:func:`prunelab.naming.run_name`: criterion or updater, ablation,
    target, seed; ``dense-seed<seed>``), which names run and job directories as it names the W&B run."""
    from .naming import dir_name

    return dir_name(_root_)


def task_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without the ``hydra`` node, as plain containers."""
    keys = [k for k in cfg if k != "hydra"]
    return typing.cast(dict, OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True))


register_schemas()
# conf/hydra/launcher/{basic,joblib,submitit_local}.yaml replace the launchers' own configs of those names (with
# prunelab's launcher classes); Hydra then merges each with its namesake schema and warns that it does. It is
# what is intended, and the files are complete without the merge.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema",
                        category=UserWarning)
