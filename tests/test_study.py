"""The study's records: gamma/beta's own optimizer settings, the per-run gamma/beta record, and
the committed per-run table (runs.jsonl) that survives a move between machines."""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from conftest import CONF, compose_config
from sgmod_study.activations import Sgmod
from sgmod_study.classifier import build_classifier
from sgmod_study.data import dataset_spec
from sgmod_study.diagnostics import SGMOD_FINAL_FILE, activation_record
from sgmod_study.study import PARTS, export, machine, read_rows, record_dir, sweep_command
from sgmod_study.study_report import _machine
from sgmod_study.training import train


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


def test_a_run_records_final_gamma_beta_and_how_far_they_could_travel(tmp_path, tiny_overrides):
    cfg = compose_config([*tiny_overrides, "activation.lr=0.004", "scheduler=none"], tmp_path)
    train(cfg)
    record = json.loads((tmp_path / SGMOD_FINAL_FILE).read_text())
    assert set(record["layers"]) == {"features.stage1.act", "features.stage2.act", "head.act"}
    steps = 2 * 20  # 2 epochs of the digits training split (1,797 - 360 test - 200 val) in batches of 64
    assert record["steps"] == steps
    assert record["activation_lr_sum"] == pytest.approx(steps * 0.004)
    moved = max(abs(g - 1.0) for g in record["layers"]["head.act"]["gamma"])
    assert 0 < moved <= record["activation_lr_sum"] * 1.1  # Adam moves about lr per step at most


def _fake_study(root, name, n, stored=None):
    """Part ``name`` with ``n`` finished trials whose run folders are here; ``stored``: the folders
    as their trials recorded them (by default their absolute paths)."""
    journal = record_dir(name, root) / "study.journal"
    journal.parent.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for i in range(n):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        folder = root / "outputs" / "study" / name / f"trial_{i:04d}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "config.yaml").write_text(f"seed: {i}\nactivation:\n  name: sgmod\n")
        (folder / "result.json").write_text(json.dumps({"value": i / 10, "metrics": {"test/acc": i / 10}}))
        trial.set_user_attr("folder", stored[i] if stored else str(folder))
        study.tell(trial, i / 10)
    return study


def test_export_keeps_rows_whose_run_folders_are_on_another_machine(tmp_path):
    study = _fake_study(tmp_path, "controls", 2)
    rows = export("controls", tmp_path)
    assert [r["metrics"]["test/acc"] for r in rows] == [0.0, 0.1]
    assert rows[1]["config"]["seed"] == 1 and rows[1]["config"]["activation"] == {"name": "sgmod"}
    # the study moves to a machine without these folders and gains a trial there
    for folder in (tmp_path / "outputs").glob("study/controls/trial_*"):
        (folder / ".hydra" / "config.yaml").unlink()
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    rows = export("controls", tmp_path)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    assert [r.get("metrics", {}).get("test/acc") for r in rows] == [0.0, 0.1, None]  # read earlier, kept
    assert read_rows(record_dir("controls", tmp_path) / "runs.jsonl") == rows


def test_a_row_names_the_cpus_vector_extension_which_one_model_name_does_not():
    here = machine()
    assert here["cpu_capability"] in ("DEFAULT", "NO AVX", "AVX2", "AVX512", "Z VECTOR", "VSX", "SVE256")
    assert _machine({"machine": here}).endswith(f"({here['cpu_count']} cores, {here['cpu_capability']})")
    assert _machine({"machine": {"cpu": "AMD EPYC", "cpu_count": 2}}) == "AMD EPYC (2 cores)"  # an older row


def test_every_part_stores_its_study_in_the_committed_record(tmp_path):
    for name, part in PARTS.items():
        if part.best_of:  # needs its sweep's record: test_a_confirm_part_retrains_...
            continue
        command = sweep_command(part, ["hydra.sweeper.n_jobs=2"], tmp_path)
        assert f"hydra.sweeper.storage=study/{name}/study.journal" in command  # in the repository (the sweep's cwd)
        assert f"hydra.sweeper.study_name={name}" in command and command[-1] == "hydra.sweeper.n_jobs=2"
        assert "trainer.max_epochs=10" in command  # the full budget: gamma/beta can travel ~1.2 at lr 1e-3


def test_a_confirm_part_retrains_the_best_configuration_of_its_sweep(tmp_path):
    from sgmod_study.errors import ConfigError

    with pytest.raises(ConfigError, match="part=sweep_relu has no finished trial yet"):
        sweep_command(PARTS["confirm_relu"], [], tmp_path)
    record = record_dir("sweep_relu", tmp_path)
    record.mkdir(parents=True)
    rows = [
        {"number": 0, "state": "COMPLETE", "values": [0.91], "params": {"optimizer.lr": 0.001}},
        {
            "number": 1,
            "state": "COMPLETE",
            "values": [0.93],
            "params": {"optimizer.lr": 0.003, "optimizer.weight_decay": 1e-05},
        },
        {"number": 2, "state": "FAIL", "values": None, "params": {"optimizer.lr": 0.5}},
    ]
    (record / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    command = sweep_command(PARTS["confirm_relu"], [], tmp_path)
    assert command[3:6] == ["experiment=study_confirm", "activation=relu", "trainer.max_epochs=10"]
    assert command[6:8] == ["optimizer.lr=0.003", "optimizer.weight_decay=1e-05"]  # trial 1, the best
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=command[3:8], return_hydra_config=True)
    assert cfg.optimizer.lr == 0.003 and cfg.hydra.sweeper.n_trials == 10
    assert cfg.hydra.sweeper.params.seed == "choice(100, 101, 102, 103, 104, 105, 106, 107, 108, 109)"


def test_confirm_tanh_cpu_is_confirm_tanh_on_the_cpu(tmp_path):
    record = record_dir("sweep_tanh", tmp_path)
    record.mkdir(parents=True)
    row = {"number": 0, "state": "COMPLETE", "values": [0.93], "params": {"optimizer.lr": 0.009}}
    (record / "runs.jsonl").write_text(json.dumps(row) + "\n")
    on_gpu, on_cpu = (sweep_command(PARTS[name], [], tmp_path) for name in ("confirm_tanh", "confirm_tanh_cpu"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        gpu_cfg, cpu_cfg = (compose("train", overrides=c[3:9], return_hydra_config=True) for c in (on_gpu, on_cpu))
    assert cpu_cfg.trainer.accelerator == "cpu" and gpu_cfg.trainer.accelerator == "auto"
    assert cpu_cfg.optimizer.lr == gpu_cfg.optimizer.lr == 0.009 and cpu_cfg.activation.name == "tanh"
    assert cpu_cfg.hydra.sweeper.params.seed == gpu_cfg.hydra.sweeper.params.seed  # the same fresh seeds
    assert cpu_cfg.trainer.max_epochs == gpu_cfg.trainer.max_epochs == 10


def test_each_part_completes_at_its_sweeps_n_trials():
    for name, part in PARTS.items():
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=list(part.overrides), return_hydra_config=True)
        assert cfg.hydra.sweeper.n_trials == part.trials, name


def _sgmod_sweep(root, values):
    """A finished sweep_sgmod record: trial i has gamma_init, lr and beta_init from ``values[i]``."""
    from optuna.distributions import FloatDistribution

    journal = record_dir("sweep_sgmod", root) / "study.journal"
    journal.parent.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="sweep_sgmod", storage=storage, direction="maximize")
    space = {
        "activation.gamma_init": FloatDistribution(0.1, 10.0, log=True),
        "activation.beta_init": FloatDistribution(-5.0, 5.0),
        "activation.lr": FloatDistribution(1e-4, 1e-2, log=True),
    }
    rows = []
    for number, (gamma, beta, lr, value) in enumerate(values):
        params = {"activation.gamma_init": gamma, "activation.beta_init": beta, "activation.lr": lr}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))
        rows.append({"number": number, "state": "COMPLETE", "values": [value], "params": params})
    (journal.parent / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_recommended_default_is_the_rounded_median_of_the_top_quarter(tmp_path):
    from sgmod_study.study import recommended_overrides

    # the top quarter of 12 trials is the 3 best: gamma 2, 2.2, 8 (geometric median 2.2 -> 2),
    # beta -1.2, -0.9, 3 (median -0.9 -> -1), lr 1e-3, 3e-3, 9e-3 (median 3e-3)
    top = [(2.0, -1.2, 1e-3, 0.93), (2.2, -0.9, 3e-3, 0.92), (8.0, 3.0, 9e-3, 0.91)]
    rest = [(0.1 + i / 10, 4.0, 1e-4, 0.5 + i / 100) for i in range(9)]
    _sgmod_sweep(tmp_path, top + rest)
    assert recommended_overrides("sweep_sgmod", tmp_path) == [
        "activation.beta_init=-1",
        "activation.gamma_init=2",
        "activation.lr=0.003",
    ]


def test_a_confirm_part_waits_for_its_whole_sweep(tmp_path):
    from sgmod_study.errors import ConfigError
    from sgmod_study.study import run

    _sgmod_sweep(tmp_path, [(1.0, 0.0, 1e-3, 0.9)] * 5)
    with pytest.raises(ConfigError, match="sweep_sgmod, which has 5 of its 64 trials: finish it first"):
        run("confirm_sgmod_default", root=tmp_path)
    with pytest.raises(ConfigError, match="part='sweep_nope' is not a known choice; valid choices: all, "):
        run("sweep_nope", root=tmp_path)


def test_run_all_runs_the_unfinished_parts_in_order_and_stops_at_one_left_unfinished(tmp_path, monkeypatch):
    from sgmod_study import study

    calls = []

    def fake_run(name, overrides=(), time_limit=None, root=tmp_path):
        calls.append((name, list(overrides), time_limit))
        done = study.PARTS[name].trials if name != "sweep_tanh" else 3  # sweep_tanh hits the time limit
        rows = [{"number": i, "state": "COMPLETE", "values": [0.9], "params": {}} for i in range(done)]
        record_dir(name, root).mkdir(parents=True, exist_ok=True)
        (record_dir(name, root) / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return 0

    record_dir("controls", tmp_path).mkdir(parents=True)
    (record_dir("controls", tmp_path) / "runs.jsonl").write_text(
        "".join(json.dumps({"number": i, "state": "COMPLETE"}) + "\n" for i in range(72))
    )
    monkeypatch.setattr(study, "run", fake_run)
    assert study.run_all(["hydra.sweeper.n_jobs=2"], time_limit=1e6, root=tmp_path) == 0
    assert [c[0] for c in calls] == ["sweep_sgmod", "sweep_sigmoid", "sweep_tanh"]  # controls were complete
    assert calls[0][1] == ["hydra.sweeper.n_jobs=2"] and 0 < calls[2][2] <= 1e6  # the time left is passed on


def test_the_time_limit_goes_to_the_sweep_and_a_sweep_past_it_is_terminated(tmp_path, monkeypatch):
    from sgmod_study import study

    commands, waits = [], []

    class Sweep:  # stands for the sweep process: does not end within the wait
        def __init__(self, command, cwd):
            commands.append(command)
            self.terminated = False

        def wait(self, timeout=None):
            waits.append(timeout)
            if timeout is not None and not self.terminated:
                raise subprocess.TimeoutExpired("sweep", timeout)
            return -15

        def terminate(self):
            self.terminated = True

    monkeypatch.setattr(study, "subprocess", SimpleNamespace(Popen=Sweep, TimeoutExpired=subprocess.TimeoutExpired))
    assert study.run("sweep_relu", ["hydra.sweeper.n_jobs=2"], time_limit=600.4, root=tmp_path) == -15
    assert commands[0][-2:] == ["hydra.sweeper.n_jobs=2", "hydra.sweeper.time_limit=600"]
    assert waits == [600.4 + study.STOP_GRACE_S, None]  # the sweep's own stop first, then the backstop
    study.run("sweep_relu", root=tmp_path)
    assert not any(arg.startswith("hydra.sweeper.time_limit=") for arg in commands[1]) and waits[-1] is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_study_goes_to_its_sweep_and_the_exit_code_comes_back(tmp_path, monkeypatch, signum):
    """`scripts/study.py run` under SLURM or Ctrl-C: the sweep gets the signal, stops its trials
    (tests/test_sweeper_stops.py) and exits 143 / 130; the study waits for it and says so."""
    from sgmod_study import study

    ready = tmp_path / "ready"
    sweep = "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)); "
    sweep += f"signal.signal(signal.SIGINT, lambda *_: sys.exit(130)); pathlib.Path({str(ready)!r}).touch(); "
    sweep += "time.sleep(60)"
    monkeypatch.setattr(study, "sweep_command", lambda *args: [sys.executable, "-c", sweep])

    default = signal.getsignal(signum)

    def signal_once_ready():  # the sweep has its handlers, and the study forwards signals to it
        while not ready.exists() or signal.getsignal(signum) is default:
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    threading.Thread(target=signal_once_ready, daemon=True).start()
    assert study.run("sweep_relu", root=tmp_path) == 128 + signum
    assert signal.getsignal(signum) is default  # the forwarding handler is gone again
