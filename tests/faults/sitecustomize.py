"""Fault injection for the reliability tests: with ``PYTHONPATH=tests/faults`` every Python process of a test (the
CLI, sweep jobs forked by the joblib launcher, torchrun's ranks) reads ``PRUNELAB_FAULTS`` and breaks itself as it
says. Comma-separated faults:

* ``kill@N`` / ``term@N``: SIGKILL / SIGTERM this process at the start of step N (``kill@N@snip``: only in a run of
  criterion snip; ``kill@N@rank1``: only on torchrun's rank 1);
* ``killwrite@N``: SIGKILL halfway through writing the first checkpoint of a step >= N;
* ``noise``: the digits training batches get noise drawn from torch's, numpy's and Python's global RNGs (so a
  resume that did not restore every RNG state goes astray);
* ``oserror@ERRNO@NAME``: every write to a file named NAME fails with that errno (ENOSPC, EROFS, ...);
* ``sigint@WHERE`` / ``sigterm@WHERE``: SIGINT (Ctrl-C) / SIGTERM to this process during start-up, ``build``: while
  the run builds its data (its directory claimed), ``write``: while it writes its start (its summary written, its
  config not yet), ``tracker``: after its start, while it opens its tracker, ``swallowed``: while it builds its data,
  inside a library that catches the KeyboardInterrupt and goes on (``broken``: and then fails with an error of its
  own, as a module half imported does), ``plugins``: while Hydra loads its plugins,
  ``import``: inside the CLI module's own imports (omegaconf's).
"""
import os

SPEC = os.environ.get("PRUNELAB_FAULTS", "")


def _install(spec: str) -> None:
    import builtins
    import errno
    import io
    import random
    import signal

    for fault in filter(None, spec.split(",")):
        kind, *args = fault.split("@")
        if kind in ("kill", "term"):
            _at_step(int(args[0]), signal.SIGKILL if kind == "kill" else signal.SIGTERM, args[1] if args[1:] else "")
        elif kind == "killwrite":
            import torch

            save, at = torch.save, int(args[0])

            def dying_save(obj, f, *a, **k):
                if isinstance(obj, dict) and obj.get("step", -1) >= at and hasattr(f, "write"):
                    buf = io.BytesIO()
                    save(obj, buf)
                    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                return save(obj, f, *a, **k)

            torch.save = dying_save
        elif kind == "noise":
            import numpy as np
            import torch

            from prunelab.data import digits

            build = digits.DATASETS._items["digits"]

            def noisy(cfg):
                splits = build(cfg)
                splits.train_transform = lambda x, gen: (x + 0.05 * torch.randn_like(x) * float(np.random.rand())
                                                         + 0.01 * random.random())
                return splits

            digits.DATASETS._items["digits"] = noisy
        elif kind == "oserror":
            code, name = getattr(errno, args[0]), args[1]
            real_open, real_os_open = builtins.open, os.open

            def guard(path):
                if os.path.basename(str(path)) in (name, name + ".tmp"):
                    raise OSError(code, os.strerror(code), str(path))

            def fake_open(file, mode="r", *a, **k):
                if any(c in mode for c in "wax+"):
                    guard(file)
                return real_open(file, mode, *a, **k)

            def fake_os_open(path, flags, *a, **k):
                if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                    guard(path)
                return real_os_open(path, flags, *a, **k)

            builtins.open, io.open, os.open = fake_open, fake_open, fake_os_open
        elif kind in ("sigint", "sigterm"):
            _signal_at(args[0], signal.SIGINT if kind == "sigint" else signal.SIGTERM)
        else:
            raise ValueError(f"unknown fault {fault!r}")


def _signal_at(where: str, sig: int) -> None:
    import importlib
    import signal
    import sys
    import time

    if where == "import":  # the first import of omegaconf: the CLI module's own, at its top
        class Interrupting:
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name == "omegaconf":
                    sys.meta_path.remove(Interrupting)
                    os.kill(os.getpid(), sig)
                    time.sleep(5)
                return None

        sys.meta_path.insert(0, Interrupting)
        return
    if where == "plugins":
        from hydra.core.plugins import Plugins

        real_instance = Plugins.instance

        def instance(*args, **kwargs):
            Plugins.instance = real_instance
            os.kill(os.getpid(), sig)
            time.sleep(5)

        Plugins.instance = staticmethod(instance)
        return

    module, name = {"build": ("prunelab.data", "build"), "write": ("prunelab.rundir", "atomic_write"),
                    "tracker": ("prunelab.app", "build_tracker"), "swallowed": ("prunelab.data", "build"), "broken": ("prunelab.data", "build")}[where]
    mod = importlib.import_module(module)
    real = getattr(mod, name)

    def signalled(*args, **kwargs):
        if where in ("swallowed", "broken"):  # a library that catches the interruption and goes on
            try:
                os.kill(os.getpid(), sig)
                time.sleep(5)
            except KeyboardInterrupt:
                if where == "broken":
                    raise ImportError("cannot load module more than once per process") from None
        elif where != "write" or not str(args[0]).endswith("summary.json"):  # write: once the summary is written
            os.kill(os.getpid(), sig)
            time.sleep(5)  # the handler runs at once (Ctrl-C: KeyboardInterrupt; SIGTERM: prunelab's)
        return real(*args, **kwargs)

    setattr(mod, name, signalled)
    del signal


def _at_step(step: int, sig: int, only: str) -> None:
    from prunelab import pruner

    begin = pruner.Pruner.on_step_begin

    def on_step_begin(self, at=None):
        if at == step and (not only or only == self.criterion.name or only == f"rank{os.environ.get('RANK')}"):
            os.kill(os.getpid(), sig)
        return begin(self, at)

    pruner.Pruner.on_step_begin = on_step_begin


if SPEC:
    _install(SPEC)
