"""The GAN study's protocol: evaluation leaves training alone, every evaluation is recorded with
equal real and generated counts, the final epoch counts, failed runs are results, and tuning is
fair (decoupled weight decay, G and D learning rates apart, seeded samplers)."""

import json
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

import sgmod_study.tasks.gan as gan_module
import sgmod_study.tasks.gan_metrics as gan_metrics
from helpers.records import gan_row
from helpers.runs import CONF, compose_config, gan_overrides, read_events
from hydra_plugins.sgmod_sweeper.sgmod_sweeper import SAMPLERS
from sgmod_study.data import ImageDataModule
from sgmod_study.errors import ConfigError, TrainingDiverged
from sgmod_study.nn.models import Generator
from sgmod_study.run.training import train
from sgmod_study.study.choose import best_cell, chosen_overrides
from sgmod_study.study.export import export
from sgmod_study.study.record import Record
from sgmod_study.study.report import outcomes
from sgmod_study.study.spec import load_study
from sgmod_study.sweeper.storage import DIVERGED
from sgmod_study.tasks.gan_metrics import eval_noise, sampling_mode
from sgmod_study.tasks.gan_quality import QUALITY_KEYS

# -- evaluation leaves training alone


def test_evaluation_loaders_leave_the_global_random_numbers_alone(fashion_sample_dir):
    data = ImageDataModule(
        name="fashion_mnist", data_dir=str(fashion_sample_dir), system_dir="/nonexistent", download=False, val_size=64
    )
    data.setup("fit")
    before = torch.get_rng_state()
    for loader in (data.val_dataloader(), data.test_dataloader()):
        next(iter(loader))
    assert torch.equal(torch.get_rng_state(), before)
    next(iter(data.train_dataloader()))  # the training shuffle draws from the seeded global generator
    assert not torch.equal(torch.get_rng_state(), before)


def test_sampling_mode_leaves_the_generator_as_it_was():
    torch.manual_seed(0)
    generator = Generator(16, 1, 28, {"name": "relu"}, {"name": "batch", "placement": "before"}, width=8).train()
    with torch.no_grad():
        generator(torch.randn(32, 16) + 3)  # running statistics away from their init
    state = {k: v.clone() for k, v in generator.state_dict().items()}
    z = torch.randn(16, 16)
    with torch.no_grad(), sampling_mode(generator, "train"):
        batch_stats = generator(z)
        assert generator.training
    with torch.no_grad(), sampling_mode(generator, "eval"):
        running_stats = generator(z)
        assert not generator.training
    assert generator.training  # its mode, as it was
    assert all(torch.equal(state[k], v) for k, v in generator.state_dict().items())  # running stats untouched
    assert not torch.allclose(batch_stats, running_stats, atol=1e-3)  # the two modes sample differently


def test_evaluation_noise_is_its_own_and_the_same_at_every_evaluation():
    before = torch.get_rng_state()
    first = torch.randn(4, 8, generator=eval_noise(0, "val", 0, torch.device("cpu")))
    again = torch.randn(4, 8, generator=eval_noise(0, "val", 0, torch.device("cpu")))
    others = [torch.randn(4, 8, generator=eval_noise(*a, torch.device("cpu"))) for a in ((0, "test", 0), (0, "val", 1))]
    assert torch.equal(first, again)
    assert not any(torch.equal(first, other) for other in others)
    assert torch.equal(torch.get_rng_state(), before)


# -- two tiny runs, shared: evaluated every epoch, and every second epoch


def _tiny_gan(fashion_sample_dir, folder: Path, every: int) -> tuple[dict, list]:
    """A 2-epoch GAN run evaluated every ``every`` epochs; its result.json and the (real, generated)
    counts of each quality computation."""
    counts = []
    real_quality = gan_metrics.quality

    def counting(real, fake, *args, **kwargs):
        counts.append((len(real), len(fake)))
        return real_quality(real, fake, *args, **kwargs)

    overrides = [
        *gan_overrides(fashion_sample_dir),
        "trainer.max_epochs=2",
        f"trainer.check_val_every_n_epoch={every}",
        "activation=sgmod",
        "seed=3",
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gan_metrics, "quality", counting)
        train(compose_config(overrides, folder))
    return json.loads((folder / "result.json").read_text()), counts


@pytest.fixture(scope="module")
def tiny_gans(fashion_sample_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_gans")
    return {
        every: (root / f"every{every}", *_tiny_gan(fashion_sample_dir, root / f"every{every}", every))
        for every in (1, 2)
    }


@pytest.mark.slow
def test_evaluating_more_or_less_often_leaves_training_bit_identical(tiny_gans):
    weights = []
    for every in (1, 2):
        checkpoint = torch.load(tiny_gans[every][0] / "checkpoints" / "last.ckpt", weights_only=False)
        weights.append(
            {k: v for k, v in checkpoint["state_dict"].items() if k.startswith(("generator.", "discriminator."))}
        )
    assert weights[0].keys() == weights[1].keys() and weights[0]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    finals = [(tiny_gans[every][0] / "sgmod_final.json").read_text() for every in (1, 2)]
    assert finals[0] == finals[1]


@pytest.mark.slow
def test_every_evaluation_compares_as_many_generated_images_as_real_ones(tiny_gans):
    folder, result, counts = tiny_gans[1]
    val, test = counts[:2], counts[2:]
    assert val == [(64, 64), (64, 64)]  # data.val_size=64, at each of the 2 epochs
    assert len(test) == 2 and test[0] == test[1] and test[0][0] == test[0][1] > 64  # both modes, the test set


@pytest.mark.slow
def test_a_gan_run_records_every_evaluation_and_scores_its_final_epoch(tiny_gans):
    folder, result, _ = tiny_gans[1]
    evaluations = result["evaluations"]
    assert [e["epoch"] for e in evaluations] == [1, 2]
    assert all(set(e) == {"epoch", "step", *(f"val/{k}" for k in QUALITY_KEYS)} for e in evaluations)
    metrics = result["metrics"]
    assert result["status"] == "complete" and result["checkpoint"] is None  # the last weights were tested
    assert result["value"] == pytest.approx(evaluations[-1]["val/fid"])  # the final epoch's, not the best one's
    assert metrics["val/fid_best"] == pytest.approx(min(e["val/fid"] for e in evaluations))
    best = min(evaluations, key=lambda e: e["val/fid"])
    assert metrics["val/best_epoch"] == best["epoch"]
    for prefix in ("val", "test", "test_eval_mode"):
        assert {f"{prefix}/{k}" for k in QUALITY_KEYS} <= set(metrics), prefix
    assert metrics["test/fid"] != metrics["test_eval_mode/fid"]  # the two sampling modes differ
    scalars = read_events(folder / "tensorboard")["scalars"]
    for key in QUALITY_KEYS:
        assert len(scalars[f"val/{key}"]) == 2, key
        assert f"test/{key}" in scalars and f"test_eval_mode/{key}" in scalars
    assert (folder / "samples" / "final.png").is_file()
    assert len(tiny_gans[2][1]["evaluations"]) == 1  # evaluated at epoch 2 only


@pytest.mark.slow
def test_a_diverged_gan_run_keeps_what_it_measured(tmp_path, fashion_sample_dir, monkeypatch):
    calls, real_loss = [], gan_module.discriminator_loss

    def nan_in_the_second_epoch(*args):
        calls.append(1)
        loss = real_loss(*args)
        return loss * float("nan") if len(calls) > 3 else loss  # limit_train_batches=3: epoch 2

    monkeypatch.setattr(gan_module, "discriminator_loss", nan_in_the_second_epoch)
    with pytest.raises(TrainingDiverged):
        train(compose_config([*gan_overrides(fashion_sample_dir), "trainer.max_epochs=2"], tmp_path))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "diverged" and result["value"] is None
    assert result["reason"].startswith("non-finite loss at step ")
    assert [e["epoch"] for e in result["evaluations"]] == [1]
    assert result["metrics"]["val/fid"] == pytest.approx(result["evaluations"][0]["val/fid"])


# -- failed runs are results


def _grid_study(trials: list[tuple[float, int, str, float | None]]) -> optuna.Study:
    """A grid study of (lr, seed, outcome, val/fid) trials; outcome: complete, collapsed or diverged."""
    study = optuna.create_study(direction="minimize")
    space = {"optimizer.lr": FloatDistribution(1e-5, 1e-2, log=True), "seed": IntDistribution(0, 10)}
    for lr, seed, outcome, value in trials:
        params = {"optimizer.lr": lr, "seed": seed}
        if outcome == "diverged":
            attrs = {"fail_reason": f"{DIVERGED}: non-finite loss"}
            trial = optuna.trial.create_trial(
                params=params, distributions=space, state=TrialState.FAIL, user_attrs=attrs
            )
        else:
            attrs = {"val/collapsed": 1.0 if outcome == "collapsed" else 0.0}
            trial = optuna.trial.create_trial(params=params, distributions=space, value=value, user_attrs=attrs)
        study.add_trial(trial)
    return study


def test_a_grids_best_cell_counts_failed_runs_before_its_mean():
    study = _grid_study(
        [
            (1e-3, 0, "complete", 10.0),  # the lowest FID, but one of its runs diverged
            (1e-3, 1, "diverged", None),
            (2e-4, 0, "complete", 20.0),
            (2e-4, 1, "complete", 22.0),
            (5e-5, 0, "complete", 15.0),  # lower than 2e-4's mean, but collapsed once
            (5e-5, 1, "collapsed", 16.0),
        ]
    )
    assert best_cell(study.get_trials(), maximize=False) == (("optimizer.lr", 2e-4),)
    assert chosen_overrides(study, "best_cell") == ["optimizer.lr=0.0002"]
    study = _grid_study([(1e-3, 0, "complete", 10.0), (1e-3, 1, "complete", 12.0), (2e-4, 0, "complete", 11.5)])
    assert chosen_overrides(study, "best_cell") == ["optimizer.lr=0.001"]  # equal failures: the lower mean


def test_where_every_run_collapsed_the_best_cell_is_the_lowest_mean_of_all_its_runs():
    # grid_sn_sgmod_fixed: all 18 runs collapse-flagged; the pick fell to the first cell (tie at inf)
    runs = [(5e-5, 0, 22.2), (5e-5, 1, 20.5), (5e-4, 0, 17.4), (5e-4, 1, 18.3), (5e-3, 0, 14.1), (5e-3, 1, 30.4)]
    study = _grid_study([(lr, seed, "collapsed", fid) for lr, seed, fid in runs])
    assert chosen_overrides(study, "best_cell") == ["optimizer.lr=0.0005"]  # mean 17.85, not 5e-5's 21.35
    rows = []
    for number, (lr, seed, fid) in enumerate(runs):
        row = gan_row(seed, fid, lr=lr, number=number)
        row["metrics"] |= {"val/collapsed": 1, "test/collapsed": 1}
        rows.append(row)
    assert outcomes.best_cell(rows, maximize=False) == (("optimizer.lr", 5e-4),)
    # at equal failures a cell with a run left beats one without, whatever the means
    one_kept = _grid_study([(lr, seed, "collapsed", fid) for lr, seed, fid in runs] + [(5e-3, 2, "complete", 40.0)])
    assert chosen_overrides(one_kept, "best_cell") == ["optimizer.lr=0.005"]


def test_the_reports_best_cell_is_the_sweepers_when_validation_and_test_flag_different_runs():
    # (lr, seed, val/fid, val flag, test flag): 1e-3 has the lower FID but collapsed in validation;
    # 2e-4's collapse shows only in the test evaluation, which the pick never sees
    runs = [(1e-3, 0, 10.0, 0, 0), (1e-3, 1, 11.0, 1, 0), (2e-4, 0, 20.0, 0, 1), (2e-4, 1, 22.0, 0, 0)]
    study = _grid_study([(lr, seed, "collapsed" if val else "complete", fid) for lr, seed, fid, val, _ in runs])
    rows = []
    for number, (lr, seed, fid, val, test) in enumerate(runs):
        row = gan_row(seed, fid - 1.0, lr=lr, number=number)
        row["metrics"] |= {"val/collapsed": val, "test/collapsed": test}
        rows.append(row)
    assert best_cell(study.get_trials(), maximize=False) == (("optimizer.lr", 2e-4),)
    assert outcomes.best_cell(rows, maximize=False) == (("optimizer.lr", 2e-4),)
    assert [outcomes.failure(r) for r in rows] == [None, None, "collapsed", None]  # stability reads the test flag


def test_a_sweeps_best_trial_to_retrain_is_the_best_that_did_not_fail():
    study = _grid_study([(1e-3, 0, "collapsed", 5.0), (2e-4, 1, "complete", 9.0), (5e-5, 2, "complete", 12.0)])
    assert chosen_overrides(study, "best") == ["optimizer.lr=0.0002", "seed=1"]  # not the collapsed 5.0
    with pytest.raises(ConfigError, match="has no finished trial that did not fail yet"):
        chosen_overrides(_grid_study([(1e-3, 0, "collapsed", 5.0)]), "best")


def test_a_confirm_of_a_grid_must_pick_its_best_cell(tmp_path):
    base = {"kind": "grid", "overrides": ["experiment=gan_grid"], "trials": 4}
    for pick, allowed in (("best", False), ("best_cell", True)):
        confirm = {"kind": "confirm", "of": "grid_a", "pick": pick, "seeds": [1, 2]}
        text = yaml.safe_dump({"parts": {"grid_a": base, "confirm_a": confirm}, "sections": {}})
        (tmp_path / "s.yaml").write_text(text)
        if allowed:
            assert load_study("s", tmp_path).parts["confirm_a"].of == "grid_a"
        else:
            with pytest.raises(ConfigError, match=r"parts\.confirm_a\.pick=best is not allowed for the grid grid_a: "):
                load_study("s", tmp_path)


def test_the_record_counts_a_diverged_run_as_a_result_and_keeps_its_evaluations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "study" / "gan" / "grid_a" / "study.journal"
    journal.parent.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="grid_a", storage=storage, direction="minimize")
    space = {"seed": IntDistribution(0, 10)}
    for number, (state, value) in enumerate(((TrialState.COMPLETE, 12.5), (TrialState.FAIL, None))):
        run = tmp_path / "outputs" / "study" / "gan" / "grid_a" / f"trial_{number:04d}"
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": number, "task": {"name": "gan"}}))
        status = "complete" if value else "diverged"
        evaluations = [{"epoch": 1, "step": 3, "val/fid": 30.0}]
        (run / "result.json").write_text(json.dumps({"status": status, "metrics": {}, "evaluations": evaluations}))
        (run / "samples").mkdir()
        (run / "samples" / "final.png").write_bytes(b"png")
        attrs = {"folder": str(run.relative_to(tmp_path))}
        if state == TrialState.FAIL:
            attrs["fail_reason"] = f"{DIVERGED}: non-finite loss at step 3"
        study.add_trial(
            optuna.trial.create_trial(
                params={"seed": number}, distributions=space, value=value, state=state, user_attrs=attrs
            )
        )
    record = Record(tmp_path / "study" / "gan")
    rows = export(record, "grid_a", samples=True)
    assert [r["status"] for r in rows] == ["complete", "diverged"]
    assert all(r["evaluations"] == [{"epoch": 1, "step": 3, "val/fid": 30.0}] for r in rows)
    assert [r["samples"] for r in rows] == ["samples/0000.png", "samples/0001.png"]
    assert (journal.parent / "samples" / "0001.png").read_bytes() == b"png"
    assert rows[0]["config"]["task"] == {"name": "gan"}
    assert record.finished("grid_a") == 2  # the diverged run is a result: the grid is complete


# -- fair tuning


def test_the_gan_trains_with_the_dcgan_adam_and_no_coupled_weight_decay(tmp_path):
    cfg = compose_config(["task=gan"], tmp_path)
    assert cfg.optimizer.name == "adamw" and list(cfg.optimizer.betas) == [0.5, 0.999]
    assert cfg.optimizer.weight_decay == 0.0
    assert cfg.optimized_metric == "val/fid"  # the final epoch's


def test_every_sampler_is_seeded():
    assert {name: node["seed"] for name, node in SAMPLERS.items() if node["seed"] is None} == {}


def test_sgmod_and_its_baseline_search_the_g_and_d_learning_rates_at_the_same_budget():
    searches = {
        name: yaml.safe_load((CONF / "hparams_search" / f"{name}.yaml").read_text())
        for name in ("sgmod_gan", "baseline_gan")
    }
    sweepers = {name: s["hydra"]["sweeper"] for name, s in searches.items()}
    assert {"task.lr_g", "task.lr_d"} <= set(sweepers["sgmod_gan"]["params"]) & set(sweepers["baseline_gan"]["params"])
    assert {"activation.gamma_init", "activation.beta_init", "activation.lr", "activation.weight_decay"} <= set(
        sweepers["sgmod_gan"]["params"]
    )
    assert sweepers["sgmod_gan"]["n_trials"] == sweepers["baseline_gan"]["n_trials"]
    samplers = [next(d for d in s["defaults"] if "override /hydra/sweeper/sampler" in d) for s in searches.values()]
    assert samplers[0] == samplers[1]


def test_the_gan_study_declares_at_least_5_lrs_from_5e_5_to_at_least_1e_3_x_3_seeds_and_8_fresh_seeds():
    study = load_study("gan")
    grids = [p for p in study.parts.values() if p.kind == "grid"]
    grid = yaml.safe_load((CONF / "experiment" / "gan_grid.yaml").read_text())["hydra"]["sweeper"]["params"]
    lrs = [float(x) for x in grid["optimizer.lr"].removeprefix("choice(").removesuffix(")").split(",")]
    assert len(lrs) >= 5 and min(lrs) == 5e-5 and max(lrs) >= 1e-3  # the range, and more
    assert grid["seed"].count(",") + 1 >= 3 and len(grids) >= 8
    confirms = [p for p in study.parts.values() if p.kind == "confirm"]
    assert all(len(p.seeds) >= 8 for p in confirms) and len(confirms) >= len(grids)
