"""The Weights & Biases backend: scalars against ``trainer/step``, score histograms, mask pictures, a sparsity table
and the run summary; offline without credentials, resumable under one run id."""
from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..sparsity.patterns import as_2d
from ..rundir import write_json_atomic
from .base import Tracker, final_row
from .histograms import histograms
from .wandb_resume import kept_through, local_rows

log = logging.getLogger("prunelab")

#: The x-axis of every W&B metric: the trainer's global step (declared with ``define_metric``).
WANDB_STEP = "trainer/step"
#: ``finish(status)`` -> the W&B exit code (0 = finished; anything else marks the run failed; 255 is what W&B
#: itself records for a KeyboardInterrupt).
WANDB_EXIT_CODES = {"finished": 0, "failed": 1, "interrupted": 255}
WANDB_MODES = ("online", "offline", "disabled", "shared")
WANDB_RUN_ID_FILE = "wandb_run_id"          # the run id alone, so a resumed run directory reuses it
WANDB_STATE_FILE = "wandb_state.json"       # run id and the last step handed to W&B (for inspection)
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

    The picture is the weight's 2-D view ``[out, -1]`` that the patterns use (:func:`prunelab.sparsity.patterns.as_2d`: a
    conv weight ``[out, in, kh, kw]`` becomes ``[out, kh*kw*in]``, input channels fastest, so a pattern's blocks
    show as blocks).
    A side longer than ``max_side`` is averaged down by an integer factor (a pixel's gray is then the fraction of
    its weights kept); a small picture is enlarged by an integer factor (nearest) so its short side reaches
    ``min_side`` where the long side allows. Returns ``(picture, (fh, fw))``, the downsampling factors.
    """
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
      key) and with W&B's own ``step`` equal to the trainer's step, so the two axes agree, the last row included.
      Everything of one step goes into one row: the row is sent when the next step begins (or at the end), so
      the last step's row also takes the final masks, the sparsity table and :func:`~.base.final_row` (test
      accuracy, compression) from :meth:`log_final`.
    * ``scores/<layer>`` and ``scores/all``: ``wandb.Histogram(np_histogram=(counts, edges))`` from
      :func:`score_histogram` (fixed bins, computed on the tensors' device); raw tensors are never sent. Under
      log10 scale the edges are log10(score) and the zeros, which have no logarithm, are the scalar
      ``scores_zeros/<layer>`` (and ``scores_zeros/all``) of the same row: bins + zeros = element count.
    * At the end: ``masks/<layer>`` (``wandb.Image``, white = kept), ``final/sparsity_table`` (``wandb.Table``:
      layer, shape, params, zeros, sparsity) and the run summary in ``run.summary``.
    * The run id is kept in ``run_dir/wandb_run_id``; with ``resume=True`` that id is reused with
      ``resume="allow"``, the rows W&B lost up to the checkpoint are sent again from the local record and the
      rows it kept are not sent twice (:mod:`.wandb_resume`).
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
        if run_id and self.run_id == run_id:  # resumed: skip exactly what W&B kept (wandb_resume.py)
            self._skip_through = kept_through(self.run, self.run_dir, run_id)
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
        """``wandb sync`` of every part of this run: a resumed run logged each attempt into an offline folder of
        its own under the same id, and syncing the last alone would upload only the steps since the resume."""
        import shlex

        here = Path(self.sync_dir)
        parts = sorted({*here.parent.glob(f"offline-run-*-{self.run.id}"), here})  # by time: the order they ran
        return "wandb sync " + " ".join(shlex.quote(str(p)) for p in parts)

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
        write_json_atomic(self.run_dir / WANDB_STATE_FILE, {"run_id": self.run_id, "last_step": self._last_step})

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Kept in the step's row, which is sent when the next step begins, at :meth:`log_final` or at the end."""
        row = self._row(step)
        if row is None:
            return
        row.update({k: _scalar(v) for k, v in metrics.items()})

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
        """Masks, sparsity table and the final scalars into the last step's row (still pending: sent now), so
        ``_step`` and ``trainer/step`` agree there too; then the run summary."""
        wandb = self._wandb
        step = self._pending_step if self._pending_step is not None else self._last_step + 1
        row = self._row(max(step, 0))
        assert row is not None  # a step past the last one sent is never skipped
        row.update(final_row(summary))
        rows = sparsity_rows(masks)
        for (name, shape, numel, zeros, sp) in rows:
            pic, (fh, fw) = mask_image(masks[name], max_side=self.mask_max_side)
            scaled = f"; averaged over {fh}x{fw} weights per pixel (gray = fraction kept)" if fh * fw > 1 else ""
            caption = f"{name} {shape}: {sp:.2%} pruned; white = kept, black = pruned{scaled}"
            row[f"masks/{name}"] = wandb.Image(pic, mode="L", caption=caption)
        row["final/sparsity_table"] = wandb.Table(columns=["layer", "shape", "params", "zeros", "sparsity"],
                                                  data=rows)
        self._flush()
        self.run.summary.update({k: _summary_value(v) for k, v in summary.items()})

    # --- resume ---
    def state_dict(self) -> dict[str, Any]:
        """The run id and the last step logged (a pending row counts: it is sent before the run ends)."""
        pending = self._pending_step if self._pending_step is not None else -1
        return {"run_id": self.run_id, "last_step": max(self._last_step, pending)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resumed from a checkpoint: the rows W&B lost up to it (a killed run flushes nothing) are sent again from
        the local record, the rows it kept are not sent twice (W&B cannot take rows back; past the checkpoint
        they hold the values the resumed run recomputes)."""
        if state.get("run_id") != self.run_id or not self.run_id:
            return
        for step, scalars, hists in local_rows(self.run_dir, self._skip_through, int(state.get("last_step", -1))):
            self.log_histograms({name: h for name, h in hists.items()}, step)
            self.log(scalars, step)
        self._flush()
        self._skip_through = max(self._skip_through, self._last_step)

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
