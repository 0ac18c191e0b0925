"""Bad sweeper input, each one clear line before any trial runs: the sweeper's settings, the sweep
grammar, the storage. In-process: no trial, no torch."""

import os
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import FloatDistribution

from helpers.sweeps import SPACE
from sgmod_study.errors import ConfigError
from sgmod_study.sweeper.settings import SweepSettings, check_directions, check_workers
from sgmod_study.sweeper.space import distribution, probe_overrides, search_space
from sgmod_study.sweeper.storage import hide_password, open_storage

# -- 1. sweeper settings -------------------------------------------------------------------------


def _settings(**changed) -> SweepSettings:
    return SweepSettings(**{"study_name": "s", **changed})


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        (
            {"n_jobs": 0},
            "hydra.sweeper.n_jobs=0 is not allowed: it must be a whole number >= 1 (trials running at once)",
        ),
        (
            {"n_trials": 0},
            "hydra.sweeper.n_trials=0 is not allowed: it must be a whole number >= 1 "
            "(the finished trials the study should have)",
        ),
        ({"n_trials": -1}, "hydra.sweeper.n_trials=-1 is not allowed: it must be a whole number >= 1"),
        ({"n_trials": "ten"}, "hydra.sweeper.n_trials='ten' is not allowed: it must be a whole number >= 1"),
        ({"trials_per_gpu": 0}, "hydra.sweeper.trials_per_gpu=0 is not allowed: it must be a whole number >= 1"),
        (
            {"max_failure_rate": 1.5},
            "hydra.sweeper.max_failure_rate=1.5 is not allowed: it must be a number from 0 to 1 "
            "(the share of a run's trials that may fail before the sweep stops)",
        ),
        ({"max_failure_rate": -0.1}, "hydra.sweeper.max_failure_rate=-0.1 is not allowed"),
        ({"max_failure_rate": "half"}, "hydra.sweeper.max_failure_rate='half' is not allowed"),
        (
            {"trial_timeout": 0},
            "hydra.sweeper.trial_timeout=0 is not allowed: it must be null (no limit) or seconds > 0",
        ),
        ({"trial_timeout": -5.0}, "hydra.sweeper.trial_timeout=-5.0 is not allowed"),
        (
            {"time_limit": 0},
            "hydra.sweeper.time_limit=0 is not allowed: it must be null (no limit) or seconds > 0",
        ),
        ({"time_limit": "1h"}, "hydra.sweeper.time_limit='1h' is not allowed"),
        (
            {"direction": "up"},
            "hydra.sweeper.direction='up' is not allowed: it must be minimize or maximize, "
            "or a list of them (one per optimized_metric)",
        ),
        ({"direction": ["maximize", "down"]}, "hydra.sweeper.direction=['maximize', 'down'] is not allowed"),
        ({"direction": []}, "hydra.sweeper.direction=[] is not allowed"),
        (
            {"study_name": "../elsewhere"},
            "hydra.sweeper.study_name='../elsewhere' is not allowed: use letters, digits and _ - . = , only, "
            "not starting with '.' and without '..' (it names the file outputs/optuna/<study_name>.journal)",
        ),
        ({"study_name": "a/b"}, "hydra.sweeper.study_name='a/b' is not allowed"),
        ({"study_name": "a\\b"}, "hydra.sweeper.study_name='a\\\\b' is not allowed"),
        ({"study_name": ".hidden"}, "hydra.sweeper.study_name='.hidden' is not allowed"),
        ({"study_name": ""}, "hydra.sweeper.study_name='' is not allowed"),
    ],
)
def test_bad_sweeper_settings_are_one_line_each(changed, message):
    with pytest.raises(ConfigError) as err:
        _settings(**changed)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_good_sweeper_settings_pass():
    _settings(n_trials=1, n_jobs=1, max_failure_rate=1, trial_timeout=0.5, direction=["minimize", "maximize"])
    _settings(study_name="baseline_classifier_leaky_relu-v2.1,lr=1e-3")
    check_workers(4)
    check_directions("maximize", "val/acc_best")
    check_directions(["maximize", "minimize"], ["val/acc_best", "test/loss"])


def test_directions_must_match_the_optimized_metrics():
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.direction='maximize' is not allowed with optimized_metric="):
        check_directions("maximize", ["val/acc_best", "test/loss"])
    with pytest.raises(ConfigError, match="per metric, 1 here$"):
        check_directions(["maximize", "minimize"], "val/acc_best")
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.workers=0 is not allowed: it must be a whole number >= 1"):
        check_workers(0)


def test_sampler_and_pruner_values_and_options_are_checked_before_the_sweep():
    from omegaconf import OmegaConf

    from hydra_plugins.sgmod_sweeper.sgmod_sweeper import _group_config, _probe, _pruner
    from sgmod_study.sweeper.samplers import probe_sampler

    with pytest.raises(ConfigError) as err:
        _pruner("median")  # hydra.sweeper.pruner=median, where hydra/sweeper/pruner=median is meant
    assert str(err.value) == (
        "hydra.sweeper.pruner='median' is not allowed: choose one with hydra/sweeper/pruner=<name> (none, median, "
        "successive_halving, hyperband); set its options with hydra.sweeper.pruner.<option>=<value>"
    )
    with pytest.raises(
        ConfigError, match=r"^hydra.sweeper.pruner.n_warmup_steps=1.5 is not allowed: it must be a whole"
    ):
        _pruner(OmegaConf.create({"_target_": "optuna.pruners.MedianPruner", "n_warmup_steps": 1.5}))
    # an option only the first sampling after the start-up trials trips over: the probe finds it
    tpe = _group_config(
        "sampler", OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "n_ei_candidates": 0}), {}
    )
    with pytest.raises(ConfigError) as err:
        _probe("sampler", tpe, lambda sampler: probe_sampler(sampler, SPACE, ["minimize"]))
    assert str(err.value) == (
        "hydra.sweeper.sampler={'_target_': 'optuna.samplers.TPESampler', 'n_ei_candidates': 0} cannot be used: "
        "The size of `samples` must be positive, but got 0."
    )
    good = {"_target_": "optuna.samplers.TPESampler", "seed": 1}
    _probe("sampler", good, lambda sampler: probe_sampler(sampler, SPACE, ["maximize", "minimize"]))


def test_plugin_settings_that_cannot_be_built_are_one_error():
    from omegaconf import OmegaConf

    from hydra_plugins.sgmod_sweeper.sgmod_sweeper import _enqueue_trials, _method, _pruner

    with pytest.raises(ConfigError) as err:
        _pruner(OmegaConf.create({"_target_": "optuna.pruners.MedianPruner", "interval_steps": 0}))
    assert str(err.value).startswith(
        "hydra.sweeper.pruner={'_target_': 'optuna.pruners.MedianPruner', 'interval_steps': 0} cannot be built: "
    )
    assert "interval_steps=0" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        _enqueue_trials(OmegaConf.create([1, 2]))
    assert str(err.value) == (
        "hydra.sweeper.enqueue_trials=[1, 2] is not allowed: it must be a list of {parameter: value} mappings"
    )
    assert _enqueue_trials(OmegaConf.create([{"x": 0.25}])) == [{"x": 0.25}]
    with pytest.raises(ConfigError) as err:
        _method("custom_search_space", "sgmod_study.sweeper.space.no_such_space")
    assert str(err.value) == (
        "hydra.sweeper.custom_search_space='sgmod_study.sweeper.space.no_such_space' cannot be imported "
        "(module 'sgmod_study.sweeper.space' has no attribute 'no_such_space'); allowed: module.function"
    )
    with pytest.raises(ConfigError, match="cannot be imported \\(No module named 'no_such_module'\\)"):
        _method("custom_search_space", "no_such_module.space")


# -- 2. the sweep grammar ------------------------------------------------------------------------

GRAMMAR = "allowed: key=value, choice(a, b, ...) with at least one value, range(start, stop, step), "


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "x=interval(5, 1)",
            "x=interval(5, 1) is not allowed: low 5.0 > high 1.0; allowed: interval(low, high) with low <= high",
        ),
        ("x=int(interval(5, 1))", "x=int(interval(5, 1)) is not allowed: low 5 > high 1"),
        (
            "x=tag(log, interval(0, 1))",
            "x=tag(log, interval(0, 1)) is not allowed: a log interval needs low > 0 (low 0.0); "
            "allowed: tag(log, interval(low, high)) with 0 < low <= high",
        ),
        ("x=tag(log, interval(-1, 1))", "x=tag(log, interval(-1, 1)) is not allowed: a log interval needs low > 0"),
        (
            "x=tag(log, int(interval(0, 4)))",
            "x=tag(log, int(interval(0, 4))) is not allowed: a log interval needs low > 0",
        ),
        (
            "x=range(1, 5, 0)",
            "x=range(1, 5, 0) is not allowed: start 1, stop 5, step 0; "
            "allowed: range(start, stop[, step]) with start <= stop and step > 0 (stop included, as "
            "hydra-optuna-sweeper reads it)",
        ),
        ("x=range(5, 1)", "x=range(5, 1) is not allowed: start 5, stop 1, step 1; allowed: range(start, stop[, step])"),
        ("x=range(5, 1, -1)", "x=range(5, 1, -1) is not allowed: start 5, stop 1, step -1"),
        ("x=range(0.5, 0.1, -0.1)", "x=range(0.5, 0.1, -0.1) is not allowed"),
        ("x=choice()", "x=choice() cannot be parsed (empty choice is not legal); " + GRAMMAR),
        ("x=interval(a, b)", "x=interval(a, b) cannot be parsed (mismatch type argument start"),
        (
            "x=glob(*)",
            "x=glob(*) is not a sweep this sweeper supports; allowed: choice(a, b, ...), range(start, stop[, step])",
        ),
    ],
)
def test_bad_sweep_grammar_is_one_line_naming_the_parameter(line, message):
    key, value = line.split("=", 1)
    with pytest.raises(ConfigError) as err:
        search_space({key: value}, [])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_good_grammar_at_the_edges_still_maps():
    def dist(line):
        return distribution(OverridesParser.create().parse_overrides([line])[0])

    assert dist("x=interval(1, 1)") == FloatDistribution(1.0, 1.0)
    assert dist("x=tag(log, interval(1e-9, 1))") == FloatDistribution(1e-9, 1.0, log=True)
    assert dist("x=range(3, 4)").low == 3


def test_probes_give_every_parameter_its_bounds_and_every_choice():
    space, fixed = search_space({"lr": "interval(0.1, 0.5)", "norm": "choice(batch, layer, none)"}, ["data=digits"])
    assert probe_overrides(space, fixed) == [
        (["data=digits", "lr=0.1", "norm=batch"], ["lr=0.1", "norm=batch"]),
        (["data=digits", "lr=0.5", "norm=batch"], ["lr=0.5"]),
        (["data=digits", "lr=0.1", "norm=layer"], ["norm=layer"]),
        (["data=digits", "lr=0.1", "norm=none"], ["norm=none"]),
    ]


# -- 3. storage ----------------------------------------------------------------------------------

JOURNAL_ALLOWED = (
    "allowed: a journal file in a folder you can write to, or a database URL such as "
    "postgresql+psycopg2://user:password@host/db"
)


def test_a_journal_path_inside_a_file_is_one_error(tmp_path):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "study.journal"
    with pytest.raises(ConfigError) as err:
        open_storage(str(path), "s", tmp_path)
    assert str(err.value) == f"hydra.sweeper.storage={path} cannot be used: {path.parent} is a file; {JOURNAL_ALLOWED}"
    deeper = tmp_path / "file" / "sub" / "study.journal"
    with pytest.raises(ConfigError, match="cannot be used: Not a directory; allowed"):
        open_storage(str(deeper), "s", tmp_path)


def test_a_journal_path_that_is_a_folder_is_one_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be used: Is a directory; allowed"):
        open_storage(str(tmp_path), "s", tmp_path)


def test_a_journal_in_a_folder_that_cannot_be_written_is_one_error(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere except into read-only pseudo file systems
        path, reason = Path("/proc/sgmod_study/study.journal"), "No such file or directory"
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        path, reason = tmp_path / "ro" / "sub" / "study.journal", "Permission denied"
    with pytest.raises(ConfigError) as err:
        open_storage(str(path), "s", tmp_path)
    assert str(err.value) == f"hydra.sweeper.storage={path} cannot be used: {reason}; {JOURNAL_ALLOWED}"


def test_the_default_journal_is_named_in_the_error(tmp_path):
    (tmp_path / "optuna").write_text("")
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.storage=null \(default .*optuna/s.journal\) cannot be used"):
        open_storage(None, "s", tmp_path / "optuna")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "foo://x",
            "hydra.sweeper.storage=foo://x is not a usable URL (Can't load plugin: sqlalchemy.dialects:foo); "
            "allowed: a journal file path, or a SQLAlchemy URL such as postgresql+psycopg2://user:password@host/db",
        ),
        (
            "postgresql+nodriver://u:pw@h/db",
            "hydra.sweeper.storage=postgresql+nodriver://u:***@h/db is not a usable URL",
        ),
        ("postgresql://u:pw@h:port/db", "hydra.sweeper.storage=postgresql://u:***@h:port/db is not a usable URL"),
        (
            "postgresql+psycopg2://user:s3cret@127.0.0.1:1/optuna",
            "hydra.sweeper.storage=postgresql+psycopg2://user:***@127.0.0.1:1/optuna cannot be opened after 2 tries "
            '((psycopg2.OperationalError) connection to server at "127.0.0.1", port 1 failed: Connection refused',
        ),
    ],
)
def test_unusable_database_urls_are_one_error_without_the_password(monkeypatch, url, message):
    monkeypatch.setattr("sgmod_study.sweeper.storage.RDB_RETRY_S", (0.01,))
    with pytest.raises(ConfigError) as err:
        open_storage(url, "s", Path("unused"))
    assert str(err.value).startswith(message), str(err.value)
    assert "s3cret" not in str(err.value) and "pw@" not in str(err.value) and "\n" not in str(err.value)


def test_hide_password():
    assert hide_password("postgresql+psycopg2://user:pa:ss@host/db") == "postgresql+psycopg2://user:***@host/db"
    assert hide_password("postgresql://user@host/db") == "postgresql://user@host/db"
    assert hide_password("sqlite:///a.db") == "sqlite:///a.db"
