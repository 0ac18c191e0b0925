"""src/train.py as a user runs it: bad overrides, and single-run multi-process training."""

import json
import os
import subprocess
import sys

import pytest

from helpers.runs import DEBUG_TINY, ROOT, TINY, read_events, run_train

pytestmark = pytest.mark.slow  # every test starts src/train.py


def _error_line(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_unknown_activation_lists_the_choices(tmp_path):
    result = run_train(["activation=swishy"], tmp_path / "run")
    assert result.returncode == 2
    line = _error_line(result)
    assert line.startswith("error: activation='swishy' is not a known choice; valid choices: elu, gelu, ")
    for name in ("sgmod", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu", "mish", "sigmoid", "tanh"):
        assert f" {name}," in line or line.endswith(f" {name}")


def test_missing_data_names_the_three_ways(tmp_path):
    args = [
        "data.data_dir=" + str(tmp_path / "none"),
        "data.system_dir=" + str(tmp_path / "sys"),
        "data.download=false",
    ]
    line = _error_line(run_train(["trainer=cpu", *args], tmp_path / "run"))
    assert line.startswith("error: Fashion-MNIST not found.")
    assert (
        "data.data_dir=" in line and "apt-get install dataset-fashion-mnist" in line and "torchvision download" in line
    )


def test_ddp_cpu_trains_two_processes_into_one_run(tmp_path):
    runs = tmp_path / "runs"
    result = run_train([*TINY, "trainer=ddp_cpu", "trainer.max_epochs=2", "activation.impl=reference"], runs / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["run"]  # the second process did not make its own
    run = runs / "run"
    assert "train_ddp_process_1.log" in {p.name for p in run.iterdir()}  # rank 1 really ran
    assert result.stdout.count("== outputs:") == 1  # rank zero alone prints the summary
    logs = read_events(run / "tensorboard")
    assert len(logs["scalars"]["val/acc"]) == 2  # logged once per epoch, not once per process
    session = read_events(run / "tensorboard" / "hparams")
    assert len([t for t, _ in session["hparams"] if t == "_hparams_/session_start_info"]) == 1
    assert (run / "checkpoints" / "last.ckpt").is_file()


def _imported_modules(args: list[str]) -> set[str]:
    """The top-level modules `python src/train.py <args>` imports (python -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "src" / "train.py"), *args],
        cwd=ROOT,
        env={**os.environ, "COMP_LINE": "python src/train.py activation=s"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}


def test_help_and_tab_completion_do_not_import_the_training_libraries():
    # torch and Lightning took about 10 s to import; --help and completion need neither
    for args in (["--help"], ["-sc", "query=bash"]):
        modules = _imported_modules(args)
        assert "hydra" in modules and not {"torch", "lightning", "optuna"} & modules, args


def test_a_run_prints_no_library_noise_and_train_log_holds_its_console_output(tmp_path):
    """`python src/train.py debug=tiny` as the README shows it, cut to one epoch."""
    run = tmp_path / "run"
    # 20 batches an epoch, fewer than Lightning's default logging interval: it warns about that
    args = [*DEBUG_TINY, "trainer.max_epochs=1", "trainer.log_every_n_steps=50"]
    result = run_train(args, run)  # the fused op
    assert result.returncode == 0, result.stderr[-3000:]
    summary = [line for line in result.stdout.splitlines() if line.startswith("== ")]
    assert len(summary) == 3 and "data=digits" in summary[0] and "epochs=1" in summary[1], result.stdout
    assert not (run / "checkpoints").exists()  # the preset writes no checkpoint: it tests its last weights
    assert json.loads((run / "result.json").read_text())["checkpoint"] is None
    printed = result.stdout + result.stderr
    noises = ("💡 Tip", "is deprecated", "CUDA_HOME", "100% of the batches", "[HYDRA]", "INFO:", "logging interval")
    for noise in noises:
        assert noise not in printed, noise
    assert printed.count("Seed set to 42") == 1  # Lightning's lines once, not once per logging handler
    log = (run / "train.log").read_text()
    for line in ("Seed set to 42", "data: digits from", "== val/acc_best=", f"== outputs: {run}"):
        assert line in log, line
    assert "The number of training batches (20) is smaller than the logging interval" in log  # chatter: log only
