"""The streaming data path: a DataLoader gives the in-memory path's batches (order from (seed, epoch), DDP-style
shards, batch-level augmentation from (seed, step)), per-sample random transforms seeded from (seed, step, index)
whatever the workers do, the automatic in-memory choice, and bitwise resume through the stream after SIGKILL or
SIGTERM mid-epoch."""
from __future__ import annotations

import re
import os
import random
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from prunelab import data
from prunelab.data.samples import sample_seed
from prunelab.errors import ConfigError
from prunelab.training.batches import MemoryBatches, StreamBatches, batch_source, step_seed
from prunelab.training.distributed import DistInfo
from prunelab.criteria.base import Calibration

from appkit import cli, faulty, run_inprocess, summary
from fakedata import write_cifar, write_cifar100

CONF = Path(__file__).parents[1] / "conf" / "dataset"
CPU = torch.device("cpu")
RANDOM_CROPS = [{"RandomResizedCrop": {"size": 32, "scale": [0.3, 1.0], "antialias": True}}, "RandomHorizontalFlip"]


def _cfg(name: str, **overrides):
    return OmegaConf.merge(OmegaConf.load(CONF / f"{name}.yaml"), overrides)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, per_batch=9, n_test=11)  # 45 train images: 40 train + 5 val
    write_cifar100(root, n_train=40, n_test=12)
    return root


def _sources(splits_mem, splits_stream, dist=DistInfo(), seed=3, workers=2, batch=7):
    mem = MemoryBatches(splits_mem, seed, batch, 4, dist, CPU)
    stream = StreamBatches(splits_stream, seed, batch, 4, dist, CPU, workers=workers, persistent_workers=True)
    return mem, stream


def _same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b)) and len(a) == len(b)


@pytest.mark.parametrize("augment", [False, True])
def test_stream_gives_the_in_memory_batches(cifar_root, augment):
    mem_splits = data.build(_cfg("cifar10", root=str(cifar_root), val_fraction=0.1, augment=augment))
    stream_splits = data.build(_cfg("cifar10", root=str(cifar_root), val_fraction=0.1, augment=augment,
                                    in_memory=False))
    assert mem_splits.in_memory and not stream_splits.in_memory
    assert isinstance(stream_splits.train, data.SampleDataset)
    x, y = mem_splits.train.tensors
    n, seed, batch = len(x), 3, 7
    for dist in (DistInfo(), DistInfo(rank=1, world_size=2)):
        mem, stream = _sources(mem_splits, stream_splits, dist, seed=seed, batch=batch)
        total = 3 * mem.steps_per_epoch + 2  # several epochs, a short last batch in each (40 = 2 * 14 + 12)
        got_mem = list(mem.train(0, total))
        got_stream = list(stream.train(0, total))
        assert len(got_mem) == len(got_stream) == total
        gb = batch * dist.world_size
        for step, ((xm, ym), (xs, ys)) in enumerate(zip(got_mem, got_stream)):
            # the definition: epoch order randperm(n) seeded seed * 1_000_003 + epoch, slice, every world-th
            epoch, i = divmod(step, -(-n // gb))
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            idx = order[i * gb:(i + 1) * gb][dist.rank::dist.world_size]
            want = x[idx]
            if augment:
                want = mem_splits.train_transform(want, torch.Generator().manual_seed(seed * 1_000_003 + step))
            assert torch.equal(xm, want) and torch.equal(ym, y[idx]), step
            assert torch.equal(xs, xm) and torch.equal(ys, ym), step  # bitwise the same batch
        # resuming at step k gives the uninterrupted run's batches from k on
        assert all(_same(a, b) for a, b in zip(stream.train(5, total), got_stream[5:]))
        for split in ("val", "test"):
            assert all(_same(a, b) for a, b in zip(mem.eval(split), stream.eval(split)))
            assert sum(len(b[1]) for b in stream.eval(split)) == len(range(dist.rank, stream.split_size(split),
                                                                          dist.world_size))
        for req in (Calibration(batches=2, batch_size=5), Calibration(per_class=1)):
            try:
                want_cal = mem.calibration(req)
            except ConfigError:  # a class with no sample in 40 random labels
                continue
            assert all(_same(a, b) for a, b in zip(want_cal, stream.calibration(req)))
        stream.close()


def test_streamed_tensor_datasets_give_the_same_batches():
    """digits (a TensorDataset) forced onto the DataLoader path: the same batches as slicing."""
    mem_splits = data.build({"name": "digits"})
    stream_splits = data.build({"name": "digits", "in_memory": False})
    assert not stream_splits.in_memory and isinstance(stream_splits.train, torch.utils.data.TensorDataset)
    assert isinstance(batch_source(stream_splits, 0, 64, 128, DistInfo(), CPU), StreamBatches)
    mem, stream = _sources(mem_splits, stream_splits, seed=0, workers=0, batch=64)
    total = mem.steps_per_epoch + 3
    assert all(_same(a, b) for a, b in zip(mem.train(0, total), stream.train(0, total)))


def test_per_sample_transforms_are_seeded_by_step_and_index(cifar_root):
    splits = data.build(_cfg("cifar100", root=str(cifar_root), augment=False, train_transforms=RANDOM_CROPS))
    assert not splits.in_memory and splits.per_sample  # auto: per-sample transforms stream
    ds = splits.train
    runs = {}
    for workers, prefetch in ((0, 2), (2, 1), (2, 4)):
        src = StreamBatches(splits, 5, 8, 16, DistInfo(), CPU, workers=workers, prefetch_factor=prefetch)
        runs[(workers, prefetch)] = [b[0] for b in src.train(0, 12)]
        src.close()
    base = runs[(0, 2)]
    for other in runs.values():  # worker count and scheduling change nothing
        assert all(torch.equal(a, b) for a, b in zip(base, other))
    src = StreamBatches(splits, 5, 8, 16, DistInfo(), CPU, workers=2)
    assert all(torch.equal(a[0], b) for a, b in zip(src.train(7, 12), base[7:]))  # resumed at step 7
    other_seed = StreamBatches(splits, 6, 8, 16, DistInfo(), CPU, workers=0)
    assert not torch.equal(next(iter(other_seed.train(0, 1)))[0], base[0])
    # a sample's crop is the transforms run after seeding torch and python with sample_seed(step_seed, index)
    import torchvision.transforms.v2 as v2

    step, pos = 4, 3
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(5 * 1_000_003 + step // 5))
    j = int(ds.indices[order[(step % 5) * 8 + pos]])
    s = sample_seed(step_seed(5, step), j)
    torch.manual_seed(s)
    random.seed(s)
    img = ds.base.images[j]
    crop = v2.Compose([v2.RandomResizedCrop(32, scale=(0.3, 1.0), antialias=True), v2.RandomHorizontalFlip()])(img)
    want = (crop.float() / 255 - torch.tensor(data.CIFAR100_MEAN).view(3, 1, 1)) / torch.tensor(
        data.CIFAR100_STD).view(3, 1, 1)
    assert torch.allclose(base[step][pos], want, atol=1e-6)
    plain = (img.float() / 255 - torch.tensor(data.CIFAR100_MEAN).view(3, 1, 1)) / torch.tensor(
        data.CIFAR100_STD).view(3, 1, 1)
    assert not torch.allclose(base[step][pos], plain, atol=1e-3)  # the transform did something
    # the same image at another step (here: every image, one epoch later) is cropped differently
    assert not torch.equal(ds[(step_seed(5, 0), 0)][0], ds[(step_seed(5, 5), 0)][0])
    rng_before = torch.get_rng_state()
    ds[(123, 0)]  # in the main process the global generators are left as they were
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_in_memory_choice_is_by_size_and_can_be_forced(cifar_root, capsys):
    root = str(cifar_root)
    assert data.build(_cfg("cifar100", root=root)).in_memory  # 0.6 MiB of float32 <= 2 GiB
    assert not data.build(_cfg("cifar100", root=root, memory_budget_gb=0.0001)).in_memory
    assert not data.build(_cfg("cifar100", root=root, in_memory="false")).in_memory
    assert data.build(_cfg("cifar100", root=root, in_memory=True, memory_budget_gb=0)).in_memory
    said = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[prunelab] dataset")]
    want = [r"in memory \(0\.\d MiB as float32 vs budget 2 GiB\)",  # the path, and why
            r"streamed \(0\.\d MiB as float32 vs budget 0.0001 GiB\)",
            r"streamed \(dataset.in_memory=false\)", r"in memory \(dataset.in_memory=true\)"]
    assert len(said) == len(want) and all(re.fullmatch(rf"\[prunelab\] dataset cifar100 {w}", ln)
                                          for ln, w in zip(said, want)), said
    assert data.build(_cfg("digits")).in_memory  # no budget to set: it always fits, and its line names none
    assert re.fullmatch(r"\[prunelab\] dataset digits in memory \(0\.\d MiB as float32\)\n", capsys.readouterr().out)
    with pytest.raises(ConfigError, match=r"^dataset.in_memory=true: false or auto: dataset.train_transforms are "
                                          r"per-sample"):
        data.build(_cfg("cifar100", root=root, in_memory=True, train_transforms=RANDOM_CROPS))
    with pytest.raises(ConfigError, match=r"^dataset.in_memory='maybe': auto, true or false$"):
        data.build(_cfg("cifar100", root=root, in_memory="maybe"))
    with pytest.raises(ConfigError, match=r"^dataset.train_transforms='RandomCrap': a torchvision.transforms.v2"):
        data.build(_cfg("cifar100", root=root, train_transforms=["RandomCrap"]))
    with pytest.raises(ConfigError, match=r"^dataset.train_transforms=.*arguments RandomCrop accepts"):
        data.build(_cfg("cifar100", root=root, train_transforms=[{"RandomCrop": {"sise": 3}}]))
    with pytest.raises(ConfigError, match=r"^dataset.train_transforms=.*input_shape \[3, 32, 32\]"):
        data.build(_cfg("cifar100", root=root, train_transforms=[{"RandomCrop": {"size": 16}}]))


# -------------------------------------------------------------------------- resume through the stream
RUN = [
    "dataset=cifar100", "dataset.in_memory=false", "dataset.augment=true", "dataset.val_fraction=0.1",
    "dataset.train_transforms=[{RandomResizedCrop:{size:32,scale:[0.5,1.0],antialias:true}},RandomHorizontalFlip]",
    "model=mlp", "criterion=snip_momentum", "logger=none", "trainer.progress=none", "trainer.deterministic=true",
    "trainer.max_steps=24", "trainer.batch_size=16", "trainer.workers=2", "schedule.start_step=4",
    "schedule.end_step=16", "schedule.pruning_frequency=4", "trainer.eval_every=8", "trainer.checkpoint_every=5",
    "trainer.log_every=2",
]



def _state(run_dir: Path) -> dict:
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    return {"model": ck["model"], "scores": ck["pruner"]["criterion"]["scores"], "step": ck["step"],
            "masks": torch.load(run_dir / "masks.pt", weights_only=True),
            "metrics": (run_dir / "metrics.jsonl").read_bytes()}


@pytest.fixture
def restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.slow
def test_resume_through_the_stream_is_bitwise_exact(tmp_path, monkeypatch, restore_determinism):
    """36 training images, batch 16: 3 steps per epoch (16, 16, 4), 2 workers, random per-sample crops and the
    batch-level crop/flip. SIGKILL at step 13 (epoch 4, its 2nd step; the last checkpoint is step 9) and SIGTERM
    at step 10 (the step finishes and is checkpointed), then resume with other loader settings (1 worker, not
    persistent; none): bitwise the uninterrupted run."""
    from prunelab import pruner
    from prunelab.training.trainer import Interrupted

    write_cifar100(tmp_path / "data", n_train=40, n_test=12)
    common = [*RUN, f"dataset.root={tmp_path / 'data'}"]
    run_inprocess(common, tmp_path / "ref")
    want = _state(tmp_path / "ref")

    # SIGKILL: a real process, killed at the start of step 13
    killed = cli([*common, f"hydra.run.dir={tmp_path / 'kill'}"], cwd=tmp_path, timeout=300, **faulty("kill@13"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert torch.load(tmp_path / "kill" / "checkpoint.pt", weights_only=True)["step"] == 9

    begin = pruner.Pruner.on_step_begin  # SIGTERM: in this process, to the trainer's handler

    def on_step_begin(self, step=None):
        if step == 10:
            os.kill(os.getpid(), signal.SIGTERM)
        return begin(self, step)

    monkeypatch.setattr(pruner.Pruner, "on_step_begin", on_step_begin)
    with pytest.raises(Interrupted, match="stopped by signal"):
        run_inprocess(common, tmp_path / "term")
    monkeypatch.setattr(pruner.Pruner, "on_step_begin", begin)
    assert torch.load(tmp_path / "term" / "checkpoint.pt", weights_only=True)["step"] == 10

    loaders = {"kill": ["trainer.workers=1", "trainer.persistent_workers=false"], "term": ["trainer.workers=0"]}
    for name, loader in loaders.items():
        run_inprocess([*common, *loader, "trainer.resume=true"], tmp_path / name)
        assert summary(tmp_path / name)["status"] == "finished"
        assert summary(tmp_path / name)["data_path"] == {"kill": "streamed (1 worker)", "term": "streamed (0 workers)"}[name]
        got = _state(tmp_path / name)
        assert got["step"] == want["step"] and got["metrics"] == want["metrics"], name
        for key in ("model", "scores", "masks"):
            assert all(torch.equal(got[key][k], want[key][k]) for k in want[key]), (name, key)


def test_a_resume_refuses_data_that_changed_since_its_checkpoint(tmp_path, monkeypatch, restore_determinism, caplog):
    """An ImageFolder run stopped at step 6, then a training image deleted: the resume is one line naming the
    split that changed (its size then and now), and leaves the run directory as it was; with the image back it
    resumes. A relabelled file (moved to another class folder) is caught as well; a checkpoint without the record
    (an earlier version's) resumes with a note."""
    from appkit import tree_digest
    from fakedata import write_image_folder
    from prunelab import pruner
    from prunelab.training.trainer import Interrupted

    tree = write_image_folder(tmp_path / "data", classes=("ant", "bee"), per_class={"train": 8, "val": 2})
    common = ["dataset=imagefolder", f"dataset.root={tmp_path / 'data'}", "dataset.num_classes=2",
              "dataset.image_size=16", "dataset.resize=18", "dataset.val_fraction=0.25", "model=mlp", "logger=none",
              "trainer.max_steps=10", "trainer.batch_size=4", "trainer.workers=0", "schedule.start_step=2",
              "schedule.end_step=8", "schedule.pruning_frequency=2"]
    begin = pruner.Pruner.on_step_begin

    def on_step_begin(self, step=None):
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return begin(self, step)

    monkeypatch.setattr(pruner.Pruner, "on_step_begin", on_step_begin)
    with pytest.raises(Interrupted):
        run_inprocess(common, tmp_path / "run")
    monkeypatch.setattr(pruner.Pruner, "on_step_begin", begin)
    before = tree_digest(tmp_path / "run")
    path = Path(tree["train"][0][0])
    kept = path.read_bytes()
    path.unlink()
    with pytest.raises(ConfigError, match=r"^dataset='imagefolder': the data the checkpoint of step 6 was trained "
                                          r"on \((train|val): 1[12] samples, \w+ then, 1[01] samples, \w+ now.*\): "
                                          r"restore it, or train on the new data in a new hydra.run.dir$"):
        run_inprocess([*common, "trainer.resume=true"], tmp_path / "run")
    assert tree_digest(tmp_path / "run") == before
    moved = path.parent.parent / ("bee" if path.parent.name == "ant" else "ant") / path.name
    moved.write_bytes(kept)  # back, in the other class: same count, other labels
    with pytest.raises(ConfigError, match=r"^dataset='imagefolder': the data the checkpoint of step 6 .* then, "):
        run_inprocess([*common, "trainer.resume=true"], tmp_path / "run")
    moved.rename(path)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)  # as an earlier version wrote it
    del ckpt["data"]
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    with caplog.at_level("WARNING", logger="prunelab"):
        assert run_inprocess([*common, "trainer.resume=true"], tmp_path / "run")["status"] == "finished"
    assert "the checkpoint of step 6 does not record its data" in caplog.text


def test_more_workers_than_the_cpus_can_run_are_warned_about(cifar_root, caplog):
    splits = data.build(_cfg("cifar100", root=str(cifar_root), train_transforms=RANDOM_CROPS))
    cpus = len(os.sched_getaffinity(0))
    for workers, warned in ((2 * cpus, False), (2 * cpus + 1, True)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="prunelab"):
            StreamBatches(splits, 5, 8, 16, DistInfo(), CPU, workers=workers).close()
        assert (f"trainer.workers={workers} on {cpus} CPUs" in caplog.text) is warned, caplog.text
