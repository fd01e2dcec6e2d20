"""Tracking: where a run's metrics, score distributions, masks and summary go.

The trainer reports to a :class:`Tracker` and knows nothing of W&B; the tracker knows nothing of training.
Backends: :class:`LocalTracker` (always on: ``metrics.jsonl``, ``scores.jsonl``, ``summary.json``, ``masks.pt``
in the run directory), :class:`ConsoleTracker` (progress bar or plain lines), and :class:`WandbTracker`
(``logger=wandb``; wandb is imported only then). A :class:`Trackers` fans one call out to several.
:func:`build_tracker` builds them from the app's config. What is logged, under which names: ``docs/tracking.md``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger("prunelab")


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
        """The final masks and the run summary."""

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


@torch.no_grad()
def score_histogram(scores: Tensor, bins: int = 64, log_scale: bool = True) -> dict[str, Any]:
    """A fixed-bin histogram of one score tensor, computed on its device (see :func:`histograms`).

    Returns ``counts`` (``bins`` ints), ``edges`` (``bins + 1`` floats, log10 units when ``log_scale``),
    ``zeros``, ``numel``, ``log_scale``; ``counts`` plus ``zeros`` add up to the element count.
    """
    return histograms({"x": scores}, bins, log_scale)["x"]


@torch.no_grad()
def histograms(scores: Mapping[str, Tensor], bins: int, log_scale: bool) -> dict[str, dict[str, Any]]:
    """One histogram per layer plus ``all`` over every layer's scores, on shared fixed bins.

    Scores span orders of magnitude, so by default the bins are over log10(score) and zeros (pruned weights
    under magnitude/snip) are counted apart in ``zeros`` (non-finite scores too). All layers of a step share one
    range (the smallest positive to the largest score), so their histograms are comparable and ``all`` is their
    sum. Computed on the scores' device, with one host sync for the range and one for the counts. When every
    score is finite (the usual case), zeros are clamped up to the smallest positive score before the log (a log
    of 0 takes a slow path on CPUs), land in bin 0 and are taken out of it again by their count.
    """
    if not scores:
        return {}
    flats = {name: s.detach().reshape(-1).float() for name, s in scores.items()}
    dev = next(iter(flats.values())).device
    inf = torch.tensor(float("inf"), device=dev)
    sums, lows, highs = [], [], []
    for x in flats.values():
        sums.append(x.sum())  # finite exactly when no score is NaN or inf (or the sum overflows: exact path)
        lows.append(torch.where(x > 0, x, inf).min() if log_scale else x.min())
        highs.append(x.max())
    stats = torch.stack([torch.stack(sums).sum(), torch.stack(lows).min(), torch.stack(highs).max()]).tolist()
    if not all(math.isfinite(v) for v in stats):  # non-finite scores, or nothing positive on a log scale
        return _histograms_exact(flats, bins, log_scale)
    lo_lin, hi_lin = stats[1], stats[2]
    lo, hi = (math.log10(lo_lin), math.log10(hi_lin)) if log_scale else (lo_lin, hi_lin)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    scale = bins / (hi - lo)
    small = torch.uint8 if bins < 256 else torch.int32  # bincount is ~2.5x faster over bytes than over int64
    counts, apart = [], []
    for x in flats.values():
        v = x.clamp_min(lo_lin).log10_() if log_scale else x.clone()
        idx = v.sub_(lo).mul_(scale).floor_().clamp_(0, bins - 1).to(small)
        counts.append(torch.bincount(idx, minlength=bins + 1))
        apart.append(torch.count_nonzero(x <= 0) if log_scale else torch.zeros((), dtype=torch.int64, device=dev))
    table = torch.stack(counts)
    nonpos = torch.stack(apart)
    table[:, 0] -= nonpos  # zeros were clamped into bin 0: move them to the zeros column
    table[:, bins] += nonpos
    return _histogram_dicts(flats, table.tolist(), lo, hi, bins, log_scale)


def _histograms_exact(flats: Mapping[str, Tensor], bins: int, log_scale: bool) -> dict[str, dict[str, Any]]:
    """:func:`histograms` for scores with NaN or inf (or nothing positive on a log scale): every entry is tested
    for being countable, and the range is taken over the countable ones."""
    dev = next(iter(flats.values())).device
    inf = torch.tensor(float("inf"), device=dev)
    lows, highs = [], []
    for x in flats.values():
        finite = torch.isfinite(x)
        ok = finite & (x > 0) if log_scale else finite
        lows.append(torch.where(ok, x, inf).min())
        highs.append(torch.where(ok, x, -inf).max())
    lo_hi = torch.stack([torch.stack(lows).min(), torch.stack(highs).max()])
    if log_scale:
        lo_hi = lo_hi.log10()
    lo, hi = lo_hi.tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):  # nothing countable (all zero): any range will do
        lo, hi = 0.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    scale = bins / (hi - lo)
    counts = []
    for x in flats.values():
        v = x.log10() if log_scale else x.clone()
        countable = torch.isfinite(v)
        idx = v.sub_(lo).mul_(scale).floor_().clamp_(0, bins - 1).nan_to_num_(0.0).to(torch.int64)
        idx.masked_fill_(~countable, bins)  # the extra last bin counts zeros and non-finite scores
        counts.append(torch.bincount(idx, minlength=bins + 1))
    return _histogram_dicts(flats, torch.stack(counts).tolist(), lo, hi, bins, log_scale)


def _histogram_dicts(
    flats: Mapping[str, Tensor], rows: list[list[int]], lo: float, hi: float, bins: int, log_scale: bool
) -> dict[str, dict[str, Any]]:
    """Per layer (counts of the bins, then the zeros column) and ``all`` (their sum) as plain dicts."""
    edges = [lo + i * (hi - lo) / bins for i in range(bins + 1)]
    out = {}
    for name, row, x in zip(flats, rows, flats.values()):
        out[name] = {"counts": row[:bins], "edges": edges, "zeros": int(row[bins]), "numel": int(x.numel()),
                     "log_scale": bool(log_scale)}
    total = [sum(col) for col in zip(*rows)]
    out["all"] = {"counts": total[:bins], "edges": edges, "zeros": int(total[bins]),
                  "numel": sum(int(x.numel()) for x in flats.values()), "log_scale": bool(log_scale)}
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


class LocalTracker(Tracker):
    """Always-on local record in the run directory, so runs compare without W&B.

    * ``metrics.jsonl``: one JSON object per logged step, ``{"step": t, name: value, ...}``.
    * ``scores.jsonl``: one object per (step, layer) score histogram (and ``all`` for every layer together).
    * ``summary.json``: the run summary; ``masks.pt``: the final bool masks by layer name.
    """

    def __init__(self, run_dir: str | os.PathLike, bins: int = 64, log_scale: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.bins, self.log_scale = bins, log_scale
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.scores_path = self.run_dir / "scores.jsonl"
        self._pending: dict[int, dict[str, Any]] = {}
        self._last_step = -1

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        rec = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        self._last_step = max(self._last_step, int(step))

    @property
    def histogram_settings(self) -> tuple[int, bool]:  # type: ignore[override]
        return (self.bins, self.log_scale)

    def log_scores(self, scores: Mapping[str, Tensor], step: int) -> None:
        self.log_histograms(histograms(scores, self.bins, self.log_scale), step)

    def log_histograms(self, hists: Mapping[str, Mapping[str, Any]], step: int) -> None:
        with self.scores_path.open("a") as f:
            for name, hist in hists.items():
                f.write(json.dumps({"step": int(step), "layer": name, **hist}) + "\n")

    def log_final(self, masks: Mapping[str, Tensor], summary: Mapping[str, Any]) -> None:
        torch.save({n: m.detach().cpu().bool() for n, m in masks.items()}, self.run_dir / "masks.pt")
        write_json_atomic(self.run_dir / "summary.json", summary)

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """After a resume from step s, drop the records of steps > s so no step is written twice."""
        last = int(state.get("last_step", -1))
        for path in (self.metrics_path, self.scores_path):
            if path.exists():
                kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= last]
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(ln + "\n" for ln in kept))
                os.replace(tmp, path)
        self._last_step = last


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON via a temporary file, fsync and rename: a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ConsoleTracker(Tracker):
    """Progress: a tqdm bar (step, loss, accuracy, sparsity) on a terminal; plain lines every ``every`` steps
    otherwise (pipes, CI, multirun jobs)."""

    def __init__(self, total_steps: int, every: int = 50, bar: bool | None = None, start_step: int = 0) -> None:
        self.total = total_steps
        self.every = max(1, every)
        self.bar = sys.stderr.isatty() if bar is None else bar
        self._shown: dict[str, float] = {}
        self._t0 = time.perf_counter()
        self._pbar = None
        if self.bar:
            from tqdm.auto import tqdm

            self._pbar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, leave=False)
        self._last = start_step

    _SHOW = {"train/loss": "loss", "train/acc": "acc", "eval/acc": "val_acc", "sparsity/actual": "sparsity"}

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for k, short in self._SHOW.items():
            if k in metrics and metrics[k] is not None:
                self._shown[short] = float(metrics[k])
        if self._pbar is not None:
            self._pbar.update(step + 1 - self._last)
            self._last = step + 1
            self._pbar.set_postfix({k: f"{v:.4g}" for k, v in self._shown.items()}, refresh=False)
        elif (step + 1) % self.every == 0 or step + 1 == self.total:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in self._shown.items())
            print(f"[prunelab] step {step + 1}/{self.total}  {shown}  ({time.perf_counter() - self._t0:.1f}s)",
                  file=sys.stderr, flush=True)

    def finish(self, status: str = "finished") -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None


# --------------------------------------------------------------------------------------------------------------
# Weights & Biases
# --------------------------------------------------------------------------------------------------------------

#: The x-axis of every W&B metric: the trainer's global step (declared with ``define_metric``).
WANDB_STEP = "trainer/step"
#: ``finish(status)`` -> the W&B exit code (0 = finished; anything else marks the run failed; 255 is what W&B
#: itself records for a KeyboardInterrupt).
WANDB_EXIT_CODES = {"finished": 0, "failed": 1, "interrupted": 255}
WANDB_MODES = ("online", "offline", "disabled", "shared")
WANDB_RUN_ID_FILE = "wandb_run_id"          # the run id alone, so a resumed run directory reuses it
WANDB_STATE_FILE = "wandb_state.json"       # run id and the last step sent to W&B (no duplicated steps on resume)
WANDB_MAX_BINS = 512                        # wandb.Histogram's limit
WANDB_MAX_TAG = 64                          # W&B's limit on a tag's length


def wandb_credentials_available() -> bool:
    """Whether W&B would find credentials: ``WANDB_API_KEY`` / ``WANDB_IDENTITY_TOKEN_FILE``, or a ``.netrc``
    entry for the W&B host (what ``wandb login`` writes). Only presence is checked; no key is read into a
    variable that outlives this call, printed or stored."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    import netrc
    from urllib.parse import urlsplit

    host = urlsplit(_wandb_base_url()).netloc
    if not host:
        return False
    if os.environ.get("NETRC"):
        paths = [Path(os.environ["NETRC"]).expanduser()]
    else:
        paths = [Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()]
    for path in paths:
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (OSError, netrc.NetrcParseError):
            continue
        if entry and entry[2]:
            return True
    return False


def _wandb_base_url() -> str:
    """``WANDB_BASE_URL``, else the ``base_url`` that ``wandb login --host`` saved, else the W&B cloud."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"]
    import configparser

    cfg_dir = Path(os.environ.get("WANDB_CONFIG_DIR") or Path("~/.config/wandb").expanduser())
    parser = configparser.ConfigParser()
    try:
        parser.read(cfg_dir / "settings")
        return parser.get("default", "base_url", fallback="https://api.wandb.ai")
    except (configparser.Error, OSError):
        return "https://api.wandb.ai"


def resolve_wandb_mode(mode: str | None) -> tuple[str | None, bool]:
    """The mode to pass to ``wandb.init`` and whether it is offline for want of credentials.

    ``logger.mode`` wins when set; with it null, ``WANDB_MODE`` (read by wandb itself) decides; with neither,
    the run is online when credentials exist and offline otherwise (never an interactive login prompt).
    """
    if mode is not None:
        if mode not in WANDB_MODES:
            from .errors import ConfigError

            raise ConfigError("logger.mode", mode, f"null, {', '.join(WANDB_MODES)}")
        return mode, False
    if os.environ.get("WANDB_MODE"):
        return None, False
    if wandb_credentials_available():
        return None, False
    return "offline", True


@torch.no_grad()
def mask_image(mask: Tensor, max_side: int = 512, min_side: int = 32) -> tuple[Any, tuple[int, int]]:
    """A mask as a 2-D grayscale ``uint8`` numpy picture: white = kept, black = pruned.

    The picture is the weight's 2-D view ``[out, -1]`` that the patterns use (:func:`prunelab.patterns.as_2d`: a
    conv weight ``[out, in, kh, kw]`` becomes ``[out, kh*kw*in]``, input channels fastest, so a pattern's blocks
    show as blocks).
    A side longer than ``max_side`` is averaged down by an integer factor (a pixel's gray is then the fraction of
    its weights kept); a small picture is enlarged by an integer factor (nearest) so its short side reaches
    ``min_side`` where the long side allows. Returns ``(picture, (fh, fw))``, the downsampling factors.
    """
    from .patterns import as_2d

    f = as_2d(mask.detach()).float()
    h, w = f.shape
    fh, fw = max(1, math.ceil(h / max_side)), max(1, math.ceil(w / max_side))
    if fh > 1 or fw > 1:
        hp, wp = math.ceil(h / fh) * fh, math.ceil(w / fw) * fw
        pad = (0, wp - w, 0, hp - h)
        kept = torch.nn.functional.pad(f, pad).reshape(hp // fh, fh, wp // fw, fw).sum((1, 3))
        count = torch.nn.functional.pad(torch.ones_like(f), pad).reshape(hp // fh, fh, wp // fw, fw).sum((1, 3))
        f = kept / count
    h, w = f.shape
    k = max(1, min(math.ceil(min_side / max(1, min(h, w))), max_side // max(1, max(h, w))))
    if k > 1:
        f = f.repeat_interleave(k, 0).repeat_interleave(k, 1)
    return (f * 255).round().to(torch.uint8).cpu().numpy(), (fh, fw)


def sparsity_rows(masks: Mapping[str, Tensor]) -> list[list[Any]]:
    """``[layer, shape, params, zeros, sparsity]`` per layer of the final masks."""
    rows = []
    for name, m in masks.items():
        numel = m.numel()
        zeros = int(numel - int(m.count_nonzero()))
        rows.append([name, str(list(m.shape)), int(numel), zeros, zeros / numel if numel else 0.0])
    return rows


class WandbTracker(Tracker):
    """The W&B backend: scalars against ``trainer/step``, score histograms, mask pictures, a sparsity table and
    the run summary.

    * Every row is logged with ``trainer/step`` (declared with ``define_metric`` as the step metric of every
      key) and with W&B's own ``step`` equal to the trainer's step, so the two axes agree. Scalars and the
      histograms of one step go into one row.
    * ``scores/<layer>`` and ``scores/all``: ``wandb.Histogram(np_histogram=(counts, edges))`` from
      :func:`score_histogram` (fixed bins, computed on the tensors' device); raw tensors are never sent. Under
      log10 scale the edges are log10(score) and the zeros, which have no logarithm, are the scalar
      ``scores_zeros/<layer>`` (and ``scores_zeros/all``) of the same row: bins + zeros = element count.
    * At the end: ``masks/<layer>`` (``wandb.Image``, white = kept), ``final/sparsity_table`` (``wandb.Table``:
      layer, shape, params, zeros, sparsity) and the run summary in ``run.summary``.
    * The run id is kept in ``run_dir/wandb_run_id``; with ``resume=True`` that id is reused with
      ``resume="allow"`` and steps already sent (``wandb_state.json``) are not sent again.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        name: str | None = None,
        project: str | None = "prunelab",
        entity: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        tags: Sequence[str] = (),
        config: Mapping[str, Any] | None = None,
        mode: str | None = None,
        notes: str | None = None,
        bins: int = 64,
        log_scale: bool = True,
        resume: bool = False,
        mask_max_side: int = 512,
    ) -> None:
        if bins > WANDB_MAX_BINS:
            from .errors import ConfigError

            raise ConfigError("tracking.histogram_bins", bins, f"at most {WANDB_MAX_BINS} with logger=wandb")
        import wandb

        self._wandb = wandb
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.bins, self.log_scale = int(bins), bool(log_scale)
        self.mask_max_side = int(mask_max_side)
        init_mode, self.no_credentials = resolve_wandb_mode(mode)

        id_path = self.run_dir / WANDB_RUN_ID_FILE
        run_id, self._skip_through = None, -1
        if resume and id_path.exists():
            run_id = id_path.read_text().strip() or None
            state = _read_json(self.run_dir / WANDB_STATE_FILE)
            if run_id and state.get("run_id") == run_id:
                self._skip_through = int(state.get("last_step", -1))
        kwargs: dict[str, Any] = dict(
            dir=str(self.run_dir), project=project, entity=entity, group=group, job_type=job_type, name=name,
            tags=_clean_tags(tags), config=dict(config) if config is not None else None, notes=notes,
            id=run_id, resume="allow" if run_id else None, reinit="finish_previous",
        )
        why_offline = "no credentials: no WANDB_API_KEY, no `wandb login`" if self.no_credentials else "offline mode"
        try:
            self.run = wandb.init(mode=init_mode, **kwargs)
        except Exception as exc:  # e.g. online without network or login: keep the run, log offline, say so
            if init_mode == "offline":
                raise
            first_line = (str(exc).splitlines() or [""])[0]
            why_offline = f"could not start an online run: {type(exc).__name__}: {first_line}"
            self.run = wandb.init(mode="offline", **kwargs)
        self.run.define_metric(WANDB_STEP)
        self.run.define_metric("*", step_metric=WANDB_STEP)

        self.run_id: str | None = None if self.run.disabled else self.run.id
        self._pending: dict[str, Any] = {}
        self._pending_step: int | None = None
        self._last_step = self._skip_through
        self._finished = False
        if self.run_id:
            id_path.write_text(self.run_id + "\n")
            self._save_state()
        if self.run.offline:
            print(f"[prunelab] W&B: logging offline ({why_offline}) to {self.sync_dir}\n"
                  f"[prunelab] W&B: upload it later with: {self.sync_command}", file=sys.stderr, flush=True)

    # --- where the offline record is ---
    @property
    def sync_dir(self) -> str:
        return str(self.run.settings.sync_dir)

    @property
    def sync_command(self) -> str:
        return f"wandb sync {self.sync_dir}"

    @property
    def histogram_settings(self) -> tuple[int, bool]:  # type: ignore[override]
        return (self.bins, self.log_scale)

    # --- rows ---
    def _row(self, step: int) -> dict[str, Any] | None:
        """The pending row of ``step`` (None for a step a resumed run already sent)."""
        step = int(step)
        if step <= self._skip_through:
            return None
        if self._pending_step is not None and self._pending_step != step:
            self._flush()
        self._pending_step = step
        return self._pending

    def _flush(self) -> None:
        if self._pending_step is None:
            return
        step, row = self._pending_step, self._pending
        self._pending, self._pending_step = {}, None
        if step <= self._last_step:  # W&B drops rows at a step it has passed; say so once here instead
            log.warning("prunelab: W&B: step %d was already logged; its values are not sent again", step)
            return
        self.run.log({WANDB_STEP: step, **row}, step=step, commit=True)
        self._last_step = step
        self._save_state()

    def _save_state(self) -> None:
        if not self.run_id:
            return
        path = self.run_dir / WANDB_STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"run_id": self.run_id, "last_step": self._last_step}) + "\n")
        os.replace(tmp, path)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        row = self._row(step)
        if row is None:
            return
        row.update({k: _scalar(v) for k, v in metrics.items()})
        self._flush()

    def log_scores(self, scores: Mapping[str, Tensor], step: int) -> None:
        self.log_histograms(histograms(scores, self.bins, self.log_scale), step)

    def log_histograms(self, hists: Mapping[str, Mapping[str, Any]], step: int) -> None:
        """Kept in the step's row until its scalars arrive (the trainer logs scores first, then scalars)."""
        row = self._row(step)
        if row is None:
            return
        for name, h in hists.items():
            row[f"scores/{name}"] = self._wandb.Histogram(np_histogram=(h["counts"], h["edges"]))
            row[f"scores_zeros/{name}"] = int(h["zeros"])

    def log_final(self, masks: Mapping[str, Tensor], summary: Mapping[str, Any]) -> None:
        self._flush()
        wandb = self._wandb
        row: dict[str, Any] = {}
        rows = sparsity_rows(masks)
        for (name, shape, numel, zeros, sp) in rows:
            pic, (fh, fw) = mask_image(masks[name], max_side=self.mask_max_side)
            scaled = f"; averaged over {fh}x{fw} weights per pixel (gray = fraction kept)" if fh * fw > 1 else ""
            caption = f"{name} {shape}: {sp:.2%} pruned; white = kept, black = pruned{scaled}"
            row[f"masks/{name}"] = wandb.Image(pic, mode="L", caption=caption)
        row["final/sparsity_table"] = wandb.Table(columns=["layer", "shape", "params", "zeros", "sparsity"],
                                                  data=rows)
        if self._last_step >= 0:
            row[WANDB_STEP] = self._last_step
        self.run.log(row)
        self.run.summary.update({k: _summary_value(v) for k, v in summary.items()})

    # --- resume ---
    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "last_step": self._last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """W&B cannot take rows back: steps past the checkpoint that were already sent stay as they are (a resumed
        run recomputes the same values) and are not sent twice (``wandb_state.json``)."""
        if state.get("run_id") == self.run_id:
            self._skip_through = max(self._skip_through, int(state.get("last_step", -1)))

    def finish(self, status: str = "finished") -> None:
        if self._finished:
            return
        self._finished = True
        try:
            self._flush()
            self.run.summary["status"] = status
            self.run.finish(exit_code=WANDB_EXIT_CODES.get(status, 1))
        except Exception as exc:  # the local record is complete; a W&B failure at the end must not hide the run's
            log.warning("prunelab: W&B: could not finish the run cleanly: %s: %s", type(exc).__name__, exc)
        if self.run.offline:
            print(f"[prunelab] W&B run logged offline ({status}); upload it with: {self.sync_command}",
                  file=sys.stderr, flush=True)


def _scalar(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    return v


def _summary_value(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, Mapping):
        return {str(k): _summary_value(x) for k, x in v.items()}
    return v


def _clean_tags(tags: Sequence[str]) -> list[str]:
    out: list[str] = []
    for t in tags:
        t = str(t).strip()[:WANDB_MAX_TAG]
        if t and t not in out:
            out.append(t)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


# --------------------------------------------------------------------------------------------------------------
# From the config
# --------------------------------------------------------------------------------------------------------------

def in_hydra_multirun() -> bool:
    """True inside a job of a Hydra multirun (``-m``)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def resuming_run_dir(resume: Any, run_dir: str | os.PathLike) -> bool:
    """Whether ``trainer.resume`` continues this same run directory (true, or a path into it)."""
    if resume in (False, None, "", "false", "False"):
        return False
    if resume in (True, "true", "True"):
        return True
    p = Path(str(resume))
    d = p if p.is_dir() else p.parent
    try:
        return d.resolve() == Path(run_dir).resolve()
    except OSError:
        return False


def run_tags(cfg: Any) -> list[str]:
    """``criterion:<c>``, ``pattern:<p>``, ``scope:<s>``, ``model:<m>``, ``dataset:<d>``, then ``logger.tags``."""
    def get(path: str) -> Any:
        node = cfg
        for part in path.split("."):
            node = node.get(part) if node is not None and hasattr(node, "get") else None
        return node

    tags = [f"{key}:{val}" for key, val in (
        ("criterion", get("criterion.criterion_type")), ("pattern", get("pattern.type")),
        ("scope", get("pattern.scope")), ("model", get("model.name")), ("dataset", get("dataset.name")),
    ) if val is not None]
    extra = get("logger.tags") or []
    if isinstance(extra, str):
        extra = [extra]
    return tags + [str(t) for t in extra]


def check_logger_config(cfg: Any) -> None:
    """Raise :class:`~prunelab.errors.ConfigError` (one line) for a bad ``logger`` section: the backend, the W&B
    mode, more histogram bins than W&B takes. Cheap, imports nothing; the app may call it with its other checks."""
    from .errors import ConfigError

    lg = cfg.get("logger", None) or {}
    backend = lg.get("backend", "none") or "none"
    if backend not in ("wandb", "none"):
        raise ConfigError("logger.backend", backend, "wandb or none (logger=wandb / logger=none)")
    if backend == "wandb":
        bins = (cfg.get("tracking", {}) or {}).get("histogram_bins", 64)
        if isinstance(bins, int) and bins > WANDB_MAX_BINS:
            raise ConfigError("tracking.histogram_bins", bins, f"at most {WANDB_MAX_BINS} with logger=wandb")
        resolve_wandb_mode(lg.get("mode"))


def build_tracker(cfg: Any, run_dir: str | os.PathLike, total_steps: int, name: str, start_step: int = 0) -> Tracker:
    """The trackers a run's config asks for: always local files and console progress (plain lines in a Hydra
    multirun); W&B with ``logger.backend: wandb`` (``logger=none``: wandb is not even imported)."""
    check_logger_config(cfg)  # a bad logger section fails here, before anything is created
    tr = cfg.get("tracking", {}) or {}
    bins = int(tr.get("histogram_bins", 64))
    log_scale = tr.get("histogram_scale", "log10") == "log10"
    lg = cfg.get("logger", None) or {}
    backend = lg.get("backend", "none") or "none"

    trackers: list[Tracker] = [LocalTracker(run_dir, bins=bins, log_scale=log_scale)]
    trainer = cfg.get("trainer", None) or {}
    progress = trainer.get("progress", "auto")
    if progress != "none":
        bar = None if progress == "auto" else progress == "bar"
        if bar is None and in_hydra_multirun():
            bar = False  # jobs of a sweep share a terminal (or none): one plain line now and then, no bars
        trackers.append(ConsoleTracker(total_steps, every=max(50, total_steps // 20), bar=bar, start_step=start_step))
    if backend == "wandb":
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
        trackers.append(WandbTracker(
            run_dir, name=lg.get("name") or name, project=lg.get("project"), entity=lg.get("entity"),
            group=lg.get("group"), job_type=lg.get("job_type"), tags=run_tags(cfg), config=config,
            mode=lg.get("mode"), notes=lg.get("notes"), bins=bins, log_scale=log_scale,
            resume=resuming_run_dir(trainer.get("resume", False), run_dir),
        ))
    return Trackers(*trackers)
