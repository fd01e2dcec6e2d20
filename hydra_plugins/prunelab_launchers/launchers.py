"""``hydra/launcher=basic|joblib|submitit_local|slurm`` as prunelab configures them (``conf/hydra/launcher/``):
Hydra's and the plugins' launchers, whose ``launch`` goes through :mod:`prunelab.sweep` (the sweep is checked
before any job runs; joblib jobs run in processes of their own; submitit jobs are collected whatever happened
to the others). A launcher whose plugin is not installed is not defined."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher

LAUNCHERS: list[type] = []


class CheckedBasicLauncher(BasicLauncher):
    """Hydra's basic launcher (jobs one after the other, in this process), the sweep checked first."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from prunelab.sweep import launch_basic

        return launch_basic(self, job_overrides, initial_job_idx)


LAUNCHERS.append(CheckedBasicLauncher)

try:
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
except ImportError:  # the launchers extra is not installed
    pass
else:
    class ProcessJoblibLauncher(JoblibLauncher):
        """The joblib launcher's ``n_jobs``, each job in a process of its own."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            from prunelab.sweep import launch_joblib

            return launch_joblib(self, job_overrides, initial_job_idx)

    LAUNCHERS.append(ProcessJoblibLauncher)

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
except ImportError:
    pass
else:
    class CheckedLocalLauncher(LocalLauncher):
        """submitit's local launcher, every job collected."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            from prunelab.sweep import launch_submitit

            return launch_submitit(self, job_overrides, initial_job_idx)

    class CheckedSlurmLauncher(SlurmLauncher):
        """submitit's SLURM launcher, every job collected."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            from prunelab.sweep import launch_submitit

            return launch_submitit(self, job_overrides, initial_job_idx)

    LAUNCHERS += [CheckedLocalLauncher, CheckedSlurmLauncher]
