"""The tracker interface: what the training loop reports to (through its tracking callback), knowing nothing of
the backends. :class:`Tracker` is the no-op tracker; :class:`Trackers` fans one call out to several, computing
each score histogram once for all of them. Backends: :mod:`.local` (always on), :mod:`.console`, :mod:`.wandb`;
:func:`prunelab.tracking.build.build_tracker` builds them from the app's config. Names: ``docs/tracking.md``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .histograms import histograms

#: The run summary's final scalars that also go into the history, in the row of the last step (with the masks and
#: the sparsity table), so that a panel can plot them against each other (test accuracy vs compression) and
#: ``metrics.jsonl`` holds the same values as the W&B history.
FINAL_ROW_KEYS = ("test/acc", "test/loss", "best_eval/acc", "compression")


def final_row(summary: Mapping[str, Any]) -> dict[str, float]:
    """The :data:`FINAL_ROW_KEYS` of a run summary that it has (as plain floats)."""
    return {k: float(v) for k in FINAL_ROW_KEYS
            if isinstance(v := summary.get(k), (int, float, Tensor)) and not isinstance(v, bool)}


class Tracker:
    """What the trainer calls. Every method is a no-op here, so this class is the no-op tracker."""

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Scalars at a global step (names such as ``train/loss``, ``sparsity/actual``)."""

    def log_scores(self, scores: Mapping[str, Tensor], step: int) -> None:
        """The criterion's scores at a pruning or score-logging step (one tensor per layer)."""

    #: ``(bins, log_scale)`` of the histograms a backend records from scores, or None. Backends that set it get
    #: :meth:`log_histograms` from :class:`Trackers`, which computes each histogram once for all of them.
    histogram_settings: tuple[int, bool] | None = None

    def log_histograms(self, hists: Mapping[str, Mapping[str, Any]], step: int) -> None:
        """Precomputed score histograms (``histograms(scores, *self.histogram_settings)``) at a step."""

    def log_final(self, masks: Mapping[str, Tensor], summary: Mapping[str, Any]) -> None:
        """The final masks and the run summary; backends with a history add :func:`final_row` to the row of the
        last step."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore after a resume (e.g. drop records past the checkpoint's step)."""

    def finish(self, status: str = "finished") -> None:
        """Close the run (``finished``, ``failed`` or ``interrupted``)."""


class Trackers(Tracker):
    """Several trackers behind one interface."""

    def __init__(self, *trackers: Tracker) -> None:
        self.trackers = [t for t in trackers if t is not None]

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for t in self.trackers:
            t.log(metrics, step)

    def log_scores(self, scores: Mapping[str, Tensor], step: int) -> None:
        computed: dict[tuple[int, bool], dict[str, dict[str, Any]]] = {}
        for t in self.trackers:
            key = t.histogram_settings
            if key is None:
                t.log_scores(scores, step)
                continue
            if key not in computed:  # one histogram pass per (bins, scale), however many backends record it
                computed[key] = histograms(scores, *key)
            t.log_histograms(computed[key], step)

    def log_final(self, masks: Mapping[str, Tensor], summary: Mapping[str, Any]) -> None:
        for t in self.trackers:
            t.log_final(masks, summary)

    def state_dict(self) -> dict[str, Any]:
        return {type(t).__name__: t.state_dict() for t in self.trackers}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for t in self.trackers:
            t.load_state_dict(state.get(type(t).__name__, {}))

    def finish(self, status: str = "finished") -> None:
        errors = []
        for t in self.trackers:
            try:
                t.finish(status)
            except Exception as exc:  # one backend failing to close must not keep the others open
                errors.append(exc)
        if errors:
            raise errors[0]
