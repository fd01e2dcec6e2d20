"""``prunelab dashboard``: a comparison's W&B workspace and report, built as code with W&B's ``wandb-workspaces``
(the ``dashboards`` extra). :mod:`.runs` reads what the runs logged (W&B's reader, or W&B's API for a group),
:mod:`.comparison` holds the facts the panels are built from, :mod:`.panels` the sections, :mod:`.spec` the
workspace, the report and their JSON specs, :mod:`.cli` the command. Only :mod:`.cli` is imported here: the rest
needs ``wandb-workspaces``."""
from .cli import main

__all__ = ["main"]
