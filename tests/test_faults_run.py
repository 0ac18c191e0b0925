"""A whole `python src/train.py` stopped from outside: SIGTERM and SIGINT (a preemption, Ctrl-C, a
sweep's guard), a disk that fills up and an output folder that cannot be written, on a real tmpfs.

The tmpfs tests need mounts: as root they mount directly; otherwise the module runs again inside
`unshare --user --map-root-user --mount` (test_in_a_mount_namespace), and they skip only where
neither works.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers.mounts import IS_ROOT, needs_root, tmpfs
from helpers.runs import ROOT, TINY
from sgmod_study.tasks.checkpoints import AtomicCheckpointIO

SCRIPT = ROOT / "src" / "train.py"
GUARD = ROOT / "src" / "sgmod_study" / "sweeper" / "guard.py"
# a run that a signal or a full disk stops long before its end; MLP and ReLU: quick, nothing to compile
LONG = [*TINY, "model=mlp", "activation=relu", "trainer.max_epochs=50"]


def _start(args: list[str], folder: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """python src/train.py <args>, its output in folder/out and folder/err."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=(folder / "out").open("w"),
        stderr=(folder / "err").open("w"),
    )


def _wait_for(path: Path, proc: subprocess.Popen, folder: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"ended with {proc.returncode} before {path} existed:\n{_err(folder)[-3000:]}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)


def _err(folder: Path) -> str:
    return (folder / "err").read_text()


def _finish(proc: subprocess.Popen, timeout: float = 120) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _one_line(folder: Path, start: str) -> str:
    """The one line starting with ``start`` on stderr, with no traceback anywhere."""
    err = _err(folder)
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith(start)]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def _stopped_line(name: str, ckpt: str) -> str:
    return (
        rf"interrupted \({name}\) at epoch (\d+), step (\d+): last\.ckpt written; "
        rf"resume with: python {re.escape(ckpt)}"
    )


# -- 1. SIGTERM and SIGINT: last.ckpt, one line with the resume command, no result, 143 / 130


@pytest.fixture(scope="module")
def terminated(tmp_path_factory) -> Path:
    """A run in its own folder (cwd), stopped by SIGTERM once it wrote its first last.ckpt."""
    folder = tmp_path_factory.mktemp("terminated")
    proc = _start([*LONG, "hydra.run.dir=run"], folder, cwd=folder)
    _wait_for(folder / "run" / "checkpoints" / "last.ckpt", proc, folder)
    proc.send_signal(signal.SIGTERM)
    (folder / "rc").write_text(str(_finish(proc)))
    return folder


@pytest.mark.slow
def test_sigterm_stops_the_run_with_last_ckpt_and_one_line(terminated):
    assert (terminated / "rc").read_text() == "143"
    line = _one_line(terminated, "interrupted")
    match = re.fullmatch(_stopped_line("SIGTERM", f"{SCRIPT} ckpt_path=run/checkpoints/last.ckpt"), line)
    assert match, line  # the path relative to the current folder, where it is inside it
    last = torch.load(terminated / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (int(match[1]), int(match[2]))  # written where it stopped
    assert not (terminated / "run" / "result.json").exists()
    assert "Received SIGTERM" not in (terminated / "out").read_text()


@pytest.mark.slow
def test_resume_alone_continues_with_the_checkpoints_configuration(terminated):
    last = torch.load(terminated / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    epochs = last["epoch"] + 1  # finish the interrupted epoch, nothing more
    proc = _start(["ckpt_path=run/checkpoints/last.ckpt", f"trainer.max_epochs={epochs}", "hydra.run.dir=resumed"],
                  terminated / "resume", cwd=terminated)  # fmt: skip
    assert _finish(proc, 240) == 0, _err(terminated / "resume")[-3000:]
    resumed = terminated / "resumed"
    assert (resumed / "result.json").exists()
    saved = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    hparams = saved["hyper_parameters"]
    assert (hparams["model.name"], hparams["activation.name"], hparams["data.name"]) == ("mlp", "relu", "digits")
    assert hparams["trainer.max_epochs"] == epochs  # an option a resume may change
    assert saved["epoch"] == last["epoch"] and saved["global_step"] > last["global_step"]  # that epoch's end
    assert "Restored all states from the checkpoint at run/checkpoints/last.ckpt" in (resumed / "train.log").read_text()
    recorded = yaml.safe_load((resumed / ".hydra" / "config.yaml").read_text())  # what it trained, not the defaults
    assert (recorded["model"]["name"], recorded["activation"]["name"], recorded["data"]["name"]) == (
        "mlp",
        "relu",
        "digits",
    )


@pytest.mark.slow
def test_sigint_stops_the_run_like_sigterm_with_exit_130(tmp_path):
    run = tmp_path / "run"
    proc = _start([*LONG, f"hydra.run.dir={run}"], tmp_path)
    _wait_for(run / "checkpoints" / "last.ckpt", proc, tmp_path)
    proc.send_signal(signal.SIGINT)
    assert _finish(proc) == 130
    line = _one_line(tmp_path, "interrupted")
    match = re.fullmatch(_stopped_line("SIGINT", f"src/train.py ckpt_path={run}/checkpoints/last.ckpt"), line)
    assert match, line  # outside the current folder: the absolute path
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == int(match[2])
    assert not (run / "result.json").exists()


@pytest.mark.slow
def test_a_sweep_trial_stopped_by_its_guard_exits_143_within_the_grace(tmp_path):
    """The guard sends SIGTERM to the trial's process group and SIGKILL 5 s later; here on SLURM,
    whose `--signal=TERM@120` sends the same SIGTERM (Lightning then adds handlers of its own)."""
    from sgmod_study.sweeper.guard import STOP_GRACE_S

    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "trial", "SLURM_JOB_ID": "7", "SLURM_NODELIST": "localhost",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}  # fmt: skip
    run, rc = tmp_path / "run", tmp_path / "rc"
    # the guard ends with its group's SIGKILL, itself included: this wrapper in the group, deaf to the
    # SIGTERM, keeps the trial's own exit code
    keep_code = "import signal,subprocess,sys; signal.signal(signal.SIGTERM, lambda *a: None); " \
        "open(sys.argv[1], 'w').write(str(subprocess.call(sys.argv[2:])))"  # fmt: skip
    trial = [sys.executable, str(SCRIPT), *LONG, f"hydra.run.dir={run}"]
    proc = subprocess.Popen(
        [sys.executable, str(GUARD), str(os.getpid()), sys.executable, "-c", keep_code, str(rc), *trial],
        env={**os.environ, **slurm},
        stdout=(tmp_path / "out").open("w"),
        stderr=(tmp_path / "err").open("w"),
        start_new_session=True,  # the guard signals its own process group
    )
    _wait_for(run / "checkpoints" / "last.ckpt", proc, tmp_path)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _finish(proc, 30)
    assert rc.exists() and rc.read_text() == "143", _err(tmp_path)[-3000:]
    assert time.monotonic() - sent < STOP_GRACE_S  # stopped by the SIGTERM, before the SIGKILL
    assert _one_line(tmp_path, "interrupted (SIGTERM) at epoch ")
    torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


# -- 2. a full disk and an output folder that cannot be written: one line, exit 5, nothing lost


def _fill(folder: Path) -> None:
    """Write zeros into ``folder`` until its file system is full."""
    with (folder / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _full_disk_line(run: Path, then: str) -> str:
    return (
        f"error: cannot write to {run}: no space left on its device; what was written before is whole: "
        f"free some space, then {then}"
    )


@pytest.mark.slow
@needs_root
def test_disk_filling_up_mid_run_is_one_line_and_keeps_every_checkpoint(tmp_path):
    with tmpfs(tmp_path / "disk", "size=8m") as disk:
        run = disk / "run"
        proc = _start([*LONG, f"hydra.run.dir={run}"], tmp_path)
        _wait_for(run / "checkpoints" / "last.ckpt", proc, tmp_path)
        time.sleep(0.5)  # let the first checkpoints' renames finish: only whole files from here on
        _fill(disk)
        assert _finish(proc) == 5, _err(tmp_path)[-3000:]
        last = run / "checkpoints" / "last.ckpt"
        assert _one_line(tmp_path, "error:") == _full_disk_line(
            run, f"resume with: python src/train.py ckpt_path={last}"
        )
        checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert "last.ckpt" in checkpoints and all(name.endswith(".ckpt") for name in checkpoints)  # no .tmp left
        for name in checkpoints:  # whole: each loads, with its weights
            assert torch.load(run / "checkpoints" / name, weights_only=True)["state_dict"]
        assert not (run / "result.json").exists()


@pytest.mark.slow
@needs_root
def test_a_full_disk_before_the_run_starts_is_one_line(tmp_path):
    with tmpfs(tmp_path / "disk", "size=64k") as disk:
        _fill(disk)  # Hydra's .hydra/config.yaml is the first file that does not fit
        proc = _start([*TINY, f"hydra.run.dir={disk / 'run'}"], tmp_path)
        assert _finish(proc) == 5
        assert _one_line(tmp_path, "error:") == _full_disk_line(disk / "run", "run the command again")


@needs_root
def test_a_real_full_disk_reaches_the_checkpoint_writer_as_an_oserror(tmp_path):
    """torch.save's own zip writer would turn ENOSPC into RuntimeError('... unexpected pos ...')."""
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        io, path = AtomicCheckpointIO(), disk / "last.ckpt"
        io.save_checkpoint({"epoch": 0, "w": torch.ones(10)}, path)
        with pytest.raises(OSError) as err:
            io.save_checkpoint({"epoch": 1, "w": torch.ones(1 << 20)}, path)  # 4 MiB
        assert err.value.errno == 28  # ENOSPC
        assert torch.load(path, weights_only=True)["epoch"] == 0 and os.listdir(disk) == ["last.ckpt"]


@pytest.mark.slow
@needs_root
def test_a_read_only_output_folder_is_one_line(tmp_path):
    with tmpfs(tmp_path / "disk", "ro,size=64k") as disk:
        proc = _start([*TINY, f"hydra.run.dir={disk / 'run'}"], tmp_path)
        assert _finish(proc) == 5
        assert _one_line(tmp_path, "error:") == (
            f"error: cannot write to {disk / 'run'}: it is on a read-only file system; choose another output "
            "folder with hydra.run.dir=<folder>"
        )


@pytest.mark.slow
@pytest.mark.skipif(IS_ROOT, reason="as root the tmpfs tests run directly")
def test_in_a_mount_namespace():
    """Not root: the tmpfs tests, run as root of a user and mount namespace of their own."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here: {probe.stderr.decode().strip()}")
    tests = ["-k", "disk or full or read_only", __file__]
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-m", "pytest", "-q", *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
