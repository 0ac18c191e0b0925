"""The study's records and how its parts run: gamma/beta's own optimizer settings, the per-run
gamma/beta record, the committed per-run table (runs.jsonl) that survives a move between
machines, the sweep commands a declared study gives, the configuration a confirm part retrains,
and parts that run side by side until a deadline (stub sweeps)."""

import io
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from optuna.distributions import FloatDistribution
from torch import nn

from helpers.records import CLASSIFIER, fake_study, record_dir, record_of, sgmod_sweep, sweep_record
from helpers.runs import CONF, compose_config, read_events
from sgmod_study.data import dataset_spec
from sgmod_study.errors import ConfigError
from sgmod_study.nn.activations import Sgmod
from sgmod_study.run.cli import RESUME_COMMAND_ENV
from sgmod_study.run.diagnostics import activation_record
from sgmod_study.study import runner
from sgmod_study.study.choose import chosen_overrides
from sgmod_study.study.export import export, read_rows
from sgmod_study.study.record import Record, machine, machine_name
from sgmod_study.study.spec import load_study
from sgmod_study.tasks.classifier import build_classifier
from sgmod_study.trial_contract import SGMOD_FINAL_FILE


@pytest.fixture(autouse=True)
def in_a_repository(tmp_path, monkeypatch):
    """Each test's folder stands for the repository: a study's commands run in it."""
    monkeypatch.chdir(tmp_path)


def test_the_sgmod_search_covers_the_briefs_table_and_the_run_uses_gamma_betas_own_settings(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=sgmod_classifier"], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params)
    assert set(params) == {
        "activation.gamma_init",
        "activation.beta_init",
        "activation.lr",
        "activation.weight_decay",
        "optimizer.lr",
        "optimizer.weight_decay",
    }
    assert params["activation.lr"] == "tag(log, interval(1e-4, 1e-2))"  # the table's range, log scale
    # what a trial's overrides give the run: gamma/beta's optimizer group has exactly those values
    trial = ["activation.lr=0.005", "activation.weight_decay=0.0003", "optimizer.lr=0.0002", "data=digits"]
    c = compose_config(trial, tmp_path)
    module = build_classifier(c, dataset_spec("digits"))
    module.trainer = type("T", (), {"max_epochs": 10})()  # configure_optimizers reads max_epochs
    optimizer = module.configure_optimizers()["optimizer"]
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["activation"]["lr"] == pytest.approx(0.005)
    assert groups["activation"]["weight_decay"] == pytest.approx(0.0003)
    assert groups["decay"]["lr"] == pytest.approx(0.0002)


def test_activation_record_reads_gamma_beta_and_what_can_absorb_them():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), Sgmod(3, gamma_init=2.0, beta_init=-1.0), nn.Conv2d(3, 5, 3))
    net[1].gamma.data = torch.tensor([1.0, 2.0, 3.0])
    net[2].weight.data = torch.ones(5, 3, 3, 3) * torch.tensor([1.0, 2.0, 0.0]).view(1, 3, 1, 1)
    record = activation_record(net)["1"]
    assert record["gamma"] == [1.0, 2.0, 3.0] and record["beta"] == [-1.0, -1.0, -1.0]
    assert record["next_layer"] == "2" and not record["norm_between"]
    assert record["next_weight_norm"] == pytest.approx([math.sqrt(45), 2 * math.sqrt(45), 0.0])
    # after a Flatten each channel owns a block of the linear layer's columns; a norm in between is flagged
    flat = nn.Sequential(Sgmod(2, learn_beta=False), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4, 3))
    flat[3].weight.data = torch.cat([torch.ones(3, 4), 2 * torch.ones(3, 4)], dim=1)
    record = activation_record(flat)["0"]
    assert record["norm_between"] and record["learn_gamma"] and not record["learn_beta"]
    assert record["next_weight_norm"] == pytest.approx([math.sqrt(12), 2 * math.sqrt(12)])


@pytest.mark.slow
def test_a_run_records_final_gamma_beta_and_how_far_they_could_travel(tiny_run):
    """The session's tiny run (conftest.py): 2 epochs, gamma/beta's learning rate on the cosine schedule."""
    record = json.loads((tiny_run / SGMOD_FINAL_FILE).read_text())
    assert set(record["layers"]) == {"features.stage1.act", "features.stage2.act", "head.act"}
    per_epoch = 20  # steps of an epoch: the digits training split (1,797 - 360 test - 200 val) in batches of 64
    rates = [lr for _, lr in read_events(tiny_run / "tensorboard")["scalars"]["lr-AdamW/activation"]]
    assert len(rates) == 2 and rates[1] < rates[0]  # one per epoch (at its start), decaying
    assert record["steps"] == per_epoch * len(rates)
    assert record["activation_lr_sum"] == pytest.approx(per_epoch * sum(rates))
    moved = max(abs(g - 1.0) for g in record["layers"]["head.act"]["gamma"])
    assert 0 < moved <= record["activation_lr_sum"] * 1.1  # Adam moves about lr per step at most


def test_export_keeps_rows_whose_run_folders_are_on_another_machine(tmp_path):
    study = fake_study(tmp_path, "controls", 2)
    rows = export(record_of(tmp_path), "controls")
    assert [r["metrics"]["test/acc"] for r in rows] == [0.0, 0.1]
    assert rows[1]["config"]["seed"] == 1 and rows[1]["config"]["activation"] == {"name": "sgmod"}
    # the study moves to a machine without these folders and gains a trial there
    for folder in (tmp_path / "outputs").glob("study/classifier/controls/trial_*"):
        (folder / ".hydra" / "config.yaml").unlink()
    study.tell(study.ask({"x": FloatDistribution(0, 1)}), 0.5)
    rows = export(record_of(tmp_path), "controls")
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    assert [r.get("metrics", {}).get("test/acc") for r in rows] == [0.0, 0.1, None]  # read earlier, kept
    assert read_rows(record_dir("controls", tmp_path) / "runs.jsonl") == rows


def test_while_a_part_runs_only_its_newly_ended_trials_are_read_and_a_running_one_gets_no_row(tmp_path, monkeypatch):
    study = fake_study(tmp_path, "controls", 2)
    export(record_of(tmp_path), "controls")
    running = study.ask({"x": FloatDistribution(0, 1)})
    study.tell(study.ask({"x": FloatDistribution(0, 1)}), 0.7)  # trial 3 ended, trial 2 still runs
    read = []

    def reading(trial):
        read.append(trial.number)
        return {"number": trial.number, "state": trial.state.name}

    monkeypatch.setattr("sgmod_study.study.export.trial_row", reading)
    rows = export(record_of(tmp_path), "controls", new_only=True)
    assert read == [3] and [r["number"] for r in rows] == [0, 1, 3]
    assert rows[0]["metrics"] == {"test/acc": 0.0}  # read before, kept as it was
    study.tell(running, 0.2)
    assert [r["number"] for r in export(record_of(tmp_path), "controls", new_only=True)] == [0, 1, 2, 3]
    assert read == [3, 2]


def test_a_row_names_the_cpus_vector_extension_which_one_model_name_does_not():
    here = machine()
    assert here["cpu_capability"] in ("DEFAULT", "NO AVX", "AVX2", "AVX512", "Z VECTOR", "VSX", "SVE256")
    assert machine_name({"machine": here}).endswith(f"({here['cpu_count']} cores, {here['cpu_capability']})")
    assert machine_name({"machine": {"cpu": "AMD EPYC", "cpu_count": 2}}) == "AMD EPYC (2 cores)"  # an older row


def test_every_part_runs_the_declared_setup_and_trial_count_into_its_own_record(tmp_path):
    for name, part in CLASSIFIER.parts.items():
        if part.kind == "confirm":  # needs its sweep's record: test_a_confirm_part_retrains_...
            continue
        command = runner.sweep_command(CLASSIFIER, part, record_of(tmp_path), ["hydra.sweeper.n_jobs=2"])
        assert command[1:3] == ["src/train.py", "-m"]
        assert f"hydra.sweeper.storage=study/classifier/{name}/study.journal" in command  # relative to the repository
        assert f"hydra.sweep.dir=outputs/study/classifier/{name}" in command
        assert f"hydra.sweeper.study_name={name}" in command and command[-1] == "hydra.sweeper.n_jobs=2"
        assert f"hydra.sweeper.n_trials={part.trials}" in command  # the count is the declaration's
        assert "trainer.max_epochs=10" in command and "data=fashion_mnist" in command  # the fixed setup
        assert not any(str(tmp_path) in arg for arg in command)


def test_a_confirm_part_retrains_the_best_configuration_of_its_sweep_on_its_fresh_seeds(tmp_path):
    part = CLASSIFIER.parts["confirm_relu"]
    with pytest.raises(ConfigError, match="part=sweep_relu has no record yet"):
        runner.sweep_command(CLASSIFIER, part, record_of(tmp_path), [])
    lr, wd = "optimizer.lr", "optimizer.weight_decay"
    sweep_record(tmp_path, "sweep_relu", [({lr: 0.001, wd: 1e-4}, 0.91), ({lr: 0.003, wd: 1e-05}, 0.93)])
    command = runner.sweep_command(CLASSIFIER, part, record_of(tmp_path), [])
    chosen = command[3 : command.index("hydra.sweeper.n_trials=10")]
    assert "optimizer.lr=0.003" in chosen and "optimizer.weight_decay=1e-05" in chosen  # trial 1, the best
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=chosen, return_hydra_config=True)
    assert cfg.optimizer.lr == 0.003 and cfg.activation.name == "relu" and cfg.trainer.max_epochs == 10
    assert cfg.hydra.sweeper.params.seed == "choice(100,101,102,103,104,105,106,107,108,109)"  # the declared seeds
    tanh_cpu = CLASSIFIER.parts["confirm_tanh_cpu"]
    assert tanh_cpu.of == "sweep_tanh" and "trainer=cpu" in tanh_cpu.overrides
    assert tanh_cpu.seeds == CLASSIFIER.parts["confirm_tanh"].seeds


def test_the_recommended_default_is_the_rounded_median_of_the_top_quarter(tmp_path):
    # the top quarter of 12 trials is the 3 best: gamma 2, 2.2, 8 (geometric median 2.2 -> 2),
    # beta -1.2, -0.9, 3 (median -0.9 -> -1), lr 1e-3, 3e-3, 9e-3 (median 3e-3)
    top = [(2.0, -1.2, 1e-3, 0.93), (2.2, -0.9, 3e-3, 0.92), (8.0, 3.0, 9e-3, 0.91)]
    rest = [(0.1 + i / 10, 4.0, 1e-4, 0.5 + i / 100) for i in range(9)]
    study = sgmod_sweep(tmp_path, top + rest)
    assert chosen_overrides(study, "recommended") == [
        "activation.beta_init=-1",
        "activation.gamma_init=2",
        "activation.lr=0.003",
    ]


def test_a_confirm_part_waits_for_its_whole_sweep(tmp_path):
    sgmod_sweep(tmp_path, [(1.0, 0.0, 1e-3, 0.9)] * 5)
    with pytest.raises(ConfigError, match="sweep_sgmod, which has 5 of its 64 trials: finish it first"):
        runner.run(CLASSIFIER, record_of(tmp_path), "confirm_sgmod_default")
    with pytest.raises(ConfigError, match="part='sweep_nope' is not a known choice; valid choices: all, confirm_relu"):
        runner.run(CLASSIFIER, record_of(tmp_path), "sweep_nope")


# -- parts side by side, with stub sweeps


class StubSweep:
    """Stands for a part's sweep process: ``jobs`` trials at once, each ``TRIAL_S`` long, starting
    only rounds that end within its ``hydra.sweeper.time_limit``, as the sweeper does (or all of
    them, until terminated, with ``deaf``); each finished trial goes to the part's journal."""

    TRIAL_S = 0.6
    log: list = []
    deaf = False
    gradual = False  # record each round's trials as it ends, not all at the sweep's end

    def __init__(self, command, cwd=".", **kwargs):
        options = dict(a.split("=", 1) for a in command if a.startswith("hydra."))
        self.name, self.jobs = options["hydra.sweeper.study_name"], int(options["hydra.sweeper.n_jobs"])
        self.journal = Path(cwd) / options["hydra.sweeper.storage"]
        self.runs = Path(cwd) / options["hydra.sweep.dir"]
        self.trials = int(options["hydra.sweeper.n_trials"])
        self.limit = float(options.get("hydra.sweeper.time_limit", "inf"))
        self.start, self.code, self.stdout, self.stderr = time.monotonic(), None, io.BytesIO(), io.BytesIO()
        self.before = None
        StubSweep.log.append((self.name, self.jobs, self.start))

    def _study(self):
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(self.journal)))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.create_study(study_name=self.name, storage=storage, direction="maximize", load_if_exists=True)

    def poll(self):
        if self.code is not None:
            return self.code
        study = self._study()
        if self.before is None:
            self.before = len(study.trials)  # recorded before this sweep started
        rounds = math.ceil((self.trials - self.before) / self.jobs)
        if not self.deaf and math.isfinite(self.limit):
            rounds = min(rounds, int(self.limit / self.TRIAL_S))  # the rounds that end in time
        ended = int((time.monotonic() - self.start) / self.TRIAL_S)
        if ended < rounds:
            if self.gradual:
                self._record(study, self.before + self.jobs * ended)
            return None
        self._record(study, self.before + min(self.trials - self.before, self.jobs * rounds))
        self.code = 0
        return 0

    def _record(self, study, total):
        """Trials up to ``total``, each with a run folder (its configuration) as a real sweep leaves one."""
        for number in range(len(study.trials), total):
            folder = self.runs / f"trial_{number:04d}"
            (folder / ".hydra").mkdir(parents=True)
            (folder / ".hydra" / "config.yaml").write_text("seed: 0\n")
            space = {"x": FloatDistribution(0, 1)}
            done = optuna.trial.create_trial(
                params={"x": 0.5}, distributions=space, value=0.9, user_attrs={"folder": str(folder)}
            )
            study.add_trial(done)

    def wait(self, timeout=None):
        while self.poll() is None:
            time.sleep(0.02)
        return self.code

    def terminate(self):
        StubSweep.log.append((self.name, "terminated", time.monotonic()))
        self.code = -15

    send_signal = terminate


TINY_STUDY = """
setup: {trainer.max_epochs: 1}
parts:
  sweep_a: {kind: sweep, overrides: [], trials: 4}
  sweep_b: {kind: sweep, overrides: [], trials: 2}
  confirm_a: {kind: confirm, of: sweep_a, overrides: [], seeds: [100, 101]}
sections: {sweeps: [sweep_a, sweep_b], confirm: [confirm_a]}
"""


@pytest.fixture
def stub_parts(tmp_path, monkeypatch):
    (tmp_path / "conf" / "study").mkdir(parents=True)
    (tmp_path / "conf" / "study" / "tiny.yaml").write_text(TINY_STUDY)
    monkeypatch.setattr(runner, "subprocess", SimpleNamespace(Popen=StubSweep, PIPE=-1, STDOUT=-2))
    monkeypatch.setattr(runner, "POLL_S", 0.02)
    monkeypatch.setattr(runner, "STOP_GRACE_S", 0.3)
    monkeypatch.setattr(StubSweep, "log", [])
    return load_study("tiny", tmp_path / "conf" / "study"), Record(tmp_path / "study" / "tiny")


def test_independent_parts_fill_the_free_slots_and_a_confirm_starts_when_its_sweep_is_complete(tmp_path, stub_parts):
    study, record = stub_parts
    assert runner.run(study, record, "all", ["hydra.sweeper.n_jobs=4"]) == 0
    (a, a_jobs, a_start), (c, c_jobs, c_start), (b, b_jobs, b_start) = StubSweep.log
    # sweep_a has 4 trials left and gets every slot; sweep_b waits for free slots, confirm_a for sweep_a
    # (and is given its slots first: a confirm finishes a question before a sweep opens another)
    assert (a, a_jobs, c, c_jobs, b) == ("sweep_a", 4, "confirm_a", 2, "sweep_b")
    assert b_start >= a_start + StubSweep.TRIAL_S and c_start >= a_start + StubSweep.TRIAL_S
    assert abs(b_start - c_start) < 0.3  # sweep_b (2 slots) and confirm_a (2 slots) side by side
    assert {p: record.finished(p) for p in study.parts} == {"sweep_a": 4, "sweep_b": 2, "confirm_a": 2}


def test_slots_left_over_by_one_part_go_to_an_independent_one(tmp_path, stub_parts):
    study, record = stub_parts
    assert runner.run(study, record, "all", ["hydra.sweeper.n_jobs=5"]) == 0
    (a, a_jobs, a_start), (b, b_jobs, b_start), (c, c_jobs, _) = StubSweep.log
    assert (a, a_jobs, b, b_jobs, c, c_jobs) == ("sweep_a", 4, "sweep_b", 1, "confirm_a", 2)
    assert b_start - a_start < 0.1  # at once: sweep_a has 4 trials left, the fifth slot goes to sweep_b


PRIORITY_STUDY = """
setup: {trainer.max_epochs: 1}
parts:
  sweep_a: {kind: sweep, overrides: [], trials: 2}
  sweep_b: {kind: sweep, overrides: [], trials: 2}
  sweep_c: {kind: sweep, overrides: [], trials: 2}
  confirm_b: {kind: confirm, of: sweep_b, overrides: [], seeds: [100, 101]}
  confirm_c: {kind: confirm, of: sweep_c, overrides: [], seeds: [100, 101]}
contrasts:
  contrasts:
    - {variant: confirm_c, reference: sweep_a, question: named}
    - {variant: confirm_b, reference: sweep_a, question: secondary, primary: false}
sections: {sweeps: [sweep_a, sweep_b, sweep_c], confirm: [confirm_b, confirm_c], contrasts: [confirm_b, confirm_c]}
"""


def test_all_runs_the_parts_of_the_primary_contrasts_first_and_their_confirms_as_soon_as_they_can(tmp_path, stub_parts):
    (tmp_path / "conf" / "study" / "priority.yaml").write_text(PRIORITY_STUDY)
    study = load_study("priority", tmp_path / "conf" / "study")
    record = Record(tmp_path / "study" / "priority")
    assert runner.starts_next(study, record) == (
        "next, `run priority all` starts (the primary contrasts' parts first): sweep_a, sweep_c, sweep_b"
    )  # the confirms wait for their sweeps
    assert runner.run(study, record, "all", ["hydra.sweeper.n_jobs=2"]) == 0
    assert runner.starts_next(study, record) is None
    # the study file's order would be sweep_a, sweep_b, sweep_c, confirm_b, confirm_c
    started = [n for n, _, _ in StubSweep.log]
    assert started == ["sweep_a", "sweep_c", "confirm_c", "sweep_b", "confirm_b"]
    assert runner.primary_parts(study) == {"sweep_a", "sweep_c", "confirm_c"}


def test_named_parts_start_in_the_order_given_and_a_confirm_waits_for_its_sweep_named_with_it(
    tmp_path, stub_parts, capsys
):
    study, record = stub_parts
    # "all" would start sweep_a first; named, confirm_a (listed first) waits for sweep_a, then both
    # slots go to sweep_b before sweep_a, in the order given
    assert runner.run(study, record, "confirm_a,sweep_b,sweep_a,sweep_b", ["hydra.sweeper.n_jobs=2"]) == 0
    assert [(n, j) for n, j, _ in StubSweep.log] == [("sweep_b", 2), ("sweep_a", 2), ("confirm_a", 2)]
    assert {p: record.finished(p) for p in study.parts} == {"sweep_a": 4, "sweep_b": 2, "confirm_a": 2}
    assert runner.run(study, record, "sweep_a,sweep_b") == 0
    assert "sweep_a is complete (4 of 4 trials): nothing to run" in capsys.readouterr().out


def test_bad_part_lists_are_refused_before_anything_runs(tmp_path, stub_parts):
    study, record = stub_parts
    with pytest.raises(ConfigError, match="part='sweep_c' is not a known choice; valid choices: all, confirm_a"):
        runner.run(study, record, "sweep_a,sweep_c")
    with pytest.raises(ConfigError, match="part='all,sweep_a' is not allowed: all runs every unfinished part"):
        runner.run(study, record, "all,sweep_a")
    with pytest.raises(ConfigError, match="confirm_a retrains the best configuration of sweep_a, which has 0 of"):
        runner.run(study, record, "sweep_b,confirm_a")  # its sweep is neither complete nor named
    assert StubSweep.log == []


def test_a_sweep_the_study_starts_names_the_study_command_as_the_one_that_resumes_it(tmp_path, stub_parts, monkeypatch):
    study, record = stub_parts
    environments = []

    class Recording(StubSweep):
        def __init__(self, command, **kwargs):
            environments.append(kwargs["env"])
            super().__init__(command, **kwargs)

    monkeypatch.setattr(runner, "subprocess", SimpleNamespace(Popen=Recording, PIPE=-1, STDOUT=-2))
    monkeypatch.chdir(tmp_path)
    typed = ["run", "tiny", "sweep_b", "--time-limit", "60", "hydra.sweeper.n_jobs=2"]
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "scripts" / "study.py"), *typed])
    assert runner.run(study, record, "sweep_b", ["hydra.sweeper.n_jobs=2"]) == 0
    # the sweeper's "interrupted ...; resume with: ..." line names this, not its own src/train.py -m
    again = "python scripts/study.py run tiny sweep_b --time-limit 60 hydra.sweeper.n_jobs=2"
    assert [env[RESUME_COMMAND_ENV] for env in environments] == [again]


def test_a_running_part_records_the_rows_of_its_ended_trials_before_it_ends(tmp_path, stub_parts, monkeypatch):
    study, record = stub_parts
    monkeypatch.setattr(StubSweep, "gradual", True)
    monkeypatch.setattr(StubSweep, "TRIAL_S", 0.25)
    monkeypatch.setattr(runner, "ROWS_EVERY_S", 0.05)
    rows_seen = []

    class Watched(StubSweep):
        def poll(self):
            rows_seen.append(record.finished("sweep_a"))
            return super().poll()

    monkeypatch.setattr(runner, "subprocess", SimpleNamespace(Popen=Watched, PIPE=-1, STDOUT=-2))
    assert runner.run(study, record, "sweep_a", ["hydra.sweeper.n_jobs=1"]) == 0
    assert {1, 2, 3} <= set(rows_seen)  # in runs.jsonl while the sweep still ran (4 trials, one at a time)
    assert record.finished("sweep_a") == 4


def test_every_part_stops_at_the_deadline_and_resumes_next_time(tmp_path, stub_parts, capsys):
    study, record = stub_parts
    # 2 slots all go to sweep_a (4 trials left); one round fits in 1 s (the sweep gets whole seconds), so
    # sweep_a ends at 0.6 s, and sweep_b must not start then (its first trial would be stopped at 1 s)
    assert runner.run(study, record, "all", ["hydra.sweeper.n_jobs=2"], time_limit=1.0) == 0
    assert [(n, j) for n, j, _ in StubSweep.log] == [("sweep_a", 2)]
    assert {p: record.finished(p) for p in study.parts} == {"sweep_a": 2, "sweep_b": 0, "confirm_a": 0}
    assert "not started (time limit reached): confirm_a, sweep_b; they run next time" in capsys.readouterr().out
    assert runner.run(study, record, "all", ["hydra.sweeper.n_jobs=2"]) == 0
    assert {p: record.finished(p) for p in study.parts} == {"sweep_a": 4, "sweep_b": 2, "confirm_a": 2}


def test_a_part_not_run_yet_starts_only_if_the_studys_median_run_ends_before_the_deadline(tmp_path, stub_parts, capsys):
    """A new part's sweep has no trial length of its own to go by: the study judges by the median
    run recorded so far (11 minutes here), so with 60 s left neither sweep_b nor confirm_a starts
    (the stub sweeps would have run one round each); the sweeper's margin applies as to its own trials."""
    study, record = stub_parts
    journal = record.folder / "sweep_a" / "study.journal"
    journal.parent.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    finished = optuna.create_study(study_name="sweep_a", storage=storage, direction="maximize")
    rows = []
    for number, minutes in enumerate((9, 10, 12, 30)):
        trial = optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, value=0.9)
        finished.add_trial(trial)
        rows.append(
            {
                "number": number,
                "state": "COMPLETE",
                "duration_s": 60 * minutes,
                "metrics": {"test/acc": 0.9},
                "config": {},
            }
        )
    (journal.parent / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert runner.run(study, record, "all", ["hydra.sweeper.n_jobs=2"], time_limit=60.0) == 0
    assert StubSweep.log == []
    assert "not started (time limit reached): confirm_a, sweep_b; they run next time" in capsys.readouterr().out
    assert runner.run(study, record, "all", ["hydra.sweeper.n_jobs=2"], time_limit=13 * 60.0) == 0
    # the median, 11 minutes, with the sweeper's margin (1.25: 13.75) does not fit in 13
    assert StubSweep.log == []
    assert runner.run(study, record, "all", ["hydra.sweeper.n_jobs=2"], time_limit=14 * 60.0) == 0
    # with 14 minutes both start, one after the other on the 2 slots
    assert [(n, j) for n, j, _ in StubSweep.log] == [("confirm_a", 2), ("sweep_b", 2)]


def test_sweeps_that_outlive_the_deadline_are_all_terminated(tmp_path, stub_parts, monkeypatch):
    study, record = stub_parts
    monkeypatch.setattr(StubSweep, "deaf", True)
    runner.run(study, record, "all", ["hydra.sweeper.n_jobs=6"], time_limit=0.2)
    terminated = {name for name, what, _ in StubSweep.log if what == "terminated"}
    assert terminated == {"sweep_a", "sweep_b"}  # both ran side by side; confirm_a never started


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_study_goes_to_its_sweep_and_the_exit_code_comes_back(tmp_path, monkeypatch, signum):
    """`scripts/study.py run` under SLURM or Ctrl-C: the sweep gets the signal, stops its trials
    (tests/test_sweeper_stops.py) and exits 143 / 130; the study waits for it and says so."""
    ready = tmp_path / "ready"
    sweep = "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)); "
    sweep += f"signal.signal(signal.SIGINT, lambda *_: sys.exit(130)); pathlib.Path({str(ready)!r}).touch(); "
    sweep += "time.sleep(60)"
    monkeypatch.setattr(runner, "sweep_command", lambda *args: [sys.executable, "-c", sweep])
    monkeypatch.setattr(runner, "machine", lambda: {}, raising=False)

    default = signal.getsignal(signum)

    def signal_once_ready():  # the sweep has its handlers, and the study forwards signals to it
        while not ready.exists() or signal.getsignal(signum) is default:
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    threading.Thread(target=signal_once_ready, daemon=True).start()
    assert runner.run(CLASSIFIER, record_of(tmp_path), "sweep_relu") == 128 + signum
    assert signal.getsignal(signum) is default  # the forwarding handler is gone again
