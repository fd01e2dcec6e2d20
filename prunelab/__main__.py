"""``python -m prunelab`` / ``prunelab``: the Hydra app that runs one experiment (or a sweep with ``-m``)."""
from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from .errors import ConfigError


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from .app import report_error, run

    try:
        summary = run(cfg, HydraConfig.get().runtime.output_dir)
    except ConfigError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        report_error(exc)
        sys.exit(2)
    return float(summary["test/acc"])


def cli() -> None:
    """Console-script entry point."""
    main()


if __name__ == "__main__":
    cli()
