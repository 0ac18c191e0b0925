"""GPU assignment on fake inventories: every slot its own devices, impossible requests refused,
and a stub trial that checks what it sees (no GPU needed)."""

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution

from helpers.sweeps import train_multirun
from sgmod_study.errors import ConfigError
from sgmod_study.sweeper.devices import assign_gpus, sweep_gpus, trial_gpus
from sgmod_study.sweeper.scheduler import Sweep
from sgmod_study.sweeper.settings import ALL_GPUS, SweepSettings

EIGHT = [str(i) for i in range(8)]
FOUR = ["4", "5", "6", "7"]  # CUDA_VISIBLE_DEVICES=4,5,6,7


def test_the_sweeps_gpus_are_its_cuda_visible_devices_or_every_gpu():
    assert sweep_gpus({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}, count=8) == FOUR
    assert sweep_gpus({"CUDA_VISIBLE_DEVICES": "GPU-1a2b, GPU-3c4d"}, count=8) == ["GPU-1a2b", "GPU-3c4d"]
    assert sweep_gpus({"CUDA_VISIBLE_DEVICES": ""}, count=8) == []
    assert sweep_gpus({}, count=8) == EIGHT
    assert sweep_gpus({}, count=0) == []


@pytest.mark.parametrize(
    ("gpus", "n_jobs", "per_trial", "trials_per_gpu", "expected"),
    [
        (EIGHT, 8, 1, 1, [[g] for g in EIGHT]),
        (EIGHT, 3, 1, 1, [["0"], ["1"], ["2"]]),  # spread out, not stacked on GPU 0
        (FOUR, 4, 1, 1, [["4"], ["5"], ["6"], ["7"]]),  # the user's GPUs, never indices into all of them
        (EIGHT, 4, 2, 1, [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]),
        (FOUR, 2, 2, 1, [["4", "5"], ["6", "7"]]),
        (FOUR, 12, 1, 3, [["4"], ["5"], ["6"], ["7"]] * 3),  # 3 trials on each GPU
        (FOUR, 5, 1, 3, [["4"], ["5"], ["6"], ["7"], ["4"]]),
        (FOUR, 1, ALL_GPUS, 1, [FOUR]),  # trainer=ddp (devices=-1): every GPU of the sweep
        (FOUR, 2, 0, 1, [[], []]),  # CPU trials on a GPU machine see no GPU
        ([], 3, 2, 1, [None, None, None]),  # no GPU: the slots share the CPU, the environment stays
    ],
)
def test_every_slot_gets_its_own_devices(gpus, n_jobs, per_trial, trials_per_gpu, expected):
    slots = assign_gpus(gpus, n_jobs, per_trial, trials_per_gpu)
    assert slots == expected
    if gpus and per_trial > 1:  # multi-GPU trials never share a GPU
        used = [g for devices in slots for g in devices]
        assert len(used) == len(set(used))


HAVE = "the sweep has 4 (4,5,6,7: its CUDA_VISIBLE_DEVICES, or every GPU)"


@pytest.mark.parametrize(
    ("n_jobs", "per_trial", "trials_per_gpu", "message"),
    [
        (
            2,
            3,
            1,
            "hydra.sweeper.n_jobs=2 is not possible: 2 trials at once of 3 GPUs each (trainer.devices=3) need 6 GPUs "
            f"and {HAVE}; allowed: n_jobs <= 1",
        ),
        (1, 5, 1, f"trainer.devices=5 is not possible in this sweep: a trial needs 5 GPUs and {HAVE}"),
        (
            1,
            2,
            3,
            "hydra.sweeper.trials_per_gpu=3 is not allowed with trainer.devices=2: trials of several GPUs never "
            "share them; use trials_per_gpu=1",
        ),
        (
            13,
            1,
            3,
            "hydra.sweeper.n_jobs=13 is not possible: 13 one-GPU trials at once at trials_per_gpu=3 need 5 GPUs "
            f"and {HAVE}; allowed: n_jobs <= 12, or a higher trials_per_gpu",
        ),
        (
            2,
            ALL_GPUS,
            1,
            "hydra.sweeper.n_jobs=2 is not possible: 2 trials at once of 4 GPUs each (trainer.devices=-1)",
        ),
    ],
)
def test_an_impossible_request_is_one_line(n_jobs, per_trial, trials_per_gpu, message):
    with pytest.raises(ConfigError) as err:
        assign_gpus(FOUR, n_jobs, per_trial, trials_per_gpu)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("trainer", "gpus"),
    [
        ({"accelerator": "auto", "devices": 1}, 1),
        ({"accelerator": "gpu", "devices": 2, "strategy": "ddp"}, 2),
        ({"accelerator": "gpu", "devices": -1, "strategy": "ddp"}, ALL_GPUS),  # conf/trainer/ddp.yaml
        ({"accelerator": "gpu", "devices": "auto"}, ALL_GPUS),
        ({"accelerator": "cuda", "devices": "2"}, 2),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp"}, 0),  # conf/trainer/ddp_cpu.yaml
    ],
)
def test_a_trial_needs_the_gpus_its_trainer_config_says(trainer, gpus):
    assert trial_gpus(trainer) == gpus


def test_device_indices_in_a_sweep_are_refused():
    with pytest.raises(ConfigError) as err:
        trial_gpus({"accelerator": "gpu", "devices": [2, 3]})
    assert str(err.value).startswith(
        "trainer.devices=[2, 3] is not allowed in a sweep: give the number of GPUs a trial needs (e.g. trainer.devices="
    )


# A trial that checks what it sees: as many GPUs as trainer.devices, all among the sweep's.
SEEING_STUB = """
import json, os, sys, pathlib
args = dict(a.split("=", 1) for a in sys.argv[1:])
folder = pathlib.Path(args["hydra.run.dir"])
seen = os.environ.get("CUDA_VISIBLE_DEVICES")
(folder / "seen.json").write_text(json.dumps(seen))
devices = seen.split(",")
assert len(devices) == int(args["trainer.devices"]), f"sees {seen}, asked for {args['trainer.devices']}"
assert set(devices) <= set(args["sweep_gpus"].split(":")), f"sees {seen}, not the sweep's GPUs"
(folder / "result.json").write_text(json.dumps({"value": float(args["x"])}))
"""


def run_seeing_sweep(tmp_path: Path, sweep_gpus_shown: str, n_jobs: int, per_trial: int, trials_per_gpu: int = 1):
    stub = tmp_path / "stub.py"
    stub.write_text(SEEING_STUB)
    settings = SweepSettings(
        study_name="s",
        storage=str(tmp_path / "study.journal"),
        n_trials=2 * n_jobs,
        n_jobs=n_jobs,
        gpus_per_trial=per_trial,
        trials_per_gpu=trials_per_gpu,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    fixed = [f"trainer.devices={per_trial}", f"sweep_gpus={sweep_gpus_shown}"]
    return Sweep(settings, {"x": FloatDistribution(0.0, 1.0)}, fixed, tmp_path / "sweep", stub).run()


def _seen(study: optuna.Study) -> dict[int, tuple[int, str]]:
    return {
        t.number: (t.user_attrs["slot"], json.loads((Path(t.user_attrs["folder"]) / "seen.json").read_text()))
        for t in study.trials
    }


def test_stub_trials_see_exactly_their_gpus_of_the_users_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    study = run_seeing_sweep(tmp_path, "4:5:6:7", n_jobs=2, per_trial=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    for slot, seen in _seen(study).values():
        assert seen == ["4,5", "6,7"][slot]
    assert {t.user_attrs["device"] for t in study.trials} == {"4,5", "6,7"}


def test_stub_trials_on_eight_gpus_with_three_trials_per_gpu(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("sgmod_study.sweeper.devices._gpu_count", lambda: 8)
    study = run_seeing_sweep(tmp_path, ":".join(EIGHT), n_jobs=3, per_trial=1, trials_per_gpu=3)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    for slot, seen in _seen(study).values():
        assert seen == str(slot)  # 3 slots spread over GPUs 0, 1, 2


def test_an_impossible_sweep_is_refused_before_its_study_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.n_jobs=2 is not possible: 2 trials at once of 3 GPUs"):
        run_seeing_sweep(tmp_path, "4:5:6:7", n_jobs=2, per_trial=3)
    assert not (tmp_path / "study.journal").exists()


@pytest.mark.slow
def test_a_sweep_that_cannot_fit_its_gpus_exits_2_with_one_line_before_any_trial(tmp_path, monkeypatch):
    """The command a user runs, on fake GPUs: 5 one-GPU trials at once on 4 GPUs, 1 trial per GPU."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # train_multirun's process inherits it
    result = train_multirun(tmp_path, "trainer=gpu", "hydra.sweeper.n_jobs=5")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [row for row in result.stderr.splitlines() if row.startswith("error:")]
    assert errors == [
        "error: hydra.sweeper.n_jobs=5 is not possible: 5 one-GPU trials at once at trials_per_gpu=1 need 5 GPUs "
        f"and {HAVE}; allowed: n_jobs <= 4, or a higher trials_per_gpu"
    ], result.stderr[-2000:]
    assert not list(tmp_path.glob("sweep/trial_*")) and not (tmp_path / "study.journal").exists()  # sweep.log only
