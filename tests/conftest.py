"""Fixtures, the test tiers and their check. Shared helpers (the tiny preset, composing the config,
running src/train.py, sweeps, records, mounts) are in tests/helpers/, which test modules import.

Tiers: ``make test-fast`` (``pytest -m "not slow" -n auto --dist loadscope``: a module per worker, so its
fixtures are built once; under 3 minutes on 2 cores) runs every test that
trains nothing, starts no server (PostgreSQL, TensorBoard) and spawns no ``src/train.py`` or other
training process; ``make test`` runs them all, on two workers the same way. A test that needs any
of those is marked ``slow`` (pytest.mark.slow, or ``pytestmark`` for a whole module), and so is one
that needs a trained run (``tiny_run``, a module fixture that trains). The one other kind marked
slow: two sweep workers of real 6-second stub trials, one killed (test_sweeper_liveness.py, about 25 s each).
A test not marked slow that trains (``Trainer.fit``), starts ``src/train.py`` or asks for a server
fixture fails and says so (``_fast_tier_guard``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers.data import write_fashion_sample
from helpers.runs import TINY, compose_config
from helpers.slurm import cancel_jobs, job_environment, launcher_overrides, require_slurm

SLOW = "slow"
SERVER_FIXTURES = {"postgres_url", "slurm"}  # fixtures that start a server, or jobs on the SLURM cluster


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where CUDA is not available (CI, CPU machines)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# -- the fast tier trains nothing and starts no src/train.py


class _FastTierViolation(Exception):
    pass


def _starts_training_script(args) -> bool:
    if isinstance(args, (str, bytes, os.PathLike)):
        args = [args]
    for arg in args:
        path = Path(os.fsdecode(arg)) if isinstance(arg, (str, bytes, os.PathLike)) else None
        if path is not None and path.name == "train.py" and path.parent.name == "src":
            return True
    return False


@contextmanager
def _fast_tier_guard(item):
    """For a test not marked slow: Trainer.fit and a ``src/train.py`` subprocess fail it."""
    if SLOW in item.keywords:
        yield
        return
    servers = sorted(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
    if servers:
        raise _FastTierViolation(f"{item.nodeid} starts a server ({', '.join(servers)}): mark it @pytest.mark.slow")
    import lightning.pytorch as lp

    name = item.nodeid
    fit, popen = lp.Trainer.fit, subprocess.Popen

    def no_fit(*args, **kwargs):
        raise _FastTierViolation(f"{name} trains (Trainer.fit): mark it @pytest.mark.slow")

    class NoTrainingPopen(popen):
        def __new__(cls, args, *rest, **kwargs):  # refused before an object exists (no Popen.__del__)
            if _starts_training_script(args):
                raise _FastTierViolation(f"{name} starts src/train.py: mark it @pytest.mark.slow")
            return super().__new__(cls)

    lp.Trainer.fit, subprocess.Popen = no_fit, NoTrainingPopen
    try:
        yield
    finally:
        lp.Trainer.fit, subprocess.Popen = fit, popen


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _fast_tier_guard(item):  # fixtures too: a module fixture that trains makes its tests slow
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _fast_tier_guard(item):
        return (yield)


# -- fixtures


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny run, shared by every test that only reads a run folder: its TensorBoard
    events, checkpoints, result.json and sgmod_final.json, or resume from its last.ckpt into a folder
    of their own. TINY as it is (debug=tiny plus trainer.enable_checkpointing=true: 2 epochs of 20
    steps on digits). Read it, never write into it: copy it first (shutil.copytree) to change anything."""
    from sgmod_study.run.training import train

    run_dir = tmp_path_factory.mktemp("session") / "tiny_run"
    train(compose_config(TINY, run_dir))
    return run_dir


@pytest.fixture(scope="session")
def fashion_sample_dir(tmp_path_factory) -> Path:
    """The shipped real sample as a Fashion-MNIST folder (the same images as train and test set)."""
    return write_fashion_sample(tmp_path_factory.mktemp("fashion_sample"))


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on loopback (.ci/run installs Debian's postgresql)."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing: .ci/run should have installed postgresql")
        pytest.skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    bindir = bindirs[-1]
    data = Path(tempfile.mkdtemp(prefix="sgmod-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    # -l: the server must not inherit our pipes, or run() waits for it to exit
    subprocess.run(
        [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(
        [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
    )
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def slurm(monkeypatch):
    """The one-node SLURM cluster of scripts/install_test_services.sh (skipped with one line where
    there is none): the overrides that make a sweep's workers this test's SLURM jobs (one CPU, no
    GPU each, importing this checkout); they are cancelled when the test ends, whatever its end."""
    import uuid

    require_slurm()
    for key, value in job_environment().items():
        monkeypatch.setenv(key, value)
    name = f"sgmod_test_{uuid.uuid4().hex[:8]}"
    yield launcher_overrides(name)
    cancel_jobs(name)
