"""One error type for bad input: one line naming the key, the value and what is allowed."""
from __future__ import annotations

import signal
import sys
from typing import Any


_REWRAPPED: Any = object()  # ConfigError(message): torch's DataLoader re-raising a worker's error


class ConfigError(ValueError):
    """Raised for invalid configuration or input.

    The message is always one line: ``<key>=<value>: <what is allowed>``, so a CLI can print it as the last
    line of stderr and a user sees at once what to change (the value as Python writes it, a bool as the command
    line does: ``true``).
    """

    def __init__(self, key: str, value: Any = _REWRAPPED, allowed: str = "") -> None:
        if value is _REWRAPPED:  # re-raised by a DataLoader in the main process with the worker's traceback
            line = next((ln for ln in reversed(key.splitlines()) if "ConfigError: " in ln), key.splitlines()[-1])
            text = line.split("ConfigError: ", 1)[-1]
            self.key, self.value, self.allowed = text.split("=", 1)[0], None, text
            super().__init__(text)
            return
        self.key = key
        self.value = value
        self.allowed = allowed
        shown = str(value).lower() if isinstance(value, bool) else repr(value)  # a bool as typed: true, false
        super().__init__(f"{key}={shown}: {allowed}".replace("\n", " "))


class Abort(BaseException):
    """Carries an exception past code that catches ``Exception`` to report it its own way: Hydra turns an
    exception of a callback into a warning and prints a line of its own for a failed job. The CLI unwraps it
    (:attr:`exc`) and reports it as one line."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


def report_error(exc: BaseException) -> None:
    """The one-line error a user sees: the last line of stderr (``prunelab: error: <first line of exc>``)."""
    print(f"prunelab: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr,
          flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training (start-up, between a sweep's jobs), handled as Ctrl-C is there: what the start
    wrote is removed or marked, one line says so, exit 128 + 15. During training the trainer's own handler
    stops at the end of a step with a checkpoint instead."""

    signum = int(signal.SIGTERM)

    @staticmethod
    def handler(signum: int, frame: Any) -> None:
        SIGNALLED.append(int(signum))
        raise Terminated("SIGTERM")


#: the stop signals that reached this process outside training (start-up, between a sweep's jobs), in order
SIGNALLED: list[int] = []


def on_interrupt(signum: int, frame: Any) -> None:
    """SIGINT outside training: Python's own handling (KeyboardInterrupt), remembered. A Ctrl-C can strike inside a
    library's import, and the half-imported module then fails later with an error of its own (an ImportError, a
    RecursionError): :func:`as_interruption` still reads that as the interruption it is."""
    SIGNALLED.append(int(signum))
    raise KeyboardInterrupt


def catch_interrupts() -> None:
    """Install :func:`on_interrupt` for SIGINT and :meth:`Terminated.handler` for SIGTERM (main thread only)."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_interrupt)
        signal.signal(signal.SIGTERM, Terminated.handler)


def stopped(exc: KeyboardInterrupt, started: bool) -> None:
    """End the process for a stop signal outside training: one line (what stopped it; before the run started,
    that nothing was written), exit 128 + the signal (130 Ctrl-C, 143 SIGTERM)."""
    what = "stopped by signal SIGTERM" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
    where = "" if started else " before the run started; nothing was written"
    run_dir = getattr(exc, "run_dir", None)  # a started run, stopped outside its training loop (which says more)
    if run_dir is not None:
        import shlex

        where = (f" outside its training loop; the same command with hydra.run.dir={shlex.quote(str(run_dir))} "
                 "trainer.resume=auto goes on (from its last checkpoint, or from step 0 where it has none)")
    print(f"prunelab: error: {what}{where}", file=sys.stderr, flush=True)
    sys.exit(128 + (Terminated.signum if isinstance(exc, Terminated) else int(signal.SIGINT)))


def raise_if_signalled() -> None:
    """Raise the interruption of a stop signal that reached the process outside training and was swallowed (a
    library's import that caught the KeyboardInterrupt and went on): the run stops as the signal asked."""
    if SIGNALLED:
        raise as_interruption(RuntimeError("a stop signal"))


def as_interruption(exc: BaseException) -> BaseException:
    """``exc``, or, for an error raised after a stop signal reached the process outside training, the
    interruption it follows from (:class:`Terminated` for SIGTERM, KeyboardInterrupt for SIGINT). A stop that
    already says which signal asked for it (the trainer's, a sweep's: ``signum``) stays as it is."""
    if isinstance(exc, KeyboardInterrupt) or getattr(exc, "signum", None) or not SIGNALLED:
        return exc
    return Terminated("SIGTERM") if SIGNALLED[-1] == int(signal.SIGTERM) else KeyboardInterrupt()
