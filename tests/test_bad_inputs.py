# ruff: noqa: E501  (the table reads best one row per line)
"""Every bad input stops at once with one line that names it, and exit code 2.

One table. Every row runs in-process through src/train.py's cli() (about 0.2 s: the schema runs
before anything is built); the rows named in END_TO_END also run as a real `python src/train.py`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.mounts import needs_root, tmpfs
from helpers.records import no_sweep, study_cli
from helpers.runs import CONF, ROOT, TINY, compose_config, run_train
from helpers.sweeps import train_multirun
from sgmod_study.config.activation_rules import ACTIVATIONS, NORMS
from sgmod_study.config.schema import MODELS, OPTIMIZER_RULES, check_config
from sgmod_study.nn import activations, models, norms
from sgmod_study.run import training
from sgmod_study.study.spec import load_study
from sgmod_study.tasks import optim

ALL_ACTIVATIONS = "elu, gelu, leaky_relu, mish, prelu, relu, selu, sgmod, "
CLASSIFIER_METRICS = "train/loss, train/acc, train/loss_step, val/loss, val/acc, val/acc_best, test/loss, test/acc, val_batch_stats/loss, val_batch_stats/acc"

# (overrides, exit code, how the one printed line starts)
BAD_INPUTS = [
    # a word where a number goes, and other wrong types
    (["optimizer.lr=abc"], 2, "error: optimizer.lr='abc' is not allowed: it must be a number > 0"),
    (["trainer.max_epochs=ten"], 2, "error: trainer.max_epochs='ten' is not allowed: it must be an integer >= 1"),
    (["data.batch_size=1.5"], 2, "error: data.batch_size=1.5 is not allowed: it must be an integer >= 1"),
    (["seed=1.5"], 2, "error: seed=1.5 is not allowed: it must be an integer in [0, 4294967295]"),
    (["activation.per_channel=maybe"], 2, "error: activation.per_channel='maybe' is not allowed: it must be true or false"),
    (["data.augment=1"], 2, "error: data.augment=1 is not allowed: it must be true or false"),
    (["model.channels=32"], 2, "error: model.channels=32 is not allowed: it must be a non-empty list of integers >= 1, e.g. [32, 64]"),
    (["optimizer.betas=[0.9]"], 2, "error: optimizer.betas=[0.9] is not allowed: it must be a list [beta1, beta2]"),
    (["trainer.gradient_clip_val=high"], 2, "error: trainer.gradient_clip_val='high' is not allowed: it must be null or a number >= 0"),
    (["optimizer.lr="], 2, "error: optimizer.lr='' is not allowed: it must be a number > 0"),
    (["hparams_search=null"], 2, "error: Config group override must be a string or a list. Got NoneType (a config group cannot be set to null: leave the override out)"),
    (["optimizer.lr=???"], 2, "error: optimizer.lr has no value (???): it must be a number > 0"),
    (["~seed"], 2, "error: seed is missing: it must be an integer in [0, 4294967295]"),
    # out of range
    (["optimizer.lr=-0.01"], 2, "error: optimizer.lr=-0.01 is not allowed: it must be a number > 0"),
    (["optimizer.lr=0"], 2, "error: optimizer.lr=0 is not allowed: it must be a number > 0"),
    (["optimizer.lr=nan"], 2, "error: optimizer.lr=nan is not allowed: it must be a number > 0"),
    (["optimizer.lr=inf"], 2, "error: optimizer.lr=inf is not allowed: it must be a number > 0"),
    (["optimizer.weight_decay=-1e-4"], 2, "error: optimizer.weight_decay=-0.0001 is not allowed: it must be a number >= 0"),
    (["activation.gamma_init=50"], 2, "error: activation.gamma_init=50 is outside its allowed range [0.1, 10.0] (activation.gamma_bounds sets the range)"),
    (["activation.beta_init=-7"], 2, "error: activation.beta_init=-7 is outside its allowed range [-5.0, 5.0]"),
    (["activation.gamma_bounds=[10,0.1]"], 2, "error: activation.gamma_bounds=[10, 0.1] is not allowed: it must be null or a list [low, high] of two numbers with low < high"),
    (["activation.init_std=-0.1"], 2, "error: activation.init_std=-0.1 is not allowed: it must be a number >= 0"),
    (["model.dropout=1.0"], 2, "error: model.dropout=1.0 is not allowed: it must be a number in [0, 1)"),
    (["model.init=he"], 2, "error: model.init='he' is not a known choice; valid choices: default, kaiming, orthogonal, xavier"),
    (["activation=softcap", "activation.gain=-1"], 2, "error: activation.gain=-1 is not allowed: it must be a number > 0"),
    (["model=mlp", "model.depth=0"], 2, "error: model.depth=0 is not allowed: it must be an integer >= 1"),
    (["norm=group", "norm.groups=0"], 2, "error: norm.groups=0 is not allowed: it must be an integer >= 1"),
    (["task.label_smoothing=1.5"], 2, "error: task.label_smoothing=1.5 is not allowed: it must be a number in [0, 1)"),
    (["data.val_size=0"], 2, "error: data.val_size=0 is not allowed: it must be an integer >= 1"),
    (["scheduler=step", "scheduler.step_size=0"], 2, "error: scheduler.step_size=0 is not allowed: it must be an integer >= 1"),
    (["scheduler.min_lr_ratio=2"], 2, "error: scheduler.min_lr_ratio=2 is not allowed: it must be a number in [0, 1]"),
    (["seed=-1"], 2, "error: seed=-1 is not allowed: it must be an integer in [0, 4294967295]"),
    (["diagnostics.every_n_steps=-5"], 2, "error: diagnostics.every_n_steps=-5 is not allowed: it must be null or an integer >= 0"),
    (["diagnostics.steps=[0,-50]"], 2, "error: diagnostics.steps=[0, -50] is not allowed: it must be null or a non-empty list of integers >= 0, e.g. [32, 64]"),
    (["trainer.log_every_n_steps=0"], 2, "error: trainer.log_every_n_steps=0 is not allowed: it must be an integer >= 1"),
    (["trainer.devices=0"], 2, "error: trainer.devices=0 is not allowed: it must be an integer >= 1, -1 (all), 'auto'"),
    # settings that trained forever or did nothing
    (["trainer.max_epochs=-1", "scheduler=none"], 2, "error: trainer.max_epochs=-1 is not allowed: it must be an integer >= 1"),
    (["trainer.max_epochs=0"], 2, "error: trainer.max_epochs=0 is not allowed: it must be an integer >= 1"),
    (["trainer.limit_train_batches=0"], 2, "error: trainer.limit_train_batches=0 is not allowed: it must be a fraction in (0, 1] or a number of batches >= 1"),
    (["trainer.limit_train_batches=1.5"], 2, "error: trainer.limit_train_batches=1.5 is not allowed: it must be a fraction in (0, 1]"),
    (["+trainer.limit_val_batches=0"], 2, "error: trainer.limit_val_batches=0 is not allowed: it must be a fraction in (0, 1]"),
    (["+trainer.max_steps=0"], 2, "error: trainer.max_steps=0 is not allowed: it must be an integer >= 1 or -1 (no limit)"),
    (["trainer.check_val_every_n_epoch=0"], 2, "error: trainer.check_val_every_n_epoch=0 is not allowed: it must be an integer >= 1"),
    (["hparams_search=nope"], 2, "error: hparams_search='nope' is not a known choice; valid choices: baseline_classifier, baseline_gan, sgmod_classifier, sgmod_gan"),
    (["experiment=nope"], 2, "error: experiment='nope' is not a known choice; valid choices: compare_activations, depth, "),
    # invalid choices
    (["norm.placement=middle"], 2, "error: norm.placement='middle' is not a known choice; valid choices: after, before"),
    (["activation.init=uniform"], 2, "error: activation.init='uniform' is not a known choice; valid choices: constant, normal"),
    (["data.scaling=minmax"], 2, "error: data.scaling='minmax' is not a known choice; valid choices: standardize, symmetric"),
    (["speed.compile=fast"], 2, "error: speed.compile='fast' is not a known choice; valid choices: null or false (off), default, reduce-overhead, "),
    (["trainer.precision=8-mixed"], 2, "error: trainer.precision='8-mixed' is not a known choice; valid choices: 32-true, 16-mixed, bf16-mixed, "),
    (["trainer.accelerator=quantum"], 2, "error: trainer.accelerator='quantum' is not a known choice; valid choices: auto, cpu, cuda, gpu, mps, tpu"),
    (["+trainer.strategy=ddp_magic"], 2, "error: trainer.strategy='ddp_magic' is not a known choice; valid choices: auto, ddp, "),
    (["checkpoint.mode=best"], 2, "error: checkpoint.mode='best' is not a known choice; valid choices: max, min"),
    (["logger.name=wandb"], 2, "error: logger.name='wandb' is not a known choice; valid choices: csv, tensorboard"),
    (["task=gan", "task.loss=wasserstein"], 2, "error: task.loss='wasserstein' is not a known choice; valid choices: bce, hinge, wgan_gp"),
    (["task=gan", "model.discriminator.activation={name:swishy}"], 2, "error: model.discriminator.activation.name='swishy' is not a known choice; valid choices: elu, "),
    (["task=gan", "model.generator.norm={name:batch,placement:inside}"], 2, "error: model.generator.norm.placement='inside' is not a known choice; valid choices: after, before"),
    # metrics no run of the task logs
    (["optimized_metric=val/accuracy"], 2, f"error: optimized_metric='val/accuracy' is not a metric task=classifier logs; its metrics: {CLASSIFIER_METRICS}"),
    (["optimized_metric=[val/acc_best,test/f1]"], 2, "error: optimized_metric='test/f1' is not a metric task=classifier logs"),
    (["task=gan", "optimized_metric=val/acc_best"], 2, "error: optimized_metric='val/acc_best' is not a metric task=gan logs; its metrics: train/d_loss, "),
    (["optimized_metric=[]"], 2, "error: optimized_metric=[] is not allowed: it must be a metric name or a non-empty list of metric names"),
    (["checkpoint.monitor=test/acc"], 2, "error: checkpoint.monitor='test/acc' is not a metric task=classifier logs while training"),
    # settings that do not fit together
    (["task=gan", "model=cnn"], 2, "error: task=gan needs model=dcgan or model=dcgan_baseline, got model=cnn"),
    (["model=dcgan"], 2, "error: task=classifier needs model=cnn, mlp or resnet, got model=dcgan"),
    (["optimizer=sgd", "optimizer.momentum=0"], 2, "error: optimizer.nesterov=true needs optimizer.momentum > 0, got 0"),
    # keys that do not exist
    (["foo=1"], 2, "error: foo is not a known setting; settings at the top level: activation, checkpoint, "),
    (["optimizer.learning_rate=0.1"], 2, "error: optimizer.learning_rate is not a known setting; settings of optimizer: betas, lr, name, weight_decay (to add it anyway: +optimizer.learning_rate=0.1)"),
    (["+foo=1"], 2, "error: foo=1 is not a setting of the config; its settings: activation, checkpoint, "),
    (["+optimizer.momentum=0.9"], 2, "error: optimizer.momentum=0.9 is not a setting of optimizer=adamw; its settings: betas, lr, name, weight_decay (or another argument of AdamW)"),
    (["activation=relu", "+activation.inplace=true"], 2, "error: activation.inplace=True is not a setting of activation=relu; its settings: gain, name"),
    (["+trainer.logger=false"], 2, "error: trainer.logger=False is not a setting of trainer; its settings: "),
    (["+optimizer.lr=1"], 2, "error: Could not append to config. An item is already at 'optimizer.lr'."),
    (["~foo"], 2, "error: Could not delete from config. 'foo' does not exist."),
    # Hydra's own errors: group options, the override grammar, interpolations
    (["activation=swishy"], 2, f"error: activation='swishy' is not a known choice; valid choices: {ALL_ACTIVATIONS}"),
    (["data=imagenet"], 2, "error: data='imagenet' is not a known choice; valid choices: cifar10, digits, fashion_mnist, mnist"),
    (["hydra/launcher=nope"], 2, "error: hydra/launcher='nope' is not a known choice; valid choices: basic, slurm, "),
    (["optimizer.lr=[1,"], 2, "error: cannot parse the override 'optimizer.lr=[1,': no viable alternative at input '[1,'"),
    (["activation"], 2, "error: cannot parse the override 'activation': missing EQUAL at '<EOF>'"),
    (["activation=relu,elu"], 2, "error: Ambiguous value for argument 'activation=relu,elu' 1. To use it as a list"),
    (["seed=${oops}"], 2, "error: seed: Interpolation key 'oops' not found"),
    (["-m", "activation=relu,swishy"], 2, f"error: activation='swishy' is not a known choice; valid choices: {ALL_ACTIVATIONS}"),
    (["-m", "trainer.max_epochs=ten"], 2, "error: trainer.max_epochs='ten' is not allowed: it must be an integer >= 1"),
    # an activation of your own (target: package.module:Factory) and what a study of it searches (search:)
    (["activation=softcap", "activation.target=examples.softcap"], 2, "error: activation.target='examples.softcap' is not allowed: it must be 'package.module:Factory', an importable module and a callable in it"),
    (["activation=softcap", "+activation.extra={a:1}"], 2, "error: activation.extra={'a': 1} is not allowed: it must be a plain value (a number, a string, true or false, null, or a list of those)"),
    (["activation=softcap", "activation.lr=-1"], 2, "error: activation.lr=-1 is not allowed: it must be null or a number > 0"),
    (["activation=softcap", "activation.search.alpha_init=0.5"], 2, "error: activation.search.alpha_init=0.5 is not allowed: it must be a sweep range as a string, such as interval(low, high)"),
    (["activation=softcap", "+activation.search.alpha='interval(0.5, 2.0)'"], 2, "error: activation.search.alpha is not an option set in the activation's config; its options: alpha_init, lr, lr_mult, weight_decay (set the option's default next to its range)"),
    (["activation=sgmod", "+activation.search.gamma='interval(0.5, 2.0)'"], 2, "error: activation.search.gamma is not an option set in the activation's config; its options: beta_bounds, beta_init, "),
    (["activation=sgmod", "activation.name=sgmodd"], 2, "error: activation.name='sgmodd' is not a known choice; valid choices: elu, gelu, leaky_relu, mish, prelu, relu, selu, sgmod, sigmoid, silu, tanh"),
]  # fmt: skip

# Rows also run as a real `python src/train.py` (about 5 s each): a schema error, a composition
# error, one in a multirun, a wrong type, an optimized_metric.
END_TO_END = (
    "trainer.max_epochs=-1 scheduler=none",
    "foo=1",
    "-m activation=relu,swishy",
    "data.batch_size=1.5",
    "optimized_metric=val/accuracy",
)


def _row_id(row) -> str:
    return " ".join(row[0])


def _argv(overrides: list[str], tmp_path: Path) -> list[str]:
    """Flags first, then a tiny run (in case a bad value got through), then the row's overrides."""
    flags = [o for o in overrides if o == "-m"]
    rest = [o for o in overrides if o != "-m"]
    return [*flags, *TINY, *rest, f"hydra.sweep.dir={tmp_path / 'sweep'}"]


def _load_cli():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "src" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Hydra looks for ../conf next to the file of a task function defined in __main__ (a script);
    # for one in an imported module it would look inside that module's package
    module.main.__wrapped__.__module__ = "__main__"
    return module.cli


@pytest.fixture(scope="module")
def cli():
    return _load_cli()


@pytest.mark.parametrize("overrides, code, expected", BAD_INPUTS, ids=[_row_id(r) for r in BAD_INPUTS])
def test_bad_input_in_process(cli, overrides, code, expected, tmp_path, monkeypatch, capsys):
    line, exit_code = run_cli(cli, overrides, tmp_path, monkeypatch, capsys)
    assert exit_code == code, line
    assert line.startswith(expected), line
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before anything was built


E2E_ROWS = [row for row in BAD_INPUTS if _row_id(row) in END_TO_END]


@pytest.mark.slow
@pytest.mark.parametrize("overrides, code, expected", E2E_ROWS, ids=[_row_id(r) for r in E2E_ROWS])
def test_bad_input_end_to_end(overrides, code, expected, tmp_path):
    result = run_train(_argv(overrides, tmp_path), tmp_path / "run", timeout=120)
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def run_cli(cli, overrides: list[str], tmp_path: Path, monkeypatch, capsys) -> tuple[str, int | None]:
    """src/train.py's cli() in this process: (the one line on stderr, the exit code)."""
    # Hydra's logging setup would outlive the call in this process; the run folder goes to tmp_path
    hydra_args = ["hydra/job_logging=none", "hydra/hydra_logging=none", f"hydra.run.dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", ["src/train.py", *_argv(overrides, tmp_path), *hydra_args])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # cli() sets it; monkeypatch restores it
    with pytest.raises(SystemExit) as exit_info:
        cli()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0], exit_info.value.code


# -- the schema accepts what the project ships and what Lightning and torch accept


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


GOOD_INPUTS = [
    [],
    ["task=gan"],
    *([f"{group}={option}"] for group in ("activation", "norm", "optimizer", "scheduler", "data", "trainer", "logger") for option in _options(group)),
    *([f"model={option}"] for option in ("cnn", "mlp", "resnet")),
    *(["task=gan", f"model={option}"] for option in _options("model") if option.startswith("dcgan")),
    *([f"hparams_search={option}"] for option in _options("hparams_search")),
    *([f"experiment={option}"] for option in _options("experiment")),
    ["task=gan", "model.discriminator.activation={name:leaky_relu,negative_slope:0.2}", "model.discriminator.norm={name:layer}", "task.loss=wgan_gp"],
    ["+trainer.fast_dev_run=true", "+trainer.limit_val_batches=2", "+trainer.max_steps=-1", "trainer.precision=32"],
    ["+optimizer.amsgrad=true", "optimizer.betas=[0.5,0.999]", "speed.compile=true", "diagnostics.every_n_steps=null", "diagnostics.steps=[0,50,500]"],
    ["optimized_metric=[val/acc_best,test/loss]", "checkpoint.monitor=val/loss", "checkpoint.mode=min"],
    ["activation.gamma_bounds=null", "activation.gamma_init=50", "trainer.devices=[0]", "trainer.limit_train_batches=3"],
    ["activation=sgmod", "+activation.search={gamma_init:'tag(log, interval(0.5, 4.0))'}"],
    ["activation=softcap", "+activation.per_channel=false", "activation.lr=0.01", "activation.lr_mult=1.0"],
    ["task=gan", "activation=softcap"],
]  # fmt: skip


@pytest.mark.parametrize("overrides", GOOD_INPUTS, ids=lambda value: " ".join(value) or "defaults")
def test_the_schema_accepts_good_configs(overrides, tmp_path):
    check_config(OmegaConf.to_container(compose_config(overrides, tmp_path), resolve=True))


def test_the_schema_knows_every_registered_option():
    assert set(ACTIVATIONS) == set(activations.ACTIVATIONS)
    assert set(NORMS) == set(norms.NORMS)
    assert set(MODELS) == set(models.MODELS) | {"dcgan"}
    assert set(OPTIMIZER_RULES) == set(optim.OPTIMIZERS)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_what_was_written(cli, tmp_path, monkeypatch, capsys):
    import errno

    import torch

    def full_disk(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    overrides = ["activation=relu", "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    line, code = run_cli(cli, overrides, tmp_path, monkeypatch, capsys)
    assert code == 5
    assert (
        line
        == f"error: cannot write to {tmp_path / 'run'}: no space left on its device; what was written before is whole: free some space, then run the command again"
    )
    leftovers = list((tmp_path / "run" / "checkpoints").glob("*"))
    assert leftovers == []  # no half-written checkpoint, no temporary file


# -- values Hydra's override grammar reads only in quotes (non-ASCII letters; brackets after a space), and
# a path the shell split at its space: the one line shows the form that works

NEEDS_QUOTES = [
    (["data.data_dir=/data/café"], 2, "error: cannot parse the override 'data.data_dir=/data/café': LexerNoViableAltException: data.data_dir=/data/café (quote a value with spaces or non-ASCII characters for Hydra: 'data.data_dir=\"/data/café\"')"),
    (["data.data_dir=/data/a b (1)"], 2, "error: cannot parse the override 'data.data_dir=/data/a b (1)': mismatched input ' (' expecting <EOF> (quote a value with spaces or non-ASCII characters for Hydra: 'data.data_dir=\"/data/a b (1)\"')"),
    (["data.data_dir=/data/my", "runs/x"], 2, "error: cannot parse the override 'runs/x': missing EQUAL at '<EOF>' (a path with spaces must be one shell argument: 'data.data_dir=/data/my runs/x')"),
]  # fmt: skip


@pytest.mark.parametrize("overrides, code, expected", NEEDS_QUOTES, ids=[_row_id(r) for r in NEEDS_QUOTES])
def test_a_value_that_needs_quotes_shows_them(cli, overrides, code, expected, tmp_path, monkeypatch, capsys):
    import shlex  # (this block is appended to the file: its imports stay with it)

    line, exit_code = run_cli(cli, overrides, tmp_path, monkeypatch, capsys)
    assert (exit_code, line) == (code, expected)
    (shown,) = shlex.split(line.rpartition(": ")[2][:-1])  # the form shown, as the shell passes it on
    assert compose_config([shown], tmp_path).data.data_dir == " ".join(overrides).partition("=")[2]


# -- scripts/study.py: the same one line (its records' own cases, corrupted, read-only, finished: tests/test_study_cli.py)

STUDY_PARTS = ", ".join(sorted(load_study("classifier", CONF / "study").parts))
STUDY_BAD_INPUTS = [
    (["run", "classifier", "controls", "--time-limit", "-5"], 2, "error: study.py run: argument --time-limit: '-5' is not allowed: it must be a number of seconds > 0"),
    (["run", "classifier", "controls", "--time-limit", "0"], 2, "error: study.py run: argument --time-limit: '0' is not allowed: it must be a number of seconds > 0"),
    (["run", "classifier", "controls", "--time-limit", "nan"], 2, "error: study.py run: argument --time-limit: 'nan' is not allowed: it must be a number of seconds > 0"),
    (["run", "classifier", "controls", "--time-limit", "inf"], 2, "error: study.py run: argument --time-limit: 'inf' is not allowed: it must be a number of seconds > 0"),
    (["run", "classifier", "controls", "--time-limit", "soon"], 2, "error: study.py run: argument --time-limit: 'soon' is not allowed: it must be a number of seconds > 0"),
    (["run", "classifier", "nosuchpart"], 2, f"error: part='nosuchpart' is not a known choice; valid choices: all, {STUDY_PARTS}"),
    (["run", "nosuchstudy", "all"], 2, "error: study='nosuchstudy' is not a known choice; valid choices: classifier, depth, gan, norm"),
    (["report", "nosuchstudy"], 2, "error: study='nosuchstudy' is not a known choice; valid choices: classifier, depth, gan, norm"),
    (["list", "nosuchstudy"], 2, "error: study='nosuchstudy' is not a known choice; valid choices: classifier, depth, gan, norm"),
    (["report", "--activation", "softcap"], 2, "error: --activation needs the study to run it through, e.g. scripts/study.py report classifier"),
    (["run", "classifier"], 2, "error: study.py run: the following arguments are required: part, overrides"),
    (["export", "classifier"], 2, "error: study.py: argument command: invalid choice: 'export' (choose from 'list', 'run', 'report')"),
]  # fmt: skip


@pytest.mark.parametrize("args, code, expected", STUDY_BAD_INPUTS, ids=[_row_id(r) for r in STUDY_BAD_INPUTS])
def test_a_bad_study_input_is_one_line(args, code, expected, tmp_path, monkeypatch, capsys):
    no_sweep(monkeypatch)
    exit_code, out, err = study_cli(args, tmp_path, monkeypatch, capsys)
    assert (exit_code, out, err.strip().splitlines()) == (code, "", [expected])


# -- a resume that changes the model, a data set eval cannot test, an output folder that cannot be written


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    """A trained 1-epoch MLP with ReLU on digits: its run folder."""
    folder = tmp_path_factory.mktemp("mlp_run")
    training.train(compose_config([*TINY, "model=mlp", "activation=relu", "trainer.max_epochs=1"], folder))
    return folder


RESUME_CHANGES = [
    (["model.width=64", "optimizer.lr=0.01"], "model.width=64 (checkpoint: 256), optimizer.lr=0.01 (checkpoint: 0.001)"),
    (["activation=sgmod", "seed=3"], "activation=sgmod (checkpoint: relu), seed=3 (checkpoint: 42)"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("changes, named", RESUME_CHANGES, ids=[" ".join(row[0]) for row in RESUME_CHANGES])
def test_a_resume_that_changes_the_model_names_only_what_differs(
    cli, mlp_run, changes, named, tmp_path, monkeypatch, capsys
):
    last = mlp_run / "checkpoints" / "last.ckpt"
    overrides = [f"ckpt_path={last}", "model=mlp", "activation=relu", "trainer.max_epochs=3", *changes]
    line, code = run_cli(cli, overrides, tmp_path, monkeypatch, capsys)
    assert code == 2
    assert line == (
        f"error: ckpt_path={last}: a resumed run keeps the model, data, optimizer and seed of its checkpoint; "
        f"these overrides differ from it: {named} (leave them out: ckpt_path alone resumes with the checkpoint's "
        "configuration; to change them, start a new run)"
    )


@pytest.mark.slow
def test_eval_refuses_a_data_set_of_other_shapes(mlp_run, tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("eval_script", ROOT / "src" / "eval.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main.__wrapped__.__module__ = "__main__"  # see _load_cli
    best = next((mlp_run / "checkpoints").glob("best-*.ckpt"))
    hydra_args = ["hydra/job_logging=none", "hydra/hydra_logging=none", f"hydra.run.dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", ["src/eval.py", f"ckpt_path={best}", "+data=fashion_mnist", *hydra_args])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    with pytest.raises(SystemExit) as exit_info:
        script.cli()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: data.name=fashion_mnist does not fit ckpt_path={best}: its network was trained on digits (1x8x8 "
        "images, 10 classes), fashion_mnist has 1x28x28 images, 10 classes; leave the data override out to test on "
        "digits, or give a data set of the same shapes"
    ]


@pytest.mark.skipif(
    "os.geteuid() != 0", reason="mounts a read-only tmpfs (tests/test_faults_run.py: also without root)"
)
def test_a_read_only_output_folder_is_one_line(cli, tmp_path, monkeypatch, capsys):
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(disk)], check=True)
    try:
        hydra_args = ["hydra/job_logging=none", "hydra/hydra_logging=none", f"hydra.run.dir={disk / 'run'}"]
        monkeypatch.setattr(sys, "argv", ["src/train.py", *TINY, *hydra_args])
        with pytest.raises(SystemExit) as exit_info:
            cli()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)
    assert exit_info.value.code == 5
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: cannot write to {disk / 'run'}: it is on a read-only file system; choose another output folder "
        "with hydra.run.dir=<folder>"
    ]


# -- a sweep's sampler or pruner given as a value where its group is meant, and their options: one line
# before any trial (more of the sweeper's own: tests/test_sweeper_settings.py)

SWEEP_BAD_INPUTS = [
    (["hydra.sweeper.sampler=foo"], 2, "error: hydra.sweeper.sampler='foo' is not allowed: choose one with hydra/sweeper/sampler=<name> (tpe, random, cmaes, gp, qmc, nsgaii, grid); set its options with hydra.sweeper.sampler.<option>=<value>"),
    (["hydra/sweeper/sampler=tpe", "hydra.sweeper.sampler.n_startup_trials=-1"], 2, "error: hydra.sweeper.sampler.n_startup_trials=-1 is not allowed: it must be a whole number >= 0"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("overrides, code, expected", SWEEP_BAD_INPUTS, ids=[_row_id(r) for r in SWEEP_BAD_INPUTS])
def test_a_bad_sweep_setting_is_one_line_before_any_trial(overrides, code, expected, tmp_path):
    result = train_multirun(tmp_path, *overrides)
    assert (result.returncode, result.stderr.strip().splitlines()) == (code, [expected])
    assert not list(tmp_path.glob("sweep/trial_*"))


@pytest.mark.slow
@needs_root
def test_a_sweep_folder_that_cannot_be_written_names_the_sweeps_option(tmp_path):
    import subprocess

    with tmpfs(tmp_path / "ro", "ro,size=64k") as folder:
        result = subprocess.run(
            [sys.executable, str(ROOT / "src" / "train.py"), "-m", "hparams_search=sgmod_classifier", "data=digits",
             f"hydra.sweep.dir={folder / 'sweep'}", f"hydra.sweeper.storage={tmp_path / 'study.journal'}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert (result.returncode, result.stderr.strip().splitlines()) == (5, [
        "error: cannot write to ro/sweep: it is on a read-only file system; choose another output "
        "folder with hydra.sweep.dir=<folder>"
    ])  # fmt: skip
