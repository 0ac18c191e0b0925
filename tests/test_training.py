"""Real (tiny) training runs in-process: accuracy, TensorBoard contents, resume."""

import csv
import json
from pathlib import Path

import pytest
from tensorboard.plugins.hparams import api_pb2

from helpers.runs import compose_config, read_events
from sgmod_study.run.diagnostics import session_name
from sgmod_study.run.training import train
from sgmod_study.trial_contract import ENV_STUDY, ENV_TRIAL_NUMBER, RESULT_FILE


@pytest.mark.slow
def test_short_run_beats_chance_and_logs_everything(tiny_run):
    """The session's tiny run (conftest.py): 2 epochs of the debug=tiny preset, with checkpoints."""
    best_val = json.loads((tiny_run / RESULT_FILE).read_text())["value"]
    assert best_val > 0.6  # 10 classes: chance is 0.1

    logs = read_events(tiny_run / "tensorboard")
    scalars = logs["scalars"]
    for tag in (
        "train/loss",
        "train/loss_step",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "test/loss",
        "test/acc",
    ):
        assert tag in scalars, tag
    assert len(scalars["val/acc"]) == len(scalars["train/loss"]) == 2  # one per epoch, no sanity-check value
    assert scalars["val/acc_best"][-1][1] == max(v for _, v in scalars["val/acc"])
    assert scalars["test/acc"][0][1] > 0.6
    assert "hp_metric" not in scalars

    # gamma/beta of every Sgmod layer: scalars and histograms, from the init values to the end
    layers = ("features.stage1.act", "features.stage2.act", "head.act")
    session = read_events(tiny_run / "tensorboard" / "hparams")
    last_step = session["scalars"]["test/acc"][0][0]  # the final metrics are logged at the last step
    for layer in layers:
        for name in ("gamma", "beta"):
            assert f"sgmod_hist/{layer}/{name}" in logs["histograms"]
            assert f"sgmod/{layer}/{name}" not in logs["histograms"]  # one kind of data per tag
        gamma = scalars[f"sgmod/{layer}/gamma"]
        assert gamma[0] == (0, 1.0)
        assert gamma[-1][0] == last_step  # logged at the end of training too
        assert gamma[-1][1] != 1.0  # it learned
    assert {"grad_norm/features.stage1.conv", "grad_norm/head.out"} <= set(scalars)
    assert all(v > 0 for _, v in scalars["grad_norm/features.stage1.conv"])
    assert {"lr-AdamW/decay", "lr-AdamW/no_decay", "lr-AdamW/activation"} <= set(scalars)
    assert not [tag for tag in scalars if tag.startswith("final/")]  # no single-point copies on the Scalars page
    assert logs["hparams"] == []  # the HParams entry is a run of its own

    # HParams: the run's real hyperparameters with its final metrics under their own tags
    start = [data.session_start_info for tag, data in session["hparams"] if tag == "_hparams_/session_start_info"]
    assert len(start) == 1
    assert start[0].group_name == tiny_run.name  # a plain run is named by its folder
    hp = start[0].hparams
    assert hp["activation.name"].string_value == "sgmod"
    assert hp["optimizer.lr"].number_value == 0.001
    assert hp["activation.gamma_init"].number_value == 1.0
    assert "data.data_dir" not in hp
    assert not [tag for tag, _ in session["hparams"] if tag == "_hparams_/experiment"]  # TensorBoard builds the union
    end = [data.session_end_info for tag, data in session["hparams"] if tag == "_hparams_/session_end_info"]
    assert len(end) == 1 and end[0].status == api_pb2.STATUS_SUCCESS
    assert set(session["scalars"]) == {"val/acc_best", "test/acc", "test/loss"}  # the metric columns
    assert session["scalars"]["test/acc"][0][1] == scalars["test/acc"][0][1]

    assert (tiny_run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((tiny_run / "checkpoints").glob("best-epoch*.ckpt"))) == 1


@pytest.mark.slow
def test_resume_from_last_checkpoint_continues_the_epoch_count(tiny_run, tmp_path, tiny_overrides):
    best_first = json.loads((tiny_run / RESULT_FILE).read_text())["value"]  # 2 epochs of the preset
    last = tiny_run / "checkpoints" / "last.ckpt"

    second = tmp_path / "second"
    overrides = [*tiny_overrides, "trainer.max_epochs=3", f"ckpt_path={last}", "logger=csv"]
    best_second = train(compose_config(overrides, second))

    with open(second / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    trained_epochs = {int(r["epoch"]) for r in rows if r.get("train/acc")}
    assert trained_epochs == {2}  # only the third epoch ran
    assert best_second >= best_first  # val/acc_best was restored, not restarted


@pytest.mark.slow
def test_csv_logger_option(tmp_path, tiny_overrides):
    train(compose_config([*tiny_overrides, "logger=csv", "trainer.max_epochs=1"], tmp_path))
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/acc", "val/acc_best", "test/acc", "sgmod/head.act/gamma"} <= set(header)
    assert not (tmp_path / "tensorboard").exists()


@pytest.mark.slow
def test_study_strategies_are_plain_options(tmp_path, tiny_overrides):
    """Dropout, weight decay, clipping, label smoothing, mixed precision, augmentation, schedules."""
    strategies = [
        "model.dropout=0.3",
        "optimizer=sgd",
        "optimizer.weight_decay=0.001",
        "scheduler=step",
        "scheduler.step_size=1",
        "trainer.gradient_clip_val=1.0",
        "task.label_smoothing=0.1",
        "trainer.precision=bf16-mixed",
        "data.augment=true",
        "seed=7",
        "trainer.max_epochs=3",
    ]
    cfg = compose_config([*tiny_overrides, *strategies], tmp_path)
    assert train(cfg) > 0.5
    saved = (tmp_path / "tensorboard" / "hparams.yaml").read_text()
    for line in ("task.label_smoothing: 0.1", "trainer.precision: bf16-mixed", "data.augment: true", "seed: 7"):
        assert line in saved


@pytest.mark.slow
def test_same_seed_same_result(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "trainer.max_epochs=1", "trainer.deterministic=true"]
    first = train(compose_config(overrides, tmp_path / "a"))
    second = train(compose_config(overrides, tmp_path / "b"))
    assert first == second


def test_hparams_trial_ids_put_what_tells_runs_apart_first(monkeypatch):
    run = Path("outputs/runs/2026-11-25_08-29-25_classifier_sgmod")
    assert session_name(run) == "classifier_sgmod 2026-11-25_08-29-25"
    assert session_name(Path("outputs/my_run")) == "my_run"
    monkeypatch.setenv(ENV_STUDY, "sgmod_classifier")
    monkeypatch.setenv(ENV_TRIAL_NUMBER, "7")
    assert session_name(Path("outputs/multirun/2026-11-25_08-29-25/trial_0007")) == "#7 sgmod_classifier"
