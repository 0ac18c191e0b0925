"""What outlived the old grid report: reading a run's TensorBoard scalars
(now in study/export.py), and the grid experiments in conf/experiment/, which stay runnable as
plain sweeps whose results are TensorBoard and the sweep folder's trials.csv."""

import csv
import json
import math

import pytest
from torch.utils.tensorboard import SummaryWriter

from helpers.runs import CONF
from helpers.sweeps import load, sweep
from sgmod_study.study.export import curves, read_scalars

GRID_EXPERIMENTS = [
    "compare_activations",
    "depth",
    "norm_lr",
    "sgmod_ablations",
    "sgmod_lr_mult",
    "gan_grid",
    "gan_confirm",
]


def write_scalars(log_dir, scalars):
    """One event file holding {tag: [(step, value)]}, as a run's TensorBoard logger writes it."""
    with SummaryWriter(str(log_dir)) as writer:
        for tag, points in scalars.items():
            for step, value in points:
                writer.add_scalar(tag, value, step)


def test_read_scalars_merges_every_event_file_in_step_order(tmp_path):
    # a resumed run: its second event file holds the later epochs, written by a second logger
    write_scalars(tmp_path, {"val/acc": [(200, 0.85), (300, 0.9)], "sgmod/features.stage1.act/gamma": [(0, 1.0)]})
    write_scalars(tmp_path, {"val/acc": [(100, 0.8)], "sgmod/features.stage1.act/gamma": [(200, 2.5)]})
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    series = read_scalars(tmp_path)
    assert set(series) == {"val/acc", "sgmod/features.stage1.act/gamma"}
    assert [step for step, _ in series["val/acc"]] == [100, 200, 300]
    assert [value for _, value in series["val/acc"]] == pytest.approx([0.8, 0.85, 0.9])
    assert series["sgmod/features.stage1.act/gamma"] == [(0, 1.0), (200, 2.5)]


def test_read_scalars_of_a_folder_without_event_files_is_empty(tmp_path):
    assert read_scalars(tmp_path) == {}
    assert read_scalars(tmp_path / "no_such_folder") == {}


def test_curves_keep_learning_curves_gamma_beta_and_gradient_norms_rounded(tmp_path):
    write_scalars(
        tmp_path,
        {
            "val/acc": [(100, 0.8), (200, 0.912345678)],
            "train/loss": [(100, 0.5)],
            "train/loss_step": [(1, 2.3)],  # every step: too many points for a row
            "sgmod/features.stage1.act/gamma": [(0, 1.0), (100, 1.5)],
            "sgmod/features.stage1.act/gamma_std": [(0, 0.0)],  # the channel spread: TensorBoard only
            "sgmod/features.stage1.act/beta": [(0, 0.0), (100, -0.25)],
            "grad_norm/net.layer1.fc": [(0, 1e-3)],
            "lr-AdamW": [(0, 1e-3)],
        },
    )
    kept = curves(tmp_path)
    assert set(kept) == {
        "val/acc",
        "train/loss",
        "sgmod/features.stage1.act/gamma",
        "sgmod/features.stage1.act/beta",
        "grad_norm/net.layer1.fc",
    }
    assert kept["val/acc"] == [[100, 0.8], [200, 0.912346]]  # 6 significant digits (float32 in the file)
    assert kept["sgmod/features.stage1.act/beta"] == [[0, 0.0], [100, -0.25]]
    assert json.loads(json.dumps(kept)) == kept  # a runs.jsonl row holds it as it is


@pytest.mark.parametrize("experiment", GRID_EXPERIMENTS)
def test_experiment_grids_are_complete(experiment):
    """Each experiment's n_trials is its whole grid, and every grid value composes into a config."""
    from hydra import compose, initialize_config_dir

    from sgmod_study.sweeper.space import search_space

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        assert cfg.hydra.sweeper.sampler._target_.endswith("GridSampler")
        space, fixed = search_space(dict(cfg.hydra.sweeper.params), [])
        assert fixed == [] and all(hasattr(d, "choices") for d in space.values())
        assert cfg.hydra.sweeper.n_trials == math.prod(len(d.choices) for d in space.values())
        for key, distribution in space.items():
            for value in distribution.choices:
                compose("train", overrides=[f"experiment={experiment}", f"{key}={value}"])


@pytest.mark.slow
def test_an_experiment_grid_runs_as_a_plain_sweep_with_its_results_in_trials_csv(tmp_path):
    """experiment=compare_activations cut down to 2 activations x 2 seeds (relu and tanh: no fused
    Sgmod to compile in every trial process): every cell once, listed in trials.csv, each trial
    folder with its result.json and TensorBoard logs."""
    code, output = sweep(
        tmp_path,
        "hydra.sweeper.params.activation='choice(relu,tanh)'",
        "hydra.sweeper.params.seed='choice(0,1)'",
        n_trials=4,
        search="experiment=compare_activations",
    )
    assert code == 0, output[-3000:]
    study = load(tmp_path, name="compare_activations")
    cells = [("relu", 0), ("relu", 1), ("tanh", 0), ("tanh", 1)]
    assert sorted((t.params["activation"], t.params["seed"]) for t in study.trials) == cells
    with open(tmp_path / "sweep" / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["activation"], int(r["seed"])) for r in rows) == cells
    assert {r["state"] for r in rows} == {"COMPLETE"}
    for row in rows:
        folder = tmp_path / "sweep" / f"trial_{int(row['number']):04d}"
        assert 0 < json.loads((folder / "result.json").read_text())["metrics"]["test/acc"] <= 1
        assert "val/acc" in read_scalars(folder / "tensorboard")
