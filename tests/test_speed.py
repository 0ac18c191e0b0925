"""The speed options: data on the device (DeviceBatches), channels-last, torch.compile."""

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers.runs import compose_config, gan_overrides, run_train
from sgmod_study.data import DeviceBatches, ImageDataModule, dataset_spec
from sgmod_study.errors import ConfigError
from sgmod_study.run.training import apply_speed, compile_mode, train
from sgmod_study.tasks.classifier import build_classifier


def numbered(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n one-pixel images whose value is their index, labelled with their index."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.arange(n)


def labels_of(batches) -> list[list[int]]:
    out = []
    for images, labels in batches:
        assert torch.equal(images.view(-1).long(), labels)  # images and labels indexed together
        out.append(labels.tolist())
    return out


def epoch_order(n: int, epoch: int, seed: int = 42, **kwargs) -> list[int]:
    batches = DeviceBatches(*numbered(n), batch_size=10, shuffle=True, seed=seed, epoch=lambda: epoch, **kwargs)
    return [i for batch in labels_of(batches) for i in batch]


def test_training_batches_cover_every_index_once_reproducibly_and_reshuffle_each_epoch():
    first = epoch_order(103, epoch=0)
    assert sorted(first) == list(range(103)) and first != list(range(103))
    assert epoch_order(103, epoch=0) == first  # deterministic given seed and epoch
    second = epoch_order(103, epoch=1)
    assert sorted(second) == list(range(103)) and second != first
    assert epoch_order(103, epoch=0, seed=43) not in (first, second)


def test_batch_sizes_and_len_match_the_dataloader_path_including_the_partial_last_batch():
    images, labels = numbered(103)
    loader = DataLoader(TensorDataset(images, labels), batch_size=10, shuffle=False)
    expected = labels_of(loader)
    for shuffle in (False, True):
        batches = DeviceBatches(images, labels, batch_size=10, shuffle=shuffle)
        got = labels_of(batches)
        assert len(batches) == len(got) == len(loader) == 11
        assert [len(b) for b in got] == [10] * 10 + [3]
        if not shuffle:
            assert got == expected  # evaluation: the DataLoader's batches exactly
    assert len(DeviceBatches(*numbered(100), batch_size=10)) == 10


def test_rank_shards_are_disjoint_equal_for_training_and_cover_every_image_for_evaluation():
    world = 3
    train = [epoch_order(103, epoch=2, rank=rank, world_size=world) for rank in range(world)]
    assert [len(share) for share in train] == [34, 34, 34]  # equal: the ranks step together
    assert len(set().union(*train)) == 102  # disjoint; one image of 103 left out this epoch
    assert set().union(*train) < set(range(103))
    lengths = {len(DeviceBatches(*numbered(103), 10, shuffle=True, rank=r, world_size=world)) for r in range(world)}
    assert lengths == {4}

    evaluation = [DeviceBatches(*numbered(103), 10, rank=rank, world_size=world) for rank in range(world)]
    shares = [[i for batch in labels_of(b) for i in batch] for b in evaluation]
    assert sorted(i for share in shares for i in share) == list(range(103))  # disjoint and covering
    assert [len(b) for b in evaluation] == [-(-len(share) // 10) for share in shares] == [4, 4, 4]


def test_on_device_datamodule_serves_device_batches_of_the_same_splits():
    options = {"val_size": 200, "batch_size": 64}
    plain, on_device = (ImageDataModule("digits", on_device=flag, **options) for flag in (False, True))
    for dm in (plain, on_device):
        dm.setup("fit")
    assert isinstance(plain.train_dataloader(), DataLoader)
    for stage in ("train", "val", "test"):
        loader = getattr(on_device, f"{stage}_dataloader")()
        assert isinstance(loader, DeviceBatches)
        expected = getattr(plain, f"{stage}_set").tensors
        images = torch.cat([x for x, _ in loader])
        assert len(loader) == len(getattr(plain, f"{stage}_dataloader")())
        assert sorted(images.sum((1, 2, 3)).tolist()) == pytest.approx(sorted(expected[0].sum((1, 2, 3)).tolist()))
    with pytest.raises(ConfigError, match=r"data.on_device='yes' is not allowed: it must be true or false"):
        ImageDataModule("digits", on_device="yes")


def test_batch_hook_augments_in_training_and_makes_batches_channels_last():
    dm = ImageDataModule("digits", augment=True, shift=1, hflip=True, channels_last=True)
    torch.manual_seed(0)
    images = torch.randn(16, 3, 8, 8)  # 3 channels: channels-last is a different layout
    dm.trainer = SimpleNamespace(training=True)
    augmented, _ = dm.on_after_batch_transfer((images, torch.zeros(16)), 0)
    assert augmented.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(augmented, images)
    dm.trainer = SimpleNamespace(training=False)
    evaluated, _ = dm.on_after_batch_transfer((images, torch.zeros(16)), 0)
    assert torch.equal(evaluated, images) and evaluated.is_contiguous(memory_format=torch.channels_last)
    flat = torch.randn(16, 10)
    assert dm.on_after_batch_transfer((flat, torch.zeros(16)), 0)[0] is flat  # only 4-D image batches


class RecordLabels(L.LightningModule):
    """A linear model that records the labels of every training batch, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(64, 10)
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        self.seen.setdefault(self.current_epoch, []).extend(labels.tolist())
        return F.cross_entropy(self.net(images.flatten(1)), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.slow
def test_lightning_reshuffles_device_batches_per_epoch_resumes_and_honours_limit_train_batches(tmp_path):
    def fit(limit: int | float = 1.0, epochs: int = 2, ckpt_path: Path | None = None) -> RecordLabels:
        dm = ImageDataModule("digits", val_size=200, batch_size=64, on_device=True, seed=5)
        module = RecordLabels()
        quiet = {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
        trainer = L.Trainer(
            accelerator="cpu",
            max_epochs=epochs,
            limit_train_batches=limit,
            limit_val_batches=0,
            logger=False,
            default_root_dir=tmp_path,
            **quiet,
        )
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        trainer.save_checkpoint(tmp_path / f"epochs{epochs}.ckpt")
        return module

    module = fit()
    dm = ImageDataModule("digits", val_size=200)
    dm.setup("fit")
    for epoch in (0, 1):
        expected = DeviceBatches(*dm.train_set.tensors, 64, shuffle=True, seed=5, epoch=lambda e=epoch: e)
        assert module.seen[epoch] == torch.cat([y for _, y in expected]).tolist()
        assert len(module.seen[epoch]) == len(dm.train_set)
    assert module.seen[0] != module.seen[1]

    fit(epochs=1)
    resumed = fit(ckpt_path=tmp_path / "epochs1.ckpt")
    assert list(resumed.seen) == [1] and resumed.seen[1] == module.seen[1]  # the order of an uninterrupted run

    limited = fit(limit=3)
    assert [len(limited.seen[epoch]) for epoch in (0, 1)] == [3 * 64, 3 * 64]
    assert limited.seen[0] == module.seen[0][: 3 * 64]


@pytest.mark.slow
def test_on_device_run_reaches_the_accuracy_of_the_dataloader_path(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "trainer.max_epochs=3"]
    on_device = train(compose_config([*overrides, "data.on_device=true"], tmp_path / "on_device"))
    loader = train(compose_config(overrides, tmp_path / "loader"))
    assert on_device > 0.6 and loader > 0.6  # 10 classes: chance is 0.1
    assert abs(on_device - loader) < 0.15


@pytest.mark.slow
def test_on_device_under_ddp_gives_each_rank_half_the_training_batches(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "trainer=ddp_cpu", "data.on_device=true", "logger=csv"]
    result = run_train(overrides, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        epoch_ends = [int(row["step"]) for row in csv.DictReader(f) if row["train/acc"]]
    # 1237 training digits: 618 per rank, 10 batches of 64 (20 without sharding)
    assert epoch_ends == [9, 19]


def test_compile_mode_choices():
    assert compile_mode(None) is None and compile_mode(False) is None
    assert compile_mode(True) == "default" and compile_mode("max-autotune") == "max-autotune"


def test_bad_speed_values_stop_with_the_valid_choices(tmp_path, tiny_overrides):
    cfg = compose_config([*tiny_overrides, "speed.compile=fast"], tmp_path)
    with pytest.raises(ConfigError) as err:
        train(cfg)
    message = str(err.value)
    assert message.startswith("speed.compile='fast' is not a known choice; valid choices: null or false (off)")
    assert "default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs" in message
    with pytest.raises(ConfigError, match="speed.channels_last='yes' is not allowed: it must be true or false"):
        train(compose_config([*tiny_overrides, "speed.channels_last=yes"], tmp_path))


def test_compile_with_the_gradient_penalty_is_refused(tmp_path, fashion_sample_dir):
    overrides = [*gan_overrides(fashion_sample_dir), "task.loss=wgan_gp", "model.discriminator.norm={name:layer}"]
    with pytest.raises(ConfigError, match="speed.compile=default cannot be used with task.loss=wgan_gp"):
        train(compose_config([*overrides, "speed.compile=default"], tmp_path))


def tiny_classifier(tiny_overrides, tmp_path):
    c = compose_config(tiny_overrides, tmp_path)
    return build_classifier(c, dataset_spec("digits"))


def test_apply_speed_works_in_place_and_keeps_state_dict_keys(tmp_path, tiny_overrides):
    module = tiny_classifier(tiny_overrides, tmp_path)
    keys = list(module.state_dict())
    conv = module.model.features.stage2.conv.weight  # 64 x 32 x 3 x 3: the two layouts differ
    assert not conv.is_contiguous(memory_format=torch.channels_last)
    apply_speed(module, {"name": "classifier"}, {"compile": "default", "channels_last": True})
    assert module.model.features.stage2.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(module.state_dict()) == keys  # no _orig_mod. wrapper
    assert module.model._compiled_call_impl is not None


@pytest.mark.slow
def test_channels_last_run_trains_channels_last_networks(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "speed.channels_last=true", "trainer.max_epochs=3", "data.on_device=true"]
    assert train(compose_config(overrides, tmp_path)) > 0.6
    weights = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert weights["model.features.stage2.conv.weight"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_compiled_sgmod_run_is_finite_and_saves_plain_state_dict_keys(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "activation=sgmod", "speed.compile=default", "trainer.max_epochs=1"]
    overrides += ["trainer.limit_train_batches=4", "logger=csv"]
    best_val = train(compose_config(overrides, tmp_path))
    assert 0 <= best_val <= 1
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = {name: float(row[name]) for row in rows for name in ("train/loss", "val/loss", "test/loss") if row[name]}
    assert len(losses) == 3 and all(math.isfinite(value) for value in losses.values())
    weights = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert "model.features.stage1.act.gamma" in weights
    assert not [key for key in weights if "_orig_mod" in key]
