"""A trained checkpoint, loaded for evaluation: load_from_checkpoint and python src/eval.py.

The classifier checkpoint is the session's tiny run (tests/conftest.py: tiny_run), 2 epochs on digits."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from helpers.runs import CONF, ROOT, TINY, compose_config, gan_overrides
from sgmod_study.errors import ConfigError
from sgmod_study.run.diagnostics import flatten_config
from sgmod_study.run.evaluation import evaluate
from sgmod_study.run.training import NOT_HYPERPARAMETERS, train
from sgmod_study.tasks.checkpoints import saved_config
from sgmod_study.tasks.classifier import Classifier
from sgmod_study.tasks.gan import GAN


def _best(run_dir: Path) -> Path:
    (best,) = (run_dir / "checkpoints").glob("best-epoch*.ckpt")
    return best


@pytest.mark.slow
def test_classifier_loads_from_its_checkpoint(tiny_run):
    best = _best(tiny_run)
    module = Classifier.load_from_checkpoint(best)
    checkpoint = torch.load(best, weights_only=True)
    assert isinstance(module, Classifier)
    assert module.hparams == checkpoint["hyper_parameters"]
    state = module.state_dict()
    assert state.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(state[k], v) for k, v in checkpoint["state_dict"].items())
    assert module.model.features.stage1.act.gamma.shape == (32,)


@pytest.mark.slow
def test_loading_a_checkpoint_of_another_task_is_one_line(tiny_run, tmp_path):
    checkpoint = torch.load(_best(tiny_run), weights_only=True)
    checkpoint["hyper_parameters"]["task.name"] = "gan"
    other = tmp_path / "other.ckpt"
    torch.save(checkpoint, other)
    with pytest.raises(ConfigError, match=rf"^ckpt_path={other} is a checkpoint of task=gan, not of task=classifier$"):
        Classifier.load_from_checkpoint(other)


@pytest.mark.slow
def test_eval_entry_point_tests_a_checkpoint_and_prints_the_runs_summary(tiny_run, tmp_path):
    """python src/eval.py ckpt_path=... reproduces the run's test metrics, in the lines train.py ends with."""
    result = json.loads((tiny_run / "result.json").read_text())
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "src" / "eval.py"),
            f"ckpt_path={_best(tiny_run)}",
            "trainer=cpu",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = [line for line in completed.stdout.splitlines() if line.startswith("== ")]
    test = result["metrics"]
    assert len(lines) == 3
    assert lines[0] == (
        "== classifier | sgmod | cnn | norm=batch (before act) | adamw lr=0.001 wd=0.0001 | data=digits seed=42"
    )
    metrics = f"== test/acc={test['test/acc']:.4f}  test/loss={test['test/loss']:.4f}  epochs=2  time="
    assert re.fullmatch(re.escape(metrics) + r"\d+\.\d min", lines[1]), lines[1]
    assert lines[2] == f"== outputs: {tmp_path}"


def test_eval_without_a_checkpoint_is_one_line(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=[f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"^ckpt_path=\?\?\? is not set: give the checkpoint to test, e\.g\. "):
        evaluate(cfg)


@pytest.mark.parametrize("overrides", [TINY, gan_overrides(Path("data"))], ids=["classifier", "gan"])
def test_saved_hyperparameters_give_back_the_runs_config(tmp_path, overrides):
    """What a checkpoint keeps (the loggers' flat hyperparameters) rebuilds the config, lists and nulls included."""
    c = OmegaConf.to_container(compose_config(overrides, tmp_path), resolve=True)
    flat = {k: v for k, v in flatten_config(c).items() if not k.startswith(NOT_HYPERPARAMETERS)}
    expected = {k: v for k, v in c.items() if k not in ("output_dir", "ckpt_path")}
    expected["data"] = {k: v for k, v in c["data"].items() if f"data.{k}" not in NOT_HYPERPARAMETERS}
    assert saved_config({"hyper_parameters": flat}) == expected


@pytest.mark.slow
def test_gan_loads_from_its_checkpoint(tmp_path, fashion_sample_dir):
    train(compose_config(gan_overrides(fashion_sample_dir), tmp_path))
    module = GAN.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert isinstance(module, GAN)
    assert all(torch.equal(module.state_dict()[k], v) for k, v in checkpoint["state_dict"].items())
    assert module(torch.randn(2, module.latent_dim)).shape == (2, 1, 28, 28)


def test_another_data_set_is_tested_only_when_its_shapes_fit():
    from sgmod_study.run.evaluation import check_data_fits

    check_data_fits("mnist", "fashion_mnist", "run/best.ckpt")  # 1x28x28 images, 10 classes: both
    with pytest.raises(ConfigError) as err:
        check_data_fits("fashion_mnist", "digits", "run/best.ckpt")
    assert str(err.value) == (
        "data.name=fashion_mnist does not fit ckpt_path=run/best.ckpt: its network was trained on digits (1x8x8 "
        "images, 10 classes), fashion_mnist has 1x28x28 images, 10 classes; leave the data override out to test "
        "on digits, or give a data set of the same shapes"
    )
