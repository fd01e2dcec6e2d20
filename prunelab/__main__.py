"""``python -m prunelab`` / ``prunelab``: the Hydra app that runs one experiment (or a sweep with ``-m``).

Errors a user can fix end the run with one line on stderr (``prunelab: error: key=value: allowed``) and a
non-zero exit, without a traceback (``HYDRA_FULL_ERROR=1`` shows it). In a multirun, a failing job is recorded
in its run directory and its W&B run, the other jobs go on, and the sweep ends by listing the failed jobs
(:class:`prunelab.sweep.FailedJobs`) with a non-zero exit.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from . import conf
from .errors import ConfigError

CONF_DIR = Path(conf.__file__).parent  # the config groups (conf/ in the repository, prunelab/conf in the wheel)

EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
#: ``prunelab <name> ...`` runs ``<module>.main(argv)``; anything else is the Hydra app
SUBCOMMANDS = {"report": ".report", "list": ".listing", "dashboard": ".tracking.dashboard", "collapse": ".collapse"}


def register_sweeper() -> None:
    """Register prunelab's sweeper with Hydra explicitly: Hydra finds plugins by listing the ``hydra_plugins``
    namespace, which an editable (PEP 660) install hides from it (hydra issue #3252); a regular install is
    found either way, and registering twice is a no-op. Hydra's scan runs first: it re-executes the modules it
    scans, and a class imported before it would subclass a stale ``BasicSweeper``."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    from hydra_plugins.prunelab_sweeper.dense_once import DenseOnceSweeper

    plugins.register(DenseOnceSweeper)


@hydra.main(version_base=None, config_path="pkg://prunelab.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .app import record_failure, report_error, run
    from .training.trainer import Interrupted, NonFiniteLoss

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    files = {"config.yaml": cfg, "hydra.yaml": hc, "overrides.yaml": hc.overrides.task}
    try:
        summary = run(cfg, hc.runtime.output_dir, hydra_files=files)
    except (ConfigError, NonFiniteLoss, Interrupted) as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        report_error(exc)
        if multirun:  # recorded; the sweep goes on and lists it at the end
            record_failure(cfg, hc.runtime.output_dir, exc)
            return None
        code = EXIT_CONFIG if isinstance(exc, ConfigError) else \
            EXIT_INTERRUPTED if isinstance(exc, Interrupted) else EXIT_FAILED
        sys.exit(code)
    except Exception as exc:
        if not multirun or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        import traceback

        traceback.print_exc()
        record_failure(cfg, hc.runtime.output_dir, exc)
        return None
    return float(summary["test/acc"])


def unknown_group_option(argv: list[str]) -> str | None:
    """The one-line error for an override that picks a config group option that does not exist, if any."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        folder = CONF_DIR / group
        if group.startswith("hydra") or not folder.is_dir() or "(" in value:  # hydra/*: plugins add options
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for choice in value.split(","):
            if choice and choice not in options:
                return str(ConfigError(group, choice, f"one of {', '.join(options)}"))
    return None


def cli() -> None:
    """Console-script entry point: ``prunelab report DIR...`` writes the comparison report, ``prunelab list``
    lists what is registered, ``prunelab dashboard`` builds a comparison's W&B workspace and report, ``prunelab
    collapse`` finds each criterion's layer collapse at initialization, anything else is the Hydra app."""
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[sys.argv[1]], __package__)
        sys.exit(module.main(sys.argv[2:]))
    register_sweeper()
    try:
        main()
    except SystemExit as exc:
        # Hydra printed its own message (e.g. the list of a group's options); end with our one line.
        if exc.code not in (0, None) and (msg := unknown_group_option(sys.argv[1:])):
            print(f"prunelab: error: {msg}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_CONFIG) from None
        raise


if __name__ == "__main__":
    cli()
