"""The sweep scheduler: keeps ``n_jobs`` trial processes running until the study has ``n_trials``
finished trials, each a fresh ``python src/train.py`` process (a stub script in the tests).

It asks Optuna for a trial, starts its process tree on the slot's devices as soon as a slot is
free, and tells Optuna the outcome when the process exits:

- exit 0 with a finite value in ``<trial dir>/result.json`` -> COMPLETE
- exit 4 (``TrialPruned`` in the child's ``OptunaPruning`` callback) -> PRUNED, last reported value
- anything else (bad config 2, divergence 3, crash, kill, timeout, NaN) -> FAIL, reason recorded

Meanwhile it shows that it lives and fails the trials of workers that are gone (liveness.py).
With ``time_limit`` it starts a trial only if it is expected to end in time (``starts_in_time``)
and at the limit stops the running ones (interrupted: new trials take their place next time).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import statistics
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from sgmod_study.errors import EXIT_CONFIG, EXIT_DIVERGED, EXIT_PRUNED, EXIT_SIGINT, EXIT_SIGTERM
from sgmod_study.paths import OPTUNA_DIR
from sgmod_study.run.cli import hydra_value, shown_path
from sgmod_study.sweeper.devices import assign_gpus, sweep_gpus, trial_threads
from sgmod_study.sweeper.fixed_setup import check_fixed_setup, check_search_space
from sgmod_study.sweeper.liveness import REQUEUED_ATTR, liveness, mark_interrupted, owner_id
from sgmod_study.sweeper.processes import TrialProcess, trial_environment
from sgmod_study.sweeper.results import named_values, shown_params, write_results
from sgmod_study.sweeper.samplers import CompleteGridSampler
from sgmod_study.sweeper.settings import SweepSettings
from sgmod_study.sweeper.signals import SweepInterrupted, ignoring_signals, stop_on_signals
from sgmod_study.sweeper.space import custom_overrides
from sgmod_study.sweeper.storage import (
    DIVERGED,
    count,
    count_results,
    has_result,
    is_journal,
    open_storage,
    open_study,
    study_lock,
)
from sgmod_study.trial_contract import (
    ENV_PRUNER,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL_ID,
    ENV_TRIAL_NUMBER,
    read_metrics,
    read_values,
)

# Importances and plots are rewritten at most this often while a sweep runs (always at its end).
FIGURES_EVERY_S = 60.0

# A trial starts only if it is expected to end this much before the limit: one cut at the limit is
# lost work (recorded interrupted). 1.1 was too tight: on a shared 2-core VM two GAN trials (median
# 15.5 min) took 17.9 min and were stopped in their last test (2026-12-06, grid_sn_sgmod 8 and 9).
DURATION_MARGIN = 1.25


def expected_duration(durations: Sequence[float]) -> float:
    """How long the next trial should take, with a margin: ``DURATION_MARGIN`` times the median of
    ``durations`` (this worker's finished trials, timed under the same load); 0 before the first
    has finished."""
    return DURATION_MARGIN * statistics.median(durations) if durations else 0.0


RECORDED_TRIALS = 10  # the study's latest finished trials that estimate a trial before this run has its own


def recorded_durations(study: optuna.Study) -> list[float]:
    """How long the study's latest finished trials took (earlier runs of it, maybe elsewhere): the
    estimate until a trial of this run has finished, so that a resumed sweep started near its time
    limit does not start a trial it cannot finish."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.datetime_start and t.datetime_complete
    ]
    done.sort(key=lambda t: t.datetime_complete)
    return [(t.datetime_complete - t.datetime_start).total_seconds() for t in done[-RECORDED_TRIALS:]]


def starts_in_time(elapsed: float, durations: Sequence[float], limit: float | None) -> bool:
    """Whether a trial started ``elapsed`` seconds into a sweep with ``limit`` seconds is expected
    to end within it; before the first trial has finished, one always starts."""
    return limit is None or elapsed + expected_duration(durations) <= limit


@dataclass
class RunningTrial:
    trial: optuna.Trial
    process: TrialProcess
    folder: Path
    started: float


class Sweep:
    """One sweep worker: in the sweeper's own process, or as a job of a Hydra launcher."""

    def __init__(
        self,
        settings: SweepSettings,
        space: Mapping[str, BaseDistribution],
        fixed: Sequence[str],
        sweep_dir: Path,
        entry_script: Path,
        config=None,
    ) -> None:
        self.settings, self.space, self.fixed, self.config = settings, dict(space), list(fixed), config
        self.sweep_dir, self.entry_script = sweep_dir, entry_script
        # every slot's devices, or a refusal before anything is written
        self.slot_gpus = assign_gpus(sweep_gpus(), settings.n_jobs, settings.gpus_per_trial, settings.trials_per_gpu)
        heartbeat = (settings.heartbeat_interval, settings.heartbeat_grace)
        self.storage, self.storage_name = open_storage(settings.storage, settings.study_name, OPTUNA_DIR, heartbeat)
        self.study = open_study(
            self.storage, settings.study_name, settings.sampler, settings.direction, settings.metric_names
        )
        self.owner = owner_id()
        journal = Path(self.storage_name) if is_journal(self.storage) else None
        self.liveness = liveness(self.study, self.owner, *heartbeat, journal)
        self.running: dict[int, RunningTrial] = {}  # by slot
        self.unwritten = False  # trials finished since the result files were last written
        self.figures_written = time.monotonic()
        self.grid_exhausted = False
        self.failed: list[int] = []  # numbers of the trials this process told FAIL (not interruptions, not diverged)
        self.to_run = settings.n_trials  # finished trials this run has to add; set when it starts
        self.next_watch = 0.0  # when to look for other workers' orphaned trials next
        self.started = time.monotonic()  # for time_limit; reset when run() starts
        self.durations: list[float] = []  # seconds each trial this worker completed took
        self.recorded = recorded_durations(self.study)  # the estimate until this worker has its own
        self.said_no_time = False
        self.said_waiting = False

    def run(self) -> optuna.Study:
        check_fixed_setup(self.study, self.settings.fixed_setup)
        check_search_space(self.study, self.space)
        self.liveness.start(lambda: [run.trial._trial_id for run in list(self.running.values())])
        try:
            with stop_on_signals():
                self._watch_others()
                self._enqueue_baselines()
                self.to_run = max(0, self.settings.n_trials - count_results(self.study))
                # a grid whose every cell has a result has nothing left to run, whatever n_trials says:
                # Optuna's GridSampler would run a cell it picks at random again. A trial queued by
                # hand still runs.
                sampler = self.study.sampler
                if isinstance(sampler, CompleteGridSampler) and not count(self.study, TrialState.WAITING):
                    self.grid_exhausted = sampler.covered(self.study)
                self.started = time.monotonic()
                self._loop()
        except SweepInterrupted as stop:
            with ignoring_signals():
                self._stop_running(f"the sweep got {stop.name}")
            stop.study = self.study
            raise
        finally:  # an error, a failure stop: no trial tree outlives the sweep, each is recorded
            with ignoring_signals():  # a second Ctrl-C or SIGTERM must not cut this short
                self._stop_running("the sweep stopped before it finished")
                self.liveness.close()  # its heartbeat file goes too
        return self.study

    def _loop(self) -> None:
        while True:
            self._collect_finished()
            self._check_failure_rate()
            self._watch_others()
            if self._out_of_time():
                return
            finished = count_results(self.study)
            if (finished >= self.settings.n_trials or self.grid_exhausted) and not self.running:
                return
            in_flight = count(self.study, TrialState.RUNNING)  # every worker's, for a shared study
            free = [slot for slot in range(self.settings.n_jobs) if slot not in self.running]
            wanted = 0 if self.grid_exhausted else self.settings.n_trials - finished - in_flight
            if wanted > 0 and free and not self._time_for_a_trial():
                if not self.running:
                    return
                wanted = 0
            for slot in free[: max(0, wanted)]:
                self._start(slot)
            if self.unwritten:  # after the freed slots are busy again
                self._write_results()
            if not self.running and finished < self.settings.n_trials and in_flight:
                self._say_waiting(in_flight)
                time.sleep(1.0)  # other workers run the last trials; liveness fails those of gone workers
                continue
            time.sleep(0.2)

    def _say_waiting(self, in_flight: int) -> None:
        if self.said_waiting:
            return
        self.said_waiting = True
        print(
            f"[sweep] waiting for {in_flight} trial{'' if in_flight == 1 else 's'} of other sweep workers; a worker "
            f"silent for {self.settings.heartbeat_grace} s counts as gone and its trials run again here"
        )

    def _time_for_a_trial(self) -> bool:
        limit = self.settings.time_limit
        elapsed = time.monotonic() - self.started
        durations = self.durations or self.recorded
        if starts_in_time(elapsed, durations, limit):
            return True
        if not self.said_no_time:
            self.said_no_time = True
            print(
                f"[sweep] time limit: {limit - elapsed:.0f} s of {limit:g} s left, a trial takes about "
                f"{expected_duration(durations):.0f} s; no new trial starts ({len(self.running)} still running; "
                "the same command resumes the study)"
            )
        return False

    def _out_of_time(self) -> bool:
        """At time_limit: stop the running trials (recorded as interrupted) and end the loop."""
        limit = self.settings.time_limit
        if limit is None or time.monotonic() - self.started < limit:
            return False
        stopping = len(self.running)
        self._stop_running(f"the sweep's time limit of {limit:g} s was reached")
        trials = f"{stopping} running trial{'' if stopping == 1 else 's'}"
        print(f"[sweep] time limit of {limit:g} s reached; {trials} stopped, the same command resumes the study")
        return True

    def _watch_others(self) -> None:
        """Fail the trials of workers that are gone (at most once a heartbeat interval); their
        enqueued baselines go back into the queue."""
        if time.monotonic() < self.next_watch:
            return
        self.next_watch = time.monotonic() + self.settings.heartbeat_interval
        orphaned = [t.number for t, why in self.liveness.orphans() if mark_interrupted(self.study, t._trial_id, why)]
        if orphaned:
            print(
                f"[sweep] marked FAIL the trials {orphaned} left RUNNING without a live sweep worker (one that is "
                "gone, or died before starting them); their parameters run again"
            )
            self._enqueue_baselines()

    def _enqueue_baselines(self) -> None:
        """Enqueue each configuration unless it has a trial that ran, runs or waits to run, or that
        diverged (a result, storage.diverged).

        Not Optuna's skip_if_exists: that counts a FAIL trial too, so a baseline whose trial was
        killed with its sweep (or failed and then got fixed) would never run again."""
        if not self.settings.enqueue_trials:
            return
        live = (TrialState.RUNNING, TrialState.WAITING)
        with study_lock(self.storage, self.settings.study_name):  # another worker may be enqueueing them
            trials = [t for t in self.study.get_trials(deepcopy=False) if t.state in live or has_result(t)]
            for params in self.settings.enqueue_trials:
                if not any(t.system_attrs.get("fixed_params", t.params) == dict(params) for t in trials):
                    self.study.enqueue_trial(dict(params))

    def _start(self, slot: int) -> None:
        with warnings.catch_warnings():  # our heartbeat is recorded by this loop, not Study.optimize's thread
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
            with study_lock(self.storage, self.settings.study_name):
                trial = self.study.ask(self.space)
        try:
            self.liveness.started(trial._trial_id)
            if not self._surplus(trial):
                self._launch(slot, trial)
        except BaseException as err:  # a crash (or a signal) between asking and launching leaves nothing RUNNING
            if slot not in self.running:
                mark_interrupted(self.study, trial._trial_id, f"the sweep stopped before starting it: {err!r}")
            raise

    def _launch(self, slot: int, trial: optuna.Trial) -> None:
        fn = self.settings.custom_search_space
        extra = custom_overrides(fn, self.config, trial, self.space) if fn else {}
        folder = (self.sweep_dir / f"trial_{trial.number:04d}").resolve()  # valid from any working directory
        folder.mkdir(parents=True, exist_ok=True)
        env = {
            **trial_environment(os.environ),
            ENV_STORAGE: self.storage_name,
            ENV_STUDY: self.study.study_name,
            ENV_TRIAL_ID: str(trial._trial_id),
            ENV_TRIAL_NUMBER: str(trial.number),
            ENV_PRUNER: json.dumps(self.settings.pruner or {}),
        }
        env.setdefault("OMP_NUM_THREADS", str(trial_threads(self.settings.n_jobs)))
        gpus = self.slot_gpus[slot]
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)  # exactly its own: [] hides every GPU
        device = ",".join(gpus or []) or "cpu"
        chosen = [*self.fixed, *(f"{k}={v}" for k, v in {**trial.params, **extra}.items())]
        for key, value in (
            ("slot", slot),
            ("device", device),
            # relative to where the sweep was started (the repository): a record moved to another
            # machine names folders and a command that exist there
            ("folder", shown_path(folder)),
            # pastes as it is, and trains into a fresh run folder, not next to the trial's checkpoints
            ("command", shlex.join(["python", shown_path(self.entry_script), *chosen])),
        ):
            trial.set_user_attr(key, value)
        resume, again = self._resume_from(trial)
        command = [sys.executable, str(self.entry_script), *chosen, *resume, f"hydra.run.dir={hydra_value(folder)}"]
        process = TrialProcess(command, env, folder / "trial.log")
        self.running[slot] = RunningTrial(trial, process, folder, time.monotonic())
        print(f"[sweep] trial {trial.number} started on slot {slot} ({device}): {shown_params(trial.params)}{again}")

    def _resume_from(self, trial: optuna.Trial) -> tuple[list[str], str]:
        """A trial that runs an interrupted one again continues from its last.ckpt when that is on
        this machine (a preempted 10-epoch trial loses at most a step, not its epochs); the
        override for it, and what to say about it."""
        number = trial.user_attrs.get(REQUEUED_ATTR)
        if number is None:
            return [], ""
        old = next((t for t in self.study.get_trials(deepcopy=False) if t.number == number), None)
        folder = old.user_attrs.get("folder") if old else None
        last = Path(folder) / "checkpoints" / "last.ckpt" if folder else None
        if last is None or not last.is_file():
            return [], f" (trial {number} again, from the start)"
        return [f"ckpt_path={hydra_value(last.resolve())}"], f" (trial {number} again, from its {shown_path(last)})"

    def _surplus(self, trial: optuna.Trial) -> bool:
        """Another worker of a shared study asked at the same moment and the study needs one trial
        fewer than the two of us started: the later-numbered trial gives way."""
        ahead = [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.number < trial.number and (has_result(t) or t.state == TrialState.RUNNING)
        ]
        if len(ahead) < self.settings.n_trials:
            return False
        trial.set_user_attr("fail_reason", "not needed: the study had n_trials trials when it started")
        trial.set_user_attr("interrupted", True)
        self._record(trial, state=TrialState.FAIL)
        return True

    def _collect_finished(self) -> None:
        timeout = self.settings.trial_timeout
        for slot, run in list(self.running.items()):
            if run.process.running():
                if timeout and time.monotonic() - run.started > timeout:
                    run.process.stop()  # the whole tree, before the slot's devices get a new trial
                    del self.running[slot]
                    self._fail(run, f"timed out after {timeout:g} s")
                    self.unwritten = True
                continue
            run.process.finish()  # anything the trial left behind in its group goes with it
            del self.running[slot]
            self._tell(run)
            self.unwritten = True

    def _stop_running(self, reason: str) -> None:
        """SIGTERM to every running trial at once (each writes its last.ckpt), then wait for each;
        they are recorded as interrupted and their parameters queued again."""
        for run in self.running.values():
            run.process.terminate()
        for slot, run in list(self.running.items()):
            run.process.stop()
            del self.running[slot]
            if mark_interrupted(self.study, run.trial._trial_id, reason):
                print(f"[sweep] trial {run.trial.number} stopped: {reason}; its parameters run again next time")

    def _write_results(self) -> None:
        """The tables after every finished trial; importances and plots (seconds of work that
        would keep k short trials per GPU waiting) at most every FIGURES_EVERY_S, and at the end."""
        figures = time.monotonic() - self.figures_written >= FIGURES_EVERY_S
        write_results(self.study, self.sweep_dir, figures=figures)
        if figures:
            self.figures_written = time.monotonic()
        self.unwritten = False

    def _tell(self, run: RunningTrial) -> None:
        if self._finished_elsewhere(run.trial):
            return
        code = run.process.popen.returncode
        if code in (EXIT_SIGTERM, EXIT_SIGINT, -signal.SIGTERM, -signal.SIGINT):  # preempted on its own
            reason = _exit_reason(code, run.folder)
            if mark_interrupted(self.study, run.trial._trial_id, reason):
                print(f"[sweep] trial {run.trial.number} was interrupted ({reason}); its parameters run again")
            return
        if code == EXIT_PRUNED:
            self._record(run.trial, state=TrialState.PRUNED)
            print(f"[sweep] trial {run.trial.number} pruned")
            return
        if code != 0:
            self._fail(run, _exit_reason(code, run.folder))
            return
        values = read_values(run.folder)
        if values is None or any(not math.isfinite(v) for v in values):
            self._fail(run, f"objective is not a finite number: {values}")
            return
        for name, value in read_metrics(run.folder).items():  # test metrics too, for Optuna's own tools
            run.trial.set_user_attr(name, value)
        self._record(run.trial, values if len(values) > 1 else values[0])
        self.durations.append(time.monotonic() - run.started)
        print(f"[sweep] trial {run.trial.number} finished: {named_values(self.study, values)}")

    def _finished_elsewhere(self, trial: optuna.Trial) -> bool:
        """Another worker took this one for gone (a pause longer than heartbeat_grace) and marked
        the trial FAIL: that record stands; the outcome here is dropped, with a line that says so."""
        state = self.study._storage.get_trial(trial._trial_id).state
        if state.is_finished():
            print(f"[sweep] trial {trial.number} was marked {state.name} by another worker meanwhile; kept so")
        return state.is_finished()

    def _record(self, trial: optuna.Trial, values=None, state: TrialState | None = None) -> None:
        try:
            self.study.tell(trial, values, state=state, skip_if_finished=True)
        except RuntimeError as err:
            # GridSampler calls study.stop() once its grid is covered, which Optuna only allows
            # inside study.optimize; the trial is stored all the same (tell's finally clause).
            if "Study.stop" not in str(err):
                raise
            self.grid_exhausted = True

    def _fail(self, run: RunningTrial, reason: str) -> None:
        if self._finished_elsewhere(run.trial):
            return
        run.trial.set_user_attr("fail_reason", reason)
        self._record(run.trial, state=TrialState.FAIL)
        if not reason.startswith(DIVERGED):  # a diverged run is a result (a GAN's stability), not a broken setup
            self.failed.append(run.trial.number)
        print(f"[sweep] trial {run.trial.number} FAILED: {reason} (log: {run.folder / 'trial.log'})")

    def _check_failure_rate(self) -> None:
        """Stop once more than max_failure_rate x the trials this run has to finish have failed in
        this run (0: at the first). Failures of earlier runs do not count: their causes may be
        fixed, and the study must be able to go on; trials interrupted by a killed sweep never count,
        nor do diverged ones: their training failed, not the setup, and the study counts them."""
        allowed = self.settings.max_failure_rate * self.to_run
        if len(self.failed) <= allowed:
            return
        self._stop_running("stopped with the sweep: too many failures")
        write_results(self.study, self.sweep_dir)
        failed = [t for t in self.study.get_trials(deepcopy=False) if t.number in self.failed]
        lines = [
            f"  trial {t.number}: {t.user_attrs.get('fail_reason', '?')} ({t.user_attrs.get('folder', '?')})"
            for t in failed
        ]
        raise SweepFailed(
            f"{len(failed)} trials failed in this run, more than max_failure_rate={self.settings.max_failure_rate} x "
            f"{self.to_run} trials to run allows:\n" + "\n".join(lines) + "\nto go on: fix the cause and run the "
            "same command again (the study resumes where it stopped), or raise hydra.sweeper.max_failure_rate"
        )


def run_worker(config, *, settings: SweepSettings, space, fixed, sweep_dir: Path, entry_script: Path) -> optuna.Study:
    """One sweep worker: in the sweeper's own process, or as a job of a Hydra launcher."""
    worker = config.get("sweep_worker", 0) if hasattr(config, "get") else 0
    if worker and not isinstance(settings.sampler, optuna.samplers.QMCSampler):
        # the workers got one seeded sampler each, alike: left so they would propose the same points.
        # QMC's workers must share its seed (one Sobol sequence); the others draw apart.
        settings.sampler.reseed_rng()
    return Sweep(settings, space, fixed, sweep_dir, entry_script, config).run()


class SweepFailed(RuntimeError):
    """Too many failed trials; the message lists them and where their logs are."""


def _exit_reason(code: int, folder: Path) -> str:
    known = {
        EXIT_CONFIG: "bad configuration",
        EXIT_DIVERGED: DIVERGED,
        EXIT_SIGTERM: "stopped by SIGTERM",
        EXIT_SIGINT: "stopped by SIGINT",
    }
    reason = known.get(code, f"killed by signal {-code}" if code < 0 else f"exited with code {code}")
    last = _last_line(folder / "trial.log")
    return f"{reason}: {last}" if last else reason


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
