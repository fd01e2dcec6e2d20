"""Console streams that outlive their reader: ``prunelab ... | head`` must not cost the run.

A reader that goes away (``head`` has its lines, a terminal or ``ssh`` session closes) turns the next write into
``BrokenPipeError``, raised from whatever printed: a progress line would end a run whose results only ever go to
its directory. :func:`survive_closed_streams` wraps ``sys.stdout`` and ``sys.stderr`` so that a write to a closed
pipe is dropped from then on, and points the stream's descriptor at ``/dev/null`` so that nothing else writing to
it (the interpreter's own flush at exit, a library holding the descriptor) meets the closed pipe either.
"""
from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class SurvivingStream:
    """A text stream that drops what it is given once its reader has gone (see the module docstring)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._lost()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._lost()

    def _lost(self) -> None:
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no descriptor (a stream in memory): dropping the writes is enough
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the wrapped stream's
        return getattr(self._stream, name)


def survive_closed_streams() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` (once) in :class:`SurvivingStream`."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, SurvivingStream):
            setattr(sys, name, SurvivingStream(stream))


__all__ = ["SurvivingStream", "survive_closed_streams"]
