"""prunelab's Hydra sweeper plugin (Hydra discovers plugins only in the ``hydra_plugins`` namespace)."""
