"""The run-directory contract: the names of a run's files, atomic writes, the run's status, the config
fingerprint, the lock that keeps two processes out of one directory, and when a directory may be reused.

A run directory holds ``config.yaml`` (resolved), ``summary.json`` (``status``: running, finished, failed or
interrupted, with the config ``fingerprint`` and ``world_size``), ``metrics.jsonl``, ``scores.jsonl``,
``masks.pt``, ``checkpoint.pt``, ``wandb/`` and ``.lock``. The rules:

* **One process per directory.** :class:`RunLock` holds an exclusive ``flock`` on ``.lock`` for the run's life;
  the kernel drops it when the process dies, so a killed run never leaves a stale lock. A second process is
  refused with one line naming the holder.
* **Reuse only for the same config.** :func:`decide` turns what a directory holds (:func:`inspect`) and
  ``trainer.resume`` into one of: start fresh, restart from step 0, resume from the checkpoint, or return the
  finished result; a run of another fingerprint is never resumed nor handed out.
* **A directory holding only a refused or never-started run is reusable.** A run "happened" once it finished,
  wrote a checkpoint or logged a record; anything less (a lock file, a ``running`` summary of a run killed in
  start-up) is overwritten by the next run.
* **A restart never appends to an earlier attempt.** Its records and W&B files move to ``.attempts/<n>/``.
* **Every file written whole is written atomically** (:func:`atomic_write`: temporary file, fsync, rename).
* **A refused run leaves nothing behind**: directories a run was about to create are noted
  (:func:`note_new_dirs`) and removed again if the run is refused (:func:`remove_new_dirs`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError

CONFIG = "config.yaml"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
SCORES = "scores.jsonl"
MASKS = "masks.pt"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
HYDRA = ".hydra"
ATTEMPTS = ".attempts"
WANDB = "wandb"
WANDB_RUN_ID = "wandb_run_id"
WANDB_STATE = "wandb_state.json"
#: what one attempt of a run leaves; a restart from step 0 moves these aside
ATTEMPT_FILES = (SUMMARY, METRICS, SCORES, MASKS, CHECKPOINT, WANDB, WANDB_RUN_ID, WANDB_STATE)

STATUSES = ("running", "finished", "failed", "interrupted")

#: config keys (dotted prefixes) that change how a run executes, is labelled or is watched, not its results:
#: left out of the fingerprint (and the report never splits a series by them). The data path and its loader are
#: among them: the streaming path gives the in-memory path's batches, whatever its workers, so a run may resume,
#: or a sweep continue, on a machine with other cores or memory.
EXECUTION_KEYS = (
    "logger", "tracking", "group", "trainer.resume", "trainer.checkpoint_every", "trainer.log_every",
    "trainer.progress", "trainer.num_threads", "trainer.check_masks", "trainer.device", "trainer.deterministic",
    "trainer.eval_batch_size", "trainer.workers", "trainer.pin_memory", "trainer.persistent_workers",
    "trainer.prefetch_factor", "dataset.in_memory", "dataset.memory_budget_gb", "criterion.label",
    "trainer.fused_step",
)
#: the execution keys of the first fingerprints (before 2026-12-07: the loader keys were in them). Run and sweep
#: directories that recorded such a fingerprint are still recognised (:meth:`RunState.computes`,
#: :func:`prunelab.sweep.check_sweep`), so an upgrade never costs a finished run.
LEGACY_EXECUTION_KEYS = (*EXECUTION_KEYS[:12], "criterion.label")  # no config had a label then

#: how long a claim waits for a lock that is only being looked at (see :meth:`RunLock.acquire`)
LOCK_PATIENCE_S = 0.5


def method_name(cfg: Any) -> str:
    """What a run's method is called (its name's first part, its W&B job type, its series in the report): the
    label its criterion sets (``static_erk``: the random criterion at init with ERK, masks fixed; or a user's
    ``+criterion.label``), else the regrowth updater that moves its masks (``rigl``), else the criterion type.
    ``cfg``: a config or plain dicts."""
    criterion = cfg.get("criterion") or {}
    regrowth = (cfg.get("regrowth") or {}).get("name")
    if criterion.get("label"):
        return str(criterion["label"])
    return str(regrowth) if regrowth not in (None, "none") else str(criterion.get("criterion_type"))


def sparsity_text(target: float) -> str:
    """A sparsity as run names and reports print it: two decimals where they are exact (``0.90``), else every
    digit it has (``0.9375``, ``0.96875``), so two targets never print alike."""
    t = float(target)
    return f"{t:.2f}" if float(f"{t:.2f}") == t else repr(t)


# ----------------------------------------------------------------------------------------------- writing
def jsonable(v: Any) -> Any:
    """A value JSON can hold: tensors as numbers or lists, NaN as null, infinities as +-1e308."""
    torch = sys.modules.get("torch")  # a tensor exists only where torch was imported
    if torch is not None and isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open ``path.tmp`` for writing; on success fsync it and rename it over ``path`` (then fsync the folder).
    A crash, a kill or an exception never leaves half a file at ``path``: the old one stays until the rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON via :func:`atomic_write`."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, default=jsonable)


def read_json(path: str | os.PathLike) -> tuple[dict[str, Any] | None, str | None]:
    """``(object, None)`` for a readable JSON object; ``(None, reason)`` for a missing, undecodable or non-object
    file."""
    try:
        obj = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None, f"no {Path(path).name}"
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        return None, f"{Path(path).name} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    if not isinstance(obj, dict):
        return None, f"{Path(path).name} holds a {type(obj).__name__}, not an object"
    return obj, None


def truncate_jsonl(path: str | os.PathLike, last_step: int) -> None:
    """Keep the records of steps <= ``last_step`` (atomically); a torn line (a run killed mid-write) goes too."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_bytes().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= last_step:
            kept.append(line + b"\n")
    with atomic_write(path, "wb") as f:
        f.write(b"".join(kept))


# ----------------------------------------------------------------------------------------------- fingerprint
def _drop(tree: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def config_fingerprint(cfg: Mapping[str, Any], world_size: int = 1,
                       execution_keys: tuple[str, ...] = EXECUTION_KEYS) -> str:
    """A hash of what determines a run's results: the resolved config without :data:`EXECUTION_KEYS`, and the
    number of data-parallel processes. A checkpoint is never resumed, nor a result reused, under another one.
    ``execution_keys=LEGACY_EXECUTION_KEYS``: the fingerprint earlier versions recorded."""
    d = json.loads(json.dumps(cfg, default=str))
    d.pop("hydra", None)
    for key in execution_keys:
        _drop(d, key)
    for key, value in ADDED_KEYS.items():  # the value that computes what configs without the key computed
        if _get(d, key, None) == value:
            _drop(d, key)
    d["world_size"] = int(world_size)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


#: config keys a later version added -> the value that computes what a config without the key computed (its run's
#: fingerprint is that of the config without it, so a run of an earlier version resumes, and is reused, under it):
#: random's ``criterion.stream`` (2026-12-08; ``model_init``: the draw of the model initialisation's stream)
ADDED_KEYS = {"criterion.stream": "model_init"}


def with_added_keys(config: dict[str, Any]) -> dict[str, Any]:
    """A flattened config of an earlier version with :data:`ADDED_KEYS` filled in where its criterion has them
    (a random criterion without ``criterion.stream`` drew ``model_init``), so its runs read as what they computed."""
    if config.get("criterion.criterion_type") == "random":
        for key, value in ADDED_KEYS.items():
            config.setdefault(key, value)
    return config


def _get(d: Mapping[str, Any], dotted: str, default: Any) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return out


#: the config keys a criterion option may choose for itself (conf/criterion/*.yaml override these groups: rigl's at_init
#: schedule, ERK split and regrowth; gmp's window; wanda's per_row): constant within each method and different
#: between methods, they belong to the method, not to a setting or a swept axis (the report, the dashboard)
METHOD_KEYS = ("schedule", "distribution", "regrowth", "pattern.scope")


def under(key: str, prefixes: Sequence[str]) -> bool:
    """Whether the flattened ``key`` is one of ``prefixes`` or below one."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def differences(old: Mapping[str, Any], new: Mapping[str, Any], execution_keys: Sequence[str] = EXECUTION_KEYS,
                most: int = 3, labels: tuple[str, str] = ("there", "here")) -> str:
    """The keys two resolved configs set differently, outside ``execution_keys``, as a user reads them:
    ``optimizer.lr (0.1 there, 0.5 here), seed (0 there, 1 here)``; at most ``most`` of them, then how many
    more; '' if none."""
    a, b = flatten(json.loads(json.dumps(old, default=str))), flatten(json.loads(json.dumps(new, default=str)))
    keys = differing_keys(a, b, execution_keys)
    shown = [f"{k} ({_value(a.get(k, _UNSET))} {labels[0]}, {_value(b.get(k, _UNSET))} {labels[1]})"
             for k in keys[:most]]
    return ", ".join(shown) + (f" and {len(keys) - most} more" if len(keys) > most else "")


_UNSET = object()


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any], execution_keys: Sequence[str] = EXECUTION_KEYS
                   ) -> list[str]:
    """The keys two flattened configs set differently, outside ``execution_keys`` (sorted)."""
    return [k for k in sorted(set(a) | set(b)) if a.get(k, _UNSET) != b.get(k, _UNSET)
            and not under(k, ("hydra", *execution_keys))]


def _value(v: Any) -> str:
    return "unset" if v is _UNSET else json.dumps(v)


def config_file_differences(run_dir: str | os.PathLike, config: Mapping[str, Any] | None) -> str:
    """:func:`differences` between the run in ``run_dir`` (its resolved ``config.yaml``) and ``config``; ''
    where either is unknown."""
    old = read_config_file(run_dir) if config is not None else None
    return differences(old, config) if old is not None and config is not None else ""


def read_config_file(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's resolved ``config.yaml`` (nested), or None where it cannot be read."""
    import yaml

    try:
        old = yaml.safe_load((Path(run_dir) / CONFIG).read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return old if isinstance(old, dict) else None


# ----------------------------------------------------------------------------------------------- lock
#: the descriptors of the run locks this process holds (see :func:`_close_locks_in_child`)
_HELD: set[int] = set()


def _close_locks_in_child() -> None:
    """In a forked child (a DataLoader worker): close the run locks' descriptors it inherited. A ``flock`` lives
    while any copy of its descriptor is open, so workers orphaned by a killed run would otherwise hold its
    directory until they notice (seconds), and a requeued ``trainer.resume=auto`` would be refused. Closing (not
    unlocking) leaves the parent's lock as it is."""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_locks_in_child)


class RunLock:
    """An exclusive ``flock`` on ``<run dir>/.lock``, held until :meth:`release` or the death of the process that
    took it (not of its forked children: they close their copy)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None
        self.created = False

    def acquire(self) -> None:
        """Take the lock or raise a one-line :class:`ConfigError` naming the process that holds it. A lock only
        being looked at (:func:`lock_holder` holds it for microseconds) is waited for up to LOCK_PATIENCE_S."""
        self.created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_PATIENCE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                holder = _read_holder(fd)
                os.close(fd)
                self.created = False
                raise ConfigError("hydra.run.dir", str(self.path.parent),
                                  f"a directory no other run is using (it is held by {holder}; two runs never "
                                  "share a directory: wait for it, or choose another hydra.run.dir)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        _HELD.add(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, remove: bool = False) -> None:
        """Drop the lock; ``remove`` also deletes the lock file (only if this process created it)."""
        if self._fd is None:
            return
        if remove and self.created:
            with contextlib.suppress(OSError):
                self.path.unlink()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        _HELD.discard(self._fd)
        os.close(self._fd)
        self._fd = None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return f"process {text[4:]}" if text.startswith("pid ") else "another process"


def lock_holder(run_dir: str | os.PathLike) -> str | None:
    """Who holds the run directory's lock right now ("process 123 on host"), or None (no live holder)."""
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        return holder
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return None


# ----------------------------------------------------------------------------------------------- state
@dataclasses.dataclass
class RunState:
    """What a run directory holds (see :func:`inspect`)."""

    path: Path
    summary: dict[str, Any] | None = None
    summary_problem: str | None = None
    fingerprint: str | None = None
    world_size: int | None = None
    has_checkpoint: bool = False
    has_records: bool = False
    holder: str | None = None

    @property
    def status(self) -> str | None:
        """The status summary.json states (None without a readable one)."""
        return None if self.summary is None else str(self.summary.get("status", "unknown"))

    @property
    def has_run(self) -> bool:
        """Whether a run happened here: it finished, checkpointed or logged. Anything less is reusable."""
        return self.status == "finished" or self.has_checkpoint or self.has_records

    @property
    def observed(self) -> str:
        """The status as it stands: ``running`` only while a live process holds the lock; a run that says
        ``running`` without one was killed; records without a summary: ``unfinished``; nothing: ``empty``."""
        if self.holder is not None:
            return "running"
        if self.status in ("finished", "failed", "interrupted"):
            return str(self.status)
        if self.status == "running":
            return "killed"
        return "unfinished" if self.has_run else "empty"

    def describes(self) -> bool:
        """Whether ``config.yaml`` is the config of the run recorded here: its fingerprint (as this version or an
        earlier one computes it) is the one the summary records. False for an edited config.yaml, or one copied
        from another run; a run that recorded no fingerprint passes."""
        if not self.fingerprint:
            return True
        cfg = _read_config_file(self.path / CONFIG)
        ws = self.world_size or 1
        return cfg is not None and self.fingerprint in (config_fingerprint(cfg, ws),
                                                        config_fingerprint(cfg, ws, LEGACY_EXECUTION_KEYS))

    def computes(self, fingerprint: str) -> bool:
        """Whether this directory's run is of the config with ``fingerprint``: its recorded fingerprint is that
        one, or (a fingerprint an earlier version recorded, or none) its resolved ``config.yaml`` has it now."""
        if self.fingerprint == fingerprint:
            return True
        return (self.path / CONFIG).is_file() and \
            _fingerprint_of_config_file(self.path / CONFIG, self.world_size or 1) == fingerprint


def inspect(run_dir: str | os.PathLike, locked_here: bool = False) -> RunState:
    """Read what ``run_dir`` holds without changing anything (no lock taken); ``locked_here``: this process holds
    the directory's lock (so the holder is not looked up: it would be this process)."""
    path = Path(run_dir)
    state = RunState(path)
    if not path.is_dir():
        return state
    state.summary, problem = read_json(path / SUMMARY)
    if (path / SUMMARY).exists():
        state.summary_problem = problem
    state.has_checkpoint = (path / CHECKPOINT).is_file()
    state.has_records = any((path / f).is_file() and (path / f).stat().st_size > 0 for f in (METRICS, SCORES))
    s = state.summary or {}
    state.world_size = int(s["world_size"]) if isinstance(s.get("world_size"), int) else None
    state.fingerprint = s.get("fingerprint") if isinstance(s.get("fingerprint"), str) else None
    if state.fingerprint is None and (path / CONFIG).is_file():
        state.fingerprint = _fingerprint_of_config_file(path / CONFIG, state.world_size or 1)
    state.holder = None if locked_here else lock_holder(path)
    return state


def _read_config_file(path: Path) -> dict[str, Any] | None:
    """A run's resolved config.yaml as plain dicts, or None where it cannot be read as a mapping."""
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _fingerprint_of_config_file(path: Path, world_size: int) -> str | None:
    """The fingerprint (as this version computes it) of a run, from its resolved config.yaml."""
    cfg = _read_config_file(path)
    return config_fingerprint(cfg, world_size) if cfg is not None else None


# ----------------------------------------------------------------------------------------------- decisions
RESUME_OFF, RESUME_TRUE, RESUME_AUTO, RESUME_PATH = "off", "true", "auto", "path"


def resume_mode(value: Any) -> str:
    """``trainer.resume`` as one of off, true, auto or path (a checkpoint file or a run directory)."""
    if value in (False, None, "", "false", "False"):
        return RESUME_OFF
    if value in (True, "true", "True"):
        return RESUME_TRUE
    if value == "auto":
        return RESUME_AUTO
    return RESUME_PATH


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with a run directory: ``fresh`` (nothing to keep), ``restart`` (an earlier attempt without a
    checkpoint: moved aside, start at step 0), ``resume`` (from ``checkpoint``) or ``finished`` (return
    ``summary``). ``recorded``: the fingerprint the checkpoint's directory recorded where it is not this config's
    but the directory's run is this config (an earlier version's fingerprint, see :meth:`RunState.computes`): its
    checkpoint carries that one."""

    kind: str
    checkpoint: Path | None = None
    summary: dict[str, Any] | None = None
    recorded: str | None = None


def decide(state: RunState, fingerprint: str, resume: Any, world_size: int = 1,
           key: str = "hydra.run.dir", config: Mapping[str, Any] | None = None) -> Decision:
    """The one rule for reusing a directory (raises a one-line :class:`ConfigError` when it must not be);
    ``config``: the resolved config asking, to name what differs from a run of another config."""
    mode = resume_mode(resume)
    where = str(state.path)
    if state.holder is not None:
        raise ConfigError(key, where, f"a directory no other run is using (it is held by {state.holder})")
    explicit = Path(str(resume)) if mode == RESUME_PATH else None
    if explicit is not None and explicit.is_dir():
        explicit = explicit / CHECKPOINT
    if not state.has_run:
        if mode == RESUME_TRUE:
            raise ConfigError("trainer.resume", True, f"a run directory holding a run to continue ({where} holds "
                              "none): trainer.resume=auto starts one when there is none")
        return _resume_from(explicit, fingerprint) if explicit is not None else Decision("fresh")
    status = {"running": "killed"}.get(str(state.status), str(state.status)) if state.status in STATUSES \
        else "unfinished"  # no live process holds it (checked above): a run that says running was killed
    status = f"{'an' if status[0] in 'aeiou' else 'a'} {status}"  # "holds an interrupted run"
    if mode == RESUME_OFF:
        raise ConfigError(key, where, f"a directory without an earlier run (it holds {status} run): "
                          "trainer.resume=true continues it (or returns its result), or choose a new hydra.run.dir")
    if state.world_size is not None and state.world_size != world_size:
        raise ConfigError("trainer.resume", resume, f"a run of {_procs(world_size)} ({where} holds {status} run of "
                          f"{_procs(state.world_size)}: resume it with the same number of processes)")
    if state.fingerprint is not None and not state.computes(fingerprint):
        differ = config_file_differences(state.path, config)
        differ = f": {differ};" if differ else ":"
        raise ConfigError("trainer.resume", resume, f"a run directory of this config ({where} holds {status} "
                          f"run of another config{differ} fingerprint {state.fingerprint}, this config's is "
                          f"{fingerprint}): continue it with its own overrides, or choose another hydra.run.dir")
    if state.status == "finished":
        return Decision("finished", summary=state.summary)
    if explicit is not None:
        return _resume_from(explicit, fingerprint)
    if state.has_checkpoint:
        return Decision("resume", checkpoint=state.path / CHECKPOINT,
                        recorded=state.fingerprint if state.fingerprint != fingerprint else None)
    return Decision("restart")


def _resume_from(checkpoint: Path, fingerprint: str) -> Decision:
    """Resume from a checkpoint ``trainer.resume`` names; in a run directory of this config that recorded an
    earlier version's fingerprint, that one is accepted in the checkpoint too."""
    where = inspect(checkpoint.parent, locked_here=True)
    old = where.fingerprint if where.fingerprint != fingerprint and where.computes(fingerprint) else None
    return Decision("resume", checkpoint=checkpoint, recorded=old)


def _procs(n: int) -> str:
    return "1 process" if n == 1 else f"{n} data-parallel processes (torchrun --nproc_per_node={n})"


def move_attempt_aside(run_dir: str | os.PathLike) -> Path | None:
    """Move an earlier attempt's files (records, summary, masks, W&B) to ``.attempts/<n>/``; returns that folder."""
    run_dir = Path(run_dir)
    present = [n for n in ATTEMPT_FILES if (run_dir / n).exists()]
    if not present:
        return None
    base = run_dir / ATTEMPTS
    n = 1 + max((int(p.name) for p in base.iterdir() if p.name.isdigit()), default=0) if base.is_dir() else 1
    target = base / str(n)
    target.mkdir(parents=True)
    for name in present:
        os.replace(run_dir / name, target / name)
    return target


# ----------------------------------------------------------------------------------------------- summary
def write_status(run_dir: str | os.PathLike, status: str, **fields: Any) -> None:
    """Write summary.json with ``status`` and ``fields``, keeping the identity fields of the summary already
    there (fingerprint, world size, name, start time)."""
    assert status in STATUSES, status
    path = Path(run_dir) / SUMMARY
    old, _ = read_json(path)
    keep = {k: old[k] for k in ("name", "fingerprint", "world_size", "started", "attempt") if old and k in old}
    write_json_atomic(path, {**keep, **fields, "status": status})


# ----------------------------------------------------------------------------------------------- paths
_NEW_DIRS: list[Path] = []
_STARTED: list[bool] = []


def check_target(path: str | os.PathLike, key: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``path`` can be (or is) a directory this process can write
    into: no part of it is a file, the first existing folder is writable, its disk is not full."""
    path = Path(os.path.abspath(path))
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(key, str(path), f"a directory path ({p} is a file)")
            if not os.access(p, os.W_OK | os.X_OK):
                raise ConfigError(key, str(path), f"a writable location ({p} is not writable: "
                                  f"{'read-only file system' if _read_only(p) else 'permission denied'})")
            if shutil.disk_usage(p).free < 1 << 20:
                raise ConfigError(key, str(path), f"a disk with free space ({p} has less than 1 MiB left)")
            return


def _read_only(p: Path) -> bool:
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def note_new_dirs(path: str | os.PathLike) -> None:
    """Remember ``path`` and its missing parents as about to be created by this process (see
    :func:`remove_new_dirs`)."""
    path = Path(os.path.abspath(path))
    for p in (path, *path.parents):
        if p.exists():
            break
        if p not in _NEW_DIRS:
            _NEW_DIRS.append(p)


def remove_new_dirs() -> None:
    """Remove the directories :func:`note_new_dirs` noted, deepest first, where they are empty (a refused or
    interrupted start leaves nothing; another run's files are never touched)."""
    for p in sorted(_NEW_DIRS, key=lambda q: len(q.parts), reverse=True):
        with contextlib.suppress(OSError):
            p.rmdir()
    _NEW_DIRS.clear()


def mark_started() -> None:
    """The run (or sweep) started: its directories are its own now."""
    _NEW_DIRS.clear()
    _STARTED.append(True)


def started() -> bool:
    """Whether this process started a run or sweep (wrote into a run directory)."""
    return bool(_STARTED)


def write_error(exc: OSError, path: str | os.PathLike, key: str = "hydra.run.dir") -> ConfigError:
    """A failed write during start-up, as the one-line error naming the directory."""
    why = {errno.ENOSPC: "the disk is full", errno.EROFS: "read-only file system", errno.EDQUOT: "disk quota exceeded",
           errno.EACCES: "permission denied", errno.EPERM: "permission denied"}.get(exc.errno or 0,
                                                                                   exc.strerror or str(exc))
    return ConfigError(key, str(path), f"a directory this run can write to ({why}: {exc.filename or path})")
