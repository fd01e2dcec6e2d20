"""A finished run's pruned model loads back from its directory alone and gives the run's own test accuracy; a
directory that is not a finished run, or whose files do not belong together, is refused with one line."""
from __future__ import annotations

import json

import pytest
import torch

from appkit import run_inprocess, summary
from prunelab import load_pruned
from prunelab.errors import ConfigError

RUN = ["logger=none", "trainer.progress=none", "trainer.max_steps=60", "schedule.start_step=10",
       "schedule.end_step=40", "schedule.pruning_frequency=10", "trainer.eval_every=30", "pattern=4x1"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("saved") / "run"
    run_inprocess(RUN, run_dir)
    return run_dir


def test_the_pruned_model_gives_the_runs_test_accuracy(finished):
    from prunelab.data import build

    run = load_pruned(finished)
    s = summary(finished)
    assert not run.model.training and run.config.pattern.type == "4x1"
    for layer, keep in run.masks.items():  # 4x1 blocks: each mask is the weight's shape, masked weights are 0
        w = run.weight(layer)
        assert keep.shape == w.shape and keep.dtype == torch.bool
        assert torch.count_nonzero(w[~keep]) == 0 and torch.equal(keep.reshape(-1, 4, keep.shape[1]).all(1),
                                                                   keep.reshape(-1, 4, keep.shape[1]).any(1))
    assert run.sparsity() == s["sparsity/masked"] and run.sparsity() == pytest.approx(0.9, abs=1e-3)
    x, y = build(run.config.dataset).test.tensors
    with torch.no_grad():
        correct = int((run.model(x).argmax(1) == y).sum())
    assert correct / len(y) == s["test/acc"]


def test_what_is_not_a_finished_run_is_refused(finished, tmp_path):
    import shutil

    with pytest.raises(ConfigError, match=r"^run_dir='.*missing': a finished run's directory \(no such directory\)$"):
        load_pruned(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^run_dir='.*empty': a finished run's directory \(it holds no run\)$"):
        load_pruned(tmp_path / "empty")
    killed = tmp_path / "killed"
    shutil.copytree(finished, killed)
    (killed / "summary.json").write_text(json.dumps({**summary(finished), "status": "running"}))
    with pytest.raises(ConfigError, match=r"a finished run's directory \(it holds a killed run: finish it with its "
                                          r"overrides, hydra.run.dir=.*killed and trainer.resume=auto \(from its last "
                                          r"checkpoint, or from step 0 if it stopped before its first\)\)$"):
        load_pruned(killed)
    # a checkpoint that revives a masked weight, or that another config wrote, does not belong to this run
    for name, change in (("revived", "weight"), ("foreign", "fingerprint")):
        other = tmp_path / name
        shutil.copytree(finished, other)
        ck = torch.load(other / "checkpoint.pt", weights_only=True)
        if change == "weight":
            layer, keep = next(iter(load_pruned(finished).masks.items()))
            w = ck["model"][f"{layer}.weight"]
            w[tuple((~keep).nonzero()[0].tolist())] = 1.0
        else:
            ck["fingerprint"] = "0" * 16
        torch.save(ck, other / "checkpoint.pt")
        want = r"a model that holds its masks \(fc1 has 1 masked weights that are not 0\)" if change == "weight" \
            else r"a checkpoint of the run its config.yaml describes \(it holds one of fingerprint 0{16}"
        with pytest.raises(ConfigError, match=want):
            load_pruned(other)
    # config.yaml edited (another seed; another model size): not the run's config, whatever the checkpoint holds;
    # the report does not compare such a run either
    from prunelab.report.data import load_run

    for name, old, new in (("reseeded", "seed: 0", "seed: 5"), ("resized", "- 128", "- 64")):
        other = tmp_path / name
        shutil.copytree(finished, other)
        text = (other / "config.yaml").read_text()
        assert old in text
        (other / "config.yaml").write_text(text.replace(old, new, 1))
        with pytest.raises(ConfigError, match=r"^run_dir=.*: a config.yaml of the run recorded there \(its fingerprint "
                                              r"is not the run's, [0-9a-f]{16}: it was edited, or copied from another "
                                              r"run\)$"):
            load_pruned(other)
        assert load_run(other).status == "unreadable" and "config.yaml is not the config" in load_run(other).error
    assert load_run(finished).status == "finished"
    # masks.pt replaced (all kept): its sparsity would read 0 beside a summary that says otherwise
    edited = tmp_path / "edited"
    shutil.copytree(finished, edited)
    masks = torch.load(edited / "masks.pt", weights_only=True)
    torch.save({n: torch.ones_like(m) for n, m in masks.items()}, edited / "masks.pt")
    with pytest.raises(ConfigError, match=r"a masks.pt equal to the masks in its checkpoint.pt \(they differ"):
        load_pruned(edited)
