"""Sweeps as the tests run them: real ones of tiny trials (``python src/train.py -m``, digits on the
CPU), and in-process ones of a stub trial script, which tests the orchestration (scheduling,
failures, journals) in milliseconds per trial without training anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution

from helpers.runs import ROOT, TINY
from sgmod_study.sweeper.scheduler import Sweep
from sgmod_study.sweeper.settings import SweepSettings
from sgmod_study.sweeper.storage import open_storage

# -- real sweeps: python src/train.py -m, tiny trials

# one trial: the tiny preset (debug=tiny, with checkpoints: a stopped trial resumes from its last.ckpt)
# cut to 1 epoch of a smaller CNN, ~5 s of which most is process start-up
TRIAL = [
    *TINY,
    "trainer.max_epochs=1",
    "diagnostics.every_n_steps=null",
    "model.channels=[8]",
    "model.hidden=16",
]

# Sgmod's eager expression in trial processes: compiling the fused op took a tiny trial from 5.5 s
# to 9.8 s on 2 CPU cores, and these tests are about the sweeper (test_sgmod_op.py tests the op)
EAGER_SGMOD = "activation.impl=reference"


def sweep(tmp_path, *args, n_trials=6, n_jobs=1, storage=None, wait=True, search="hparams_search=sgmod_classifier"):
    """python src/train.py -m <search> on digits; the study in tmp_path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "-m",
        search,
        *TRIAL,
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.n_jobs={n_jobs}",
        f"hydra.sweeper.storage={storage or tmp_path / 'study.journal'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "hydra.sweeper.sampler.seed=0",
        *([] if any("activation=" in a for a in args) else [EAGER_SGMOD]),  # not when the activation changes
        *args,
    ]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return process
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def load(tmp_path, name="sgmod_classifier") -> optuna.Study:
    """The study that ``sweep`` ran in ``tmp_path``."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal"))
    )
    return optuna.load_study(study_name=name, storage=storage)


def train_multirun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`python src/train.py -m hparams_search=sgmod_classifier ...` that is refused before any trial."""
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "src" / "train.py"),
            "-m",
            "hparams_search=sgmod_classifier",
            "data=digits",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            f"hydra.sweeper.storage={tmp_path / 'study.journal'}",
            *args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- stub sweeps: the scheduler in-process, a trial script without torch

# A trial process in a few milliseconds: value `value=` or x (or 0), exit code `exit=` (default 0).
STUB = """
import json, sys, pathlib
args = dict(a.split("=", 1) for a in sys.argv[1:])
folder = pathlib.Path(args["hydra.run.dir"])
(folder / ".hydra").mkdir(parents=True, exist_ok=True)
(folder / ".hydra" / "config.yaml").write_text("seed: 0\\n")  # as Hydra writes it when a run starts
value = float(args.get("value", args.get("x", 0)))
(folder / "result.json").write_text(json.dumps({"value": value, "metrics": {"test/acc": value / 2}}))
code = int(args.get("exit", 0))
if code:
    print(f"error: stub trial exits with {code}")
sys.exit(code)
"""
SPACE = {"x": FloatDistribution(0.0, 1.0)}


def stub_script(tmp_path: Path) -> Path:
    """STUB written to ``tmp_path/stub.py``."""
    stub = tmp_path / "stub.py"
    stub.write_text(STUB)
    return stub


def run_sweep(tmp_path: Path, fixed=(), **settings) -> optuna.Study:
    """An in-process sweep of STUB trials over SPACE (study "s" in tmp_path/study.journal)."""
    settings = {"study_name": "s", "storage": str(tmp_path / "study.journal"), "n_trials": 2, **settings}
    settings.setdefault("sampler", optuna.samplers.RandomSampler(seed=0))
    return Sweep(SweepSettings(**settings), SPACE, list(fixed), tmp_path / "sweep", stub_script(tmp_path)).run()


def journal_study(path: Path, name: str = "s") -> optuna.Study:
    storage, _ = open_storage(str(path), name, path.parent)
    return optuna.create_study(study_name=name, storage=storage, load_if_exists=True)


def plain_load(path: Path, name: str = "s") -> optuna.Study:
    """The study as Optuna alone reads it (no repair)."""
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def dead_owner() -> str:
    """A trial owner (host:pid) on this host whose process has ended."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}"
