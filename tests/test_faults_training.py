"""Faults of a training run, each a clear stop or a kept promise: divergence, resume, interrupted
checkpoint writes, checkpoints of something else, impossible model shapes."""

import errno
import json
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from helpers.runs import TINY, compose_config, gan_overrides, run_train
from sgmod_study.data import ImageDataModule, dataset_spec
from sgmod_study.errors import ConfigError, TrainingDiverged
from sgmod_study.nn.models import Generator
from sgmod_study.run.training import train
from sgmod_study.tasks.checkpoints import AtomicCheckpointIO, ResumableCheckpoint, write_atomic
from sgmod_study.tasks.classifier import Classifier, build_classifier
from sgmod_study.tasks.registry import TASKS

HUGE_LR = ["optimizer=sgd", "optimizer.lr=1e6", "trainer.max_epochs=1"]
DIVERGED = (
    "non-finite loss at epoch 0: train/loss=nan (the epoch's mean); lower optimizer.lr (now 1e+06) "
    "or clip gradients (trainer.gradient_clip_val)"
)


@pytest.fixture
def finished_run(tiny_run) -> Path:
    """A finished 2-epoch digits run, the session's (conftest.py): its checkpoints are resumed (into
    folders of their own) and misused (copies) below."""
    return tiny_run


def _result(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


# -- 1. a diverged classifier is a divergence, not a result


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_records_it_as_diverged(tmp_path):
    with pytest.raises(TrainingDiverged) as err:
        train(compose_config([*TINY, *HUGE_LR], tmp_path))
    assert str(err.value) == DIVERGED
    result = json.loads((tmp_path / "result.json").read_text())  # a result too, with no optimized value
    assert (result["status"], result["value"], result["reason"]) == ("diverged", None, DIVERGED)
    assert not list(tmp_path.glob("checkpoints/best-*.ckpt"))  # a NaN epoch is no best model


def test_non_finite_validation_loss_is_named():
    classifier = Classifier(torch.nn.Identity(), 10, {"lr": 0.1}, {}, {})
    classifier.val_loss.update(torch.tensor(float("inf")))
    with pytest.raises(TrainingDiverged, match=r"^non-finite loss at epoch 0: val/loss=inf \(the epoch's mean\)"):
        classifier._check_finite(classifier.val_loss, "val/loss")
    classifier._check_finite(classifier.train_loss, "train/loss")  # no update yet: nothing to judge


@pytest.mark.slow
def test_diverged_run_exits_3_with_one_line(tmp_path):
    proc = run_train([*TINY, *HUGE_LR, "activation.impl=reference"], tmp_path / "run")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == f"diverged: {DIVERGED}"
    assert "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "diverged"


# -- 2. a resumed run tests the best epoch, also when that came before the interruption


def _test_accuracy(cfg, ckpt: Path) -> float:
    """Test a checkpoint on its own, outside train()."""
    c = OmegaConf.to_container(cfg, resolve=True)
    module = build_classifier(c, dataset_spec(c["data"]["name"]))
    module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    datamodule = ImageDataModule(**c["data"], seed=c["seed"])
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.test(module, datamodule=datamodule, verbose=False)[0]["test/acc"]


@pytest.mark.slow
def test_resumed_run_tests_the_best_epoch_from_before_the_interruption(finished_run, tmp_path, monkeypatch):
    first = _result(finished_run)
    first_best = Path(first["checkpoint"])
    before = first_best.read_bytes()

    def ruin(self):  # the resumed epoch is made worse deterministically: zero weights before its validation
        if not self.trainer.sanity_checking:
            for p in self.model.parameters():
                p.data.zero_()

    monkeypatch.setattr(Classifier, "on_validation_epoch_start", ruin, raising=False)
    second = tmp_path / "second"
    last = finished_run / "checkpoints" / "last.ckpt"
    cfg = compose_config([*TINY, "logger=csv", "trainer.max_epochs=3", f"ckpt_path={last}"], second)
    train(cfg)
    monkeypatch.undo()

    result = _result(second)
    tested = Path(result["checkpoint"])
    assert tested == second / "checkpoints" / first_best.name  # the old best, carried into the new folder
    assert tested.read_bytes() == before and first_best.read_bytes() == before
    assert torch.load(tested, weights_only=True)["epoch"] < 2  # an epoch before the interruption
    assert [p.name for p in (second / "checkpoints").glob("best-*.ckpt")] == [first_best.name]
    assert result["metrics"]["val/acc_best"] == first["metrics"]["val/acc_best"]
    assert result["metrics"]["test/acc"] == pytest.approx(_test_accuracy(cfg, tested), abs=1e-6)
    assert result["metrics"]["test/acc"] > 0.5  # not the ruined last epoch (chance is 0.1)


@pytest.mark.slow
def test_resuming_a_finished_run_tests_it_again(finished_run, tmp_path):
    """The resume command a run prints when stopped in its final test: nothing left to train."""
    train(compose_config([*TINY, "logger=csv", f"ckpt_path={finished_run / 'checkpoints' / 'last.ckpt'}"], tmp_path))
    assert _result(tmp_path)["metrics"] == pytest.approx(_result(finished_run)["metrics"], abs=1e-6)


def _checkpoint_state(old_folder: Path) -> dict:
    return {
        "dirpath": str(old_folder),
        "best_model_path": str(old_folder / "best-epoch004.ckpt"),
        "best_model_score": torch.tensor(0.9),
        "monitor": "val/acc",
    }


def test_resume_finds_the_best_file_next_to_a_moved_checkpoint(tmp_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "best-epoch004.ckpt").write_bytes(b"best weights")
    callback = ResumableCheckpoint(
        dirpath=tmp_path / "new", monitor="val/acc", mode="max", resumed_from=str(moved / "last.ckpt")
    )
    callback.load_state_dict(_checkpoint_state(tmp_path / "gone"))
    assert callback.best_model_path == str(tmp_path / "new" / "best-epoch004.ckpt")
    assert Path(callback.best_model_path).read_bytes() == b"best weights"
    assert callback.best_model_score == 0.9


def test_resume_without_the_old_best_file_is_refused(tmp_path):
    callback = ResumableCheckpoint(
        dirpath=tmp_path / "new", monitor="val/acc", mode="max", resumed_from=str(tmp_path / "old" / "last.ckpt")
    )
    with pytest.raises(ConfigError) as err:
        callback.load_state_dict(_checkpoint_state(tmp_path / "gone"))
    assert str(err.value) == (
        f"ckpt_path={tmp_path / 'old' / 'last.ckpt'}: the best checkpoint of its run (best-epoch004.ckpt) is neither "
        f"next to it nor at {tmp_path / 'gone' / 'best-epoch004.ckpt'}; the resumed run could not test its best "
        "epoch (put the file back)"
    )


def test_old_checkpoints_keep_their_callback_state_key(tmp_path):
    new = ResumableCheckpoint(dirpath=tmp_path, monitor="val/acc", mode="max")
    plain = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/acc", mode="max")
    assert new.state_key == plain.state_key


# -- 4. checkpoints and result.json are replaced whole or not at all


def _full_disk(obj, f, *args, **kwargs):
    f.write(b"\0" * 100)  # half-way, then the disk is full
    raise OSError(errno.ENOSPC, "No space left on device")


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 0, "w": torch.ones(3)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"epoch": 1, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 0
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temporary file left behind


def test_interrupted_text_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('{"value": 0.9}')

    def half_then_fail(f):
        f.write(b'{"val')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(path, half_then_fail)
    assert path.read_text() == '{"value": 0.9}' and os.listdir(tmp_path) == ["result.json"]


@pytest.mark.slow
def test_full_disk_during_training_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def full_disk_in_second_epoch(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 1:
            _full_disk(obj, f)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_in_second_epoch)
    with pytest.raises(OSError, match="No space left"):
        train(compose_config([*TINY, "trainer.limit_train_batches=3"], tmp_path))
    monkeypatch.undo()
    folder = tmp_path / "checkpoints"
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 0  # epoch 0's, whole
    assert sorted(p.name for p in folder.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]


# -- 5. ckpt_path must be a checkpoint of this task and network


def _refusal(ckpt: Path, overrides: list[str], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        train(compose_config([*overrides, f"ckpt_path={ckpt}"], tmp_path / "run"))
    return str(err.value)


def test_files_that_are_no_checkpoint_are_refused(tmp_path):
    text, noise = tmp_path / "notes.ckpt", tmp_path / "noise.ckpt"
    text.write_text("epoch 3 was the best\n")
    noise.write_bytes(os.urandom(4096))
    for path in (text, noise):
        message = _refusal(path, TINY, tmp_path)  # the reason is whatever the unpickler tripped over
        assert message.startswith(f"ckpt_path={path} is not a checkpoint: torch.load failed (")
        assert message.endswith("); give a <run>/checkpoints/*.ckpt file") and "\n" not in message
    plain = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, plain)
    assert _refusal(plain, TINY, tmp_path) == (
        f"ckpt_path={plain} is a PyTorch file but not a Lightning training checkpoint (no state_dict and loop "
        "state); give a <run>/checkpoints/*.ckpt file"
    )


@pytest.mark.slow
def test_checkpoint_of_another_task_is_refused(finished_run, tmp_path, fashion_sample_dir):
    last = finished_run / "checkpoints" / "last.ckpt"
    assert _refusal(last, gan_overrides(fashion_sample_dir), tmp_path) == (
        f"ckpt_path={last} is a checkpoint of task=classifier, not of task=gan: "
        "leave task= out to resume it, or give a gan checkpoint"
    )
    gan_like = tmp_path / "gan.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["hyper_parameters"]["task.name"] = "gan"
    torch.save(checkpoint, gan_like)
    assert _refusal(gan_like, TINY, tmp_path) == (
        f"ckpt_path={gan_like} is a checkpoint of task=gan, not of task=classifier: "
        "leave task= out to resume it, or give a classifier checkpoint"
    )
    del checkpoint["hyper_parameters"]
    torch.save(checkpoint, gan_like)
    assert _refusal(gan_like, TINY, tmp_path) == (
        f"ckpt_path={gan_like} is a Lightning checkpoint of another program (no task.name in it)"
    )


@pytest.mark.slow
def test_a_resume_refuses_only_the_options_that_differ_from_its_checkpoint(finished_run, tmp_path):
    """A config composed in Python gives every key; trainer.* may change, model.hidden and the optimizer not."""
    last = finished_run / "checkpoints" / "last.ckpt"
    overrides = [*TINY, "logger=csv", "trainer.max_epochs=9", "model.hidden=64", "optimizer.lr=0.01"]
    assert _refusal(last, overrides, tmp_path) == (
        f"ckpt_path={last}: a resumed run keeps the model, data, optimizer and seed of its checkpoint; these "
        "overrides differ from it: model.hidden=64 (checkpoint: 128), optimizer.lr=0.01 (checkpoint: 0.001) "
        "(leave them out: ckpt_path alone resumes with the checkpoint's configuration; to change them, start a "
        "new run)"
    )
    assert _refusal(last, [*TINY, "logger=csv", "model=mlp"], tmp_path).startswith(
        f"ckpt_path={last}: a resumed run keeps the model, data, optimizer and seed of its checkpoint; these "
        "overrides differ from it: model=mlp (checkpoint: cnn) (leave them out"
    )  # one entry for another model, not one for each of its keys


@pytest.mark.slow
def test_checkpoint_whose_weights_do_not_fit_is_refused(finished_run, tmp_path):
    last = finished_run / "checkpoints" / "last.ckpt"
    changed = tmp_path / "changed.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["hyper_parameters"]["model.hidden"] = 64  # as if the model code had changed since
    torch.save(checkpoint, changed)
    assert _refusal(changed, [*TINY, "logger=csv", "model.hidden=64"], tmp_path) == (
        f"ckpt_path={changed} holds weights of another network: it was trained with the same model options but "
        "other layer shapes; resume with its options"
    )


@pytest.mark.slow
def test_finished_run_records_its_checkpoint_and_data(finished_run):
    result = _result(finished_run)
    assert Path(result["checkpoint"]).parent == finished_run / "checkpoints"
    assert result["data_source"].startswith("scikit-learn ")
    checkpoint = torch.load(finished_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["ImageDataModule"] == {"source": result["data_source"]}  # every checkpoint says it too


# -- 6. impossible model shapes are one-line errors


def _build(overrides: list[str], tmp_path: Path):
    c = OmegaConf.to_container(compose_config(["data=digits", *overrides], tmp_path), resolve=True)
    return TASKS[c["task"]["name"]].build(c, dataset_spec(c["data"]["name"]))


LIST_RULE = "is not allowed: it must be a non-empty list of integers >= 1, e.g. [32, 64]"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.channels=[8,8,8,8,8]"],
            "model.channels=[8, 8, 8, 8, 8] has 5 pooling stages, too many for 8x8 images (they would shrink "
            "them to 0x0): at most 3 entries are allowed",
        ),
        (["model.channels=[]"], f"model.channels=[] {LIST_RULE}"),
        (["model.channels=[8,0]"], f"model.channels=[8, 0] {LIST_RULE}"),
        (["model.channels=16"], f"model.channels=16 {LIST_RULE}"),
        (["model.hidden=0"], "model.hidden=0 is not allowed: it must be an integer >= 1"),
        (["model.dropout=1.5"], "model.dropout=1.5 is not allowed: it must be a number in [0, 1)"),
        (["model=mlp", "model.depth=0"], "model.depth=0 is not allowed: it must be an integer >= 1"),
        (["model=mlp", "model.width=0"], "model.width=0 is not allowed: it must be an integer >= 1"),
        (["model=resnet", "model.channels=[]"], f"model.channels=[] {LIST_RULE}"),
        (
            ["model=resnet", "model.blocks_per_stage=0"],
            "model.blocks_per_stage=0 is not allowed: it must be an integer >= 1",
        ),
        (["task=gan", "model.width=0"], "model.width=0 is not allowed: it must be an integer >= 1"),
        (["task=gan", "model.latent_dim=0"], "model.latent_dim=0 is not allowed: it must be an integer >= 1"),
    ],
)
def test_impossible_model_shapes_are_one_line_errors(overrides, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        _build(overrides, tmp_path)
    assert str(err.value) == message


def test_gan_needs_an_image_size_divisible_by_4():
    with pytest.raises(ConfigError) as err:
        Generator(16, 1, 30, {"name": "relu"}, {"name": "batch", "placement": "before"})
    assert str(err.value) == "the DCGAN's two stride-2 layers need an image size divisible by 4; this dataset's is 30"
