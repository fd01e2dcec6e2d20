"""``python -m prunelab`` / ``prunelab``: the Hydra app that runs one experiment (or a sweep with ``-m``).

Errors a user can fix end the run with one line on stderr (``prunelab: error: key=value: allowed``), no
traceback (``HYDRA_FULL_ERROR=1`` shows it) and nothing written: exit 2 for bad input (a config Hydra cannot
compose, a check of :mod:`prunelab.config`, a run directory that must not be used), 1 for a failed run (NaN
loss, a full disk), 128 + the signal for a run a signal stopped (130 Ctrl-C, 143 SIGTERM; its checkpoint written and
the command that resumes it printed). In a multirun, a failing job is recorded in its run directory
and its W&B run, the other jobs go on, and the sweep ends by listing the failed jobs
(:class:`prunelab.sweep.FailedJobs`) with a non-zero exit.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .errors import Abort, ConfigError, as_interruption, catch_interrupts, report_error, stopped

catch_interrupts()  # before the imports below: a Ctrl-C inside them is the one line of an interrupted start
try:
    import hydra
    from omegaconf import DictConfig

    from . import conf
    from . import config as _config  # noqa: F401 - registers the schemas and resolvers before Hydra composes
except KeyboardInterrupt as exc:
    stopped(exc, started=False)

CONF_DIR = Path(conf.__file__).parent  # the config groups (conf/ in the repository, prunelab/conf in the wheel)

EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
#: ``prunelab <name> ...`` runs ``<module>.main(argv)``; anything else is the Hydra app
SUBCOMMANDS = {"report": ".report", "list": ".listing", "dashboard": ".dashboard", "collapse": ".collapse"}
#: write errors that end a run with one line (the run is marked failed where that can still be written)
DISK_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EIO)


def register_plugins() -> None:
    """Register prunelab's launchers and sweeper with Hydra explicitly: Hydra finds plugins by listing the
    ``hydra_plugins`` namespace, which an editable (PEP 660) install hides from it (hydra issue #3252); a regular
    install is found either way, and registering twice is a no-op. Hydra's scan runs first: it re-executes the
    modules it scans, and a class imported before it would subclass a stale ``BasicSweeper``/``Launcher``."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    from hydra_plugins.prunelab_launchers.launchers import LAUNCHERS
    from hydra_plugins.prunelab_sweeper.dense_once import DenseOnceSweeper

    for cls in (*LAUNCHERS, DenseOnceSweeper):
        plugins.register(cls)


@hydra.main(version_base=None, config_path="pkg://prunelab.conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .app import record_failure, run
    from .sweep import JobFailed, JobStopped

    hc = HydraConfig.get()
    files = {"config.yaml": cfg, "hydra.yaml": hc, "overrides.yaml": hc.overrides.task}
    if hc.mode != RunMode.MULTIRUN:
        try:
            return float(run(cfg, hc.runtime.output_dir, hydra_files=files)["test/acc"])
        except Exception as exc:  # past Hydra's own report of a failed job: the CLI prints one line
            if isinstance(exc, _trainer_errors()[1:]):  # stopped: its message names the command that resumes it
                exc = exc.with_command(hc.overrides.task)
            raise Abort(exc) from exc
    try:  # a sweep's job: recorded, never raised, so the other jobs go on
        return float(run(cfg, hc.runtime.output_dir, hydra_files=files)["test/acc"])
    except BaseException as exc:  # noqa: BLE001
        if os.environ.get(USER_FULL_ERROR) == "1":
            raise
        exc = as_interruption(exc)
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if isinstance(exc, (KeyboardInterrupt, *_trainer_errors()[1:])):  # a signal: the sweep stops and says how
            # to go on (a stop in training wrote its checkpoint and status; one in start-up left nothing to mark)
            signum = getattr(exc, "signum", None) or int(signal.SIGINT)
            return JobStopped(error, signum, not isinstance(exc, KeyboardInterrupt))
        if expected(exc):
            report_error(exc)
        else:
            import traceback

            traceback.print_exc()
        record_failure(cfg, hc.runtime.output_dir, exc)
        return JobFailed(error)


USER_FULL_ERROR = "PRUNELAB_USER_FULL_ERROR"


def _trainer_errors() -> tuple[type, type] | tuple[()]:
    """The trainer's NonFiniteLoss and Interrupted, if the trainer was imported (else no exception is one)."""
    trainer = sys.modules.get(f"{__package__}.training.trainer")
    return (trainer.NonFiniteLoss, trainer.Interrupted) if trainer is not None else ()


def expected(exc: BaseException) -> bool:
    """Whether ``exc`` ends a run with one line (no traceback)."""
    return isinstance(exc, (ConfigError, *_trainer_errors(), *_stops())) or \
        (isinstance(exc, OSError) and exc.errno in DISK_ERRORS)


def _stops() -> tuple[type, ...]:
    """What stops asked for by a signal are, besides the trainer's :class:`Interrupted`: a sweep's."""
    sweep = sys.modules.get(f"{__package__}.sweep")
    return (sweep.SweepInterrupted,) if sweep is not None else ()


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    interrupted = (*_trainer_errors()[1:], *_stops())
    if isinstance(exc, interrupted) and getattr(exc, "signum", None):
        return 128 + int(exc.signum)  # as a shell reports a process a signal ended: SIGTERM 143, SIGINT 130
    return EXIT_INTERRUPTED if isinstance(exc, (KeyboardInterrupt, *interrupted)) else EXIT_FAILED


def cli() -> None:
    """Console-script entry point: ``prunelab report DIR...`` writes the comparison report, ``prunelab list``
    lists what is registered, ``prunelab dashboard`` builds a comparison's W&B workspace and report, ``prunelab
    collapse`` finds each criterion's layer collapse at initialization, anything else is the Hydra app (errors:
    one line, see the module's docstring)."""
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[sys.argv[1]], __package__)
        sys.exit(module.main(sys.argv[2:]))
    try:
        _start_up()
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while Hydra's plugins load: one line, as later
        _fail(exc)
    while True:
        try:
            main()
        except SystemExit:
            raise
        except BaseException as exc:  # noqa: BLE001 - every exit path below is explicit
            exc = as_interruption(exc.exc if isinstance(exc, Abort) else exc)
            if force_add_in_sweep(exc):
                continue
            _fail(exc)
        return


def _start_up() -> None:
    """What the Hydra app needs before it composes: signals caught, streams that may close, Hydra's errors raised
    to us, this invocation's run id, the plugins registered."""
    from .config import RUN_ID_ENV, new_run_id
    from .errors import SIGNALLED
    from .streams import survive_closed_streams

    SIGNALLED.clear()  # a stop signal counts for this invocation (an in-process caller may invoke it again)
    catch_interrupts()
    survive_closed_streams()  # `prunelab ... | head` must not end the run when head has its lines
    os.environ[USER_FULL_ERROR] = os.environ.get("HYDRA_FULL_ERROR", "")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors to us, and we print them as one line
    os.environ[RUN_ID_ENV] = new_run_id()  # this invocation's name part, shared by the processes of a sweep
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0:
        sys.argv.append("hydra.run.dir=.")  # torchrun: rank 0 owns the run directory (broadcast to the others)
    multirun_first()
    register_plugins()


def multirun_first() -> None:
    """``-m`` / ``--multirun`` anywhere on the command line, as before the overrides: Hydra's argument parser takes
    it only there (after an override it printed its usage and "unrecognized arguments")."""
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    if flags:
        sys.argv[1:] = [flags[0], *(a for a in sys.argv[1:] if a not in ("-m", "--multirun"))]


def force_add_in_sweep(exc: BaseException) -> bool:
    """A sweep's own config could not take a plain override ``K=V`` whose key only the swept options have
    (``-m criterion=rigl,set regrowth.delta_t=50``: Hydra composes the sweep's config without the swept options,
    on the default ``regrowth=none``). Rewrite it as ``++K=V`` (Hydra's force-add, its maintainers' advice) and
    return True to compose again; every job's config is then checked as usual, so a job whose options lack ``K``
    is still refused with one line. False for any other error, and for Hydra's own keys (``hydra.*``). Where a
    preset sets the multirun mode (``+experiment=dst_fmnist regrowth.delta_t=50``), Hydra's mode detection
    swallows the error and runs one job: when the config without ``K`` is a sweep's, ``-m`` is added too."""
    import traceback

    from hydra.core.global_hydra import GlobalHydra

    from . import sweep

    key = _unoverridable_key(exc)
    if key is None or key.split(".")[0] == "hydra":  # Hydra's own keys are checked by Hydra: a typo stays an error
        return False
    frames = {f.name for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.endswith(os.path.join("hydra", "_internal", "hydra.py"))}
    if not ("multirun" in frames or ("run" in frames and _swept_by_config(key))):
        return False
    for i, arg in enumerate(sys.argv[1:], 1):
        if not arg.startswith(("+", "~")) and arg.split("=", 1)[0] == key:
            sys.argv[i] = "++" + arg
            sweep.FORCE_ADDED.add(sys.argv[i])
            if "multirun" not in frames:
                sys.argv.insert(1, "-m")
            GlobalHydra.instance().clear()
            return True
    return False


def _unoverridable_key(exc: BaseException) -> str | None:
    """The key of Hydra's "Could not override 'K'" (an override whose key the composed config lacks), else None."""
    import re

    from hydra.errors import ConfigCompositionException

    m = re.match(r"Could not override '([^']+)'", str(exc)) if isinstance(exc, ConfigCompositionException) else None
    return m.group(1) if m else None


def _swept_by_config(key: str | None) -> bool:
    """Whether the command line without ``-m`` composes a config whose ``hydra.mode`` is MULTIRUN (a preset that
    sweeps), leaving out ``key`` and every other override its config cannot take."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode

    if any(a in ("-m", "--multirun") for a in sys.argv[1:]):
        return False
    overrides = [a for a in sys.argv[1:] if not a.startswith("-")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("prunelab.conf", version_base=None):
            while key is not None:
                overrides = [a for a in overrides if a.split("=", 1)[0].lstrip("+~") != key]
                try:
                    cfg = compose("config", overrides=overrides, return_hydra_config=True)
                    return cfg.hydra.get("mode") == RunMode.MULTIRUN
                except ConfigCompositionException as exc:
                    key = _unoverridable_key(exc)
        return False
    except Exception:  # noqa: BLE001 - any other trouble is the original error's to report
        return False
    finally:
        GlobalHydra.instance().clear()


def _fail(exc: BaseException) -> None:
    from . import rundir, sweep
    from .config import as_config_error

    sweep.undo_start()  # first: Hydra's multirun.yaml out of a new sweep directory, so that it is empty
    rundir.remove_new_dirs()  # a refused or interrupted start leaves nothing behind
    if os.environ.get(USER_FULL_ERROR) == "1":
        raise exc
    if isinstance(exc, KeyboardInterrupt):
        stopped(exc, rundir.started())
    err = as_config_error(exc)
    if err is None and not expected(exc):
        raise exc  # a bug: its traceback helps
    if isinstance(exc, (*_trainer_errors()[1:], *_stops())):  # a stop asked for, not an error: how to resume
        print(f"prunelab: {exc}", file=sys.stderr, flush=True)
    else:
        report_error(err or exc)
    sys.exit(exit_code(err or exc))


if __name__ == "__main__":
    cli()
