"""prunelab's Hydra launchers (Hydra takes plugins only from the ``hydra_plugins`` namespace). The classes are
thin: their work is in :mod:`prunelab.sweep`, imported only when a sweep launches (Hydra imports every module
under ``hydra_plugins`` whenever a Hydra app starts)."""
