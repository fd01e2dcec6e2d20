"""Hydra config groups of prunelab (a package so Hydra can find it as `pkg://prunelab.conf`). Importing it stores
the schemas the configs are checked against (``prunelab_schema``, :mod:`prunelab.config`) in Hydra's ConfigStore."""
from prunelab import config as _config  # noqa: F401
