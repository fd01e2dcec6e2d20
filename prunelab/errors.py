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
        raise Terminated("SIGTERM")
