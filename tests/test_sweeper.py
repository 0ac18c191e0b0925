"""The Optuna sweeper: search-space grammar, and real sweeps of tiny trials (digits, CPU)."""

import json
import os
import signal
import time

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers.sweeps import load, sweep
from sgmod_study.sweeper.devices import trial_threads
from sgmod_study.sweeper.liveness import OWNER_ATTR
from sgmod_study.sweeper.results import write_results
from sgmod_study.sweeper.space import distribution, search_space


def _dist(line: str):
    return distribution(OverridesParser.create().parse_overrides([line])[0])


def test_hydra_sweep_grammar_maps_to_optuna_distributions():
    # as hydra-optuna-sweeper reads it (its whole table: test_sweeper_grammar.py)
    assert _dist("x=int(interval(-5, 5))") == IntDistribution(-5, 5)
    assert _dist("x=tag(log, int(interval(1, 64)))") == IntDistribution(1, 64, log=True)
    assert _dist("x=interval(-5.0, 5.0)") == FloatDistribution(-5.0, 5.0)
    assert _dist("x=tag(log, interval(1e-4, 1e-2))") == FloatDistribution(1e-4, 1e-2, log=True)
    assert _dist("x=choice(relu, sgmod)") == CategoricalDistribution(["relu", "sgmod"])
    assert _dist("x=range(1, 5)") == IntDistribution(1, 5)  # stop included: Optuna's high
    assert _dist("x=range(0, 10, 3)") == IntDistribution(0, 9, step=3)
    floats = _dist("x=range(0.5, 2.0, 0.5)")  # 0.5, 1.0, 1.5, 2.0
    assert isinstance(floats, FloatDistribution) and (floats.low, floats.high, floats.step) == (0.5, 2.0, 0.5)


def test_search_space_splits_sweeps_from_fixed_overrides():
    space, fixed = search_space({"optimizer.lr": "tag(log, interval(1e-4, 1e-2))"}, ["data=digits", "seed=choice(1,2)"])
    assert set(space) == {"optimizer.lr", "seed"}
    assert fixed == ["data=digits"]


def states(study) -> list[str]:
    return [t.state.name for t in study.trials]


@pytest.fixture(scope="module")
def four_trials(tmp_path_factory):
    """One sweep of 4 trials, 2 at a time, shared by the tests that read it: (folder, exit code, console)."""
    tmp_path = tmp_path_factory.mktemp("four_trials")
    code, output = sweep(tmp_path, n_trials=4, n_jobs=2)
    return tmp_path, code, output


@pytest.mark.slow
def test_four_trial_sweep_runs_baseline_first_and_writes_results(four_trials):
    tmp_path, code, output = four_trials
    assert code == 0, output[-3000:]
    study = load(tmp_path)
    assert states(study) == ["COMPLETE"] * 4
    first = study.trials[0].params
    assert first == {
        "activation.gamma_init": 1.0,
        "activation.beta_init": 0.0,
        "activation.lr": 0.001,
        "activation.weight_decay": 0.0001,
        "optimizer.lr": 0.001,
        "optimizer.weight_decay": 0.0001,
    }  # the enqueued baseline
    sweep_dir = tmp_path / "sweep"
    assert sorted(p.name for p in sweep_dir.glob("trial_*")) == [f"trial_{i:04d}" for i in range(4)]
    rows = (sweep_dir / "trials.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("number,state,values,duration_s")
    best = json.loads((sweep_dir / "best.json").read_text())
    assert best["values"] == [study.best_value] and best["number"] == study.best_trial.number
    assert "hydra.run.dir=" not in best["command"]  # pasted again, it trains into a fresh run folder
    assert study.metric_names == ["val/acc_best"]
    folder = study.best_trial.user_attrs["folder"]  # relative to where the sweep started
    assert study.best_trial.user_attrs["test/acc"] > 0 and folder == f"sweep/trial_{study.best_trial.number:04d}"
    best = f"trial {study.best_trial.number}, val/acc_best={study.best_value:.4f}"
    assert f"[sweep] best of the 4 finished trials: {best}" in output
    # Optuna's chatter (QMCSampler is experimental, "[I ...] A new study created") is in sweep.log only
    assert "ExperimentalWarning" not in output and "[I " not in output, output[-3000:]
    log = (sweep_dir / "sweep.log").read_text()
    assert "ExperimentalWarning: QMCSampler is experimental" in log and "] A new study created in Journal" in log
    importances = json.loads((sweep_dir / "importances.json").read_text())
    assert set(importances) == set(study.best_trial.params) and sum(importances.values()) == pytest.approx(1.0)
    best_config = (sweep_dir / "best_config.yaml").read_text()
    assert f"gamma_init: {study.best_trial.params['activation.gamma_init']}" in best_config
    for plot in ("optimization_history", "param_importances", "parallel_coordinate", "gamma_beta_contour"):
        assert (sweep_dir / "plots" / f"{plot}.png").stat().st_size > 5000, plot
    figures = set()
    for path in (sweep_dir / "tensorboard").glob("events.out.tfevents.*"):
        events = EventAccumulator(str(path), size_guidance={"images": 0})
        events.Reload()
        figures.update(events.Tags()["images"])
    assert {"sweep/optimization_history", "sweep/gamma_beta_contour"} <= figures
    # every trial is a single run with its own folder, result and TensorBoard logs
    result = json.loads((sweep_dir / "trial_0000" / "result.json").read_text())
    assert result["value"] == study.trials[0].value
    assert (sweep_dir / "trial_0000" / "tensorboard").is_dir()


def test_result_tables_without_figures_skip_importances_and_plots(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("lr", 0.0, 1.0), n_trials=4)
    write_results(study, tmp_path, figures=False)
    assert len((tmp_path / "trials.csv").read_text().splitlines()) == 5
    assert json.loads((tmp_path / "best.json").read_text())["number"] == study.best_trial.number
    assert not (tmp_path / "plots").exists() and not (tmp_path / "importances.json").exists()
    write_results(study, tmp_path)
    assert (tmp_path / "plots" / "optimization_history.png").stat().st_size > 5000


def _csv_complete(tmp_path) -> int:
    csv = tmp_path / "sweep" / "trials.csv"
    return sum(",COMPLETE," in row for row in csv.read_text().splitlines()) if csv.exists() else 0


@pytest.mark.slow
def test_killed_sweep_resumes_to_exactly_n_trials(tmp_path):
    process = sweep(tmp_path, n_trials=4, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(1)
        if (tmp_path / "study.journal").exists():
            trial_states = [t.state for t in load(tmp_path).trials]
            # two finished and written to trials.csv (just after the next trial starts), the third in flight
            if _csv_complete(tmp_path) >= 2 and TrialState.RUNNING in trial_states:
                break
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = load(tmp_path)
    assert TrialState.RUNNING in {t.state for t in killed.trials}  # the trial it was running
    assert _csv_complete(tmp_path) >= 2  # the results were written while the sweep ran

    code, output = sweep(tmp_path, n_trials=4)
    assert code == 0, output[-3000:]
    study = load(tmp_path)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert [t.number for t in study.trials] == list(range(len(study.trials)))  # no duplicate numbers
    orphans = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(orphans) == 1 and "killed" in orphans[0].user_attrs["fail_reason"]


@pytest.mark.slow
def test_failing_and_nan_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    # trial 0 has a bad config (exit 2); trial 1 trains with lr 1e12: its loss goes NaN, it exits 3
    # (a NaN objective in result.json: tests/test_sweeper_faults.py)
    enqueue = "hydra.sweeper.enqueue_trials=[{activation.gamma_init:50.0},{optimizer.lr:1.0e12}]"
    code, output = sweep(
        tmp_path,
        "optimized_metric=val/loss",
        "hydra.sweeper.direction=minimize",
        "hydra.sweeper.max_failure_rate=0.4",  # 1 failure of the 3 trials: the diverged one does not count
        enqueue,
        n_trials=3,
    )
    assert code == 0, output[-3000:]
    study = load(tmp_path)
    assert states(study)[:2] == ["FAIL", "FAIL"]
    assert states(study).count("COMPLETE") == 2  # n_trials counts the diverged trial: a result
    assert study.trials[0].user_attrs["fail_reason"].startswith("bad configuration: error: activation.gamma_init=50.0")
    assert study.trials[1].user_attrs["fail_reason"].startswith("training diverged: diverged: non-finite loss")


@pytest.mark.slow
def test_too_many_failures_stop_the_sweep_with_the_list(tmp_path):
    # enqueued values are not checked before the sweep starts (searched ones are): trial 0 fails
    code, output = sweep(tmp_path, "hydra.sweeper.enqueue_trials=[{activation.gamma_init:50.0}]", n_trials=3)
    assert code != 0
    assert "1 trials failed in this run, more than max_failure_rate=0.0 x 3 trials to run allows" in output
    assert "trial 0: bad configuration" in output and "trial_0000" in output
    assert "to go on: fix the cause and run the same command again" in output


@pytest.mark.slow
def test_two_jobs_run_concurrently_on_distinct_slots(four_trials):
    tmp_path, code, output = four_trials
    assert code == 0, output[-3000:]
    trials = load(tmp_path).trials
    assert {t.user_attrs["slot"] for t in trials} == {0, 1}
    first, second = trials[0], trials[1]
    assert first.user_attrs["slot"] != second.user_attrs["slot"]
    assert second.datetime_start < first.datetime_complete  # they overlapped


@pytest.mark.slow
def test_median_pruner_prunes_a_clearly_bad_trial(tmp_path):
    good = "{optimizer.lr:0.003,activation.gamma_init:1.0,activation.beta_init:0.0,optimizer.weight_decay:0.0001}"
    bad = "{optimizer.lr:1.0e-07,activation.gamma_init:1.0,activation.beta_init:0.0,optimizer.weight_decay:0.0001}"
    code, output = sweep(
        tmp_path,
        "trainer.max_epochs=4",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=2",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        f"hydra.sweeper.enqueue_trials=[{good},{good},{bad}]",
        n_trials=3,
    )
    assert code == 0, output[-3000:]
    study = load(tmp_path)
    assert states(study) == ["COMPLETE", "COMPLETE", "PRUNED"]
    pruned = study.trials[2]
    assert pruned.value is not None and pruned.value < study.trials[0].value  # its last reported value
    assert len(pruned.intermediate_values) < 4  # stopped before its last epoch


@pytest.mark.slow
def test_custom_search_space_adds_conditional_parameters(tmp_path):
    # the baselines' search (network lr and wd) plus gamma/beta's multiplier, only when the activation is Sgmod
    code, output = sweep(
        tmp_path,
        "hydra.sweeper.custom_search_space=sgmod_study.sweeper.space.sgmod_lr_mult_space",
        n_trials=2,
        search="hparams_search=baseline_classifier",
    )
    assert code == 0, output[-3000:]
    study = load(tmp_path, "baseline_classifier_sgmod")
    for trial in study.trials:
        assert 0.1 <= trial.params["activation.lr_mult"] <= 10.0
        assert f"activation.lr_mult={trial.params['activation.lr_mult']}" in trial.user_attrs["command"]
    saved = (tmp_path / "sweep" / "trial_0001" / ".hydra" / "overrides.yaml").read_text()
    assert "activation.lr_mult=" in saved  # the trial process really got it


@pytest.mark.slow
def test_multi_objective_sweep_writes_the_pareto_front(tmp_path):
    code, output = sweep(
        tmp_path,
        "optimized_metric=[val/acc_best,test/loss]",
        "hydra.sweeper.direction=[maximize,minimize]",
        "hydra/sweeper/sampler=nsgaii",
        n_trials=3,
    )
    assert code == 0, output[-3000:]
    study = load(tmp_path)
    assert [len(t.values) for t in study.trials] == [2, 2, 2]
    best = json.loads((tmp_path / "sweep" / "best.json").read_text())
    front = best if isinstance(best, list) else [best]
    assert {b["number"] for b in front} == {t.number for t in study.best_trials}


@pytest.mark.slow
def test_ddp_trials_run_as_single_runs_without_a_second_sweep(tmp_path):
    code, output = sweep(tmp_path, "trainer=ddp_cpu", n_trials=2)
    assert code == 0, output[-3000:]
    assert states(load(tmp_path)) == ["COMPLETE", "COMPLETE"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.journal", "sweep"]
    sweep_dir = tmp_path / "sweep"
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == [
        "plots",
        "tensorboard",
        "trial_0000",
        "trial_0001",
    ]
    for trial in ("trial_0000", "trial_0001"):
        assert (sweep_dir / trial / "train_ddp_process_1.log").is_file()  # two processes per trial
        assert not list((sweep_dir / trial).glob("*/trial_*"))  # no nested sweep


@pytest.mark.slow
def test_baseline_search_names_its_study_after_the_activation(tmp_path):
    code, output = sweep(tmp_path, "activation=relu", n_trials=1, search="hparams_search=baseline_classifier")
    assert code == 0, output[-3000:]
    study = load(tmp_path, name="baseline_classifier_relu")
    assert study.trials[0].params == {"optimizer.lr": 0.001, "optimizer.weight_decay": 0.0001}


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    workers = [sweep(tmp_path / f"worker{i}", storage=postgres_url, n_trials=5, wait=False) for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    study = optuna.load_study(study_name="sgmod_classifier", storage=postgres_url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    assert len({t.system_attrs[OWNER_ATTR] for t in complete}) == 2  # both worked
    for worker in (0, 1):  # each trial's folder is relative to its worker's working directory
        mine = [t for t in complete if (tmp_path / f"worker{worker}" / t.user_attrs["folder"]).is_dir()]
        assert mine and all(t.user_attrs["folder"] == f"sweep/trial_{t.number:04d}" for t in mine)
    assert len(complete) == sum(
        (tmp_path / f"worker{w}" / t.user_attrs["folder"]).is_dir() for t in complete for w in (0, 1)
    )
    assert all(t.user_attrs.get("interrupted") for t in study.trials if t.state == TrialState.FAIL)


def test_concurrent_trials_share_the_cores_out():
    cores = len(os.sched_getaffinity(0))
    assert trial_threads(1) == cores
    assert trial_threads(cores) == 1 and trial_threads(4 * cores) == 1
    if cores >= 2:
        assert trial_threads(2) == cores // 2


@pytest.mark.slow
def test_trial_timeout_kills_the_trial_and_records_why(tmp_path):
    code, output = sweep(tmp_path, "hydra.sweeper.trial_timeout=1", n_trials=2)
    assert code != 0  # max_failure_rate=0: the first timeout stops the sweep
    trial = load(tmp_path).trials[0]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "timed out after 1 s"


@pytest.mark.slow
def test_the_sweeps_time_limit_stops_its_trial_as_interrupted(tmp_path):
    code, output = sweep(tmp_path, "hydra.sweeper.time_limit=1", n_trials=3)
    assert code == 0, output  # not a failure: the same command resumes
    assert "time limit of 1 s reached; 1 running trial stopped, the same command resumes the study" in output
    trial, again = load(tmp_path).trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["interrupted"] is True
    assert again.state == TrialState.WAITING and again.system_attrs["fixed_params"] == trial.params  # runs next


@pytest.mark.slow
def test_workers_through_the_submitit_launcher_share_the_study(tmp_path):
    """The SLURM path, run with hydra-submitit-launcher's local executor: two worker jobs."""
    code, output = sweep(
        tmp_path,
        "hydra/launcher=submitit_local",
        "hydra.sweeper.workers=2",
        "hydra.launcher.timeout_min=10",
        n_trials=4,
    )
    assert code == 0, output[-3000:]
    study = load(tmp_path)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    owners = {t.system_attrs["sgmod:owner"] for t in study.trials}
    assert len(owners) == 2  # both worker jobs ran trials
    assert (tmp_path / "sweep" / ".submitit").is_dir()


@pytest.mark.slow
def test_one_worker_through_a_launcher_is_a_job_of_it_not_a_run_here(tmp_path):
    """hydra/launcher=submitit_local (as hydra/launcher=slurm) with the default workers=1: the worker is
    the launcher's job, so on a cluster no trial trains on the machine the command was typed on."""
    code, output = sweep(tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", n_trials=1)
    assert code == 0, output[-3000:]
    assert [t.state for t in load(tmp_path).trials] == [TrialState.COMPLETE]
    consoles = list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))
    assert len(consoles) == 1 and "[sweep] trial 0 finished" in consoles[0].read_text()  # one job ran it


def test_only_hydras_basic_launcher_runs_the_worker_in_the_sweepers_process():
    from omegaconf import OmegaConf

    from hydra_plugins.sgmod_sweeper.sgmod_sweeper import BASIC_LAUNCHER, _own_launcher

    assert not _own_launcher(OmegaConf.create({"hydra": {"launcher": {"_target_": BASIC_LAUNCHER}}}))
    assert not _own_launcher(OmegaConf.create({"hydra": {}}))
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert _own_launcher(OmegaConf.create({"hydra": {"launcher": {"_target_": slurm}}}))


def test_an_interrupted_worker_survives_the_trip_to_the_submitting_process():
    """A SLURM worker's result (its SweepInterrupted) is pickled back; it used to fail to unpickle."""
    import pickle
    import signal

    from sgmod_study.sweeper.signals import SweepInterrupted

    again = pickle.loads(pickle.dumps(SweepInterrupted(signal.SIGTERM)))
    assert (type(again), again.signum, again.name, str(again)) == (SweepInterrupted, 15, "SIGTERM", "SIGTERM")


@pytest.mark.slow
def test_grid_sampler_needs_choices(tmp_path):
    code, output = sweep(tmp_path, "hydra/sweeper/sampler=grid", n_trials=1)
    assert code == 2
    assert (
        "error: hydra/sweeper/sampler=grid needs choice(...) parameters; not choices: ['activation.gamma_init'"
        in output
    )


@pytest.mark.slow
def test_grid_sampler_walks_the_choices(tmp_path):
    code, output = sweep(
        tmp_path,
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.params=null",
        "hydra.sweeper.enqueue_trials=[]",
        "seed=choice(1,2)",
        n_trials=2,
    )
    assert code == 0, output[-3000:]
    assert sorted(t.params["seed"] for t in load(tmp_path).trials) == [1, 2]


def test_a_grid_runs_a_failed_cell_again_instead_of_a_duplicate():
    """Optuna's GridSampler counts a FAIL as visited; the experiments' grid must end without holes."""
    from sgmod_study.sweeper.samplers import CompleteGridSampler

    space = {"activation": ["relu", "sgmod"], "seed": [0, 1]}
    distributions = {k: CategoricalDistribution(v) for k, v in space.items()}
    study = optuna.create_study(sampler=CompleteGridSampler(space, seed=0))
    cells, stopped = [], False
    while not stopped:
        trial = study.ask(distributions)
        cells.append((trial.params["activation"], trial.params["seed"]))
        try:
            study.tell(trial, state=TrialState.FAIL) if len(cells) == 2 else study.tell(trial, 1.0)
        except RuntimeError:  # the grid is covered: the sampler calls study.stop()
            stopped = True
    assert len(cells) == 5 and cells[4] == cells[1]  # the failed cell, run again as the fifth trial
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted((t.params["activation"], t.params["seed"]) for t in complete) == [
        ("relu", 0),
        ("relu", 1),
        ("sgmod", 0),
        ("sgmod", 1),
    ]


class _Launcher:
    """A launcher whose jobs ended as given: each a return value, or an exception (the job failed)."""

    def __init__(self, ends):
        self.ends = ends

    def launch(self, overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        returns = []
        for end in self.ends:
            job = JobReturn()
            job.status = JobStatus.FAILED if isinstance(end, BaseException) else JobStatus.COMPLETED
            job._return_value = end
            returns.append(job)
        return returns


def test_a_preempted_worker_leaves_the_sweep_to_the_others_or_to_the_next_command(tmp_path, capsys):
    import signal
    from types import SimpleNamespace

    import optuna

    from sgmod_study.sweeper.scheduler import SweepFailed
    from sgmod_study.sweeper.signals import SweepInterrupted
    from sgmod_study.sweeper.workers import run_workers

    journal = str(tmp_path / "s.journal")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    study = optuna.create_study(study_name="s", storage=storage)
    for value in (0.5, 0.6):
        study.add_trial(optuna.trial.create_trial(value=value))
    settings = SimpleNamespace(storage=journal, study_name="s", n_trials=2)
    # worker 0 preempted, worker 1 finished the study: a finished sweep, the stop said once
    done = run_workers(_Launcher([SweepInterrupted(signal.SIGTERM), study]), 2, [], settings)
    assert len(done.trials) == 2
    assert "[sweep] worker 0 was stopped by SIGTERM (its job signalled, requeued or cancelled); its running" in (
        capsys.readouterr().out
    )
    # every worker preempted before the study was complete: interrupted, to be resumed
    settings.n_trials = 3
    with pytest.raises(SweepInterrupted) as stop:
        run_workers(_Launcher([SweepInterrupted(signal.SIGTERM), SweepInterrupted(signal.SIGTERM)]), 2, [], settings)
    assert stop.value.signum == signal.SIGTERM and len(stop.value.study.trials) == 2
    with pytest.raises(SweepFailed, match=r"sweep workers failed: worker 1: RuntimeError\('boom'\)"):
        run_workers(_Launcher([study, RuntimeError("boom")]), 2, [], settings)


def test_squeue_tells_running_worker_jobs_from_ended_ones():
    """What the SLURM launcher's watch reads (sgmod_study.sweeper.slurm_jobs): squeue lists the jobs
    still queued or running; a registered job it no longer lists has ended, result or not."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    from sgmod_study.sweeper.slurm_jobs import ENDED, squeue_states

    output = "41_0|RUNNING|vm\n41_1|PENDING|\n7|COMPLETING|vm\n8|REQUEUE_HOLD|\n9|CONFIGURING|vm\n10|FAILED|vm\n"
    jobs = ("41_0", "41_1", "41_2", "7", "8", "9", "10")
    states = squeue_states(output, set(jobs))
    assert {job: s["State"] for job, s in states.items()} == {
        "41_0": "RUNNING",
        "41_1": "PENDING",
        "41_2": ENDED,
        "7": "COMPLETING",
        "8": "PENDING",  # a requeued job held before it runs again: alive, its old result is not its last
        "9": "PENDING",
        "10": "FAILED",
    }
    watcher = SlurmInfoWatcher()  # submitit's own rule, which Job.done() asks: every state but its running ones
    watcher._info_dict = states
    done = [watcher.is_done(j, mode="cache") for j in jobs]
    assert done == [False, False, True, False, False, False, True]
