"""``prunelab collapse [--criteria a,b] [--seeds 0,1,2] [--tol 0.01] [--out DIR] [OVERRIDES...]``: layer collapse at
initialization, without training.

For every criterion that can prune at initialization, the largest compression (``1 / (1 - s)`` of the pruned
layers' weights) at which pruning at init (``schedule=at_init``) leaves no pruned layer empty: Tanaka et al.
2020's "maximal critical compression" ("Pruning neural networks without any data by iteratively conserving
synaptic flow", Sec. 3 and Fig. 1). Found by bisection on log compression between 1 and ``N / L`` (N weights in
L pruned layers: one weight per layer is the most any criterion can compress without emptying a layer), each
evaluation a fresh copy of the same initial model pruned at init (SynFlow in its rounds), assuming collapse is
monotone in compression. Writes ``collapse.md``, ``collapse.csv`` and ``collapse.png`` under ``--out``.

OVERRIDES are the app's Hydra overrides (``model=resnet20 dataset=cifar10 pattern=4x1 ...``); a ``criterion.KEY=V``
override applies to the criteria that have KEY (``criterion.rounds=20``: SynFlow). The per-layer bound
``pattern.max_sparsity_ratio_per_op`` is set to 1.0 unless given (its default 0.98 would forbid collapse).
"""
from __future__ import annotations

import argparse
import copy
import csv
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError

AT_INIT = ["schedule=at_init", "pattern.max_sparsity_ratio_per_op=1.0"]


@dataclass
class Result:
    """One criterion and seed: the largest compression evaluated without an empty layer (``lo``), the smallest
    with one (``hi``, None if even ``N / L`` empties none), the layers emptied at ``hi``, every evaluation."""

    criterion: str
    seed: int
    lo: float
    hi: float | None
    emptied: list[str]
    evaluations: list[tuple[float, bool]] = field(default_factory=list)


def critical_compression(empty_layers: Callable[[float], list[str]], upper: float, tol: float
                         ) -> tuple[float, float | None, list[str], list[tuple[float, bool]]]:
    """Bisection on log compression in ``[1, upper]`` for the largest compression at which ``empty_layers`` is
    empty, to ``hi / lo <= 1 + tol``: ``(lo, hi, layers emptied at hi, [(compression, collapsed), ...])``."""
    evals: list[tuple[float, bool]] = []

    def collapsed(c: float) -> list[str]:
        emptied = empty_layers(c)
        evals.append((c, bool(emptied)))
        return emptied

    at_hi = collapsed(upper)
    if not at_hi:
        return upper, None, [], evals
    lo, hi = 1.0, upper
    while hi / lo > 1 + tol:
        mid = math.sqrt(lo * hi)
        emptied = collapsed(mid)
        if emptied:
            hi, at_hi = mid, emptied
        else:
            lo = mid
    return lo, hi, at_hi, evals


class InitPruning:
    """One composed config: prunes fresh copies of one initial model at init to a given compression."""

    def __init__(self, cfg: DictConfig) -> None:
        from . import data as data_mod
        from . import models
        from .app import validate
        from .training.checkpoint import seed_everything
        from .training.trainer import resolve_device

        validate(cfg, trains=False)
        self.cfg = cfg
        self.device = resolve_device(str(cfg.trainer.device))
        seed_everything(int(cfg.seed))
        self.model = models.build(cfg.model).to(self.device)
        self.head = models.head_name(self.model, cfg.model)
        self.initializer = lambda: models.build(cfg.model)
        data = data_mod.build(cfg.dataset)
        self.train, self.labels = data.train, data.train_labels()
        self.sizes = {n: m.numel() for n, m in self._pruner(0.0).masks.items()}

    def _pruner(self, sparsity: float) -> Any:
        from .pruner import Pruner
        from .training.calibration import split_calibration

        cfg = copy.deepcopy(self.cfg)
        OmegaConf.update(cfg, "schedule.target_sparsity", float(sparsity), force_add=True)
        model = copy.deepcopy(self.model)
        pruner = Pruner.from_config(model, cfg, head=self.head, initializer=self.initializer)
        bs, seed = int(cfg.trainer.batch_size), int(cfg.seed)
        pruner.bind(model=model, calibration=lambda req: [
            (x.to(self.device), y.to(self.device)) for x, y in split_calibration(self.train, self.labels, req, bs, seed)])
        return pruner

    @property
    def upper(self) -> float:
        """``N / L``: the compression at which every pruned layer keeps exactly one weight."""
        return sum(self.sizes.values()) / len(self.sizes)

    def empty_layers(self, compression: float) -> list[str]:
        """The pruned layers left without a weight by pruning at init to ``compression``."""
        pruner = self._pruner(1.0 - 1.0 / compression)
        pruner.on_train_begin()
        pruner.on_step_begin(0)
        return [n for n, m in pruner.masks.items() if not bool(m.any())]


def compose(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("prunelab.conf", version_base=None):
        return hydra_compose("config", overrides=list(overrides))


def criterion_configs(criteria: Sequence[str], overrides: Sequence[str]) -> dict[str, DictConfig]:
    """One composed config per criterion: at init, per-op bound 1.0 (unless overridden), the user's overrides;
    ``criterion.KEY=V`` only where the criterion has KEY (an override no criterion takes is an error)."""
    scoped = [o for o in overrides if o.split("=", 1)[0].lstrip("+~").startswith("criterion.")]
    common = [o for o in overrides if o not in scoped]
    out, used = {}, set()
    for name in criteria:
        keys = set(compose([f"criterion={name}"]).criterion)
        mine = [o for o in scoped if o.split("=", 1)[0].lstrip("+~").split(".", 1)[1] in keys]
        used.update(mine)
        out[name] = compose([*AT_INIT, f"criterion={name}", *common, *mine])
    for o in scoped:
        if o not in used:
            raise ConfigError(o.split("=", 1)[0], o.split("=", 1)[-1], f"a key of one of the criteria {list(criteria)}")
    return out


def at_init_criteria() -> list[str]:
    """Every registered criterion that can prune at step 0 (not those that need training gradients first)."""
    from .criteria import CRITERIA

    return [n for n in CRITERIA.names() if not CRITERIA.get(n).needs_gradients]


# ------------------------------------------------------------------------------------------------- output
def _fmt(c: float) -> str:
    return f"{c:,.0f}" if c >= 100 else f"{c:.3g}"


def table_rows(results: Sequence[Result], upper: float) -> list[list[str]]:
    """Per criterion: median over seeds of the largest compression without collapse, its range, the sparsity,
    where it collapses and which layer empties first."""
    rows = []
    for name in dict.fromkeys(r.criterion for r in results):
        mine = [r for r in results if r.criterion == name]
        los = [r.lo for r in mine]
        med = statistics.median(los)
        spread = f"{_fmt(min(los))}-{_fmt(max(los))}" if len(los) > 1 else _fmt(los[0])
        his = [r.hi for r in mine if r.hi is not None]
        emptied = sorted({n for r in mine for n in r.emptied})
        rows.append([name, _fmt(med), spread, f"{1 - 1 / med:.5f}", f"{med / upper:.3f}",
                     _fmt(min(his)) if his else f">= {_fmt(upper)} (none)", ", ".join(emptied) or "-",
                     str(len(mine))])
    return rows


HEADER = ["criterion", "max compression (median)", "over seeds", "sparsity", "fraction of N / L",
          "collapse seen at (lowest)", "layers emptied", "seeds"]


def write_markdown(path: Path, results: Sequence[Result], upper: float, title: str, tol: float) -> None:
    rows = table_rows(results, upper)
    lines = [f"# Layer collapse at initialization: {title}", "",
             "Maximal critical compression (Tanaka et al. 2020): the largest compression, 1 / (1 - sparsity) of the "
             "pruned layers' weights, at which pruning at initialization leaves no pruned layer empty; bisection on "
             f"log compression to a relative tolerance of {tol:g}, per seed; 'collapse seen at' is the lowest "
             "compression at which a seed emptied a layer. "
             f"Keeping one weight per layer, the most any criterion can reach is N / L = {_fmt(upper)}.", "",
             "| " + " | ".join(HEADER) + " |", "| " + " | ".join("---" for _ in HEADER) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n")


def write_csv(path: Path, results: Sequence[Result], upper: float) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["criterion", "seed", "max_compression", "sparsity", "collapse_at", "emptied", "upper_n_over_l",
                    "evaluations"])
        for r in results:
            w.writerow([r.criterion, r.seed, r.lo, 1 - 1 / r.lo, r.hi if r.hi is not None else "",
                        ";".join(r.emptied), upper, len(r.evaluations)])


def plot(path: Path, results: Sequence[Result], upper: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.criterion for r in results))
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(names) + 1.6))
    for i, name in enumerate(names):
        los = [r.lo for r in results if r.criterion == name]
        med = statistics.median(los)
        ax.barh(i, med, color="tab:blue", alpha=0.75)
        ax.errorbar(med, i, xerr=[[med - min(los)], [max(los) - med]], color="black", capsize=3, fmt="none")
        ax.text(max(los) * 1.1, i, _fmt(med), va="center", fontsize=8)
    ax.axvline(upper, color="tab:red", linestyle="--", label=f"one weight per layer (N / L = {_fmt(upper)})")
    ax.set_xscale("log")
    ax.set_xlim(1, upper * 3)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("largest compression without an emptied layer (log)")
    ax.set_title(f"Layer collapse at initialization: {title}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="prunelab collapse",
        description="Layer collapse at initialization, without training: for every criterion that prunes at init, "
                    "the largest compression at which no pruned layer is emptied (Tanaka et al. 2020's maximal "
                    "critical compression), by bisection; writes collapse.md, collapse.csv and collapse.png.",
        epilog="OVERRIDES: the app's Hydra overrides, e.g. model=resnet20 dataset=cifar10; criterion.KEY=V applies "
               "to the criteria that have KEY (criterion.rounds=20: synflow).")
    parser.add_argument("--criteria", help="comma-separated (default: every criterion that prunes at init)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's seed)")
    parser.add_argument("--tol", type=float, default=0.01, help="relative bracket of the bisection (default 0.01)")
    parser.add_argument("--out", default="collapse", help="output folder (default ./collapse)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the app's config")
    return parser.parse_intermixed_args(list(argv))


def run(criteria: Sequence[str], seeds: Sequence[int] | None, overrides: Sequence[str], tol: float,
        log: Callable[[str], None] = print) -> tuple[list[Result], float, DictConfig]:
    """Every criterion x seed: its bisection. Returns the results, ``N / L`` and the first composed config."""
    if not (math.isfinite(tol) and tol > 0):
        raise ConfigError("--tol", tol, "a number > 0")
    configs = criterion_configs(criteria, overrides)
    results, upper, first = [], math.nan, next(iter(configs.values()))
    for name, cfg in configs.items():
        for seed in seeds if seeds is not None else [int(cfg.seed)]:
            cfg_s = copy.deepcopy(cfg)
            cfg_s.seed = int(seed)
            job = InitPruning(cfg_s)
            upper = job.upper
            lo, hi, emptied, evals = critical_compression(job.empty_layers, upper, tol)
            results.append(Result(name, int(seed), lo, hi, emptied, evals))
            log(f"[prunelab collapse] {name} seed {seed}: no empty layer up to {_fmt(lo)}x"
                + (f", {', '.join(emptied)} empty at {_fmt(hi)}x" if hi else " (the bound N / L)")
                + f" ({len(evals)} evaluations)")
    return results, upper, first


def parse_list(key: str, text: str | None, kind: Callable[[str], Any]) -> list[Any] | None:
    if not text:
        return None
    try:
        return [kind(v) for v in text.split(",") if v]
    except ValueError:
        raise ConfigError(key, text, f"a comma-separated list of {kind.__name__} values") from None


def main(argv: Sequence[str] | None = None) -> int:
    from hydra.errors import HydraException

    from .criteria import CRITERIA

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        criteria = parse_list("--criteria", args.criteria, str) or at_init_criteria()
        for name in criteria:
            CRITERIA.get(name)
        seeds = parse_list("--seeds", args.seeds, int)
        results, upper, cfg = run(criteria, seeds, args.overrides, args.tol)
    except (ConfigError, HydraException) as exc:
        print(f"prunelab: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr, flush=True)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{cfg.model.name} on {cfg.dataset.name}, pattern {cfg.pattern.type}, distribution {cfg.distribution.name}"
    write_markdown(out / "collapse.md", results, upper, title, args.tol)
    write_csv(out / "collapse.csv", results, upper)
    plot(out / "collapse.png", results, upper, title)
    print((out / "collapse.md").read_text(), flush=True)
    return 0
