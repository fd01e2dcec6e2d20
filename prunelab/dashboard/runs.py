"""What the runs of a comparison really logged, as W&B holds it: history keys (with their kind), summary keys,
the nested run config and the run's identity. Panels are built from this and only from this.

Two sources:

* a sweep directory: every W&B run file under it (``<job>/wandb/offline-run-*/run-*.wandb``, or ``run-*`` for
  runs that were online), read with W&B's own reader, ``wandb leet inspect --json`` (the parts of a resumed run,
  which share a run id, are merged);
* a W&B group: the runs of ``entity/project`` in that group, through W&B's public API (needs credentials).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

#: config sections that say how a run was executed or logged, never what was compared
EXECUTION_CONFIG = ("_wandb", "logger", "tracking", "hydra")


@dataclass
class LoggedRun:
    """One W&B run as W&B holds it."""

    id: str
    name: str = ""
    project: str = ""
    entity: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    #: history key -> kind (``number``, or the media ``_type``: ``histogram``, ``image-file``, ``table-file``, ...)
    history: dict[str, str] = field(default_factory=dict)
    #: numeric history keys with a non-zero value at some step
    nonzero: set[str] = field(default_factory=set)
    #: summary keys, nested dicts flattened with dots (``sparsity/layers.fc1``)
    summary: dict[str, Any] = field(default_factory=dict)
    state: str = ""
    args: list[str] = field(default_factory=list)   # the command line the run was started with, if recorded
    path: Path | None = None                        # the run directory (prunelab's), for a sweep directory

    def config_value(self, dotted: str) -> Any:
        """``config["a"]["b"]`` for ``"a.b"``; None if absent."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node


# ------------------------------------------------------------------------------------------- W&B's reader


def wandb_exe() -> str:
    """The ``wandb`` command of this Python environment (else the one on PATH)."""
    exe = Path(sys.executable).with_name("wandb")
    return str(exe) if exe.exists() else (shutil.which("wandb") or "wandb")


def leet_records(run_file: Path, timeout: float = 120) -> list[dict[str, Any]]:
    """Every record of a ``.wandb`` file as ``wandb leet inspect --json`` prints it.

    ``wandb leet`` is a thin launcher of the ``wandb-core`` binary; that binary is called directly first (the
    same reader without a Python start per run), and ``wandb leet inspect`` itself if that fails.
    """
    commands = []
    try:
        from wandb.util import get_core_path

        commands.append([get_core_path(), "leet", "inspect", "--no-observability", "--json", "--run-file",
                         str(run_file), str(run_file.parent.parent)])
    except Exception:  # no wandb-core here: the CLI below finds it or says why
        pass
    commands.append([wandb_exe(), "leet", "inspect", "--json", str(run_file)])
    error = ""
    for cmd in commands:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode == 0 and out.stdout.strip():
            return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        if out.returncode == 0:  # read, and nothing in it: a part W&B began and never wrote (a run killed at once)
            return []
        error = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
    raise ConfigError("sweep", str(run_file), f"a W&B run file that `wandb leet inspect` reads ({error})")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b": value}``; every intermediate key is kept too (``"a"``: the dict)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out[key] = v
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
    return out


def _history_item(run: LoggedRun, item: Mapping[str, Any]) -> None:
    """Add one history row. A media value is ``{"_type": ...}`` (W&B's API) or flattened into ``key._type``,
    ``key.values``, ... (W&B's run files)."""
    media = {k[: -len("._type")]: v for k, v in item.items() if k.endswith("._type")}
    media.update({k: v["_type"] for k, v in item.items() if isinstance(v, Mapping) and "_type" in v})
    run.history.update({k: str(v) for k, v in media.items()})
    for k, v in item.items():
        if k.startswith("_") or k in media or any(k.startswith(m + ".") for m in media):
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            run.history.setdefault(k, "number")
            if v:
                run.nonzero.add(k)


def run_from_records(records: Iterable[Mapping[str, Any]], run: LoggedRun | None = None) -> LoggedRun:
    """A :class:`LoggedRun` from W&B's records of one run file (added to ``run``: a resumed run's later part)."""
    summary: dict[str, Any] = {}
    for rec in records:
        kind = rec.get("type")
        body = rec.get(kind) or {}
        if kind == "run":
            run = run or LoggedRun(id=str(body.get("run_id", "")))
            run.name = body.get("display_name") or run.name
            run.project = body.get("project") or run.project
            run.entity = body.get("entity") or run.entity
            run.group = body.get("run_group") or run.group
            run.job_type = body.get("job_type") or run.job_type
            run.tags = list(body.get("tags") or run.tags)
            run.config.update((body.get("config") or {}).get("update") or {})
        elif run is None:
            continue
        elif kind == "config":
            run.config.update(body.get("update") or {})
        elif kind == "history":
            _history_item(run, body.get("item") or {})
        elif kind == "summary":
            summary.update(body.get("update") or {})
            for key in body.get("remove") or []:
                summary.pop(key, None)
        elif kind == "environment" and body.get("args") is not None:
            run.args = [str(a) for a in body["args"]]
        elif kind == "exit":
            run.state = "finished" if not body.get("exit_code") else "failed"
    if run is None:
        raise ValueError("no run record")
    run.config.pop("_wandb", None)
    run.summary.update(flatten({k: v for k, v in summary.items() if not k.startswith("_")}))
    return run


def run_files(sweep_dir: Path) -> list[Path]:
    """The W&B run files under a sweep directory (offline or online runs), oldest first within a run."""
    found = [p for p in sweep_dir.rglob("run-*.wandb")
             if p.parent.name.startswith(("offline-run-", "run-")) and p.parent.parent.name == "wandb"]
    return sorted(found, key=lambda p: (str(p.parent.parent), p.parent.name))


def read_sweep_dir(sweep_dir: str | Path) -> list[LoggedRun]:
    """Every W&B run under ``sweep_dir`` (resumed parts merged), in the order of their job directories."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise ConfigError("sweep", str(root), "an existing sweep or run directory")
    runs: dict[str, LoggedRun] = {}
    for f in run_files(root):
        records = leet_records(f)
        rid = next((str(r["run"].get("run_id")) for r in records if r.get("type") == "run"), "")
        if not rid:  # an empty part (W&B began it, the process was killed before a record): nothing to read
            print(f"[prunelab] dashboard: {f} holds no W&B run record (a run killed as it started?); left out",
                  file=sys.stderr, flush=True)
            continue
        run = run_from_records(records, runs.get(rid))
        run.path = f.parent.parent.parent
        runs[rid] = run
    if not runs:
        raise ConfigError("sweep", str(root), "a directory holding W&B runs (<job>/wandb/offline-run-*, which runs with logger=wandb "
                          "write; logger=none writes none)")
    return list(runs.values())


# ------------------------------------------------------------------------------------------- W&B's server


def read_group(group: str, project: str, entity: str | None) -> list[LoggedRun]:
    """The runs of a W&B group through W&B's public API (credentials needed)."""
    import wandb

    api = wandb.Api()
    entity = entity or api.default_entity
    out = []
    for r in api.runs(f"{entity}/{project}", filters={"group": group}):
        run = LoggedRun(id=r.id, name=r.name or "", project=project, entity=entity, group=r.group or "",
                        job_type=r.job_type or "", tags=list(r.tags or []), config=dict(r.config), state=r.state)
        for row in r.scan_history():
            _history_item(run, row)
        run.summary = flatten({k: v for k, v in dict(r.summary).items() if not k.startswith("_")})
        run.args = list((r.metadata or {}).get("args") or [])
        out.append(run)
    if not out:
        raise ConfigError("group", group, f"a W&B group with runs in {entity}/{project}")
    return out
