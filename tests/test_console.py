"""The console shows the toolkit's own lines and the warnings a user can act on; the libraries'
chatter goes to the log file only (sgmod_study.run.console)."""

import re
import subprocess
import sys
import textwrap

import pytest
from omegaconf import OmegaConf

from helpers.runs import ROOT, compose_config, gan_overrides, run_train
from sgmod_study.run.console import CHATTER, is_chatter
from sgmod_study.run.training import print_summary

# One real line (or one write) of each kind of chatter, as the libraries print it.
CHATTER_LINES = [
    ".../_instantiate2.py:129: ExperimentalWarning: QMCSampler is experimental (supported from v3.0.0). The "
    "interface can change in the future.\n  result = _target_(*args, **kwargs)\n",
    "[I 2026-12-05 11:24:02,439] A new study created in Journal with name: sgmod_classifier\n",
    ".../fit_loop.py:321: The number of training batches (20) is smaller than the logging interval "
    "Trainer(log_every_n_steps=50). Set a lower value for log_every_n_steps if you want to see logs for the "
    "training epoch.\n",
    ".../result.py:433: It is recommended to use `self.log('val/fid', ..., sync_dist=True)` when logging on epoch "
    "level in distributed setting to accumulate the metric across devices.\n",
    ".../data_connector.py:217: Using `DistributedSampler` with the dataloaders. During `trainer.test()`, it is "
    "recommended to use `Trainer(devices=1, num_nodes=1)` to ensure each sample/batch gets evaluated exactly once.\n",
    ".../_ped_anova/evaluator.py:298: UserWarning: Target and region quantiles select the same set of trials. "
    "Parameter importances will be equal.\n  optuna_warn(\n",
    "[rank: 1] Seed set to 42\n",
    "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2\n",
    ".../report.py:80: UserWarning: Tight layout not applied. The left and right margins cannot be made large "
    "enough to accommodate all Axes decorations.\n  fig.tight_layout()\n",
]
# Lines that must stay on the console.
OWN_LINES = [
    "== classifier | sgmod | cnn | norm=batch (before act) | adamw lr=0.001 wd=0.0001 | data=digits seed=42\n",
    "error: optimizer.lr='abc' is not allowed: it must be a number > 0\n",
    "Seed set to 42\n",
    "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2\n",
    ".../data.py:99: UserWarning: data.val_size=5000 leaves 10 training images\n  warnings.warn(message)\n",
    "[W 2026-12-05 11:24:02,439] Trial 3 failed with value nan.\n",
]


def test_every_chatter_entry_matches_its_line_and_no_own_line():
    for pattern in CHATTER:
        assert any(re.search(pattern, line, re.MULTILINE) for line in CHATTER_LINES), pattern
    for line in CHATTER_LINES:
        assert is_chatter(line), line
    for line in OWN_LINES:
        assert not is_chatter(line), line


SWEEP_SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    from pathlib import Path
    import optuna  # imported before, as in the sweeper: its log handler writes to the process's stderr
    from sgmod_study.run.console import run_log

    with run_log(Path(sys.argv[1])):
        sampler = optuna.samplers.QMCSampler(seed=0)
        study = optuna.create_study(sampler=sampler, direction="maximize")
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
        warnings.warn("data.val_size leaves 10 training images", UserWarning)
        print("[sweep] best trial 0")
    print("after the sweep")
    """
)


def test_the_sweep_log_keeps_optuna_chatter_in_its_file_and_shows_the_rest(tmp_path):
    log = tmp_path / "sweep" / "sweep.log"
    done = subprocess.run(
        [sys.executable, "-c", SWEEP_SCRIPT, str(log)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    terminal = done.stdout + done.stderr
    assert "ExperimentalWarning" not in terminal and "[I " not in terminal, terminal
    assert "UserWarning: data.val_size leaves 10 training images" in done.stderr  # a warning to act on
    assert done.stdout == "[sweep] best trial 0\nafter the sweep\n"
    text = log.read_text()
    assert "ExperimentalWarning: QMCSampler is experimental" in text
    assert "] A new study created in memory with name: " in text and "] Trial 1 finished with value" in text
    assert "UserWarning: data.val_size leaves 10 training images" in text
    assert "[sweep] best trial 0" in text and "after the sweep" not in text


@pytest.fixture(scope="module")
def ddp_gan(tmp_path_factory, fashion_sample_dir):
    """A 2-process GAN run whose discriminator has its own activation and norm."""
    run = tmp_path_factory.mktemp("ddp_gan") / "run"
    args = [
        *gan_overrides(fashion_sample_dir),
        "trainer=ddp_cpu",
        "model.discriminator.activation={name:leaky_relu,negative_slope:0.2}",
        "model.discriminator.norm={name:layer}",
    ]
    return run_train(args, run), run


@pytest.mark.slow
def test_ddp_gan_prints_no_library_chatter_and_logs_it(ddp_gan):
    result, run = ddp_gan
    assert result.returncode == 0, result.stderr[-3000:]
    terminal = result.stdout + result.stderr
    for chatter in ("find_unused_parameters", "sync_dist=True", "DistributedSampler"):
        assert chatter not in terminal, chatter
    assert "[rank: 1]" not in terminal and "GLOBAL_RANK: 1" not in terminal
    assert "GLOBAL_RANK: 0" in terminal  # once, from the first rank
    log = (run / "train.log").read_text()
    for chatter in ("self.log('val/fid', ..., sync_dist=True)", "DistributedSampler"):
        assert chatter in log, chatter
    rank1 = (run / "train_ddp_process_1.log").read_text()
    assert "[rank: 1] Seed set to 42" in rank1 and "GLOBAL_RANK: 1" in rank1


@pytest.mark.slow
def test_gan_summary_names_each_networks_activation_and_norm(ddp_gan):
    result, run = ddp_gan
    assert result.returncode == 0, result.stderr[-3000:]
    expected = (
        "== gan | dcgan | G: sgmod, norm=batch (before act) | D: leaky_relu, norm=layer (before act) | "
        "adamw lr=0.0002 wd=0 | data=fashion_mnist seed=42\n"
    )
    assert expected in result.stdout, result.stdout


def test_gan_summary_names_each_networks_learning_rate_and_spectral_norm(tmp_path, capsys):
    overrides = ["task=gan", "model=dcgan_baseline", "task.lr_d=0.001", "model.generator.norm={name:none}"]
    c = compose_config([*overrides, "model.discriminator.spectral_norm=true"], tmp_path)
    print_summary(OmegaConf.to_container(c, resolve=True), {"val/fid_best": 12.5}, 3, 90.0, tmp_path)
    assert capsys.readouterr().out.splitlines()[1:3] == [
        "== gan | dcgan | G: relu, norm=none | D: leaky_relu, norm=batch (before act), spectral norm | "
        "adamw lr G=0.0002 D=0.001 wd=0 | data=fashion_mnist seed=42",
        "== val/fid_best=12.5000  epochs=3  time=1.5 min",
    ]
